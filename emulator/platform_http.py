"""The platform's own HTTP routes (front-auth-api, oauth-api, api-multi). Each route parses, calls one
`dreamcli.platform` function, and answers in the guide's JSON: `{"error": ..., "message": ...}` on failure."""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route, Router

from dreamcli import layout
from dreamcli.errors import DreamError, NotFound, RemoteError, StoreError, UsageError
from dreamcli.platform import customers, onboarding, runtime
from dreamcli.platform.tiers import TierFileError, tiers_from_data
from dreamcli.stores.ports import Store
from dreamcli.vendors.errors import TokenError, VendorError, VendorNotFound, WebhookSignatureError
from dreamcli.vendors.settings import DREAM_API, END_USER_API, Vendors
from emulator.edge import GUIDE, Edge, Surface

security_log = logging.getLogger("dream.security")
vendor_log = logging.getLogger("dream.vendors")
data_log = logging.getLogger("dream.data")  # values in the store that are not what the platform writes

MAX_JSON_DEPTH = 32
MAX_HEADER_ID_BYTES = 256


@dataclass
class PlatformServices:
    store: Store
    vendors: Vendors
    clock: Callable[[], float] = time.time
    daily: Any = None  # customers.DailyUsageBuffer over `store`
    refusals: Counter[str] = field(default_factory=Counter)  # refused attempts to cross a boundary, by kind

    def __post_init__(self) -> None:
        if self.daily is None:
            self.daily = customers.DailyUsageBuffer(self.store)

    def refuse(self, kind: str, reason: str, request: Request) -> None:
        """Log and count a request that tried to reach what its caller does not own."""
        self.refusals[kind] += 1
        security_log.warning("refused %s (%s): %s", kind, request.scope.get("dream.request_id", "-"), reason)


def error(status: int, title: str, message: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": title, "message": message, **extra}, status_code=status, headers=headers)


def answer(exc: Exception) -> JSONResponse:
    """Every domain error as the guide's JSON with its status; never a traceback."""
    if isinstance(exc, runtime.InvalidApiKey):
        return JSONResponse(exc.body(), status_code=401)
    if isinstance(exc, (TokenError, runtime.InvalidToken, customers.Unauthorized)):
        return error(401, "Invalid token", str(exc))
    if isinstance(exc, customers.Forbidden):
        return error(403, "Forbidden", str(exc))
    if isinstance(exc, runtime.RateLimited):
        return error(
            429,
            "Rate limit exceeded",
            str(exc),
            code=exc.code,
            headers={
                "Retry-After": str(exc.retry_after),
                "X-RateLimit-Limit": str(exc.limit),
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(exc.reset),
            },
        )
    if isinstance(exc, runtime.CorruptRecord):  # bad data already in KV: said to the caller and the operator
        data_log.warning("%s", exc)
        return error(409, "Corrupt record", str(exc), code=exc.code)
    if isinstance(exc, runtime.UsageExceeded):
        return error(429, "Usage limit exceeded", str(exc), code=exc.code)
    if isinstance(exc, WebhookSignatureError):
        return error(400, "Invalid signature", str(exc))
    if isinstance(exc, (NotFound, VendorNotFound)):
        return error(404, "Not found", str(exc))
    if isinstance(exc, UsageError):
        return error(400, "Bad request", str(exc))
    if isinstance(exc, VendorError) and exc.status is not None and 400 <= exc.status < 500 and exc.status != 401:
        # The vendor refused what the request asked (e.g. an e-mail that is taken): the caller's to fix.
        status = 409 if exc.code in ("form_identifier_exists", "duplicate_record") else 422
        return error(status, "Conflict" if status == 409 else "Unprocessable entity", str(exc))
    if isinstance(exc, (VendorError, RemoteError)):
        return error(502, "Upstream error", str(exc))
    if isinstance(exc, customers.PlanUnavailable):  # Clerk failed: the call is not counted, worth a retry
        return error(503, "Service unavailable", str(exc), headers={"Retry-After": "1"})
    if isinstance(exc, StoreError):  # e.g. the store is locked by another process a while: worth a retry
        return error(503, "Service unavailable", str(exc), headers={"Retry-After": "1"})
    if isinstance(exc, DreamError):  # the platform is not in a state to do this (e.g. Stripe not connected yet)
        return error(409, "Conflict", str(exc))
    raise exc  # not a domain error: the edge logs it with the request id and answers 500


async def body_json(request: Request) -> Any:
    """The body as JSON, refused (400) when it is not JSON, nests deeper than MAX_JSON_DEPTH, holds a number
    Python will not convert, or a string that is not valid Unicode (a lone surrogate)."""
    raw = await request.body()
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise customers.BadRequest("body is not JSON") from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise customers.BadRequest(f"body is not acceptable JSON: {exc}") from None
    if _depth(value) > MAX_JSON_DEPTH:
        raise customers.BadRequest(f"body nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise customers.BadRequest("body holds a string that is not valid Unicode") from None
    return value


def _depth(value: Any, level: int = 1) -> int:
    if level > MAX_JSON_DEPTH:
        return level
    if isinstance(value, dict):
        return max((_depth(item, level + 1) for item in value.values()), default=level)
    if isinstance(value, list):
        return max((_depth(item, level + 1) for item in value), default=level)
    return level


def user_id_header(request: Request) -> str | None:
    """X-User-Id, refused (400) when it cannot name a user in a key (empty, ':', over 256 bytes)."""
    value = request.headers.get("x-user-id")
    if value is None:
        return None
    if (
        not layout.is_valid_id(value)
        or len(value.encode("utf-8", "surrogateescape")) > MAX_HEADER_ID_BYTES
        or not value.isprintable()
    ):
        raise customers.BadRequest(f"X-User-Id must be 1..{MAX_HEADER_ID_BYTES} printable bytes without ':'")
    return value


def bearer(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise customers.Unauthorized("Authorization: Bearer <secret key or token> is required")
    return token.strip()


Handler = Callable[[Request, PlatformServices], Awaitable[Response]]


def guarded(services: Callable[[], PlatformServices], handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request, services())
        except Exception as exc:  # noqa: BLE001 - the one place a request's failure becomes its answer
            return answer(exc)

    return endpoint


# Both below may fetch a JWKS over HTTP (into this very app, in-process): handlers run them in the
# thread pool, never on the event loop.
def _developer(request: Request, s: PlatformServices) -> str:
    """The developer's Clerk (dream-api) session token -> their user id."""
    return s.vendors.verifiers[DREAM_API].verify(bearer(request))["sub"]


def _caller(request: Request, s: PlatformServices) -> tuple[runtime.Caller, str | None]:
    """A secret key (the developer's backend) or an end-user token (scoped by its publishableKey claim)."""
    token = bearer(request)
    if token.count(".") == 2 and token.startswith("ey"):
        end_user = runtime.authenticate_end_user(s.store, s.vendors.verifiers[END_USER_API], token)
        return end_user.caller, end_user.user_id
    return runtime.authenticate(s.store, token), None


async def _resolve(request: Request, s: PlatformServices) -> tuple[runtime.Caller, str | None]:
    """A secret key resolves from local KV on the loop; an end-user token may fetch a JWKS, so in the pool."""
    token = bearer(request)
    if token.count(".") == 2 and token.startswith("ey"):
        return await run_in_threadpool(_caller, request, s)
    return runtime.authenticate(s.store, token), None


# Each route: one small handler, (request, services) -> response; its failures become answers in `guarded`.


async def stripe_webhook(request: Request, s: PlatformServices) -> Response:
    outcome = await run_in_threadpool(
        onboarding.handle_stripe_webhook, s.vendors, await request.body(), request.headers.get("stripe-signature")
    )
    return JSONResponse({"received": True, "outcome": outcome})


async def generate_platform_id(request: Request, s: PlatformServices) -> Response:
    user_id = await run_in_threadpool(_developer, request, s)
    result = await run_in_threadpool(lambda: onboarding.signup(s.store, s.vendors, user_id=user_id))
    return JSONResponse({"platformId": result.platform_id, "new": result.new_platform})


async def get_credentials(request: Request, s: PlatformServices) -> Response:
    user_id = await run_in_threadpool(_developer, request, s)
    return JSONResponse(await run_in_threadpool(onboarding.credentials, s.store, user_id))


async def authorize(request: Request, s: PlatformServices) -> Response:
    user_id = await run_in_threadpool(_developer, request, s)
    url, _ = await run_in_threadpool(
        lambda: onboarding.connect_start(s.store, s.vendors, user_id, redirect_uri=callback_url(request))
    )
    return RedirectResponse(url, status_code=302)


async def callback(request: Request, s: PlatformServices) -> Response:
    query = request.query_params
    result = await run_in_threadpool(
        lambda: onboarding.connect_callback(
            s.store, s.vendors, code=query.get("code"), state=query.get("state"), error=query.get("error")
        )
    )
    return JSONResponse({"connected": True, "stripeUserId": result.stripe_user_id, "platformId": result.platform_id})


async def create_products(request: Request, s: PlatformServices) -> Response:
    user_id = await run_in_threadpool(_developer, request, s)
    try:
        tiers = tiers_from_data(await body_json(request))
    except TierFileError as exc:
        raise customers.BadRequest(str(exc)) from None
    result = await run_in_threadpool(
        lambda: onboarding.configure_tiers(s.store, s.vendors, user_id, tiers, store_now=s.clock)
    )
    data = {"platformId": result.platform_id, "publishableKey": result.publishable_key, "products": result.products}
    if result.secret_key:
        data["secretKey"] = result.secret_key  # the one showing
    return JSONResponse(data)


async def api_data(request: Request, s: PlatformServices) -> Response:
    caller, token_user = await _resolve(request, s)
    if token_user is not None:
        # An end-user's own token: their plan is what their record says, whatever the request claims.
        user_id = token_user
        claimed = request.headers.get("x-user-plan")
        try:
            plan = await run_in_threadpool(customers.plan_of, s.store, s.vendors, caller, user_id)
        except customers.PlanUnavailable as exc:
            vendor_log.warning("%s: %s", request.scope.get("dream.request_id", "-"), exc)
            raise
        if claimed is not None and claimed != plan:
            s.refuse("end-user-plan", f"{user_id} on {plan} claimed X-User-Plan {claimed!r}", request)
    else:
        user_id = user_id_header(request) or ""
        if not user_id:
            raise customers.BadRequest("X-User-Id header is required with a secret key")
        plan = request.headers.get("x-user-plan") or "free"
    now = s.clock()

    def work() -> tuple[runtime.RateWindow, dict[str, Any]]:
        window = runtime.check_rate(s.store, caller, user_id, now=now)
        usage = runtime.record_usage(s.store, caller, user_id, plan, now=now)
        s.daily.add(caller.platform_id, user_id, now)
        return window, usage

    # A few local SQLite transactions (well under a millisecond): run on the loop, where a thread-pool
    # hop per request costs more than the work under load (measured with bench/api_bench.py).
    window, usage = work()
    return JSONResponse(
        {"ok": True, "userId": user_id, "plan": plan, "usage": usage},
        headers={
            "X-RateLimit-Limit": str(window.limit),
            "X-RateLimit-Remaining": str(window.remaining),
            "X-RateLimit-Reset": str(window.reset),
        },
    )


async def whoami(request: Request, s: PlatformServices) -> Response:
    caller, token_user = await _resolve(request, s)
    return JSONResponse(
        {"platformId": caller.platform_id, "publishableKey": caller.publishable_key, "userId": token_user}
    )


async def create_customer(request: Request, s: PlatformServices) -> Response:
    caller, token_user = await run_in_threadpool(_caller, request, s)
    if token_user is not None:
        raise customers.Unauthorized("customers are created with the developer's secret key, not an end-user token")
    body = await body_json(request)
    return JSONResponse(
        await run_in_threadpool(customers.create_customer, s.store, s.vendors, caller, body), status_code=201
    )


async def list_customers(request: Request, s: PlatformServices) -> Response:
    caller, token_user = await run_in_threadpool(_caller, request, s)
    rows = await run_in_threadpool(customers.list_customers, s.store, caller.platform_id)
    if token_user is not None:
        rows = [row for row in rows if row["id"] == token_user]  # an end-user sees only themself
    return JSONResponse({"customers": rows})


async def show_customer(request: Request, s: PlatformServices) -> Response:
    caller, token_user = await run_in_threadpool(_caller, request, s)
    customer_id = request.path_params["id"]
    if token_user is not None and token_user != customer_id:
        raise customers.CustomerNotFound(f"no customer {customer_id} on this platform")
    return JSONResponse(await run_in_threadpool(customers.get_customer, s.store, caller.platform_id, customer_id))


async def checkout(request: Request, s: PlatformServices) -> Response:
    caller, token_user = await run_in_threadpool(_caller, request, s)
    body = await body_json(request)
    try:
        return JSONResponse(
            await run_in_threadpool(
                lambda: customers.start_checkout(s.store, s.vendors, caller, body, end_user=token_user)
            )
        )
    except customers.Forbidden as exc:
        s.refuse("end-user-checkout", str(exc), request)
        raise


async def connect_webhook(request: Request, s: PlatformServices) -> Response:
    try:
        outcome = await run_in_threadpool(
            customers.handle_connect_webhook,
            s.store,
            s.vendors,
            await request.body(),
            request.headers.get("stripe-signature"),
        )
    except customers.WebhookRefused as exc:
        # Answered 200: the event is genuine and Stripe would retry a refusal for days; nothing changed.
        s.refuse("connect-webhook", str(exc), request)
        return JSONResponse({"received": True, "refused": str(exc)})
    return JSONResponse({"received": True, "outcome": outcome})


RouteTable = list[tuple[str, str, Handler]]

FRONT_AUTH_API: RouteTable = [
    ("POST", "/webhook/stripe", stripe_webhook),
    ("POST", "/generate-platform-id", generate_platform_id),
    ("GET", "/get-credentials", get_credentials),
]
OAUTH_API: RouteTable = [
    ("GET", "/authorize", authorize),
    ("GET", "/callback", callback),
    ("POST", "/create-products", create_products),
]
API_MULTI: RouteTable = [
    ("POST", "/api/data", api_data),
    ("GET", "/api/whoami", whoami),
    ("POST", "/customers", create_customer),
    ("GET", "/customers", list_customers),
    ("GET", "/customers/{id}", show_customer),
    ("POST", "/checkout", checkout),
    ("POST", "/webhook/stripe", connect_webhook),
]


def routes_of(table: RouteTable, services: Callable[[], PlatformServices]) -> list[Route]:
    return [Route(path, guarded(services, handler), methods=[method]) for method, path, handler in table]


def front_auth_routes(services: Callable[[], PlatformServices]) -> list[Route]:
    return routes_of(FRONT_AUTH_API, services)


def oauth_routes(services: Callable[[], PlatformServices]) -> list[Route]:
    return routes_of(OAUTH_API, services)


def api_multi_routes(services: Callable[[], PlatformServices]) -> list[Route]:
    return routes_of(API_MULTI, services)


def callback_url(request: Request) -> str:
    """oauth-api's /callback on whatever host and port serve oauth-api (and under whatever mount)."""
    path = request.url.path.rsplit("/authorize", 1)[0]
    return str(request.base_url).rstrip("/") + path + "/callback"


def edge_app(
    routes: Sequence[BaseRoute], surfaces: tuple[Surface, ...] = (GUIDE,), *, clock: Callable[[], float] = time.time
) -> Edge:
    """Routes behind the edge: every failure (404, 405, a body too large, an unexpected error) in the
    envelope of the API its path belongs to."""
    return Edge(Router(routes=routes), surfaces, clock=clock)
