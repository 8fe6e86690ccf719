"""Rich renderings of core results (the core returns data; this turns it into tables)."""

from __future__ import annotations

from typing import Any

from dreamcli.cli.context import output_format, plural, status, stdout_console


def _machine() -> bool:
    """A pipe's format (tsv, csv): one table, one header, every record the same fields; notes go to stderr."""
    return output_format() in ("tsv", "csv")


def render_explain(report: dict[str, Any]) -> None:
    from rich.table import Table

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


def _finding_cells(finding: Any) -> list[str]:
    return [
        str(finding.cls),
        finding.namespace,
        finding.key,
        finding.message,
        finding.expected or "",
        finding.actual or "",
    ]


def render_findings(result: Any) -> None:
    """Findings grouped by platform, then class, with a summary line."""
    from rich.table import Table

    console = stdout_console()
    if result.clean:
        if _machine():
            status(f"clean: {result.keys_scanned:,} keys checked, no findings")
        else:
            console.print(f"[green]clean[/green]: {result.keys_scanned:,} keys checked, no findings")
        return
    if _machine():  # one table with the platform as a column: a CSV reader sees one header
        table = Table("platform", "class", "namespace", "key", "problem", "expected", "actual")
        for finding in sorted(result.findings, key=lambda f: (f.platform or "~", str(f.cls), f.key)):
            table.add_row(finding.platform or "", *_finding_cells(finding))
        console.print(table)
        counts = ", ".join(f"{name} {count}" for name, count in sorted(result.by_class().items()))
        status(f"{plural(len(result.findings), 'finding')}: {counts} ({result.keys_scanned:,} keys checked)")
        return
    by_platform: dict[str, list[Any]] = {}
    for finding in result.findings:
        by_platform.setdefault(finding.platform or "(no platform)", []).append(finding)
    for platform in sorted(by_platform, key=lambda p: (p == "(no platform)", p)):
        table = Table(
            "class", "namespace", "key", "problem", "expected", "actual", title=platform, title_justify="left"
        )
        table.columns[3].overflow = "fold"  # the problem wraps; a key is never cut (a detail line if it must)
        for finding in sorted(by_platform[platform], key=lambda f: (str(f.cls), f.key)):
            table.add_row(*_finding_cells(finding))
        console.print(table)
    counts = ", ".join(f"{name} {count}" for name, count in sorted(result.by_class().items()))
    console.print(
        f"{plural(len(result.findings), 'finding')} in {plural(len(by_platform), 'platform')}: {counts} "
        f"({result.keys_scanned:,} keys checked)"
    )


def render_plan(plan: Any) -> None:
    from rich.table import Table

    console = stdout_console()
    machine = _machine()
    shown = plan.fixes if machine else plan.fixes[:200]  # a pipe gets every action
    if plan.fixes:
        table = Table(
            "#",
            "phase",
            "action",
            "namespace",
            "key",
            "because",
            title=None if machine else "repair plan",
            title_justify="left",
        )
        table.columns[5].overflow = "fold"  # the reason wraps; a key is never cut (a detail line if it must)
        for number, (fix, finding) in enumerate(shown, 1):
            table.add_row(
                str(number),
                str(fix.phase),
                str(fix.action),
                fix.namespace,
                fix.key,
                f"{finding.cls}: {finding.message}",
            )
        console.print(table)
        if len(plan.fixes) > len(shown):
            console.print(f"... and {plural(len(plan.fixes) - len(shown), 'more action')}")
    for finding, why in plan.skipped[:200]:
        line = f"left as is {finding.namespace}: {finding.key} ({finding.cls}): {why}"
        if machine:
            status(line)
        else:
            console.print(f"[yellow]left as is[/yellow] {line.removeprefix('left as is ')}")
