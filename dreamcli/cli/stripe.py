"""`dream stripe trigger|listen`: the Stripe CLI's habits for the platform's webhooks."""

import threading
import time
from typing import Annotated, Any

import typer

from dreamcli.cli.context import JsonOption, app_context, print_json, status, wait_until_stopped
from dreamcli.errors import NotFound, UsageError

app = typer.Typer(
    help="Stripe events for the platform's webhooks, as the Stripe CLI makes them.\n\n"
    "Example: dream stripe trigger checkout.session.completed -p plt_abc",
    no_args_is_help=True,
)


def _metadata(pairs: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--metadata takes KEY=VALUE, not {pair!r}")
        found[key] = value
    return found


def _event_line(event_id: str, event_type: str) -> str:
    return f"{time.strftime('%Y-%m-%d %H:%M:%S')}   --> {event_type} [{event_id}]"


@app.command("trigger")
def stripe_trigger(
    ctx: typer.Context,
    event: Annotated[str, typer.Argument(help="The event to cause, e.g. customer.subscription.created.")],
    platform: Annotated[
        str | None,
        typer.Option(
            "--platform", "-p", help="On this platform's connected account (plt_...); else the platform's own."
        ),
    ] = None,
    account: Annotated[str | None, typer.Option("--account", help="On this connected account (acct_...).")] = None,
    metadata: Annotated[
        list[str],
        typer.Option(
            "--metadata",
            "-m",
            help="KEY=VALUE added to the customer, subscription and checkout session (repeatable).",
        ),
    ] = [],  # noqa: B006 (typer reads the default; it is never mutated)
    json_flag: JsonOption = False,
) -> None:
    """Make the API calls that cause EVENT, as `stripe trigger` does, then show the events they caused and, on the
    emulator, where each was delivered.

    Events: checkout.session.completed, customer.created, customer.subscription.created|updated|deleted,
    invoice.created|finalized|paid|payment_succeeded|payment_failed, payment_method.attached.

    Example: dream stripe trigger checkout.session.completed -p plt_abc -m platformId=plt_abc -m customerId=user_1
    -m tier=pro
    """
    from dreamcli.platform.customers import connected_account
    from dreamcli.platform.stripe_triggers import trigger

    if platform and account:
        raise UsageError("give --platform or --account, not both")
    run = app_context(ctx)
    if platform:
        account = connected_account(run.store(), platform)
        if account is None:
            raise NotFound(f"platform {platform} has no connected Stripe account (run `dream flow connect` first)")
    vendors = run.vendors(create=True)
    emulated = run._emulator is not None
    result = trigger(vendors.stripe, event, account=account, metadata=_metadata(metadata), progress=status)
    deliveries: dict[str, list[dict[str, Any]]] = {}
    if emulated:
        emulator = run._emulator
        emulator.settle(15.0)
        for found in result.events:
            deliveries[found["id"]] = [
                {"url": m.url, "state": m.state, "attempts": m.attempts, "last": _last(emulator, m.seq)}
                for m in reversed(emulator.outbox.messages("stripe", limit=10_000))
                if m.message_id == found["id"] and not m.lane
            ]
    if run.wants_json(json_flag):
        print_json(
            {
                "event": event,
                "account": account,
                "calls": [{"method": m, "path": p, "id": i} for m, p, i in result.calls],
                "events": [{**e, "deliveries": deliveries.get(e["id"], [])} for e in result.events],
            }
        )
        return
    for found in result.events:
        typer.echo(_event_line(found["id"], found["type"]))
        for delivery in deliveries.get(found["id"], []):
            typer.echo(f"{'':22}<-- [{delivery['last']}] POST {delivery['url']}")
    status(f"Trigger succeeded: {len(result.events)} events" + ("" if emulated else " (see Stripe's dashboard)"))


def _last(emulator: Any, seq: int) -> str:
    attempts = emulator.outbox.attempts(seq)
    if not attempts:
        return "queued"
    last = attempts[-1]
    return str(last["status"]) if last["status"] is not None else str(last["error"])


@app.command("listen")
def stripe_listen(
    ctx: typer.Context,
    forward_to: Annotated[
        str | None, typer.Option("--forward-to", help="The URL to POST events to, e.g. a worker's /webhook.")
    ] = None,
    events: Annotated[
        str, typer.Option("--events", help="Comma-separated event types to forward (default: all).")
    ] = "*",
    print_secret: Annotated[
        bool, typer.Option("--print-secret", help="Print the signing secret and exit (for scripts).")
    ] = False,
    max_events: Annotated[
        int | None, typer.Option("--max-events", min=1, help="Stop after forwarding this many events.")
    ] = None,
    timeout: Annotated[float | None, typer.Option("--timeout", min=0.1, help="Stop after this many seconds.")] = None,
) -> None:
    """Forward the emulated Stripe's events (the platform's and its connected accounts') to a local receiver, such
    as a worker under `wrangler dev`, signed with a whsec_ secret that stays the same from run to run; a line per
    event and per delivery; Ctrl-C stops. Events made meanwhile by any process over this store are forwarded
    (a `dream emulator serve`, a `dream stripe trigger`).

    Example: dream stripe listen --forward-to http://localhost:8787/webhook/stripe   (then, elsewhere:
    dream stripe trigger customer.subscription.created -p plt_abc)
    """
    run = app_context(ctx)
    emulator = run.emulator("dream stripe listen", create=True)
    if print_secret:
        typer.echo(emulator.stripe.listen_secret())
        return
    if not forward_to or not forward_to.startswith(("http://", "https://")):
        raise UsageError("--forward-to needs an http(s) URL, e.g. http://localhost:8787/webhook/stripe")
    wanted = [e.strip() for e in events.split(",") if e.strip()] or ["*"]
    done = threading.Event()
    forwarded = [0]
    lock = threading.Lock()

    def report(message: Any, code: int | None, error: str | None, state: str) -> None:
        with lock:
            typer.echo(_event_line(message.message_id, message.event_type))
            shown = f"[{code}]" if code is not None else f"[{error}]"
            typer.echo(f"{'':22}<-- {shown} POST {message.url} [{message.message_id}]")
            forwarded[0] += 1
            if max_events and forwarded[0] >= max_events:
                done.set()

    secret, stop = emulator.listen(forward_to, wanted, report)
    status(f"Ready! Your webhook signing secret is {secret} (^C to quit)")
    try:
        wait_until_stopped(done, timeout)
    finally:
        stop()
