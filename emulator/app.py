"""The emulator's one web app: Stripe under /stripe, Clerk under /clerk, emulator-only helpers
under /_emulator, all over the same SQLite store file. Reached in-process (no port) through
`Emulator.client()`, or over loopback with `emulator.server.serve`.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from emulator.bridge import ASGIBridgeTransport, SharedTransport
from emulator.clerk_backend import ClerkAPIError, ClerkBackend
from emulator.clerk_http import clerk_routes
from emulator.cloudflare_http import CloudflareKnobs, cloudflare_routes
from dreamcli.platform.customers import ensure_schema
from emulator.platform_http import PlatformServices, api_multi_routes, front_auth_routes, json_app, oauth_routes
from dreamcli.stores.sqlite_file import BUSY_TIMEOUT_MS, SQLiteFile
from emulator.schema import migrate
from emulator.stripe_backend import StripeAPIError, StripeBackend
from emulator.store import open_emulator_store
from emulator.stripe_http import stripe_routes
from dreamcli.vendors.settings import Vendors, settings_from_emulator

IN_PROCESS_BASE = "http://emulator.dream.test"


class Emulator:
    """Vendor backends over one store file, their web app, and the clients that reach it."""

    def __init__(
        self,
        path: Path | str,
        *,
        clock: Callable[[], float] = time.time,
        outbound_mounts: Mapping[str, httpx.BaseTransport] | None = None,
        busy_timeout_ms: int = BUSY_TIMEOUT_MS,
    ) -> None:
        self.file = SQLiteFile(Path(path), busy_timeout_ms=busy_timeout_ms, private=True)
        migrate(self.file)
        self.path = Path(path)
        self.clock = clock
        self.stripe = StripeBackend(self.file, clock, deliver=self._deliver)
        self.clerk = ClerkBackend(self.file, clock, deliver=self._deliver)
        # front-auth-api's /webhook/stripe, reached in-process whatever port the app is served on.
        self.platform_webhook_secret = self.stripe.ensure_webhook_endpoint(
            f"{IN_PROCESS_BASE}/front-auth-api/webhook/stripe",
            ["checkout.session.completed", "customer.subscription.updated", "customer.subscription.deleted"],
        )
        # api-multi's /webhook/stripe: the developers' connected accounts' events (customers changing tier).
        self.connect_webhook_secret = self.stripe.ensure_webhook_endpoint(
            f"{IN_PROCESS_BASE}/api-multi/webhook/stripe",
            ["checkout.session.completed", "customer.subscription.created", "customer.subscription.updated",
             "customer.subscription.deleted"],
            connect=True,
        )
        self._platform: PlatformServices | None = None
        # Where people reach the vendors when served (checkout URLs must open from a browser or curl).
        self.public_base_url: str | None = None
        self.cloudflare_account, self.cloudflare_token = self._cloudflare_credentials()
        self.cloudflare_knobs = CloudflareKnobs()
        self.app = json_app(
            [
                Mount("/stripe", routes=stripe_routes(self.stripe, self._public_base)),
                Mount("/clerk", routes=clerk_routes(self.clerk)),
                Mount("/_emulator", routes=self._emulator_routes()),
                Mount("/front-auth-api", routes=front_auth_routes(self.platform)),
                Mount("/oauth-api", routes=oauth_routes(self.platform, _callback_url)),
                Mount("/api-multi", routes=api_multi_routes(self.platform)),
                Mount("/cloudflare", routes=cloudflare_routes(lambda: self.platform().store, self.cloudflare_account,
                                                              self.cloudflare_token, self.cloudflare_knobs)),
            ]
        )
        self.bridge = ASGIBridgeTransport(self.app)
        # Webhooks to the in-process host go straight into the app; anything else over the network.
        mounts: dict[str, httpx.BaseTransport] = {IN_PROCESS_BASE: self.bridge, **(outbound_mounts or {})}
        self.outbound = httpx.Client(mounts=mounts, timeout=10.0)

    def _cloudflare_credentials(self) -> tuple[str, str]:
        """The account id and API token the emulated Cloudflare REST API accepts (made once per store)."""
        from emulator.vendor_state import VendorState

        state = VendorState(self.file, "cloudflare", self.clock)
        tokens = state.keys_of("account", "token")
        if not tokens:
            state.issue_key(secrets.token_hex(16), "account", "account_id")
            state.issue_key(secrets.token_urlsafe(30), "account", "token")
        return state.keys_of("account", "account_id")[0], state.keys_of("account", "token")[0]

    def _public_base(self, request: Request) -> str:
        return self.public_base_url or _base_url(request)

    def platform(self) -> PlatformServices:
        """The store and vendor clients the platform routes run on (built at first use)."""
        if self._platform is None:
            store = open_emulator_store(self.path, clock=self.clock)
            ensure_schema(store)
            vendors = Vendors(settings_from_emulator(self.config()), self.client(), clock=self.clock)
            self._platform = PlatformServices(store, vendors, self.clock)
        return self._platform

    def _deliver(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        return self.outbound.post(url, content=body, headers=headers).status_code

    def client(self, base_url: str = IN_PROCESS_BASE) -> httpx.Client:
        """An httpx client into the app, in-process: no port is opened."""
        # Every client shares the one bridge; closing a client must not stop the loop others are using.
        return httpx.Client(transport=SharedTransport(self.bridge), base_url=base_url, timeout=30.0)

    def config(self, base_url: str = IN_PROCESS_BASE) -> dict[str, Any]:
        """Where each vendor answers and the emulator's own test credentials."""
        clerk = self.clerk.config()
        for name, entry in clerk.items():
            entry["jwks_url"] = f"{base_url}/clerk/{name}/.well-known/jwks.json"
        return {
            "stripe": {
                **self.stripe.config(),
                "api_base": f"{base_url}/stripe",
                "connect_base": f"{base_url}/stripe",
                "webhook_secret": self.platform_webhook_secret,
                "connect_webhook_secret": self.connect_webhook_secret,
            },
            "clerk": {"api_url": f"{base_url}/clerk", "instances": clerk},
            "cloudflare": {"base_url": f"{base_url}/cloudflare/client/v4", "account_id": self.cloudflare_account,
                           "api_token": self.cloudflare_token},
        }

    def close(self) -> None:
        if self._platform is not None:
            self._platform.daily.flush()
            self._platform.vendors.http.close()
            self._platform.store.close()
        self.outbound.close()
        self.bridge.close()
        self.file.close()

    def _emulator_routes(self) -> list[Route]:
        async def config(request: Request) -> Response:
            return JSONResponse(self.config(_base_url(request)))

        async def checkout_page(request: Request) -> Response:
            session_id = request.path_params["id"]
            account = self.stripe.state.scope_of(session_id)
            try:
                session = self.stripe.get(account or "", "checkout.session", session_id)
            except StripeAPIError as exc:
                return JSONResponse(exc.body, status_code=exc.status)
            return JSONResponse({key: value for key, value in session.items() if not key.startswith("_")})

        async def checkout_complete(request: Request) -> Response:
            try:
                result = await run_in_threadpool(self.stripe.complete_checkout_session, None, request.path_params["id"])
            except StripeAPIError as exc:
                return JSONResponse(exc.body, status_code=exc.status)
            return JSONResponse(result)

        async def stripe_deliveries(request: Request) -> Response:
            return JSONResponse(self.stripe.state.deliveries())

        async def clerk_deliveries(request: Request) -> Response:
            return JSONResponse(self.clerk.state.deliveries())

        async def mint(request: Request) -> Response:
            try:
                instance = self.clerk.require_instance(request.path_params["instance"])
                body = json.loads(await request.body() or b"{}")
                token = await run_in_threadpool(
                    lambda: self.clerk.mint_token(
                        instance,
                        str(body.get("user_id", "")),
                        expires_in=int(body.get("expires_in", 60)),
                        azp=str(body.get("azp", "http://localhost:5173")),
                    )
                )
            except ClerkAPIError as exc:
                return JSONResponse(exc.body, status_code=exc.status)
            except (ValueError, TypeError) as exc:
                return JSONResponse({"errors": [{"message": "is invalid", "long_message": str(exc), "code": "form_param_format_invalid"}]}, status_code=422)
            return JSONResponse({"object": "token", "jwt": token})

        async def clerk_webhook(request: Request) -> Response:
            try:
                instance = self.clerk.require_instance(request.path_params["instance"])
                body = json.loads(await request.body() or b"{}")
                return JSONResponse(self.clerk.add_webhook(instance, str(body.get("url", ""))))
            except ClerkAPIError as exc:
                return JSONResponse(exc.body, status_code=exc.status)

        return [
            Route("/config", config, methods=["GET"]),
            Route("/stripe/checkout/{id}", checkout_page, methods=["GET"]),
            Route("/stripe/checkout/{id}/complete", checkout_complete, methods=["POST"]),
            Route("/stripe/deliveries", stripe_deliveries, methods=["GET"]),
            Route("/clerk/{instance}/tokens", mint, methods=["POST"]),
            Route("/clerk/{instance}/webhooks", clerk_webhook, methods=["POST"]),
            Route("/clerk/deliveries", clerk_deliveries, methods=["GET"]),
        ]


def _callback_url(request: Request) -> str:
    """oauth-api's /callback on whatever host and port serve oauth-api."""
    path = request.url.path.rsplit("/authorize", 1)[0]
    return str(request.base_url).rstrip("/") + path + "/callback"


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")
