"""The root `dream` app: global options, the command groups, and the ONE place errors become exit codes."""

from __future__ import annotations

import os
import sys
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from dreamcli.cli import customers as customers_cli
from dreamcli.cli import d1 as d1_cli
from dreamcli.cli import dev as dev_cli
from dreamcli.cli import doctor as doctor_cli
from dreamcli.cli import emulator as emulator_cli
from dreamcli.cli import events as events_cli
from dreamcli.cli import flow as flow_cli
from dreamcli.cli import keys as keys_cli
from dreamcli.cli import kv as kv_cli
from dreamcli.cli import overview as overview_cli
from dreamcli.cli import seed as seed_cli
from dreamcli.cli import stripe as stripe_cli
from dreamcli.cli import topology as topology_cli
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


class DreamGroup(TyperGroup):
    """Turns domain errors into one line on stderr and their exit code; never a traceback."""

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
app.add_typer(flow_cli.app, name="flow")
app.add_typer(keys_cli.app, name="keys")
app.add_typer(kv_cli.app, name="kv")
app.add_typer(customers_cli.app, name="customers")
app.add_typer(customers_cli.usage_app, name="usage")
app.command("dashboard")(customers_cli.dashboard)
app.add_typer(d1_cli.app, name="d1")
app.add_typer(emulator_cli.app, name="emulator")
app.add_typer(stripe_cli.app, name="stripe")
app.add_typer(events_cli.app, name="events")
app.command("doctor")(doctor_cli.doctor)
app.command("topology")(topology_cli.topology)
app.command("dev")(dev_cli.dev)
app.command("seed")(seed_cli.seed)
app.command("overview")(overview_cli.overview)


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


def _interrupted(signum: int, _frame: Any) -> None:
    """SIGTERM (a `kill`, a supervisor) and SIGHUP (the terminal closed) end a command as Ctrl-C does: through every
    `finally` (temporary folders of secrets and snapshots removed, child processes stopped), then exit 130."""
    raise KeyboardInterrupt


def main() -> None:
    import signal

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupted)
    app(prog_name="dream")
