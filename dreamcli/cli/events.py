"""`dream events list|resend`: the emulated vendors' webhook messages, their attempts, and sending one again."""

import time
from typing import Annotated

import typer

from dreamcli.cli.context import JsonOption, app_context, print_json, status, stdout_console
from dreamcli.errors import ExitCode

app = typer.Typer(
    help="Webhook events the emulated Stripe and Clerk sent, and sending one again.\n\n"
    "Example: dream events list --vendor stripe",
    no_args_is_help=True,
)


@app.command("list")
def events_list(
    ctx: typer.Context,
    vendor: Annotated[str | None, typer.Option("--vendor", help="stripe or clerk (default: both).")] = None,
    event_type: Annotated[str | None, typer.Option("--type", help="Only this event type.")] = None,
    state: Annotated[str | None, typer.Option("--state", help="pending, delivered or failed.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000, help="Newest first, this many.")] = 20,
    json_flag: JsonOption = False,
) -> None:
    """Each event sent to each endpoint, newest first: its state (pending, delivered, failed), attempts, the last
    answer and when the next retry is due.

    Example: dream events list --state failed --json
    """
    from rich.table import Table

    run = app_context(ctx)
    emulator = run.emulator("dream events")
    rows = [
        {key: value for key, value in row.items() if key not in ("seq", "endpoint")}
        for row in emulator.deliveries_list(vendor, state=state, event_type=event_type, limit=limit)
    ]
    if run.wants_json(json_flag):
        print_json({"events": rows})
        return
    table = Table("when", "id", "type", "url", "state", "tries", "last", "next")
    now = time.time()
    for row in rows:
        nxt = row["nextAttemptAt"]
        table.add_row(
            time.strftime("%H:%M:%S", time.localtime(row["created"])),
            row["id"],
            row["type"],
            row["url"],
            row["state"],
            str(row["attempts"]),
            str(row["lastStatus"] or row["lastError"] or ""),
            "" if nxt is None else ("now" if nxt <= now else f"in {nxt - now:.0f}s"),
        )
    stdout_console().print(table)


@app.command("resend")
def events_resend(
    ctx: typer.Context,
    event_id: Annotated[str, typer.Argument(help="A Stripe event id (evt_...) or a Clerk message id (msg_...).")],
    endpoint: Annotated[
        str | None, typer.Option("--endpoint", help="Only to this endpoint (we_... or ep_...).")
    ] = None,
    json_flag: JsonOption = False,
) -> None:
    """Send an event again, now, to the endpoints it went to (the same body: the same event id or svix-id, so
    idempotent receivers see a duplicate); waits for the attempt and shows its answer. Exit 1 when a receiver
    did not answer 2xx.

    Example: dream events resend evt_1Nabc --endpoint we_123
    """
    run = app_context(ctx)
    emulator = run.emulator("dream events")
    rows = [
        {key: value for key, value in row.items() if key != "endpoint"} for row in emulator.resend(event_id, endpoint)
    ]
    if run.wants_json(json_flag):
        print_json({"events": rows})
    else:
        for row in rows:
            typer.echo(f"{row['id']}\t{row['url']}\t{row['lastStatus'] or row['lastError'] or row['state']}")
    if any(row["state"] != "delivered" for row in rows):
        status("a receiver did not take it: it will be retried on the vendor's schedule (`dream events list`)")
        raise typer.Exit(ExitCode.FAILED)
