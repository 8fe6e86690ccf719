"""Rich renderings of core results (the core returns data; this turns it into tables)."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from dreamcli.cli.context import stdout_console


def render_explain(report: dict[str, Any]) -> None:
    console = stdout_console()
    console.print(f"[bold]{report['key']}[/bold]")
    if report["pattern"]:
        console.print(f"  kind:      {report['kind']}  ({report['pattern']})")
        fields = ", ".join(f"{name}={value}" for name, value in report["fields"].items())
        console.print(f"  fields:    {fields}")
        console.print(f"  value:     {report['value_is']}")
        console.print(f"  lives in:  {', '.join(report['guide_namespaces'])}")
    console.print(f"  note:      {report['note']}")
    if "invalid" in report:
        console.print(f"  invalid:   {report['invalid']}")
    table = Table("namespace", "present", "value", "expires", title="in this store", title_justify="left")
    for entry in report["found"]:
        if entry["present"]:
            value = "(secret)" if report["secret"] else entry.get("value", f"({entry.get('value_bytes')} bytes)")
            if not entry.get("expected_here", True):
                value += "  [yellow](the guide does not put it here)[/yellow]"
            table.add_row(entry["namespace"], "yes", value, str(entry.get("expiration") or "-"))
        else:
            table.add_row(entry["namespace"], "no", "", "")
    console.print(table)
    if report["points_to"]:
        pointers = Table("namespace", "key", "present", title="points at", title_justify="left")
        for target in report["points_to"]:
            pointers.add_row(target["namespace"], target["key"], "yes" if target["present"] else "[red]MISSING[/red]")
        console.print(pointers)
