"""`dream emulator serve`: the platform's HTTP API locally, on the store the CLI uses."""

import threading
from pathlib import Path
from typing import Annotated

import typer

from dreamcli.cli.context import (
    DEFAULT_STORE,
    app_context,
    clock_from_env,
    parse_store_spec,
    status,
    stop_on_signals,
    wait_until_stopped,
)
from dreamcli.errors import StoreError, UsageError


def is_loopback(host: str) -> bool:
    """Whether `host` only ever reaches this machine (127.0.0.0/8, ::1, localhost)."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _rate_limit(text: str) -> tuple[int, float]:
    """REQUESTS/SECONDS, e.g. Cloudflare's 1200/300."""
    requests, _, seconds = text.partition("/")
    try:
        limit, window = int(requests), float(seconds)
    except ValueError:
        limit, window = 0, 0.0
    if not (1 <= limit <= 1_000_000 and 0 < window <= 86_400):
        raise UsageError(f"--cloudflare-rate-limit {text!r}: expected REQUESTS/SECONDS, e.g. 1200/300 (Cloudflare's)")
    return limit, window


app = typer.Typer(help="Run the local emulator.\n\nExample: dream emulator serve", no_args_is_help=True)


@app.command("serve")
def emulator_serve(
    ctx: typer.Context,
    host: Annotated[
        str, typer.Option("--host", help="Interface to listen on (loopback unless --allow-remote).")
    ] = "127.0.0.1",
    allow_remote: Annotated[
        bool,
        typer.Option(
            "--allow-remote",
            help="Listen on a non-loopback --host: anyone who reaches it can call the platform routes with test keys.",
        ),
    ] = False,
    api_port: Annotated[
        int, typer.Option("--api-port", help="api-multi (the guide's :8787; 0 = any free port).")
    ] = 8787,
    front_port: Annotated[int, typer.Option("--front-port", help="front-auth-api (:8788).")] = 8788,
    oauth_port: Annotated[int, typer.Option("--oauth-port", help="oauth-api (:8789).")] = 8789,
    vendor_port: Annotated[
        int,
        typer.Option(
            "--vendor-port", help="Stripe, Clerk and Cloudflare REST under /stripe, /clerk, /cloudflare (:8790)."
        ),
    ] = 8790,
    stripe_port: Annotated[
        int, typer.Option("--stripe-port", help="Stripe's API at the root, for its SDKs (:8791).")
    ] = 8791,
    clerk_port: Annotated[int, typer.Option("--clerk-port", help="Clerk's Backend API at the root (:8792).")] = 8792,
    console_port: Annotated[
        int,
        typer.Option(
            "--console-port",
            min=-1,
            max=65535,
            help="The web console (`dream console`), on 127.0.0.1 whatever --host says (:8793; -1: none).",
        ),
    ] = 8793,
    webhook_hour: Annotated[
        float,
        typer.Option(
            "--webhook-hour",
            min=0.0,
            max=3600.0,
            help="Seconds one hour of the vendors' webhook retry schedules lasts here (3600 = real time).",
        ),
    ] = 1.0,
    cloudflare_rate_limit: Annotated[
        str | None,
        typer.Option(
            "--cloudflare-rate-limit",
            metavar="REQUESTS/SECONDS",
            help="Limit the Cloudflare REST API as Cloudflare does (1200/300: 1,200 requests in any 5 minutes, then "
            "every call refused for 5 minutes), with its Ratelimit headers. Off by default.",
        ),
    ] = None,
) -> None:
    """Serve api-multi, front-auth-api and oauth-api on the guide's ports, the vendors on one more (and Stripe
    and Clerk each at the root of a port of its own, where their official SDKs take a bare base URL), over the
    same store as every other command; a line per request on stderr; Ctrl-C stops.

    Webhooks (Stripe's, Clerk's Svix ones) are delivered in the background and retried on the vendor's schedule,
    compressed by --webhook-hour; `dream events list` shows them, `dream events resend` replays one.

    The emulator's own helpers (/_emulator/*: vendor test keys, token minting) need the admin token, printed the
    first time and kept in STORE.admin-token (0600). --host must be a loopback address unless --allow-remote.

    Example: dream emulator serve, then
    curl -X POST http://localhost:8787/api/data -H "Authorization: Bearer $SK" -H 'X-User-Id: test_user_123' -H 'X-User-Plan: free'
    """
    from dreamcli.private_files import replace_private
    from emulator.serve import Serving, client_settings

    kind, where = parse_store_spec(app_context(ctx).store_spec)
    if kind != "emulator":
        raise UsageError("dream emulator serve runs on the emulator store (the default, or --store emulator:PATH)")
    host = host.removeprefix("[").removesuffix("]")  # `[::1]`, as URLs write it: the address is ::1
    if not is_loopback(host):
        if not allow_remote:
            raise UsageError(f"--host {host} is not a loopback address: add --allow-remote to serve other machines")
        status(f"warning: serving on {host}: every machine that reaches it can use the platform routes and vendors")
    limit = _rate_limit(cloudflare_rate_limit) if cloudflare_rate_limit is not None else None
    store_path = Path(where or DEFAULT_STORE.partition(":")[2])
    serving = Serving(
        store_path,
        host=host,
        clock=clock_from_env(),
        webhook_hour=webhook_hour,
        ports={
            "api-multi": api_port,
            "front-auth-api": front_port,
            "oauth-api": oauth_port,
            "vendors": vendor_port,
            "stripe": stripe_port,
            "clerk": clerk_port,
        },
        console_port=None if console_port == -1 else console_port,
    )
    if limit is not None:
        knobs = serving.emulator.cloudflare_knobs
        knobs.rate_limit, knobs.window_s = limit
    # The admin token is a secret: shown once, the first time it is written down; afterwards only where it is.
    # Written before any port answers: a script that waits for the server then reads the file finds it.
    token_file = store_path.with_name(store_path.name + ".admin-token")
    first = not token_file.exists()
    # Shown once: a token whose file is gone is rotated (a new one shown, the old refused), never shown twice.
    rotated = first and serving.emulator.admin_token_shown(mark=True)
    if rotated:
        serving.emulator.rotate_admin_token()
    replace_private(token_file, serving.emulator.admin_token + "\n")
    try:  # from here on, whatever ends the command (a signal while starting too) stops the servers and the store
        try:
            urls = serving.start()
        except OSError as exc:
            raise StoreError(str(exc)) from None
        stop = threading.Event()
        stop_on_signals(stop)  # before anything says it serves: a signal from then on is a clean stop
        for name, url in urls.items():
            typer.echo(f"{name:<15} {url}")
        if serving.console is not None:
            typer.echo(f"{'console':<15} {serving.console.sign_in_url()}")
            moved = f" (port {console_port} is taken: another one)" if serving.console.moved else ""
            status(f"console: the web console; open its address to sign in (it works once){moved}")
        for line in client_settings(urls):
            status(line)
        shown = (
            f"{serving.emulator.admin_token} (shown once; kept in {token_file}, 0600"
            + ("; rotated: the old one's file was gone, so it no longer works)" if rotated else ")")
            if first
            else f"in {token_file} (0600)"
        )
        status(f"admin token for {urls['vendors']}/_emulator/* (vendor test keys, token minting): {shown}")
        status("Ctrl-C stops")
        wait_until_stopped(stop)
    finally:
        serving.stop()
        status("stopped")
