"""`dream stripe trigger EVENT`: the API calls that make Stripe send an event, as the Stripe CLI's fixtures make
them (pkg/fixtures/triggers/*.json in stripe/stripe-cli), run through the official SDK on a developer's connected
account, on the emulator or on Stripe in test mode alike.

A step is (name, method, path, params); a parameter value `${name:field.path}` reads an earlier step's answer.
`metadata` given by the operator is added to the objects a webhook handler reads (the customer, the subscription,
the checkout session), so a trigger can aim at the platform's own handlers (api-multi reads platformId, customerId
and tier).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dreamcli.errors import UsageError
from dreamcli.vendors.stripe_gateway import StripeGateway

Step = tuple[str, str, str, dict[str, Any]]

_CUSTOMER: Step = ("customer", "post", "/v1/customers", {"description": "(created by dream stripe trigger)"})
_PAYING_CUSTOMER: Step = (
    "customer",
    "post",
    "/v1/customers",
    {
        "description": "(created by dream stripe trigger)",
        "payment_method": "pm_card_visa",
        "invoice_settings": {"default_payment_method": "pm_card_visa"},
    },
)
_FAILING_CUSTOMER: Step = (
    "customer",
    "post",
    "/v1/customers",
    {
        "description": "(created by dream stripe trigger)",
        "payment_method": "pm_card_chargeCustomerFail",
        "invoice_settings": {"default_payment_method": "pm_card_chargeCustomerFail"},
    },
)
_PRODUCT: Step = ("product", "post", "/v1/products", {"name": "myproduct", "description": "(created by dream)"})
_MONTHLY: Step = (
    "price",
    "post",
    "/v1/prices",
    {"product": "${product:id}", "unit_amount": 1500, "currency": "usd", "recurring": {"interval": "month"}},
)
_SUBSCRIPTION: Step = (
    "subscription",
    "post",
    "/v1/subscriptions",
    {"customer": "${customer:id}", "items": [{"price": "${price:id}"}]},
)
_SUBSCRIBED = [_PAYING_CUSTOMER, _PRODUCT, _MONTHLY, _SUBSCRIPTION]

_ONE_TIME: Step = ("price", "post", "/v1/prices", {"product": "${product:id}", "unit_amount": 1500, "currency": "usd"})
_PAYMENT_SESSION: Step = (
    "checkout_session",
    "post",
    "/v1/checkout/sessions",
    {
        "success_url": "https://example.com/success",
        "cancel_url": "https://example.com/cancel",
        "mode": "payment",
        "line_items": [{"price": "${price:id}", "quantity": 2}],
    },
)
_FOO_BAR = {"metadata": {"foo": "bar"}}

TRIGGERS: dict[str, list[Step]] = {
    "customer.created": [_CUSTOMER],
    "customer.updated": [_CUSTOMER, ("customer_updated", "post", "/v1/customers/${customer:id}", _FOO_BAR)],
    "customer.deleted": [_CUSTOMER, ("customer_deleted", "delete", "/v1/customers/${customer:id}", {})],
    "product.created": [_PRODUCT],
    "product.updated": [_PRODUCT, ("product_updated", "post", "/v1/products/${product:id}", _FOO_BAR)],
    "price.created": [_PRODUCT, _MONTHLY],
    "price.updated": [_PRODUCT, _MONTHLY, ("price_updated", "post", "/v1/prices/${price:id}", _FOO_BAR)],
    "checkout.session.expired": [
        _PRODUCT,
        _ONE_TIME,
        _PAYMENT_SESSION,
        ("checkout_session_expired", "post", "/v1/checkout/sessions/${checkout_session:id}/expire", {}),
    ],
    "payment_method.attached": [
        _CUSTOMER,
        ("payment_method", "post", "/v1/payment_methods/pm_card_visa/attach", {"customer": "${customer:id}"}),
    ],
    "customer.subscription.created": _SUBSCRIBED,
    "customer.subscription.updated": [
        *_SUBSCRIBED,
        ("subscription_updated", "post", "/v1/subscriptions/${subscription:id}", {"metadata": {"foo": "bar"}}),
    ],
    "customer.subscription.deleted": [
        *_SUBSCRIBED,
        ("subscription_deleted", "delete", "/v1/subscriptions/${subscription:id}", {}),
    ],
    "invoice.created": _SUBSCRIBED,
    "invoice.finalized": _SUBSCRIBED,
    "invoice.paid": _SUBSCRIBED,
    "invoice.payment_succeeded": _SUBSCRIBED,
    "invoice.payment_failed": [_FAILING_CUSTOMER, _PRODUCT, _MONTHLY, _SUBSCRIPTION],
    "checkout.session.completed": [
        _PRODUCT,
        _ONE_TIME,
        _PAYMENT_SESSION,
        ("payment_page", "get", "/v1/payment_pages/${checkout_session:id}", {}),
        (
            "payment_method",
            "post",
            "/v1/payment_methods",
            {"type": "card", "card": {"token": "tok_visa"}, "billing_details": {"email": "stripe@example.com"}},
        ),
        (
            "payment_page_confirm",
            "post",
            "/v1/payment_pages/${checkout_session:id}/confirm",
            {"payment_method": "${payment_method:id}", "expected_amount": 3000},
        ),
    ],
}
# The steps whose objects carry the operator's --metadata.
_TAGGED = {"customer", "subscription", "checkout_session"}
_REFERENCE = re.compile(r"\$\{(\w+):([\w.]+)\}")


@dataclass
class TriggerRun:
    event: str
    account: str | None
    calls: list[tuple[str, str, str]] = field(default_factory=list)  # (method, path, object id)
    request_ids: list[str] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)  # {id, type} of the events the calls caused


def _resolve(value: Any, answers: dict[str, Any]) -> Any:
    if isinstance(value, dict):
        return {key: _resolve(item, answers) for key, item in value.items()}
    if isinstance(value, list):
        return [_resolve(item, answers) for item in value]
    if not isinstance(value, str):
        return value

    def lookup(found: re.Match[str]) -> str:
        node: Any = answers[found.group(1)]
        for part in found.group(2).split("."):
            node = node[part]
        return str(node)

    return _REFERENCE.sub(lookup, value)


def trigger(
    gateway: StripeGateway,
    event: str,
    *,
    account: str | None = None,
    metadata: dict[str, str] | None = None,
    progress: Callable[[str], None] = lambda line: None,
) -> TriggerRun:
    """Make the calls that cause `event` on `account` (the platform's own when None); report the events caused."""
    steps = TRIGGERS.get(event)
    if steps is None:
        raise UsageError(f"no trigger for {event!r}; supported: {', '.join(sorted(TRIGGERS))}")
    run = TriggerRun(event, account)
    answers: dict[str, Any] = {}
    for name, method, path, params in steps:
        resolved_path, resolved = _resolve(path, answers), _resolve(params, answers)
        if metadata and name in _TAGGED:
            resolved["metadata"] = {**resolved.get("metadata", {}), **metadata}
        progress(f"{method.upper():<6} {resolved_path}")
        answer, request_id = gateway.request(method, resolved_path, resolved, account)
        answers[name] = answer
        run.calls.append((method.upper(), resolved_path, str(answer.get("id", ""))))
        if request_id:
            run.request_ids.append(request_id)
    caused = set(run.request_ids)
    for found in reversed(gateway.list_events(account)):
        request = found.get("request") or {}
        if request.get("id") in caused:
            run.events.append({"id": found["id"], "type": found["type"]})
    return run
