"""The root command: version, help with examples, exit codes, layering."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from dreamcli import __version__


def test_version(dream):
    result = dream("--version")
    assert (result.exit_code, result.stdout) == (0, f"dream {__version__}\n")


def test_help_lists_groups_examples_and_exit_codes(dream):
    result = dream("--help")
    assert result.exit_code == 0
    for text in (
        "flow",
        "kv",
        "d1",
        "dream flow run",
        "dream kv put",
        "dream d1 migrations apply",
        "Exit codes: 0 ok; 1 failed or findings; 2 usage",
    ):
        assert text in result.stdout


def test_every_command_has_an_example(dream):
    for group, commands in {
        "kv": ["get", "put", "delete", "list", "bulk-put", "bulk-get", "bulk-delete", "explain", "verify", "repair"],
        "d1": ["execute"],
        "flow": ["signup", "pay", "connect", "tiers", "credentials", "status", "run", "call"],
        "keys": ["create", "list", "rotate", "revoke"],
        "-": ["doctor", "dashboard"],
        "customers": ["list", "show", "export"],
        "usage": ["show"],
        "emulator": ["serve"],
    }.items():
        for command in commands:
            result = dream(*([group, command] if group != "-" else [command]), "--help")
            assert result.exit_code == 0 and "Example:" in result.stdout, (group, command)


def test_core_never_imports_typer_or_rich():
    """Everything but dreamcli/cli stays free of the CLI libraries (httpx may pull rich in for its own CLI)."""
    root = Path(__file__).resolve().parent.parent
    offenders = []
    for path in [*root.joinpath("dreamcli").rglob("*.py"), *root.joinpath("emulator").rglob("*.py")]:
        if "cli" in path.relative_to(root).parts[1:2]:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            offenders += [f"{path.relative_to(root)}: {n}" for n in names if n.split(".")[0] in ("typer", "rich")]
    assert offenders == []
    code = (
        "import sys\n"
        "import dreamcli.layout, dreamcli.stores.ports, dreamcli.stores.d1_migrations, dreamcli.platform.explain\n"
        "import dreamcli.vendors.settings, emulator.store, emulator.app\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] == 'typer')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_console_script_runs_as_a_process(tmp_path):
    exe = Path(sys.executable).with_name("dream")
    assert exe.exists(), "the dream console script is installed beside the interpreter"
    result = subprocess.run(
        [str(exe), "kv", "get", "nope", "--ns", "api-tokens"], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 3  # no store there: reading never makes one
    assert result.stderr.startswith(f"error: no store at {tmp_path / 'store.db'}: nothing has been written there yet")
    assert not (tmp_path / "store.db").exists()


def test_cli_constants_agree_with_the_core():
    """The CLI spells a few core names statically so that it need not import the core at start-up."""
    from dreamcli.cli.flow import FAULTS
    from dreamcli.cli.kv import CLASS_NAMES
    from dreamcli.platform.flow_run import FAULTS as CORE_FAULTS
    from dreamcli.platform.replication import FindingClass

    assert FAULTS == CORE_FAULTS and CLASS_NAMES == tuple(str(c) for c in FindingClass)


def test_one_meaning_per_short_option_and_p_is_always_platform():
    """A short option means the same in every command (`-p` was --platform in most and --prefix in `kv list`), and
    every --platform takes -p."""
    import click
    import typer.main

    meanings: dict[str, set[str]] = {}
    platforms_without_p = []

    walked: list[str] = []

    def walk(command: click.Command, path: str) -> None:
        walked.append(path)
        for param in command.params:
            if not isinstance(param, click.Option):
                continue
            longs = tuple(sorted(o for o in param.opts if o.startswith("--")))
            for short in (o for o in param.opts if not o.startswith("--")):
                meanings.setdefault(short, set()).add(longs[0] if longs else short)
            if "--platform" in param.opts and "-p" not in param.opts:
                platforms_without_p.append(path)
        if isinstance(command, click.Group) or hasattr(command, "list_commands"):
            ctx = click.Context(command)
            for name in command.list_commands(ctx):
                walk(command.get_command(ctx, name), f"{path} {name}")

    from dreamcli.cli.app import app

    walk(typer.main.get_command(app), "dream")
    assert "dream kv verify" in walked and "dream d1 migrations apply" in walked  # the lazy groups were walked
    assert {short: sorted(longs) for short, longs in meanings.items() if len(longs) > 1} == {}
    assert platforms_without_p == []


def test_piped_tables_are_plain_records_never_cut(dream):
    data = dream.json("flow", "run", "--json")
    piped = dream("flow", "status")  # CliRunner's stdout is no terminal
    lines = piped.stdout.splitlines()
    assert lines[0].split("\t")[:2] == ["developer", "platform"]
    assert lines[1].split("\t")[:2] == [data["userId"], data["platformId"]]  # whole ids, one record per line
    assert "\x1b[" not in piped.stdout and "…" not in piped.stdout
    as_csv = dream("flow", "status", "--format", "csv")  # --format after the subcommand, as --json
    assert as_csv.stdout.splitlines()[1].startswith(f"{data['userId']},{data['platformId']},")
    long = "x" * 300
    d1 = dream("d1", "execute", "--command", f"SELECT '{long}' AS v")
    assert d1.stdout.splitlines() == ["v", long] and "1 row, 0 changes" in d1.stderr
    wrote = dream("kv", "put", "k", "v", "--ns", "api-usage")
    assert "(1 byte)" in wrote.stderr
    assert dream("--format", "fancy", "flow", "status").exit_code == 2


def test_a_table_too_wide_for_the_terminal_becomes_records_and_no_color_means_no_codes(tmp_path):
    import os
    import re as regex

    from tests.test_cli_terminal import on_a_terminal

    env = {**os.environ, "COLUMNS": "80", "NO_COLOR": "1"}
    dream_exe = str(Path(sys.executable).with_name("dream"))
    subprocess.run([dream_exe, "flow", "run"], env=env, cwd=tmp_path, capture_output=True, check=True)
    _, text = on_a_terminal(["flow", "status"], env, tmp_path)
    assert "…" not in text and "\x1b[1m" not in text  # NO_COLOR: no bold either
    shown = json.loads(
        subprocess.run(
            [dream_exe, "flow", "status", "--json"], env=env, cwd=tmp_path, capture_output=True, check=True
        ).stdout
    )
    user = shown["developers"][0]["userId"]
    # Too wide for every column: still a table, its longest values on detail lines under each row, ids whole.
    assert regex.search(r"^developer +signup +paid +connected +tiers +keys", text, regex.M)
    assert regex.search(rf"^{user} +yes +yes +yes +yes +yes", text, regex.M)
    assert regex.search(rf"^    platform: +{shown['developers'][0]['platformId']}\r?$", text, regex.M)
    assert all(len(line) <= 80 for line in text.splitlines())


@pytest.mark.parametrize("columns", [80, 100, 120])
def test_the_flow_run_table_is_drawn_at_ordinary_widths(tmp_path, columns):
    """flow run's step table at 80, 100 and 120 columns: a drawn table that fits (its prose wrapped in its cells)."""
    import os

    from tests.test_cli_terminal import on_a_terminal

    code, text = on_a_terminal(["flow", "run"], {**os.environ, "COLUMNS": str(columns), "NO_COLOR": "1"}, tmp_path)
    lines = text.splitlines()
    assert code == 0 and any(line.startswith("┏") for line in lines), text
    assert all(len(line) <= columns for line in lines if line.startswith(("┏", "┃", "│", "└")))
    assert "…" not in text


def test_shell_completion_offers_namespaces_and_finding_classes(tmp_path):
    import os

    from dreamcli.cli.kv import CLASS_NAMES, NAMESPACE_NAMES
    from dreamcli.topology import GUIDE_TOPOLOGY

    assert list(NAMESPACE_NAMES) == GUIDE_TOPOLOGY.names()
    dream_exe = str(Path(sys.executable).with_name("dream"))

    def complete(words: str) -> list[str]:
        env = {
            **os.environ,
            "_DREAM_COMPLETE": "complete_bash",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(words.split()) - 1),
        }
        return subprocess.run([dream_exe], env=env, capture_output=True, text=True, cwd=tmp_path).stdout.split()

    assert complete("dream kv list --ns api") == ["api-tokens", "api-usage"]
    assert complete("dream kv verify --class st") == ["stale", "stranded"]
    assert set(CLASS_NAMES) >= {"stale", "stranded"}


def test_starting_dream_does_not_load_the_checker():
    """`--class`'s names come from FindingClass, yet every `dream` start stays free of the replication checker."""
    import subprocess
    import sys

    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, dreamcli.cli.app; print('dreamcli.platform.replication.checker' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert loaded.stdout.strip() == "False"


def test_reads_never_create_a_store_nor_answer_a_typo_as_empty(dream, tmp_path):
    """A mistyped store or platform is 'not found' (exit 3) on every read, and nothing is created."""
    typo = tmp_path / "typo" / "x.db"
    for args in (
        ["events", "list"],
        ["flow", "status"],
        ["kv", "verify"],
        ["overview"],
        ["customers", "list", "-p", "plt_x"],
    ):
        result = dream("--store", f"emulator:{typo}", *args)
        assert result.exit_code == 3, (args, result.stdout, result.stderr)
        assert "no store at" in result.stderr
    assert not typo.exists() and not typo.parent.exists()
    assert dream("flow", "run").exit_code == 0
    for args in (
        ["customers", "export", "-p", "plt_typo"],
        ["customers", "list", "-p", "plt_typo"],
        ["usage", "show", "-p", "plt_typo"],
        ["dashboard", "-p", "plt_typo"],
    ):
        result = dream(*args)
        assert result.exit_code == 3 and result.stdout == "" and "no platform plt_typo" in result.stderr, args


def test_each_command_loads_when_used_and_its_summary_is_its_help():
    """`dream --help` lists the commands from a table, without importing them; each summary is the start of the
    command's own help, each command loads, and `dream kv get` imports neither the emulator's server, the vendors,
    the flows nor sqlite_utils."""
    import click
    import typer.main

    from dreamcli.cli.app import COMMANDS, app

    group = typer.main.get_command(app)
    ctx = click.Context(group)
    assert group.list_commands(ctx) == list(COMMANDS)
    for name, (_, _, summary) in COMMANDS.items():
        command = group.get_command(ctx, name)
        assert command is not None and command.name == name
        assert " ".join((command.help or "").split()).startswith(summary), name
    assert group.get_command(ctx, "nope") is None
    code = (
        "import sys\n"
        "sys.argv = ['dream', 'kv', 'get', 'k', '--ns', 'api-tokens']\n"
        "from dreamcli.cli.app import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in ('sqlite_utils', 'starlette', 'uvicorn', "
        "'stripe', 'httpx') or m.startswith(('emulator.app', 'dreamcli.platform.flow', 'dreamcli.cli.flow')))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


# Every command that only reads, with the arguments it needs; the rest write (or serve, or read a project folder).
READS = {
    "flow status": [],
    "flow call": [],  # the secret on stdin
    "keys list": ["-p", "plt_x"],
    "kv get": ["k", "--ns", "api-tokens"],
    "kv list": ["--ns", "api-tokens"],
    "kv bulk-get": ["k", "--ns", "api-tokens"],
    "kv verify": [],
    "customers list": ["-p", "plt_x"],
    "customers show": ["c1", "-p", "plt_x"],
    "customers export": ["-p", "plt_x"],
    "usage show": ["-p", "plt_x"],
    "dashboard": ["-p", "plt_x"],
    "overview": [],
    "d1 execute": ["--command", "SELECT 1"],
    "d1 migrations list": [],
    "events list": [],
    "console": ["--port", "0"],  # a store that is not there: refused before anything is served
}
NOT_READS = {
    "flow signup", "flow pay", "flow connect", "flow tiers", "flow credentials", "flow run",
    "keys create", "keys rotate", "keys revoke",
    "kv put", "kv delete", "kv bulk-put", "kv bulk-delete", "kv repair",
    "kv explain",  # reads no store: it explains a key's name
    "d1 migrations apply", "emulator serve", "dev", "stripe trigger", "stripe listen", "events resend", "seed",
    "doctor", "topology",  # read a project's wrangler files (their missing folder is tested with them)
}  # fmt: skip


def _leaf_commands() -> set[str]:
    import click
    import typer.main

    from dreamcli.cli.app import app

    found: set[str] = set()

    def walk(command: click.Command, path: list[str]) -> None:
        if hasattr(command, "list_commands"):
            ctx = click.Context(command)
            for name in command.list_commands(ctx):
                walk(command.get_command(ctx, name), [*path, name])
        else:
            found.add(" ".join(path))

    walk(typer.main.get_command(app), [])
    return found


def test_every_read_command_on_a_typo_is_not_found_and_creates_nothing(dream, tmp_path):
    """Walks every command that reads (a new command must be listed as a read or not): on a mistyped store each is
    "not found" (exit 3) in one line, and nothing is created; on an existing store, a mistyped platform, customer or
    key is "not found" too, never an empty success."""
    assert set(READS) | NOT_READS == _leaf_commands() and not set(READS) & NOT_READS
    typo = tmp_path / "typo" / "x.db"
    for command, args in READS.items():
        result = dream("--store", f"emulator:{typo}", *command.split(), *args, input="sk_live_typo\n")
        assert result.exit_code == 3, (command, result.stdout, result.stderr)
        assert result.stderr.startswith("error: no store at") and result.stderr.count("\n") == 1, command
    assert not typo.exists() and not typo.parent.exists()
    plt = dream.json("flow", "run", "--json")["platformId"]
    for command, args in {
        "keys list": ["-p", "plt_typo"],
        "customers show": ["c_typo", "-p", plt],
        "kv get": ["typo", "--ns", "api-tokens"],
        "kv verify": ["-p", "plt_typo"],
        "customers list": ["-p", "plt_typo"],
        "customers export": ["-p", "plt_typo"],
        "usage show": ["-p", "plt_typo"],
        "dashboard": ["-p", "plt_typo"],
        "events resend": ["evt_typo"],
        "keys revoke": ["--key", "pk_live_typo", "-p", plt, "--yes"],
    }.items():
        result = dream(*command.split(), *args)
        assert result.exit_code == 3 and result.stdout == "", (command, result.stdout, result.stderr)
