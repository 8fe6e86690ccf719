"""`dream events list|resend`: the emulated vendors' webhook messages, their attempts, and sending one again."""

import time
from typing import Annotated, Any

import typer

from dreamcli.cli.context import JsonOption, app_context, print_json, status, stdout_console
from dreamcli.errors import ExitCode, NotFound, UsageError

app = typer.Typer(
    help="Webhook events the emulated Stripe and Clerk sent, and sending one again.\n\n"
    "Example: dream events list --vendor stripe",
    no_args_is_help=True,
)

VENDORS = ("stripe", "clerk")


def _vendor_of(message_id: str) -> str:
    if message_id.startswith("evt_"):
        return "stripe"
    if message_id.startswith("msg_"):
        return "clerk"
    raise UsageError(f"{message_id!r} is neither a Stripe event id (evt_...) nor a Clerk/Svix message id (msg_...)")


def _row(emulator: Any, message: Any) -> dict[str, Any]:
    attempts = emulator.outbox.attempts(message.seq)
    last = attempts[-1] if attempts else None
    return {
        "id": message.message_id,
        "vendor": message.vendor,
        "type": message.event_type,
        "url": message.url,
        "state": message.state,
        "attempts": message.attempts,
        "lastStatus": last["status"] if last else None,
        "lastError": last["error"] if last else None,
        "nextAttemptAt": message.next_at,
        "created": message.created,
        "listener": bool(message.lane),
    }


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

    if vendor is not None and vendor not in VENDORS:
        raise UsageError(f"--vendor must be one of {', '.join(VENDORS)}")
    if state is not None and state not in ("pending", "delivered", "failed"):
        raise UsageError("--state must be pending, delivered or failed")
    run = app_context(ctx)
    emulator = run.emulator("dream events")
    messages = emulator.outbox.messages(vendor, limit=10_000 if state else limit, event_type=event_type)
    rows = [_row(emulator, m) for m in messages if state is None or m.state == state][:limit]
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
    vendor = _vendor_of(event_id)
    queued = emulator.outbox.resend(vendor, event_id, endpoint)
    if not queued:
        raise NotFound(f"no {vendor} event {event_id}" + (f" sent to {endpoint}" if endpoint else ""))
    emulator.settle(20.0)
    rows = [_row(emulator, emulator.outbox.get(m.seq)) for m in queued]
    if run.wants_json(json_flag):
        print_json({"events": rows})
    else:
        for row in rows:
            typer.echo(f"{row['id']}\t{row['url']}\t{row['lastStatus'] or row['lastError'] or row['state']}")
    if any(row["state"] != "delivered" for row in rows):
        status("a receiver did not take it: it will be retried on the vendor's schedule (`dream events list`)")
        raise typer.Exit(ExitCode.FAILED)
