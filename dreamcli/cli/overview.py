"""`dream overview`: the operator's view across every developer."""

from typing import Annotated

import typer

from dreamcli.cli.context import JsonOption, app_context, plural, print_json, stdout_console


def overview(
    ctx: typer.Context,
    days: Annotated[int, typer.Option("--days", min=1, max=3660, help="The usage window, in days.")] = 30,
    top: Annotated[int, typer.Option("--top", min=1, max=1000, help="How many platforms to rank.")] = 10,
    json_flag: JsonOption = False,
) -> None:
    """Developers by plan and how many pay, the platform's own MRR per currency (its active subscriptions,
    normalised to a month), and the platforms that used the most over the window.

    Example: dream overview --days 7 --json
    """
    from rich.table import Table

    from dreamcli.platform.overview import overview as build

    run = app_context(ctx)
    emulated = run.emulated()
    tallies = emulated.tallies() if emulated is not None else None
    data = build(run.store(), run.vendors(), days=days, top=top, now=run.store().clock(), tallies=tallies)
    if run.wants_json(json_flag):
        print_json(data)
        return
    plans = ", ".join(f"{plan} {n}" for plan, n in data["developersByPlan"].items()) or "none yet"
    mrr = ", ".join(f"{amount / 100:,.2f} {currency.upper()}" for currency, amount in data["mrr"].items()) or "0"
    typer.echo(f"developers: {data['developers']} ({plans}); paying: {data['payingDevelopers']}")
    typer.echo(f"MRR: {mrr} ({plural(data['activeSubscriptions'], 'active subscription')})")
    table = Table("platform", "calls", "customers", title=f"top platforms, last {days} days", title_justify="left")
    for row in data["topPlatforms"]:
        table.add_row(row["platform_id"], str(row["calls"]), str(row["customers"]))
    stdout_console().print(table)
