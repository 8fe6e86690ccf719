"""The emulator's one web app: Stripe under /stripe, Clerk under /clerk, emulator-only helpers
under /_emulator, all over the same SQLite store file. Reached in-process (no port) through
`Emulator.client()`, or over loopback with `emulator.server.serve`.
"""

from __future__ import annotations

import dataclasses
import hmac
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

from dreamcli.errors import NotFound, UsageError
from dreamcli.platform.customers import BadRequest, ensure_schema
from dreamcli.stores.sqlite_file import BUSY_TIMEOUT_MS, SQLiteFile
from dreamcli.vendors.settings import Vendors, settings_from_emulator
from emulator.bridge import ASGIBridgeTransport, SharedTransport
from emulator.clerk_backend import DEFAULT_AZP, ClerkAPIError, ClerkBackend
from emulator.clerk_http import clerk_routes
from emulator.cloudflare_http import CloudflareKnobs, cloudflare_routes
from emulator.edge import Surface, clerk_body, cloudflare_body, cloudflare_limit, guide_body, stripe_body
from emulator.platform_http import (
    PlatformServices,
    api_multi_routes,
    body_json,
    edge_app,
    front_auth_routes,
    oauth_routes,
)
from emulator.schema import migrate, refuse_foreign
from emulator.store import open_emulator_store
from emulator.stripe_backend import StripeAPIError, StripeBackend
from emulator.stripe_http import stripe_routes
from emulator.webhooks import STRIPE_RETRY_WAITS, SVIX_RETRY_WAITS, Deliveries, Message, Outbox, ReceiverUnreachable
from emulator.webhooks import Vendor as WebhookVendor

IN_PROCESS_BASE = "http://emulator.dream.test"
# Whose envelope a failure under each mount is written in, and how large its bodies may be.
SURFACES = (
    Surface("/stripe", stripe_body, request_id_header="request-id"),
    Surface("/clerk", clerk_body),
    Surface("/cloudflare", cloudflare_body, cloudflare_limit),
    Surface("", guide_body),
)
ROOT_STRIPE = Surface("", stripe_body, request_id_header="request-id")
ROOT_CLERK = Surface("", clerk_body)


DELIVERY_VENDORS = ("stripe", "clerk")
DELIVERY_STATES = ("pending", "delivered", "failed")


class Emulator:
    """Vendor backends over one store file, their web app, and the clients that reach it."""

    def __init__(
        self,
        path: Path | str,
        *,
        clock: Callable[[], float] = time.time,
        outbound_mounts: Mapping[str, httpx.BaseTransport] | None = None,
        busy_timeout_ms: int = BUSY_TIMEOUT_MS,
        webhook_hour: float = 1.0,
    ) -> None:
        refuse_foreign(Path(path))
        self.file = SQLiteFile(Path(path), busy_timeout_ms=busy_timeout_ms, private=True)
        migrate(self.file)
        self.path = Path(path)
        self.clock = clock
        self.outbox = Outbox(self.file, clock)
        self.stripe = StripeBackend(self.file, clock, self.outbox)
        self.clerk = ClerkBackend(self.file, clock, self.outbox)
        # Events are delivered by a background loop, started by the first event this process queues (or by
        # `dream emulator serve`); `webhook_hour` is how long one of the vendors' retry-schedule hours lasts here.
        self.deliveries = Deliveries(self.outbox, self.signers(), self._post, hour=webhook_hour)
        # front-auth-api's /webhook/stripe, reached in-process whatever port the app is served on.
        self.platform_webhook_secret = self.stripe.ensure_webhook_endpoint(
            f"{IN_PROCESS_BASE}/front-auth-api/webhook/stripe",
            ["checkout.session.completed", "customer.subscription.updated", "customer.subscription.deleted"],
        )
        # api-multi's /webhook/stripe: the developers' connected accounts' events (customers changing tier).
        self.connect_webhook_secret = self.stripe.ensure_webhook_endpoint(
            f"{IN_PROCESS_BASE}/api-multi/webhook/stripe",
            [
                "checkout.session.completed",
                "customer.subscription.created",
                "customer.subscription.updated",
                "customer.subscription.deleted",
            ],
            connect=True,
        )
        self._platform: PlatformServices | None = None
        # Where people reach the vendors when served (checkout URLs must open from a browser or curl).
        self.public_base_url: str | None = None
        self.cloudflare_account, self.cloudflare_token = self._cloudflare_credentials()
        self.admin_token = self._admin_token()
        self.cloudflare_knobs = CloudflareKnobs()
        self.app = edge_app(
            [
                Mount("/stripe", routes=stripe_routes(self.stripe, self._public_base)),
                Mount("/clerk", routes=clerk_routes(self.clerk)),
                Mount("/_emulator", routes=self._emulator_routes()),
                Mount("/front-auth-api", routes=front_auth_routes(self.platform)),
                Mount("/oauth-api", routes=oauth_routes(self.platform)),
                Mount("/api-multi", routes=api_multi_routes(self.platform)),
                Mount(
                    "/cloudflare",
                    routes=cloudflare_routes(
                        lambda: self.platform().store,
                        self.cloudflare_account,
                        self.cloudflare_token,
                        self.cloudflare_knobs,
                    ),
                ),
            ],
            self._surfaces(),
            clock=self.clock,
        )
        # Each vendor at the root of an app of its own too, as the official clients expect a base URL without a
        # path (stripe-node and the Stripe CLI drop one): served on ports of their own by `dream emulator serve`.
        self.stripe_app = edge_app(stripe_routes(self.stripe, self._public_base), (ROOT_STRIPE,), clock=self.clock)
        self.clerk_app = edge_app(clerk_routes(self.clerk), (ROOT_CLERK,), clock=self.clock)
        self.bridge = ASGIBridgeTransport(self.app)
        # Webhooks to the in-process host go straight into the app; anything else over the network.
        mounts: dict[str, httpx.BaseTransport] = {IN_PROCESS_BASE: self.bridge, **(outbound_mounts or {})}
        self.outbound = httpx.Client(mounts=mounts, timeout=10.0)

    def _surfaces(self) -> tuple[Surface, ...]:
        """SURFACES, the Cloudflare one refusing a request without the API token before reading its body."""

        def token_presented(scope: Any) -> bool:
            headers = dict(scope.get("headers") or [])
            scheme, _, presented = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
            return scheme.lower() == "bearer" and hmac.compare_digest(
                presented.strip().encode(), self.cloudflare_token.encode()
            )

        return tuple(
            dataclasses.replace(surface, admits=token_presented) if surface.prefix == "/cloudflare" else surface
            for surface in SURFACES
        )

    def _cloudflare_credentials(self) -> tuple[str, str]:
        """The account id and API token the emulated Cloudflare REST API accepts (made once per store)."""
        from emulator.vendor_state import VendorState

        state = VendorState(self.file, "cloudflare", self.clock)
        tokens = state.keys_of("account", "token")
        if not tokens:
            state.issue_key(secrets.token_hex(16), "account", "account_id")
            state.issue_key(secrets.token_urlsafe(30), "account", "token")
        return state.keys_of("account", "account_id")[0], state.keys_of("account", "token")[0]

    def _admin_token(self) -> str:
        """The credential of the emulator's own helpers (`/_emulator/*`): they hand out every vendor secret and
        mint valid tokens, so no local process reaches them without it. Made once per store."""
        from emulator.vendor_state import VendorState

        state = VendorState(self.file, "emulator", self.clock)
        if not state.keys_of("admin", "token"):
            state.issue_key("dream_admin_" + secrets.token_urlsafe(32), "admin", "token")
        return state.keys_of("admin", "token")[0]

    def admin_token_shown(self, mark: bool = False) -> bool:
        """Whether `dream emulator serve` has shown this store's admin token already (`mark`: it is being shown)."""
        from emulator.vendor_state import VendorState

        state = VendorState(self.file, "emulator", self.clock)
        shown = bool(state.keys_of("admin", "shown"))
        if mark and not shown:
            state.issue_key("admin-token-shown:" + secrets.token_hex(8), "admin", "shown")
        return shown

    def rotate_admin_token(self) -> str:
        """A new admin token, the old one refused from now on (its file was lost: it is not shown again)."""
        from emulator.vendor_state import VendorState

        state = VendorState(self.file, "emulator", self.clock)
        state.revoke_keys("admin", "token")
        state.issue_key("dream_admin_" + secrets.token_urlsafe(32), "admin", "token")
        self.admin_token = state.keys_of("admin", "token")[0]
        return self.admin_token

    def admin_headers(self) -> dict[str, str]:
        """What dream's own commands send to `/_emulator/*`."""
        return {"Authorization": f"Bearer {self.admin_token}"}

    def _is_admin(self, request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self.admin_token.encode())

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

    def tallies(self) -> Any:
        """The overview's vendor figures counted in SQL (`emulator.tallies`), not listed through the APIs."""
        from dreamcli.vendors.settings import DREAM_API
        from emulator.tallies import EmulatedTallies

        return EmulatedTallies(self.file, DREAM_API, self.stripe.config()["account"])

    def signers(self) -> dict[str, WebhookVendor]:
        """How each vendor signs a delivery attempt and how it retries."""
        return {
            "stripe": WebhookVendor(self.stripe.sign, STRIPE_RETRY_WAITS),
            "clerk": WebhookVendor(self.clerk.sign, SVIX_RETRY_WAITS),
        }

    def _post(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int, str]:
        try:
            answer = self.outbound.post(url, content=body, headers=headers, timeout=timeout)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise ReceiverUnreachable(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__) from None
        return answer.status_code, answer.text if answer.status_code >= 300 else ""

    def listen(
        self, url: str, events: list[str], report: Callable[[Message, int | None, str | None, str], None]
    ) -> tuple[str, Callable[[], None]]:
        """`dream stripe listen`: forward Stripe's events (the platform's and its connected accounts') to `url`,
        signed with the platform's listen secret, from this process alone. Returns (secret, stop)."""
        lane = "listen:" + secrets.token_hex(8)
        secret, endpoint_ids = self.stripe.add_listener(url, events, lane)
        listener = Deliveries(
            self.outbox, self.signers(), self._post, lane=lane, hour=self.deliveries.hour, report=report
        )
        listener.start()

        def stop() -> None:
            listener.settle(2.0)  # what is due now still goes out
            for endpoint_id in endpoint_ids:
                self.stripe.state.delete(endpoint_id)
            listener.stop()
            self.outbox.abandon(lane, "the listener stopped")

        return secret, stop

    def delivery(self, message: Message) -> dict[str, Any]:
        """One message for one endpoint as `dream events list` and the console show it: state, attempts, the
        last answer, the next retry."""
        attempts = self.outbox.attempts(message.seq)
        last = attempts[-1] if attempts else None
        return {
            "id": message.message_id,
            "vendor": message.vendor,
            "type": message.event_type,
            "url": message.url,
            "endpoint": message.endpoint_id,
            "state": message.state,
            "attempts": message.attempts,
            "lastStatus": last["status"] if last else None,
            "lastError": last["error"] if last else None,
            "nextAttemptAt": message.next_at,
            "created": message.created,
            "listener": bool(message.lane),
        }

    def deliveries_list(
        self,
        vendor: str | None = None,
        *,
        state: str | None = None,
        event_type: str | None = None,
        limit: int = 20,
        before: int | None = None,
    ) -> list[dict[str, Any]]:
        """The newest deliveries first (`before`: older than that outbox seq), filtered in SQL."""
        if vendor is not None and vendor not in DELIVERY_VENDORS:
            raise UsageError(f"vendor must be one of {', '.join(DELIVERY_VENDORS)}")
        if state is not None and state not in DELIVERY_STATES:
            raise UsageError(f"state must be one of {', '.join(DELIVERY_STATES)}")
        messages = self.outbox.messages(vendor, limit=limit, event_type=event_type, state=state, before=before)
        return [{**self.delivery(m), "seq": m.seq} for m in messages]

    def resend(self, event_id: str, endpoint_id: str | None = None, wait: float = 20.0) -> list[dict[str, Any]]:
        """Send an event again, now, to the endpoints it went to (the same body: the same event id or svix-id), wait
        up to `wait` seconds for the attempts, and say how each went (`dream events resend`, the console)."""
        if event_id.startswith("evt_"):
            vendor = "stripe"
        elif event_id.startswith("msg_"):
            vendor = "clerk"
        else:
            raise UsageError(
                f"{event_id!r} is neither a Stripe event id (evt_...) nor a Clerk/Svix message id (msg_...)"
            )
        queued = self.outbox.resend(vendor, event_id, endpoint_id)
        if not queued:
            raise NotFound(f"no {vendor} event {event_id}" + (f" sent to {endpoint_id}" if endpoint_id else ""))
        self.settle(wait)
        return [self.delivery(self.outbox.get(m.seq)) for m in queued]

    def settle(self, timeout: float = 10.0) -> bool:
        """Wait until every webhook due now has had its attempt (tests and the flow's "is it paid yet")."""
        return self.deliveries.settle(timeout)

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
            "cloudflare": {
                "base_url": f"{base_url}/cloudflare/client/v4",
                "account_id": self.cloudflare_account,
                "api_token": self.cloudflare_token,
            },
        }

    def close(self) -> None:
        # A command that caused events gives their first attempts a moment; retries stay queued in the store for
        # the next emulator that runs (`dream emulator serve`), as `dream events list` shows.
        self.deliveries.stop(settle=5.0)
        if self._platform is not None:
            self._platform.daily.close()
            self._platform.vendors.http.close()
            self._platform.store.close()
        self.outbound.close()
        self.bridge.close()
        self.file.close()

    def _emulator_routes(self) -> list[Route]:
        """The emulator's own helpers. The checkout page and its "pay" button are public, as Stripe's hosted
        checkout is (the unguessable session id is the capability); everything else needs the admin token."""

        def admin(handler: Callable[[Request], Any]) -> Callable[[Request], Any]:
            async def endpoint(request: Request) -> Response:
                if not self._is_admin(request):
                    return JSONResponse(
                        guide_body(
                            401,
                            "the emulator's helpers need Authorization: Bearer <admin token> "
                            "(printed by `dream emulator serve`)",
                            "",
                        ),
                        status_code=401,
                    )
                try:
                    return await handler(request)
                except (ClerkAPIError, StripeAPIError) as exc:
                    return JSONResponse(exc.body, status_code=exc.status)
                except UsageError as exc:
                    return JSONResponse(guide_body(400, str(exc), ""), status_code=400)

            return endpoint

        async def object_body(request: Request) -> dict[str, Any]:
            body = await body_json(request)
            if not isinstance(body, dict):
                raise BadRequest("body must be a JSON object")
            return body

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
            form = await request.form()  # the page's fields: a promotion code, where the session allows them
            code = str(form["promotion_code"]) if form.get("promotion_code") else None
            try:
                result = await run_in_threadpool(
                    self.stripe.complete_checkout_session, None, request.path_params["id"], None, None, code
                )
            except StripeAPIError as exc:
                return JSONResponse(exc.body, status_code=exc.status)
            return JSONResponse(result)

        async def portal_page(request: Request) -> Response:
            """The customer portal's page: the session and the customer's subscriptions it can act on."""
            session_id = request.path_params["id"]
            account = self.stripe.state.scope_of(session_id) or ""
            try:
                session = self.stripe.get(account, "billing_portal.session", session_id)
            except StripeAPIError as exc:
                return JSONResponse(exc.body, status_code=exc.status)
            subscriptions = [
                s["id"] for s in self.stripe.state.find(account, "subscription") if s["customer"] == session["customer"]
            ]
            return JSONResponse({"session": session, "subscriptions": subscriptions, "actions": ["cancel", "switch"]})

        async def portal_action(request: Request) -> Response:
            """The portal's buttons: POST .../cancel {subscription} or .../switch {subscription, price}."""
            form = await request.form()
            try:
                result = await run_in_threadpool(
                    self.stripe.portal_action,
                    request.path_params["id"],
                    request.path_params["action"],
                    str(form.get("subscription") or ""),
                    str(form["price"]) if form.get("price") else None,
                )
            except StripeAPIError as exc:
                return JSONResponse(exc.body, status_code=exc.status)
            return JSONResponse(result)

        async def stripe_deliveries(request: Request) -> Response:
            return JSONResponse(self.stripe.state.deliveries())

        async def clerk_deliveries(request: Request) -> Response:
            return JSONResponse(self.clerk.state.deliveries())

        async def refusals(request: Request) -> Response:
            return JSONResponse(dict(self.platform().refusals))

        async def mint(request: Request) -> Response:
            instance = self.clerk.require_instance(request.path_params["instance"])
            body = await object_body(request)
            user_id, expires_in, azp = body.get("user_id", ""), body.get("expires_in", 60), body.get("azp", DEFAULT_AZP)
            if (
                not isinstance(user_id, str)
                or not isinstance(azp, str)
                or type(expires_in) is not int
                or not 0 < expires_in <= 315_360_000
            ):
                raise BadRequest("body must be {user_id: string, expires_in?: 1..315360000 seconds, azp?: string}")
            token = await run_in_threadpool(
                lambda: self.clerk.mint_token(instance, user_id, expires_in=expires_in, azp=azp)
            )
            return JSONResponse({"object": "token", "jwt": token})

        async def clerk_webhook(request: Request) -> Response:
            instance = self.clerk.require_instance(request.path_params["instance"])
            url = (await object_body(request)).get("url")
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                raise BadRequest("body must be {url: an http(s) URL}")
            return JSONResponse(self.clerk.add_webhook(instance, url))

        async def clerk_settings(request: Request) -> Response:
            instance = self.clerk.require_instance(request.path_params["instance"])
            parties = (await object_body(request)).get("authorized_parties")
            if not isinstance(parties, list) or not all(isinstance(p, str) and p for p in parties):
                raise BadRequest("body must be {authorized_parties: [origin, ...]}")
            result = self.clerk.set_authorized_parties(instance, [p.rstrip("/") for p in parties])
            if self._platform is not None:  # the running platform's verifiers follow the setting
                self._platform.vendors.verifiers[instance].authorized_parties = result or None
            return JSONResponse({"authorized_parties": result})

        return [
            Route("/config", admin(config), methods=["GET"]),
            Route("/stripe/checkout/{id}", checkout_page, methods=["GET"]),
            Route("/stripe/checkout/{id}/complete", checkout_complete, methods=["POST"]),
            Route("/stripe/portal/{id}", portal_page, methods=["GET"]),
            Route("/stripe/portal/{id}/{action}", portal_action, methods=["POST"]),
            Route("/stripe/deliveries", admin(stripe_deliveries), methods=["GET"]),
            Route("/clerk/{instance}/tokens", admin(mint), methods=["POST"]),
            Route("/clerk/{instance}/webhooks", admin(clerk_webhook), methods=["POST"]),
            Route("/clerk/{instance}/settings", admin(clerk_settings), methods=["PATCH"]),
            Route("/clerk/deliveries", admin(clerk_deliveries), methods=["GET"]),
            Route("/refusals", admin(refusals), methods=["GET"]),
        ]


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")
