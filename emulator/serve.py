"""`dream emulator serve`: the platform's three workers on the guide's local ports and the vendors on one more,
over the same store as the CLI; a line per request on stderr; clean shutdown on Ctrl-C."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from dreamcli.stores.sqlite_file import Checkpointer
from emulator.app import Emulator
from emulator.platform_http import api_multi_routes, edge_app, front_auth_routes, oauth_routes
from emulator.server import LoopbackServer

DEFAULT_PORTS = {
    "api-multi": 8787,
    "front-auth-api": 8788,
    "oauth-api": 8789,
    "vendors": 8790,
    "stripe": 8791,
    "clerk": 8792,
}


# `dream emulator serve`'s option for each server's port.
PORT_FLAGS = {
    "api-multi": "--api-port",
    "front-auth-api": "--front-port",
    "oauth-api": "--oauth-port",
    "vendors": "--vendor-port",
    "stripe": "--stripe-port",
    "clerk": "--clerk-port",
    "console": "--console-port",
}
CONSOLE_PORT = 8793  # the web console's (dreamcli.console), always on 127.0.0.1


def port_flags(chosen: dict[str, int] | None = None) -> list[str]:
    """`dream emulator serve` options giving each server the port `chosen` for it, else any free one (0): for
    tests and benches, which must not collide with a running emulator."""
    return [part for name, flag in PORT_FLAGS.items() for part in (flag, str((chosen or {}).get(name, 0)))]


def client_settings(urls: dict[str, str]) -> list[str]:
    """How to point the official clients at the served vendors, a line each (nothing but a base URL)."""
    stripe, clerk = urls["stripe"], urls["clerk"]
    parsed = httpx.URL(stripe)
    host, port = parsed.host, parsed.port
    return [
        f"stripe-python: stripe.api_base = '{stripe}'   Stripe CLI: --api-base {stripe}   curl -u sk_test_...: {stripe}/v1/...",
        f"stripe-node: new Stripe(key, {{host: '{host}', port: {port}, protocol: 'http'}})",
        f"@clerk/backend: createClerkClient({{secretKey, apiUrl: '{clerk}'}})   "
        f"clerk-backend-api: Clerk(bearer_auth=key, server_url='{clerk}/v1')",
    ]


def request_log(name: str, app: Any, write: Callable[[str], None]) -> Any:
    """ASGI middleware: one line per request (worker, method, path, status, milliseconds)."""

    async def logged(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [0]

        async def capture(message: Any) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await app(scope, receive, capture)
        finally:
            write(
                f"{name:<15} {scope['method']:<6} {scope['path']} {status[0]} {(time.perf_counter() - started) * 1000:.1f} ms"
            )

    return logged


class Serving:
    """The four servers, started together and stopped together."""

    def __init__(
        self,
        store_path: Path,
        *,
        host: str = "127.0.0.1",
        ports: dict[str, int] | None = None,
        clock: Callable[[], float] = time.time,
        log: Callable[[str], None] | None = None,
        webhook_hour: float = 1.0,
        platform: bool = True,
        console_port: int | None = CONSOLE_PORT,
    ) -> None:
        """`platform=False` serves the vendors alone (`dream dev` runs the workers themselves under wrangler)."""
        self.emulator = Emulator(store_path, clock=clock, webhook_hour=webhook_hour)
        services = self.emulator.platform
        write = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self._write = write
        apps = {
            "api-multi": edge_app(api_multi_routes(services), clock=clock),
            "front-auth-api": edge_app(front_auth_routes(services), clock=clock),
            "oauth-api": edge_app(oauth_routes(services), clock=clock),
            "vendors": self.emulator.app,
            "stripe": self.emulator.stripe_app,
            "clerk": self.emulator.clerk_app,
        }
        chosen = {**DEFAULT_PORTS, **(ports or {})}
        if not platform:
            apps = {name: app for name, app in apps.items() if name in ("vendors", "stripe", "clerk")}
        self.servers = {
            name: LoopbackServer(request_log(name, app, write), host=host, port=chosen[name])
            for name, app in apps.items()
        }
        self.urls: dict[str, str] = {}
        self.checkpointer = Checkpointer(self.emulator.file)
        # The web console over this store, on 127.0.0.1 whatever --host says (it holds the operator's session); not
        # in the request log, whose lines would carry its sign-in address. None: `--console-port -1` or no platform.
        self.console: Any = None
        if platform and console_port is not None:
            from dreamcli.console.serve import console_for_emulator

            self.console = console_for_emulator(self.emulator, port=console_port)

    def start(self) -> dict[str, str]:
        try:
            for name, server in self.servers.items():
                self.urls[name] = server.start()
            self.emulator.public_base_url = self.urls["vendors"]
            self.emulator.deliveries.report = lambda message, status, error, state: self._write(
                f"{'webhook':<15} {message.vendor:<6} {message.event_type} {message.message_id} -> {message.url} "
                f"{status if status is not None else error} (attempt {message.attempts + 1}, {state})"
            )
            self.emulator.deliveries.start()  # webhooks queued by any process over this store (and retries)
            self.checkpointer.start()  # the store's WAL moved into the file by a thread, never by a request
            if self.console is not None:
                self.console.start()
        except BaseException:
            self.stop()
            raise
        return self.urls

    def stop(self) -> None:
        running = [server for server in self.servers.values() if server.thread.is_alive()]
        if self.console is not None and self.console.server.thread.is_alive():
            self.console.signal_stop()  # its live streams end now: no graceful wait on them
            running.append(self.console.server)
        for server in running:  # all asked at once, then waited for: one grace period, not one per server
            server.signal_stop()
        for server in running:
            server.stop()
        self.checkpointer.stop()
        self.emulator.close()
