"""The root `dream` app: global options, the command groups, and the ONE place errors become exit codes."""

from __future__ import annotations

import os
import sys
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from dreamcli.cli.context import DEFAULT_STORE, AppContext
from dreamcli.errors import EXIT_CODES_HELP, DreamError, ExitCode


def _debugging() -> bool:
    return os.environ.get("DREAM_DEBUG") == "1" or "PYTEST_CURRENT_TEST" in os.environ


def _is_cli_framework(exc: Exception) -> bool:
    """Exit, Abort and usage errors of Typer's click: they already carry their own exit code."""
    return type(exc).__module__.split(".")[0] in ("click", "typer")


def hoist_root_options(args: list[str]) -> list[str]:
    """`--store X` and `--format F` (or `--store=X`) may follow the subcommand, as `--json` may: `dream kv verify
    --store wrangler:.` is `dream --store wrangler:. kv verify`. Moved to the front; nothing after `--` is touched."""
    end = args.index("--") if "--" in args else len(args)
    hoisted: list[str] = []
    rest: list[str] = []
    index = 0
    while index < end:
        arg = args[index]
        if index > 0 and arg in ("--store", "--format", "--profile") and index + 1 < end:
            hoisted += [arg, args[index + 1]]
            index += 2
            continue
        if index > 0 and arg.startswith(("--store=", "--format=", "--profile=")):
            hoisted.append(arg)
        else:
            rest.append(arg)
        index += 1
    return hoisted + rest + args[end:]


# Every command and command group: the module that defines it, its name there, and the start of its help (what `dream
# --help` shows). A command's module is imported only when that command runs or its help is shown, so `dream kv get`
# does not pay for the emulator, the flows or the vendors (a test checks each summary against the command's help).
COMMANDS: dict[str, tuple[str, str, str]] = {
    "flow": ("flow", "app", "Drive the onboarding flow: signup -> pay -> connect -> tiers -> credentials."),
    "keys": ("keys", "app", "Manage a platform's key pairs (production, staging, test, ...)"),
    "kv": ("kv", "app", "Read and write the KV namespaces (platform-tokens, platform-usage, api-tokens, api-usage)."),
    "customers": ("customers", "app", "A platform's customers (from D1)."),
    "usage": ("customers", "usage_app", "End-user usage against tier limits."),
    "dashboard": ("customers", "dashboard", "Customers by plan, MRR, usage against limits, and calls per day"),
    "overview": ("overview", "overview", "Developers by plan and how many pay, the platform's own MRR per currency"),
    "console": ("console", "console", "A web console over the store: overview (developers, MRR and its trend, busiest"),
    "d1": ("d1", "app", "Query the D1 database and manage its migrations."),
    "emulator": ("emulator", "app", "Run the local emulator."),
    "dev": ("dev", "dev", "Start dream's emulated Stripe (:8791) and Clerk (:8792), then `wrangler dev`"),
    "stripe": ("stripe", "app", "Stripe events for the platform's webhooks, as the Stripe CLI makes them."),
    "events": ("events", "app", "Webhook events the emulated Stripe and Clerk sent, and sending one again."),
    "doctor": (
        "doctor",
        "doctor",
        "Check the three workers' wrangler files: namespace and preview ids that must agree",
    ),
    "topology": (
        "topology",
        "topology",
        "Per logical namespace and for D1: every worker binding it, what it does there",
    ),
    "seed": (
        "seed",
        "seed",
        "Write PLATFORMS synthetic developers (their platform ids, Stripe tokens, products, key pairs",
    ),
}


def load_command(name: str) -> Any:
    """The click command `dream NAME` runs, built from its module's Typer app or function."""
    import importlib

    import typer.main
    from typer.models import CommandInfo, TyperInfo

    module, attribute, _ = COMMANDS[name]
    target = getattr(importlib.import_module(f"dreamcli.cli.{module}"), attribute)
    short, markup = app.pretty_exceptions_short, app.rich_markup_mode
    if isinstance(target, typer.Typer):
        return typer.main.get_group_from_info(
            TyperInfo(target, name=name),
            pretty_exceptions_short=short,
            rich_markup_mode=markup,
            suggest_commands=app.suggest_commands,
        )
    return typer.main.get_command_from_info(
        CommandInfo(name=name, callback=target), pretty_exceptions_short=short, rich_markup_mode=markup
    )


class DreamGroup(TyperGroup):
    """Turns domain errors into one line on stderr and their exit code; never a traceback. Its commands are loaded
    when used (`COMMANDS`)."""

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in COMMANDS:
            return None
        if cmd_name not in self.commands:
            self.commands[cmd_name] = load_command(cmd_name)
        return self.commands[cmd_name]

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        """The command list from `COMMANDS`' summaries, without importing every command."""
        from typer._click.utils import make_default_short_help

        limit = formatter.width - 6 - max(len(name) for name in COMMANDS)
        with formatter.section("Commands"):
            formatter.write_dl(
                [(name, make_default_short_help(help, limit)) for name, (_, _, help) in COMMANDS.items()]
            )

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, hoist_root_options(list(args)))

    def invoke(self, ctx: Any) -> Any:  # click's Context (typer.Context is a subclass)
        try:
            return super().invoke(ctx)
        except DreamError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(int(exc.exit_code)) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
        except BrokenPipeError:
            # `dream kv list --all | head`: the reader left; that is not our failure.
            sys.stderr.close()
            raise typer.Exit(int(ExitCode.OK)) from None
        except Exception as exc:
            if _debugging() or _is_cli_framework(exc):
                raise
            typer.echo(f"error: unexpected {type(exc).__name__}: {exc} (DREAM_DEBUG=1 shows the traceback)", err=True)
            raise typer.Exit(int(ExitCode.FAILED)) from None


app = typer.Typer(
    cls=DreamGroup,
    name="dream",
    help=(
        "Operator console and local emulator for the dream-api platform.\n\n"
        "Examples:\n\n"
        "  dream flow run   (the whole onboarding on the embedded emulator, then an authenticated call)\n\n"
        "  dream keys rotate --user dev@example.com --env production --grace 24h\n\n"
        "  dream kv put 'user:user_1:platformId' plt_abc --ns platform-tokens\n\n"
        "  dream kv list --ns api-tokens --prefix secretkey: --json\n\n"
        "  dream kv explain 'publishablekey:pk_live_x:platformId'\n\n"
        "  dream d1 migrations apply && dream d1 execute --command 'SELECT count(*) FROM customers'\n\n"
        "  dream --store wrangler:~/dream-api kv verify   (and: dream doctor ~/dream-api)\n\n"
        "  dream emulator serve   (api-multi on :8787, then the guide's curl; dream dashboard -p plt_...)"
    ),
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        import dreamcli

        typer.echo(f"dream {dreamcli.__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    store: Annotated[
        str,
        typer.Option(
            "--store",
            envvar="DREAM_STORE",
            help="Where the data lives: emulator:PATH (or a bare PATH), wrangler:PROJECT[,persist-to=DIR][,preview], or cloudflare[:PROJECT].",
            show_default=True,
        ),
    ] = DEFAULT_STORE,
    json_output: Annotated[bool, typer.Option("--json", help="JSON on stdout for every read or list command.")] = False,
    output: Annotated[
        str,
        typer.Option(
            "--format",
            envvar="DREAM_FORMAT",
            help="Tables: auto (drawn on a terminal, tsv in a pipe), table, tsv or csv (one record per line, a "
            "header first, nothing cut). --json for JSON.",
        ),
    ] = "auto",
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="More detail on stderr.")] = False,
    profile: Annotated[
        str | None,
        typer.Option(
            "--profile",
            envvar="DREAM_PROFILE",
            help="A profile of the nearest dream.toml: its store and vendor variables (--store still wins).",
        ),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """Operator console and local emulator for the dream-api platform."""
    from dreamcli.cli.context import FORMATS, choose_format

    if output not in FORMATS:
        raise typer.BadParameter(f"use one of {', '.join(FORMATS)}", param_hint="--format")
    choose_format(output)  # read where tables are printed (stdout_console)
    context = AppContext(store_spec=store, json=json_output, verbose=verbose)
    if profile is not None:
        from dreamcli.cli.profiles import load_profile

        chosen = load_profile(profile)
        given = getattr(ctx.get_parameter_source("store"), "name", "")  # typer's own click or click's: by name
        if chosen.store and given != "COMMANDLINE":
            context.store_spec = chosen.store
        context.environ = chosen.environ(context.environ)
    ctx.obj = context
    ctx.call_on_close(context.close)
    from dreamcli.stores import store_lock

    store_lock.on_wait = _waiting


def _waiting(message: str) -> None:
    """A command that waits for another's lock on the store says so, once, on stderr."""
    typer.echo(f"{message} ...", err=True)


def _interrupted(signum: int, _frame: Any) -> None:
    """SIGTERM (a `kill`, a supervisor) and SIGHUP (the terminal closed) end a command as Ctrl-C does: through every
    `finally` (temporary folders of secrets and snapshots removed, child processes stopped), then exit 130."""
    raise KeyboardInterrupt


def main() -> None:
    import signal

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupted)
    app(prog_name="dream")
