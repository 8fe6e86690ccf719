"""`dream doctor`: check the workers' topology the way the guide's next steps do by hand."""

from pathlib import Path
from typing import Annotated, Any

import typer

from dreamcli.cli.context import (
    DEFAULT_STORE,
    JsonOption,
    app_context,
    plural,
    print_json,
    status,
    stdout_console,
)
from dreamcli.errors import ExitCode


def doctor(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="The folder holding front-auth-api/, oauth-api/ and api-multi/.")] = Path(
        "."
    ),
    persist_to: Annotated[
        Path | None,
        typer.Option("--persist-to", help="The workers run with `wrangler dev --persist-to DIR` (relative to PATH)."),
    ] = None,
    env: Annotated[
        str | None, typer.Option("--env", help="The workers run with `wrangler dev --env NAME` ([env.NAME]).")
    ] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Warnings fail too (exit 1).")] = False,
    json_flag: JsonOption = False,
) -> None:
    """Check the three workers' wrangler files: namespace and preview ids that must agree, workers that share a
    namespace but keep separate local state (the guide's "Invalid API key"), .dev.vars names, D1 bindings; and the
    verifier Workers `kv verify --via-worker --keep-worker` left deployed. Bindings named otherwise than in the guide
    are listed on stderr with what each was recognised as and how (all of them with --verbose; `bindings` in --json).

    Severities: an error breaks the platform (exit 1); a warning is worth fixing but breaks nothing by itself (exit
    0, or 1 with --strict). Example: dream doctor ~/dream-api
    """
    from rich.table import Table

    from dreamcli.platform.doctor import diagnose, kept_verifiers, recognition

    project, found = diagnose(path.expanduser(), persist_to=persist_to, env=env)
    workers, recognised = project.workers, recognition(project)
    found += kept_verifiers(Path(DEFAULT_STORE.partition(":")[2]).parent)
    if app_context(ctx).wants_json(json_flag):
        print_json(
            {
                "summary": {
                    "workers": len(workers),
                    "findings": len(found),
                    "errors": sum(1 for d in found if d.severity == "error"),
                    "warnings": sum(1 for d in found if d.severity == "warning"),
                    "clean": not found,
                },
                "workers": [{"name": w.name, "config": str(w.config)} for w in workers],
                "bindings": recognised,
                "findings": [d.as_json() for d in found],
            }
        )
        _raise_on(found, strict)
        return
    guide_named = ("binding name", "its only D1 binding")
    if app_context(ctx).verbose or any(not row["recognisedBy"].startswith(guide_named) for row in recognised):
        for row in recognised:  # how bindings not named as in the guide were told (all of them with --verbose)
            told = f"{row['is']} (by {row['recognisedBy']})" if row["is"] else "not recognised"
            status(f"{row['worker']:<15} {row['binding']:<20} {told}")
    if found:
        table = Table("check", "worker", "problem", "fix")
        for diagnosis in found:
            table.add_row(diagnosis.check, diagnosis.worker, diagnosis.problem, diagnosis.fix)
        stdout_console().print(table)
    else:
        typer.echo(f"{len(workers)} workers, no findings")
    _raise_on(found, strict)


def _raise_on(found: list[Any], strict: bool) -> None:
    errors = sum(1 for d in found if d.severity == "error")
    if found:
        status(f"{plural(len(found), 'finding')}: {plural(errors, 'error')}, {plural(len(found) - errors, 'warning')}")
    if errors or (strict and found):
        raise typer.Exit(int(ExitCode.FAILED))
