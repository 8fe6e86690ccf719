"""`dream d1`: run SQL on the D1 database and apply migrations the way wrangler does."""

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from dreamcli.cli.context import JsonOption, app_context, plural, print_json, status, stdout_console
from dreamcli.errors import UsageError
from dreamcli.stores.d1_migrations import apply_migrations, default_migrations_dir, list_migrations
from dreamcli.stores.ports import Statement
from dreamcli.stores.sql import split_statements

app = typer.Typer(
    help="Query the D1 database and manage its migrations.\n\nExample: dream d1 execute --command 'SELECT 1'",
    no_args_is_help=True,
)
migrations_app = typer.Typer(
    help="List and apply migrations/NNNN_name.sql (recorded in d1_migrations, like wrangler).\n\n"
    "Example: dream d1 migrations apply",
    no_args_is_help=True,
)
app.add_typer(migrations_app, name="migrations")

DirOption = Annotated[
    Path | None, typer.Option("--dir", help="Migrations folder (default: the project's migrations/).")
]


def _param(text: str) -> Any:
    """A JSON literal (42, null, "text") or, failing that, the text itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


@app.command("execute")
def d1_execute(
    ctx: typer.Context,
    command: Annotated[str | None, typer.Option("--command", "-c", help="SQL to run.")] = None,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="File of SQL to run.")] = None,
    params: Annotated[
        list[str] | None,
        typer.Option("--param", help="Bind a ? parameter (JSON literal or text); repeat in order."),
    ] = None,
    json_flag: JsonOption = False,
) -> None:
    """Run SQL; several ;-separated statements run as one batch (one transaction), as D1 does.

    Example: dream d1 execute --command 'SELECT * FROM customers WHERE plan = ?' --param pro
    """
    from rich.table import Table

    if (command is None) == (file is None):
        raise UsageError("give exactly one of --command or --file")
    if file is not None:
        try:
            command = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read --file {file}: {exc}") from None
    statements = split_statements(command or "")
    if not statements:
        raise UsageError("no SQL statement to run")
    bound = [_param(text) for text in params or []]
    if bound and len(statements) != 1:
        raise UsageError(f"--param binds one statement; got {len(statements)} statements")
    run = app_context(ctx)
    from dreamcli.stores.sqlite_d1 import writes

    batch = [Statement(sql, tuple(bound)) for sql in statements]
    results = run.store(create=writes(batch)).database.batch(batch)
    if run.wants_json(json_flag):
        print_json([result.as_dict() for result in results])
        return
    console = stdout_console()
    for result in results:
        if result.results:
            table = Table(*result.results[0].keys())
            for row in result.results:
                table.add_row(*("NULL" if value is None else str(value) for value in row.values()))
            console.print(table)
        meta = result.meta
        status(
            f"{plural(len(result.results), 'row')}, {plural(meta.changes, 'change')}, last_row_id {meta.last_row_id}, "
            f"{meta.duration:.2f} ms"
        )


@migrations_app.command("list")
def d1_migrations_list(ctx: typer.Context, directory: DirOption = None, json_flag: JsonOption = False) -> None:
    """Show every migration and whether it is applied.

    Example: dream d1 migrations list --json
    """
    from rich.table import Table

    run = app_context(ctx)
    folder = directory or default_migrations_dir()
    migrations = list_migrations(run.store().database, folder)
    if run.wants_json(json_flag):
        print_json({"migrations": [{"name": m.name, "applied_at": m.applied_at} for m in migrations]})
        return
    table = Table("name", "applied at")
    for migration in migrations:
        table.add_row(migration.name, migration.applied_at or "pending")
    stdout_console().print(table)


@migrations_app.command("apply")
def d1_migrations_apply(ctx: typer.Context, directory: DirOption = None, json_flag: JsonOption = False) -> None:
    """Apply pending migrations in name order, each in one transaction.

    Example: dream d1 migrations apply --dir migrations
    """
    run = app_context(ctx)
    folder = directory or default_migrations_dir()
    applied = apply_migrations(
        run.store(create=True).database, folder, on_applied=lambda m: status(f"applied {m.name}")
    )
    if run.wants_json(json_flag):
        print_json({"applied": [m.name for m in applied]})
    elif not applied:
        status("no migrations to apply")
    else:
        typer.echo(f"{plural(len(applied), 'migration')} applied")
