"""`dream customers`, `dream usage` and `dream dashboard`: the platform's customers and usage from D1 and KV."""


from typing import Annotated

import typer

from dreamcli.cli.context import JsonOption, LazyModule, app_context, print_json, stdout_console

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


def dashboard(ctx: typer.Context, platform: PlatformOption, json_flag: JsonOption = False) -> None:
    """Customers by plan, MRR, usage against limits, and calls per day as a terminal chart.

    Example: dream dashboard --platform plt_abc
    """
    from rich.table import Table

    from dreamcli.platform.developers import require_platform

    store = _prepared(ctx)
    data = dashboard_core.summary(store, require_platform(store, platform))
    if app_context(ctx).wants_json(json_flag):
        print_json(data)
        return
    console = stdout_console()
    plans = ", ".join(f"{plan} {n}" for plan, n in data["customersByPlan"].items()) or "none yet"
    console.print(f"[bold]{platform}[/bold]  customers: {plans}   MRR: ${data['mrrCents'] / 100:,.2f}")
    table = Table("end-user", "plan", "calls this month", "limit", "used", title="usage", title_justify="left")
    for row in data["usage"]:
        if "corrupt" in row:
            table.add_row(row["userId"], "-", f"corrupt: {row['corrupt']}", "-", "-")
            continue
        limit = row["limit"]
        used = (
            "-"
            if not limit
            else f"{'#' * min(20, round(20 * row['usageCount'] / limit)):<20} {100 * row['usageCount'] / limit:.0f}%"
        )
        table.add_row(
            row["userId"], row["plan"], str(row["usageCount"]), "unlimited" if limit is None else str(limit), used
        )
    console.print(table)
    if data["daily"]:
        peak = max(day["calls"] for day in data["daily"]) or 1
        console.print("calls per day")
        for day in data["daily"]:
            console.print(f"  {day['day']}  {'█' * max(1, round(40 * day['calls'] / peak))} {day['calls']}")
