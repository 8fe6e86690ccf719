"""`dream emulator serve`: the platform's HTTP API locally, on the store the CLI uses."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from dreamcli.cli.context import DEFAULT_STORE, app_context, clock_from_env, parse_store_spec, status
from dreamcli.errors import StoreError, UsageError

app = typer.Typer(help="Run the local emulator.\n\nExample: dream emulator serve", no_args_is_help=True)


@app.command("serve")
def emulator_serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    api_port: Annotated[int, typer.Option("--api-port", help="api-multi (the guide's :8787; 0 = any free port).")] = 8787,
    front_port: Annotated[int, typer.Option("--front-port", help="front-auth-api (:8788).")] = 8788,
    oauth_port: Annotated[int, typer.Option("--oauth-port", help="oauth-api (:8789).")] = 8789,
    vendor_port: Annotated[int, typer.Option("--vendor-port", help="Stripe, Clerk and Cloudflare REST (:8790).")] = 8790,
) -> None:
    """Serve api-multi, front-auth-api and oauth-api on the guide's ports, and the vendors on one more,
    over the same store as every other command; a line per request on stderr; Ctrl-C stops.

    Example: dream emulator serve, then
    curl -X POST http://localhost:8787/api/data -H "Authorization: Bearer $SK" -H 'X-User-Id: test_user_123' -H 'X-User-Plan: free'
    """
    from emulator.serve import Serving

    kind, where = parse_store_spec(app_context(ctx).store_spec)
    if kind != "emulator":
        raise UsageError("dream emulator serve runs on the emulator store (the default, or --store emulator:PATH)")
    serving = Serving(Path(where or DEFAULT_STORE.partition(":")[2]), host=host, clock=clock_from_env(),
                      ports={"api-multi": api_port, "front-auth-api": front_port, "oauth-api": oauth_port,
                             "vendors": vendor_port})
    try:
        urls = serving.start()
    except OSError as exc:
        raise StoreError(str(exc)) from None
    for name, url in urls.items():
        typer.echo(f"{name:<15} {url}")
    status(f"vendor config (test keys): {urls['vendors']}/_emulator/config; Ctrl-C stops")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        serving.wait(stop)
    except KeyboardInterrupt:
        pass
    finally:
        serving.stop()
        status("stopped")
