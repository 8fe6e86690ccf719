"""The HTTP face of the Stripe emulator: Stripe's paths, form encoding, auth headers, envelopes
and `Idempotency-Key`. Logic lives in `StripeBackend`; this module only translates.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from emulator.stripe_backend import (
    API_VERSION,
    CURRENT_REQUEST,
    StripeAPIError,
    StripeBackend,
    StripeOAuthError,
    as_int,
    known_api_version,
)
from emulator.stripe_params import schema_of, upgrade, validate
from emulator.vendor_state import public

_BRACKETS = re.compile(r"\[([^\]]*)\]")


def decode_form(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Stripe's bracket encoding (`metadata[a]=1`, `line_items[0][price]=p`) into nested dicts and lists."""
    root: dict[str, Any] = {}
    for raw_key, value in pairs:
        head, _, rest = raw_key.partition("[")
        parts = [head] + (_BRACKETS.findall("[" + rest) if rest else [])
        node = root
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            if part == "":  # `expand[]=x`: append
                part = str(sum(1 for key in node if key.isdigit()))
            if last:
                node[part] = value
            else:
                child = node.get(part)
                if not isinstance(child, dict):
                    child = node[part] = {}
                node = child
    # Only nested values become lists: the parameters themselves are always named (`0=a` is a parameter "0").
    return {key: _lists(value) for key, value in root.items()}


def _lists(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {key: _lists(value) for key, value in node.items()}
    if converted and all(key.isdigit() for key in converted):
        return [converted[key] for key in sorted(converted, key=int)]
    return converted


def _error(exc: StripeAPIError | StripeOAuthError) -> JSONResponse:
    return JSONResponse(exc.body, status_code=exc.status)  # the edge adds this request's Request-Id


def _bearer(request: Request) -> str | None:
    """The API key, as Stripe takes it: `Authorization: Bearer sk_...`, or HTTP Basic with the key as the user
    name and no password (`curl -u sk_test_...:`, how Stripe's docs call the API)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() == "bearer" and token:
        return token
    if scheme.lower() == "basic" and token:
        try:
            user = base64.b64decode(token, validate=True).decode("utf-8").partition(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            return None
        return user or None
    return None


async def _params(request: Request) -> dict[str, Any]:
    pairs = list(parse_qsl(request.url.query, keep_blank_values=True))
    if request.method in ("POST", "DELETE"):
        body = (await request.body()).decode("utf-8", errors="replace")
        pairs += parse_qsl(body, keep_blank_values=True)
    return decode_form(pairs)


Handler = Callable[[StripeBackend, str, dict[str, Any], dict[str, str], Request], Any]


# The routes Stripe's published description does not list (what Checkout's hosted page and the Stripe CLI's
# `trigger` call): their parameters, named here. Every other route is checked against the description
# (emulator/stripe_params.py).
UNDOCUMENTED: dict[tuple[str, str], frozenset[str]] = {
    ("GET", "/v1/payment_pages/{id}"): frozenset({"expand"}),
    ("POST", "/v1/payment_pages/{id}/confirm"): frozenset({"payment_method", "expected_amount", "expand"}),
}


def _refuse_unknown(params: dict[str, Any], accepts: frozenset[str]) -> None:
    for name in params:
        if name not in accepts:
            raise StripeAPIError(400, f"Received unknown parameter: {name}", code="parameter_unknown", param=name)


def stripe_routes(backend: StripeBackend, base_url: Callable[[Request], str]) -> list[Route]:
    """The route table: (method, path, handler) as data, each handler one backend call."""

    def api(method: str, path: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        schema = schema_of(method, path)

        async def endpoint(request: Request) -> Response:
            params = await _params(request)
            try:
                version = request.headers.get("stripe-version")
                if version is not None and not known_api_version(version):
                    raise StripeAPIError(
                        400,
                        f"Invalid Stripe API version: {version[:64]}. Versions are release dates up to {API_VERSION} "
                        "(objects are rendered at that one).",
                        code="api_version_invalid",
                    )
                account = backend.authenticate(_bearer(request), request.headers.get("stripe-account"))
                params = upgrade(f"{method} {path}", params, version, API_VERSION)
                if schema is not None:
                    validate(schema, params)
                else:
                    _refuse_unknown(params, UNDOCUMENTED[method, path])
                key = request.headers.get("idempotency-key") if request.method == "POST" else None
                # Events this request causes name it (the thread pool runs handlers in a copy of this context).
                CURRENT_REQUEST.set({"id": request.scope.get("dream.request_id"), "idempotency_key": key})
                if key:
                    if len(key) > 255:
                        raise StripeAPIError(
                            400, "Idempotency-Key must be at most 255 characters long.", param="Idempotency-Key"
                        )
                    answer = await run_in_threadpool(
                        _idempotent, backend, account, key, request, params, _expanding(handler)
                    )
                    answer.headers["Idempotency-Key"] = key
                    return answer
                result = await run_in_threadpool(
                    _expanding(handler), backend, account, params, dict(request.path_params), request
                )
            except StripeAPIError as exc:
                return _error(exc)
            return JSONResponse(result)

        return endpoint

    def oauth(
        handler: Callable[[StripeBackend, str | None, dict[str, Any]], Any],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            params = await _params(request)
            try:
                result = await run_in_threadpool(
                    handler, backend, _bearer(request) or params.get("client_secret"), params
                )
            except StripeOAuthError as exc:
                return _error(exc)
            return JSONResponse(result)

        return endpoint

    async def authorize(request: Request) -> Response:
        params = await _params(request)
        try:
            target = await run_in_threadpool(backend.oauth_authorize, params)
        except StripeOAuthError as exc:
            return _error(exc)
        return RedirectResponse(target, status_code=302)

    def checkout_create(
        b: StripeBackend, account: str, params: dict[str, Any], _path: dict[str, str], request: Request
    ) -> Any:
        return b.create_checkout_session(account, params, base_url(request))

    def portal_create(
        b: StripeBackend, account: str, params: dict[str, Any], _path: dict[str, str], request: Request
    ) -> Any:
        return b.create_portal_session(account, params, base_url(request))

    table: list[tuple[str, str, Handler]] = [
        # The Search API first: `/v1/customers/search` is not a customer id.
        *[
            ("GET", f"/v1/{kind}s/search", lambda b, a, p, _, __, kind=kind: b.search(a, kind, p))
            for kind in ("customer", "subscription", "price", "product")
        ],
        ("POST", "/v1/products", lambda b, a, p, _, __: b.create_product(a, p)),
        ("GET", "/v1/products", lambda b, a, p, _, __: b.list(a, "product", p, {"active": p.get("active")})),
        ("GET", "/v1/products/{id}", lambda b, a, p, path, __: b.get(a, "product", path["id"])),
        ("POST", "/v1/products/{id}", lambda b, a, p, path, __: b.update_product(a, path["id"], p)),
        ("DELETE", "/v1/products/{id}", lambda b, a, p, path, __: b.delete_product(a, path["id"])),
        ("POST", "/v1/prices", lambda b, a, p, _, __: b.create_price(a, p)),
        (
            "GET",
            "/v1/prices",
            lambda b, a, p, _, __: b.list(a, "price", p, {"product": p.get("product"), "active": p.get("active")}),
        ),
        ("GET", "/v1/prices/{id}", lambda b, a, p, path, __: b.get(a, "price", path["id"])),
        ("POST", "/v1/prices/{id}", lambda b, a, p, path, __: b.update_price(a, path["id"], p)),
        ("POST", "/v1/customers", lambda b, a, p, _, __: b.create_customer(a, p)),
        ("GET", "/v1/customers", lambda b, a, p, _, __: b.list(a, "customer", p, {"email": p.get("email")})),
        ("GET", "/v1/customers/{id}", lambda b, a, p, path, __: b.get(a, "customer", path["id"])),
        ("POST", "/v1/customers/{id}", lambda b, a, p, path, __: b.update_customer(a, path["id"], p)),
        ("DELETE", "/v1/customers/{id}", lambda b, a, p, path, __: b.delete_customer(a, path["id"])),
        (
            "POST",
            "/v1/checkout/sessions/{id}/expire",
            lambda b, a, p, path, __: b.expire_checkout_session(a, path["id"]),
        ),
        ("POST", "/v1/checkout/sessions", checkout_create),
        (
            "GET",
            "/v1/checkout/sessions",
            lambda b, a, p, _, __: b.list(
                a, "checkout.session", p, {"customer": p.get("customer"), "subscription": p.get("subscription")}
            ),
        ),
        (
            "GET",
            "/v1/checkout/sessions/{id}",
            lambda b, a, p, path, __: public(b.get(a, "checkout.session", path["id"])),
        ),
        ("GET", "/v1/checkout/sessions/{id}/line_items", lambda b, a, p, path, __: b.line_items(a, path["id"], p)),
        ("GET", "/v1/subscriptions", lambda b, a, p, _, __: b.list_subscriptions(a, p)),
        ("GET", "/v1/subscriptions/{id}", lambda b, a, p, path, __: b.get(a, "subscription", path["id"])),
        ("POST", "/v1/subscriptions", lambda b, a, p, _, __: b.create_subscription(a, p)),
        ("POST", "/v1/subscriptions/{id}", lambda b, a, p, path, __: b.update_subscription(a, path["id"], p)),
        (
            "GET",
            "/v1/invoices",
            lambda b, a, p, _, __: b.list(
                a,
                "invoice",
                p,
                {"customer": p.get("customer"), "_subscription": p.get("subscription"), "status": p.get("status")},
            ),
        ),
        ("GET", "/v1/invoices/{id}", lambda b, a, p, path, __: public(b.get(a, "invoice", path["id"]))),
        ("POST", "/v1/invoices", lambda b, a, p, _, __: b.create_invoice(a, p)),
        ("POST", "/v1/invoices/{id}/finalize", lambda b, a, p, path, __: b.finalize_invoice(a, path["id"])),
        ("POST", "/v1/invoices/{id}/pay", lambda b, a, p, path, __: b.pay_invoice(a, path["id"], p)),
        ("POST", "/v1/invoiceitems", lambda b, a, p, _, __: b.create_invoice_item(a, p)),
        ("POST", "/v1/payment_methods", lambda b, a, p, _, __: b.create_payment_method(a, p)),
        (
            "GET",
            "/v1/payment_methods/{id}",
            lambda b, a, p, path, __: public(b.payment_method(a, path["id"], "id")),
        ),
        (
            "POST",
            "/v1/payment_methods/{id}/attach",
            lambda b, a, p, path, __: b.attach_payment_method(a, path["id"], p),
        ),
        (
            "GET",
            "/v1/payment_pages/{id}",
            lambda b, a, p, path, __: public(b.get(a, "checkout.session", path["id"])),
        ),
        (
            "POST",
            "/v1/payment_pages/{id}/confirm",
            lambda b, a, p, path, __: b.complete_checkout_session(
                a, path["id"], str(p.get("payment_method") or "pm_card_visa"), as_int(p, "expected_amount")
            ),
        ),
        ("DELETE", "/v1/subscriptions/{id}", lambda b, a, p, path, __: b.cancel_subscription(a, path["id"])),
        ("POST", "/v1/webhook_endpoints", lambda b, a, p, _, __: b.create_webhook_endpoint(a, p)),
        ("GET", "/v1/webhook_endpoints", lambda b, a, p, _, __: b.list(a, "webhook_endpoint", p)),
        (
            "GET",
            "/v1/webhook_endpoints/{id}",
            lambda b, a, p, path, __: public(b.get(a, "webhook_endpoint", path["id"])),
        ),
        (
            "POST",
            "/v1/webhook_endpoints/{id}",
            lambda b, a, p, path, __: b.update_webhook_endpoint(a, path["id"], p),
        ),
        ("DELETE", "/v1/webhook_endpoints/{id}", lambda b, a, p, path, __: b.delete_webhook_endpoint(a, path["id"])),
        ("GET", "/v1/events", lambda b, a, p, _, __: b.list(a, "event", p, keep=_event_filter(p))),
        ("POST", "/v1/invoices/{id}", lambda b, a, p, path, __: b.update_invoice(a, path["id"], p)),
        ("DELETE", "/v1/invoices/{id}", lambda b, a, p, path, __: b.delete_invoice(a, path["id"])),
        ("POST", "/v1/invoices/{id}/void", lambda b, a, p, path, __: b.close_invoice(a, path["id"], "void")),
        (
            "POST",
            "/v1/invoices/{id}/mark_uncollectible",
            lambda b, a, p, path, __: b.close_invoice(a, path["id"], "uncollectible"),
        ),
        ("DELETE", "/v1/invoiceitems/{id}", lambda b, a, p, path, __: b.delete_invoice_item(a, path["id"])),
        ("POST", "/v1/payment_methods/{id}", lambda b, a, p, path, __: b.update_payment_method(a, path["id"], p)),
        ("POST", "/v1/payment_methods/{id}/detach", lambda b, a, p, path, __: b.detach_payment_method(a, path["id"])),
        ("POST", "/v1/payment_intents", lambda b, a, p, _, __: b.create_payment_intent(a, p)),
        (
            "GET",
            "/v1/payment_intents",
            lambda b, a, p, _, __: b.list(a, "payment_intent", p, {"customer": p.get("customer")}),
        ),
        ("GET", "/v1/payment_intents/{id}", lambda b, a, p, path, __: public(b.get(a, "payment_intent", path["id"]))),
        (
            "POST",
            "/v1/payment_intents/{id}/confirm",
            lambda b, a, p, path, __: b.confirm_payment_intent(a, path["id"], p),
        ),
        (
            "POST",
            "/v1/payment_intents/{id}/capture",
            lambda b, a, p, path, __: b.capture_payment_intent(a, path["id"], p),
        ),
        (
            "POST",
            "/v1/payment_intents/{id}/cancel",
            lambda b, a, p, path, __: b.cancel_payment_intent(a, path["id"], p),
        ),
        ("GET", "/v1/charges", lambda b, a, p, _, __: b.list(a, "charge", p, {"customer": p.get("customer")})),
        ("GET", "/v1/charges/{id}", lambda b, a, p, path, __: public(b.get(a, "charge", path["id"]))),
        ("POST", "/v1/refunds", lambda b, a, p, _, __: b.create_refund(a, p)),
        ("GET", "/v1/refunds/{id}", lambda b, a, p, path, __: public(b.get(a, "refund", path["id"]))),
        ("POST", "/v1/setup_intents", lambda b, a, p, _, __: b.create_setup_intent(a, p)),
        ("GET", "/v1/setup_intents/{id}", lambda b, a, p, path, __: public(b.get(a, "setup_intent", path["id"]))),
        ("POST", "/v1/setup_intents/{id}/confirm", lambda b, a, p, path, __: b.confirm_setup_intent(a, path["id"], p)),
        ("POST", "/v1/setup_intents/{id}/cancel", lambda b, a, p, path, __: b.cancel_setup_intent(a, path["id"], p)),
        ("POST", "/v1/coupons", lambda b, a, p, _, __: b.create_coupon(a, p)),
        ("GET", "/v1/coupons", lambda b, a, p, _, __: b.list(a, "coupon", p)),
        ("GET", "/v1/coupons/{id}", lambda b, a, p, path, __: b.get(a, "coupon", path["id"])),
        ("POST", "/v1/coupons/{id}", lambda b, a, p, path, __: b.update_coupon(a, path["id"], p)),
        ("DELETE", "/v1/coupons/{id}", lambda b, a, p, path, __: b.delete_coupon(a, path["id"])),
        ("POST", "/v1/promotion_codes", lambda b, a, p, _, __: b.create_promotion_code(a, p)),
        ("GET", "/v1/promotion_codes", lambda b, a, p, _, __: b.list(a, "promotion_code", p, {"code": p.get("code")})),
        ("GET", "/v1/promotion_codes/{id}", lambda b, a, p, path, __: b.get(a, "promotion_code", path["id"])),
        ("POST", "/v1/promotion_codes/{id}", lambda b, a, p, path, __: b.update_promotion_code(a, path["id"], p)),
        ("POST", "/v1/plans", lambda b, a, p, _, __: b.create_plan(a, p)),
        ("GET", "/v1/plans", lambda b, a, p, _, __: b.list(a, "plan", p, {"product": p.get("product")})),
        ("GET", "/v1/plans/{id}", lambda b, a, p, path, __: b.get(a, "plan", path["id"])),
        ("POST", "/v1/plans/{id}", lambda b, a, p, path, __: b.update_plan(a, path["id"], p)),
        ("DELETE", "/v1/plans/{id}", lambda b, a, p, path, __: b.delete_plan(a, path["id"])),
        ("POST", "/v1/billing_portal/configurations", lambda b, a, p, _, __: b.create_portal_configuration(a, p)),
        (
            "POST",
            "/v1/billing_portal/configurations/{id}",
            lambda b, a, p, path, __: b.update_portal_configuration(a, path["id"], p),
        ),
        ("POST", "/v1/billing_portal/sessions", portal_create),
        ("POST", "/v1/test_helpers/test_clocks", lambda b, a, p, _, __: b.create_test_clock(a, p)),
        ("GET", "/v1/test_helpers/test_clocks", lambda b, a, p, _, __: b.list(a, "test_helpers.test_clock", p)),
        (
            "GET",
            "/v1/test_helpers/test_clocks/{id}",
            lambda b, a, p, path, __: b.get(a, "test_helpers.test_clock", path["id"]),
        ),
        (
            "POST",
            "/v1/test_helpers/test_clocks/{id}/advance",
            lambda b, a, p, path, __: b.advance_test_clock(a, path["id"], p),
        ),
        (
            "DELETE",
            "/v1/test_helpers/test_clocks/{id}",
            lambda b, a, p, path, __: b.delete_test_clock(a, path["id"]),
        ),
        ("GET", "/v1/events/{id}", lambda b, a, p, path, __: b.get(a, "event", path["id"])),
    ]
    routes = [Route(path, api(method, path, handler), methods=[method]) for method, path, handler in table]
    routes += [
        Route("/oauth/authorize", authorize, methods=["GET"]),
        Route("/oauth/token", oauth(lambda b, key, p: b.oauth_token(key, p)), methods=["POST"]),
        Route("/oauth/deauthorize", oauth(lambda b, key, p: b.oauth_deauthorize(key, p)), methods=["POST"]),
    ]

    async def unknown(request: Request) -> Response:
        return _error(
            StripeAPIError(
                404,
                f"Unrecognized request URL ({request.method}: {request.url.path}). Please see https://stripe.com/docs "
                "or we can help at https://support.stripe.com/.",
            )
        )

    routes.append(Route("/{rest:path}", unknown, methods=["GET", "POST", "DELETE", "PUT", "PATCH"]))
    return routes


def _event_filter(params: dict[str, Any]) -> Callable[[dict[str, Any]], bool]:
    """`type` (a `*` matches any ending: `customer.*`) and `types` (any of them), as the events list takes them."""
    wanted = [str(params["type"])] if params.get("type") else []
    wanted += [str(t) for t in params.get("types") or []] if isinstance(params.get("types"), list) else []

    def keep(event: dict[str, Any]) -> bool:
        return not wanted or any(
            event["type"] == w or (w.endswith("*") and event["type"].startswith(w[:-1])) for w in wanted
        )

    return keep


def _expanding(handler: Handler) -> Handler:
    """The handler, its answer expanded as `expand` asks (on every path: a POST with an Idempotency-Key too)."""

    def expanded(
        backend: StripeBackend, account: str, params: dict[str, Any], path: dict[str, str], request: Request
    ) -> Any:
        result = handler(backend, account, params, path, request)
        paths = params.get("expand")
        if paths:  # expand[0]=a&expand[1]=b and expand[]=a both decode to a list
            paths = paths if isinstance(paths, list) else [paths]
            result = backend.expand(account, result, [str(p) for p in paths])
        return result

    return expanded


def _idempotent(
    backend: StripeBackend, account: str, key: str, request: Request, params: dict[str, Any], handler: Handler
) -> Response:
    """Same key + same parameters = the first response again; different parameters = idempotency_error."""
    fingerprint = hashlib.sha256(
        json.dumps([request.method, request.url.path, params], sort_keys=True).encode()
    ).hexdigest()
    state = backend.state
    stored = state.file.read(
        lambda conn: conn.execute(
            "SELECT fingerprint, status, body FROM _dream_stripe_idempotency WHERE account = ? AND key = ?",
            (account, key),
        ).fetchone()
    )
    if stored is not None:
        if stored[0] != fingerprint:
            raise StripeAPIError(
                400,
                "Keys for idempotent requests can only be used with the same parameters they were first used with. "
                f"Try using a key other than '{key}' if you meant to execute a different request.",
                type="idempotency_error",
            )
        return Response(
            stored[2], status_code=stored[1], media_type="application/json", headers={"Idempotent-Replayed": "true"}
        )
    try:
        status, body = 200, handler(backend, account, params, dict(request.path_params), request)
    except StripeAPIError as exc:
        status, body = exc.status, exc.body
    text = json.dumps(body)
    with state.file.write() as conn:
        conn.execute(
            "INSERT OR IGNORE INTO _dream_stripe_idempotency (account, key, fingerprint, status, body, created) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (account, key, fingerprint, status, text, state.now()),
        )
    return Response(text, status_code=status, media_type="application/json")
