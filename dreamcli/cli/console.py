"""`dream console`: the web console over the chosen store, on 127.0.0.1."""

import threading
from typing import Annotated

import typer

from dreamcli.cli.context import app_context, status, stop_on_signals, wait_until_stopped
from dreamcli.errors import NotFound, StoreError


def console(
    ctx: typer.Context,
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="The port on 127.0.0.1 (0: any free one).")
    ] = 8793,
    allow_writes: Annotated[
        bool,
        typer.Option(
            "--allow-writes", help="On the cloudflare store (production), allow rotating, revoking and repairing."
        ),
    ] = False,
) -> None:
    """A web console over the store: overview (developers, MRR and its trend, busiest platforms), each platform
    (customers, usage per day, tiers, key pairs: rotate and revoke), replication (verify, the repair plan, apply
    it with live progress), webhook deliveries (resend), the vendors' objects and a KV browser.

    Served on 127.0.0.1 only. It prints a sign-in address holding a one-time token: opening it signs the browser
    in (an HttpOnly, SameSite=Strict cookie); the address works once. Secrets are never shown, but a new key
    pair's secret, once. On the cloudflare store it is read-only unless --allow-writes. Ctrl-C stops it.

    Example: dream flow run && dream console

    Example: dream --store wrangler:~/dream-api console --port 0
    """
    from dreamcli.console.pages import Console
    from dreamcli.console.serve import ConsoleServer

    run = app_context(ctx)
    store = run.store()
    try:
        vendors = run.vendors()
    except NotFound:  # a wrangler or cloudflare store and no emulated vendors' state: the KV and D1 views still work
        vendors = None
        status(
            "no vendors (no emulator store, no STRIPE_SECRET_KEY / CLERK_SECRET_KEY): the overview and vendor pages are off"
        )
    emulator = run.emulated() if vendors is not None else None
    read_only = store.kind == "cloudflare" and not allow_writes
    server = ConsoleServer(Console(store, vendors, emulator, read_only=read_only), port)
    try:
        try:
            server.start()
        except OSError as exc:
            raise StoreError(f"{exc} (another console? --port 0 picks a free port)") from None
        stop = threading.Event()
        stop_on_signals(stop)
        typer.echo(f"console         {server.sign_in_url()}")
        status(
            f"open that address to sign in (it works once); {store.kind} store {store.location}"
            + (" (read-only: --allow-writes to change it)" if read_only else "")
        )
        status("Ctrl-C stops")
        wait_until_stopped(stop)
    finally:
        server.stop()
        status("stopped")
