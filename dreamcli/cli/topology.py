"""`dream topology`: where each namespace and the D1 database live, per worker, for the store in use."""

import typer

from dreamcli.cli.context import JsonOption, app_context, print_json


def topology(ctx: typer.Context, json_flag: JsonOption = False) -> None:
    """Per logical namespace and for D1: every worker binding it, what it does there (reads, writes), the id whose
    files it uses and the exact state folder and file; `live` marks the copy dream reads and writes (the serving
    worker's), the others are the writers' own copies that `dream kv verify` compares with it.

    Example: dream --store wrangler:~/dream-api topology   (or: dream topology --store wrangler:.,persist-to=.shared)
    """
    from dreamcli.platform.topology_report import describe

    report = describe(app_context(ctx).store())
    if app_context(ctx).wants_json(json_flag):
        print_json(report)
        return
    for worker in report.get("workers", []):
        typer.echo(f"{worker['role']:<15} {worker['config']} (by {worker['identifiedBy']})")
    for config in report.get("unrecognised", []):
        typer.echo(f"{'(no guide role)':<15} {config}")
    for left in report.get("unrecognisedBindings", []):
        typer.echo(f"{left['worker']:<15} {left['binding']} ({left['id']}): no guide namespace (see dream doctor)")
    if report.get("ids"):
        typer.echo(f"ids: {report['ids']}" + (f", env {report['env']}" if report.get("env") else ""))
    for namespace in report["namespaces"]:
        typer.echo(f"\n{namespace['name']} ({namespace['id']})")
        for copy in namespace["copies"]:
            _line(copy, f"{copy.get('worker', '')} {copy.get('binding', ', '.join(copy.get('bindings', [])))}")
    typer.echo("\nD1")
    for database in report["d1"]:
        _line(database, f"{database.get('worker', '')} {database.get('binding', '')} ({database['id']})")


def _line(copy: dict[str, object], who: str) -> None:
    live = "live" if copy.get("live", True) else ("same files" if copy.get("sharedWithLive") else "own copy")
    does = f" ({copy['role']})" if copy.get("role") else ""
    exists = "" if copy.get("exists", True) else "   (not written yet)"
    typer.echo(f"  {live:<10} {who.strip()}{does}: {copy['file']}{exists}")
    if copy.get("recognisedBy"):
        typer.echo(f"  {'':<10} recognised by {copy['recognisedBy']}")
