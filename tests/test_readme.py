"""The README says what the tool does: every `dream` command in its examples names a real command and real options,
and its worked examples run as written (bash, no terminal, dream from the install)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
import typer.main

from dreamcli.cli.app import app
from tests.test_ci_recipe import run

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def bash_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", README, re.S)


def block_after(marker: str) -> list[str]:
    """The lines of the first bash block after `marker`, comments kept."""
    rest = README[README.index(marker) :]
    block = re.search(r"```bash\n(.*?)```", rest, re.S)
    assert block is not None, marker
    return [line for line in block.group(1).splitlines() if line.strip()]


def dream_invocations() -> list[list[str]]:
    """Every `dream ...` in the README's bash blocks, as words, up to a comment, a pipe or an `&&`."""
    found = []
    for block in bash_blocks():
        for line in block.splitlines():
            code = re.split(r"\s#\s", line, maxsplit=1)[0]
            for segment in re.split(r"&&|\|\||;|\s\|\s|\$\(", code):
                match = re.search(r"(?:^|\s|/)dream(\s.*)?$", segment.strip())
                if match and not segment.strip().startswith(("python", "jq", "echo")):
                    rest = match.group(1) or ""
                    try:
                        found.append(shlex.split(rest))
                    except ValueError:  # a quote closed past where the segment was cut
                        found.append(rest.split())
    return found


def resolve(words: list[str]) -> tuple[list[click.Command], list[str]]:
    """The commands `dream WORDS` runs (root first) and the option words given."""
    root = typer.main.get_command(app)
    chain: list[click.Command] = [root]
    options = []
    index = 0
    while index < len(words):
        word = words[index]
        command = chain[-1]
        if word.startswith("-"):
            options.append(word.split("=")[0])
            if word in ("--store", "--format", "--profile"):
                index += 1  # its value
        elif hasattr(command, "list_commands") and word in command.list_commands(click.Context(command)):
            chain.append(command.get_command(click.Context(command), word))
        index += 1
    return chain, options


def test_every_readme_command_and_option_is_real():
    invocations = dream_invocations()
    assert len(invocations) >= 40  # the parser finds them
    wrong = []
    for words in invocations:
        chain, options = resolve(words)
        if len(chain) == 1 and words and not words[0].startswith("-"):
            wrong.append(f"dream {' '.join(words)}: no command {words[0]!r}")
            continue
        known = {opt for command in chain for param in command.params for opt in param.opts + param.secondary_opts}
        known |= {"-h", "--help"}
        wrong += [f"dream {' '.join(words)}: {option}" for option in options if option not in known]
    assert wrong == []


def _expected_exit(line: str) -> int:
    comment = line.partition(" # ")[2]
    return 1 if re.search(r"\bexits? 1\b", comment) else 0


def test_the_guides_bug_runs_as_the_readme_shows_it(tmp_path):
    """Reproduce it, see it, fix it: each line as written, with the exit its comment says."""
    for line in block_after("never reached api-multi's namespace. Reproduce it,"):
        result = run(line, tmp_path)
        assert result.returncode == _expected_exit(line), (line, result.stdout, result.stderr)
    assert "ok\t" in result.stdout  # the last call, after the repair


def test_the_key_pair_examples_run_as_written(tmp_path):
    """The keys block, on a developer made with the README's e-mail: each line runs (optional parts left out, the
    placeholder key replaced by a real one)."""
    assert run("dream flow run --email dev@example.com", tmp_path).returncode == 0
    lines = block_after("## Key pairs: `dream keys`")
    created = None
    for line in lines:
        code = re.sub(r"\s\[[^\]]*\]", "", line.partition(" # ")[0]).strip()
        if "pk_live_..." in code:
            assert created is not None
            code = code.replace("pk_live_...", created)
        result = run(code, tmp_path)
        assert result.returncode == 0, (code, result.stdout, result.stderr)
        found = re.search(r"pk_live_[0-9a-f]{32}", result.stdout)
        if "keys create" in code and found:
            created = found.group(0)
    assert created is not None


@pytest.mark.parametrize("marker", ["## The onboarding flow"])
def test_synopses_run_with_their_options_left_out(tmp_path, marker):
    """A synopsis line (`dream flow run [--email E] ...`) run bare: the form every user tries first."""
    assert run("dream flow run", tmp_path).returncode == 0
    for line in block_after(marker):
        code = re.sub(r"\s\[[^\]]*\]", "", line.partition(" # ")[0]).strip()
        if re.search(r"\b[A-Z]\b|\|", code) or "--fault" in code:
            continue  # needs a value only the reader has (E, U, F) or fails on purpose (above)
        result = run(code, tmp_path)
        assert result.returncode == 0, (code, result.stdout, result.stderr)


def contract_fields(command: str) -> set[str]:
    """The top-level fields the README's JSON contracts table names for `command` (its first cell)."""
    for line in README.splitlines():
        cells = line.split(" | ")
        if line.startswith("| `") and cells[0].removeprefix("| ") == command:
            return {re.match(r"[A-Za-z_][A-Za-z_0-9]*", chunk).group(0) for chunk in re.findall(r"`([^`]+)`", cells[1])}
    raise AssertionError(f"no contract row for {command}")


def test_the_json_contracts_table_is_what_the_commands_print(tmp_path):
    """Every object dream prints starts with schemaVersion 1 and has every field the table names."""
    import json

    def dream_json(*args: str, code: int = 0) -> dict:
        result = run(shlex.join(["dream", *args]), tmp_path)
        assert result.returncode == code, (args, result.stderr)
        document = json.loads(result.stdout)
        assert next(iter(document)) == "schemaVersion" and document["schemaVersion"] == 1, args
        return document

    flow = dream_json("flow", "run", "--fault", "skip-api-replication", "--json", code=1)
    cases = {
        "`flow run --json`": flow,
        "`kv verify --json`": dream_json("kv", "verify", "--json", code=1),
        "`kv repair --json` (and `--plan`)": dream_json("kv", "repair", "--plan", "--json"),
        "`seed --json`": dream_json("--store", "emulator:seeded.db", "seed", "--platforms", "3", "--json"),
    }
    assert run("dream kv repair --yes", tmp_path).returncode == 0
    cases |= {
        "`dashboard --json`": dream_json("dashboard", "-p", flow["platformId"], "--json"),
        "`topology --json`": dream_json("topology", "--json"),
    }
    for row, document in cases.items():
        assert contract_fields(row) <= set(document), (row, sorted(document))
