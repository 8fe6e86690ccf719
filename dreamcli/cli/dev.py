"""`dream dev [PROJECT]`: the guide's three workers under `wrangler dev`, over dream's emulated vendors."""

import threading
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from dreamcli.cli.context import (
    DEFAULT_STORE,
    AppContext,
    app_context,
    parse_store_spec,
    status,
    stop_on_signals,
    wait_until_stopped,
)
from dreamcli.errors import StoreError


def dev(
    ctx: typer.Context,
    project: Annotated[Path, typer.Argument(help="The folder holding the three workers.")] = Path("."),
    state: Annotated[
        str,
        typer.Option(
            "--state",
            help="How the workers keep local state: shared (one --persist-to folder, .wrangler-shared), separate "
            '(each its own, as `npm run dev` in each folder), or api-multi-apart (the guide\'s "Invalid API key" '
            "at the last call: front-auth-api and oauth-api share one, api-multi keeps its own).",
        ),
    ] = "shared",
    api_port: Annotated[
        int | None, typer.Option("--api-port", help="api-multi's port.", show_default="dream.toml's, else 8787")
    ] = None,
    front_port: Annotated[
        int | None,
        typer.Option("--front-port", help="front-auth-api's port.", show_default="dream.toml's, else 8788"),
    ] = None,
    oauth_port: Annotated[
        int | None, typer.Option("--oauth-port", help="oauth-api's port.", show_default="dream.toml's, else 8789")
    ] = None,
    vendor_port: Annotated[int, typer.Option("--vendor-port", help="The vendors' helpers (checkout pages).")] = 8790,
    stripe_port: Annotated[int, typer.Option("--stripe-port", help="Stripe's API.")] = 8791,
    clerk_port: Annotated[int, typer.Option("--clerk-port", help="Clerk's Backend API.")] = 8792,
    console_port: Annotated[
        int,
        typer.Option("--console-port", min=-1, max=65535, help="The web console over the workers' state (-1: none)."),
    ] = 8793,
    timeout: Annotated[
        float | None, typer.Option("--timeout", min=1.0, help="Stop after this many seconds (for scripts).")
    ] = None,
    inspect: Annotated[
        bool,
        typer.Option(
            "--inspect",
            help="Open wrangler's DevTools inspectors (off by default: any local process that finds one can read "
            "the workers' secrets).",
        ),
    ] = False,
) -> None:
    """Start dream's emulated Stripe (:8791) and Clerk (:8792), then `wrangler dev` for front-auth-api (:8788),
    oauth-api (:8789) and api-multi (:8787), their vendor settings and keys handed over in a private env file,
    Stripe's webhooks pointed at their /webhook/stripe routes; wait until every worker answers, print a line per
    service and stream their logs; Ctrl-C stops everything (each worker's whole process group).

    Then, in another terminal: dream flow run --workers   (the whole onboarding through the workers' routes)

    Your own workers run unchanged: found by config name, folder name or dream.toml's [workers.ROLE] folder; each
    with the wrangler its own folder has (node_modules/.bin, else the project's, else PATH; 4.x); the test keys in
    a private env file instead of your .dev.vars; and their fetches to api.stripe.com, connect.stripe.com and
    api.clerk.com sent to the emulated vendors (a shim dream puts in front of your entry module, in its private
    folder). Stripe's webhook goes to the contract's webhook route and Connect's redirect URI to its callback route
    (`dream flow run --workers --explain` lists them; dream.toml's [workers.routes] changes them).

    The workers run without DevTools inspectors (wrangler's startWorker API): an open inspector lets any local
    process pause `fetch(request, env)` and read CLERK_SECRET_KEY, STRIPE_SECRET_KEY and the webhook secrets.
    --inspect opens them (`wrangler dev --inspector-port 0`), with a warning.

    Example: dream dev fixtures/workers   (npm install there first: the workers use stripe and @clerk/backend)
    """
    from dreamcli.platform.devserver import WORKER_PORTS, DevPlatform
    from dreamcli.workers_config import load_workers_config

    kind, where = parse_store_spec(app_context(ctx).store_spec)
    vendor_store = Path(where if kind == "emulator" else DEFAULT_STORE.partition(":")[2])
    root = project.expanduser().resolve()
    config = load_workers_config(root)
    given = {"api-multi": api_port, "front-auth-api": front_port, "oauth-api": oauth_port}
    platform = DevPlatform(
        root,
        vendor_store,
        layout=state,
        ports={role: port or config.port(role, WORKER_PORTS[role]) for role, port in given.items()},
        config=config,
        vendor_ports={"vendors": vendor_port, "stripe": stripe_port, "clerk": clerk_port},
        log=status,
        inspect=inspect,
    )
    if inspect:
        status(
            "warning: --inspect: DevTools inspectors are open on loopback ports; any local process can read the "
            "workers' secrets through them"
        )
    started = time.perf_counter()
    web: Any = None
    console_run: Any = None
    status("starting the vendors and three workers (wrangler dev)...")
    try:
        urls = platform.start()
        stop = threading.Event()
        stop_on_signals(stop)  # before anything says it is ready: a signal from then on is a clean stop
        for name in ("front-auth-api", "oauth-api", "api-multi", "stripe", "clerk", "vendors"):
            typer.echo(f"{name:<15} {urls[name]}  ready")
        status(f"all ready in {time.perf_counter() - started:.1f} s; state: --store {platform.store_spec()}")
        urls_flag = (
            ""
            if platform.ports == {role: config.port(role, port) for role, port in WORKER_PORTS.items()}
            else " --urls " + ",".join(f"{role}={urls[role]}" for role in ("front-auth-api", "oauth-api", "api-multi"))
        )
        status(f"next: dream flow run --workers{urls_flag} --store {platform.store_spec()}   (Ctrl-C here stops all)")
        if console_port != -1:
            from dreamcli.console.serve import console_for_store

            console_run = AppContext(store_spec=platform.store_spec())
            web = console_for_store(console_run.store(), platform.emulator, port=console_port)
            try:
                web.start()
            except OSError as exc:
                raise StoreError(f"the web console: {exc} (--console-port 0 picks a free port, -1 none)") from None
            moved = f" (port {console_port} is taken)" if web.moved else ""
            status(f"web console: {web.sign_in_url()}  (sign-in address: works once){moved}")
        wait_until_stopped(stop, timeout)
    finally:
        if web is not None:
            web.stop()
        if console_run is not None:
            console_run.close()
        platform.stop()
        status("stopped")
