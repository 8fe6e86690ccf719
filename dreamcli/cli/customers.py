"""`dream customers`, `dream usage` and `dream dashboard`: the platform's customers and usage from D1 and KV."""

from typing import Annotated

import typer

from dreamcli.cli.context import JsonOption, LazyModule, app_context, print_json, status, stdout_console
from dreamcli.plural import plural

customers_core = LazyModule("dreamcli.platform.customers")
dashboard_core = LazyModule("dreamcli.platform.dashboard")

app = typer.Typer(
    help="A platform's customers (from D1).\n\nExample: dream customers list --platform plt_abc", no_args_is_help=True
)
usage_app = typer.Typer(
    help="End-user usage against tier limits.\n\nExample: dream usage show --platform plt_abc", no_args_is_help=True
)

PlatformOption = Annotated[str, typer.Option("--platform", "-p", help="The platform id (plt_...).")]


def _prepared(ctx: typer.Context):
    store = app_context(ctx).store()
    customers_core.ensure_schema(store)
    return store


@app.command("list")
def customers_list(ctx: typer.Context, platform: PlatformOption, json_flag: JsonOption = False) -> None:
    """The platform's customers. Example: dream customers list -p plt_abc --json"""
    from rich.table import Table

    from dreamcli.platform.developers import require_platform

    store = _prepared(ctx)
    rows = customers_core.list_customers(store, require_platform(store, platform))
    if app_context(ctx).wants_json(json_flag):
        print_json({"customers": rows})
        return
    table = Table("id", "email", "plan", "created")
    for row in rows:
        table.add_row(row["id"], row["email"] or "", row["plan"], row["created_at"])
    stdout_console().print(table)


@app.command("show")
def customers_show(
    ctx: typer.Context,
    customer: Annotated[str, typer.Argument(help="Customer (Clerk user) id.")],
    platform: PlatformOption,
    json_flag: JsonOption = False,
) -> None:
    """One customer. Example: dream customers show user_abc -p plt_abc"""
    row = customers_core.get_customer(_prepared(ctx), platform, customer)
    if app_context(ctx).wants_json(json_flag):
        print_json(row)
        return
    for name, value in row.items():
        typer.echo(f"{name}: {value}")


@app.command("export")
def customers_export(
    ctx: typer.Context,
    platform: PlatformOption,
) -> None:
    """All the platform's customers as CSV on stdout (a platform that does not exist is exit 3, never an empty CSV).

    Example: dream customers export -p plt_abc > customers.csv"""
    from dreamcli.platform.developers import require_platform

    store = _prepared(ctx)
    typer.echo(
        customers_core.export_csv(customers_core.list_customers(store, require_platform(store, platform))), nl=False
    )


@usage_app.command("show")
def usage_show(
    ctx: typer.Context,
    platform: PlatformOption,
    user: Annotated[str | None, typer.Option("--user", "-u", help="One end-user.")] = None,
    json_flag: JsonOption = False,
) -> None:
    """This month's usage per end-user against their tier's limit. Example: dream usage show -p plt_abc"""
    from rich.table import Table

    from dreamcli.platform.developers import require_platform

    store = app_context(ctx).store()
    rows = dashboard_core.usage(store, require_platform(store, platform), user)
    if app_context(ctx).wants_json(json_flag):
        print_json({"usage": rows})
        return
    table = Table("end-user", "plan", "calls", "limit")
    for row in rows:
        if "corrupt" in row:
            table.add_row(row["userId"], "-", f"corrupt: {row['corrupt']}", "-")
            continue
        table.add_row(
            row["userId"],
            row["plan"],
            str(row["usageCount"]),
            "unlimited" if row["limit"] is None else str(row["limit"]),
        )
    stdout_console().print(table)


def dashboard(
    ctx: typer.Context,
    platform: PlatformOption,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=0, help="End-users shown, the busiest first (0: all).")
    ] = 20,
    json_flag: JsonOption = False,
) -> None:
    """Customers by plan, MRR, usage against limits, and calls per day as a terminal chart.

    End-users are listed busiest first (corrupt usage records, whose calls are refused, before them), the first
    --limit of them; the title says how many there are. JSON: {"schemaVersion", "platformId", "customersByPlan",
    "mrrCents", "endUsers", "usage": [...], "daily": [{"day", "calls"}]}.

    Example: dream dashboard --platform plt_abc --limit 10
    """
    from rich.table import Table

    from dreamcli.platform.developers import require_platform

    store = _prepared(ctx)
    data = dashboard_core.summary(store, require_platform(store, platform), top=limit or None)
    if app_context(ctx).wants_json(json_flag):
        print_json(data)
        return
    console = stdout_console()
    plans = ", ".join(f"{plan} {n}" for plan, n in data["customersByPlan"].items()) or "none yet"
    console.print(f"[bold]{platform}[/bold]  customers: {plans}   MRR: ${data['mrrCents'] / 100:,.2f}")
    shown, total = len(data["usage"]), data["endUsers"]
    title = f"usage this month: {'all ' if shown == total else f'the busiest {shown} of '}{plural(total, 'end-user')}"
    # Narrow, rigid columns: the id is the only wide one, so the table fits 80 columns for Clerk's 32-character ids.
    table = Table("end-user", "plan", "calls / limit", "used", title=title, title_justify="left")
    corrupt = []
    for row in data["usage"]:
        if "corrupt" in row:
            table.add_row(row["userId"], "-", "corrupt", "refused")
            corrupt.append(row)
            continue
        limit_of = row["limit"]
        calls = f"{row['usageCount']:,} / {'unlimited' if limit_of is None else f'{limit_of:,}'}"
        used = (
            ""
            if not limit_of
            else f"{'#' * min(10, round(10 * row['usageCount'] / limit_of)):<10} {100 * row['usageCount'] / limit_of:.0f}%"
        )
        table.add_row(row["userId"], row["plan"], calls, used)
    console.print(table)
    for row in corrupt:
        status(f"corrupt: {row['userId']}: {row['corrupt']} (`dream kv verify` reports it, `dream kv repair` fixes it)")
    if data["daily"]:
        peak = max(day["calls"] for day in data["daily"]) or 1
        console.print("calls per day")
        for day in data["daily"]:
            console.print(f"  {day['day']}  {'█' * max(1, round(40 * day['calls'] / peak))} {day['calls']}")
