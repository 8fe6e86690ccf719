"""The Stripe emulator's shared pieces: the pinned API version, currencies, test cards, expansion, the list
range filter, object fragments (items, lines) and parameter readers."""

from __future__ import annotations

import hashlib
import hmac
import re
from contextvars import ContextVar
from typing import Any

from emulator.stripe_errors import StripeAPIError, missing_param
from emulator.vendor_state import new_id

API_VERSION = "2026-10-28.endive"  # what stripe-node 23.1 and stripe-python 16.1 pin; objects are shaped for it
# A request may name any version of Stripe's releases in Stripe-Version (the SDKs send theirs on every call): a date,
# and since 2024 a release name. Objects are rendered at API_VERSION whichever is named (a documented limit); a
# version that is no Stripe version is refused, as Stripe refuses it.
RELEASES = ("acacia", "basil", "clover", "dahlia", "endive")
_VERSION = re.compile(r"(20[12]\d)-(0[1-9]|1[0-2])-([0-2]\d|3[01])(?:\.([a-z]+))?")


def known_api_version(version: str) -> bool:
    found = _VERSION.fullmatch(version)
    return found is not None and (found.group(4) is None or found.group(4) in RELEASES) and version <= API_VERSION


OAUTH_CODE_TTL = 300
PERIOD_SECONDS = 30 * 24 * 3600
PLATFORM = "platform"  # the scope of the platform's own account; connected accounts are scoped by its id

# The API request being answered (its Request-Id and Idempotency-Key): events it causes name it in `request`, as
# Stripe's do; events with no request behind them (a checkout paid on the hosted page) carry nulls.
CURRENT_REQUEST: ContextVar[dict[str, str | None] | None] = ContextVar("stripe_request", default=None)


# The currencies Stripe charges in (its "supported currencies" page); anything else is refused as Stripe does.
CURRENCIES = frozenset(
    """usd aed afn all amd ang aoa ars aud awg azn bam bbd bdt bgn bif bmd bnd bob brl bsd bwp byn bzd cad cdf chf clp
    cny cop crc cve czk djf dkk dop dzd egp etb eur fjd fkp gbp gel gip gmd gnf gtq gyd hkd hnl htg huf idr ils inr isk
    jmd jpy kes kgs khr kmf krw kyd kzt lak lbp lkr lrd lsl mad mdl mga mkd mmk mnt mop mur mvr mwk mxn myr mzn nad ngn
    nio nok npr nzd pab pen pgk php pkr pln pyg qar ron rsd rub rwf sar sbd scr sek sgd shp sle sos srd std szl thb tjs
    top try ttd twd tzs uah ugx uyu uzs vnd vuv wst xaf xcd xof xpf yer zar zmw""".split()
)


def currency_of(params: dict[str, Any]) -> str:
    currency = params.get("currency")
    if not currency:
        raise missing_param("currency")
    code = str(currency).lower()
    if code not in CURRENCIES:
        raise StripeAPIError(
            400,
            f"Invalid currency: {str(currency)[:16]}. Stripe currently supports these currencies: "
            + ", ".join(sorted(CURRENCIES)),
            param="currency",
        )
    return code


# The Connect application's redirect URI (its Connect settings): oauth-api's /callback on the guide's port.
CONNECT_REDIRECT_URI = "http://localhost:8789/callback"

# Fields holding an id that `expand[]` may replace by the object, and the kind of that object.
EXPANDABLE = {
    "customer": "customer",
    "subscription": "subscription",
    "product": "product",
    "price": "price",
    "latest_invoice": "invoice",
    "invoice": "invoice",
    "default_payment_method": "payment_method",
    "default_price": "price",
}

# Stripe's test payment methods (docs.stripe.com/testing): brand, last4, and what happens when one is used. None
# works; ("attach", code, decline_code) is declined as soon as it is attached to a customer (Stripe checks the card
# then); ("charge", ...) attaches, then every charge on it is declined.
TEST_PAYMENT_METHODS: dict[str, tuple[str, str, tuple[str, str, str] | None]] = {
    "pm_card_visa": ("visa", "4242", None),
    "pm_card_mastercard": ("mastercard", "4444", None),
    "pm_card_amex": ("amex", "8431", None),
    "pm_card_chargeCustomerFail": ("visa", "0341", ("charge", "card_declined", "generic_decline")),
    "pm_card_visa_chargeDeclined": ("visa", "0002", ("attach", "card_declined", "generic_decline")),
    "pm_card_chargeDeclined": ("visa", "0002", ("attach", "card_declined", "generic_decline")),
    "pm_card_visa_chargeDeclinedInsufficientFunds": ("visa", "9995", ("attach", "card_declined", "insufficient_funds")),
    "pm_card_visa_chargeDeclinedLostCard": ("visa", "9987", ("attach", "card_declined", "lost_card")),
    "pm_card_visa_chargeDeclinedStolenCard": ("visa", "9979", ("attach", "card_declined", "stolen_card")),
    "pm_card_chargeDeclinedExpiredCard": ("visa", "0069", ("attach", "expired_card", "expired_card")),
    "pm_card_chargeDeclinedIncorrectCvc": ("visa", "0127", ("attach", "incorrect_cvc", "incorrect_cvc")),
    "pm_card_chargeDeclinedProcessingError": ("visa", "0119", ("attach", "processing_error", "processing_error")),
}
TEST_CARD_TOKENS = {
    "tok_visa": "pm_card_visa",
    "tok_mastercard": "pm_card_mastercard",
    "tok_amex": "pm_card_amex",
    "tok_chargeCustomerFail": "pm_card_chargeCustomerFail",
    "tok_chargeDeclined": "pm_card_visa_chargeDeclined",
    "tok_chargeDeclinedInsufficientFunds": "pm_card_visa_chargeDeclinedInsufficientFunds",
    "tok_visa_chargeDeclinedLostCard": "pm_card_visa_chargeDeclinedLostCard",
    "tok_visa_chargeDeclinedStolenCard": "pm_card_visa_chargeDeclinedStolenCard",
    "tok_chargeDeclinedExpiredCard": "pm_card_chargeDeclinedExpiredCard",
    "tok_chargeDeclinedIncorrectCvc": "pm_card_chargeDeclinedIncorrectCvc",
    "tok_chargeDeclinedProcessingError": "pm_card_chargeDeclinedProcessingError",
}
CARD_MESSAGES = {
    "generic_decline": "Your card was declined.",
    "insufficient_funds": "Your card has insufficient funds.",
    "lost_card": "Your card was declined.",
    "stolen_card": "Your card was declined.",
    "expired_card": "Your card has expired.",
    "incorrect_cvc": "Your card's security code is incorrect.",
    "processing_error": "An error occurred while processing your card. Try again in a little bit.",
}


def card_error(test_id: str) -> StripeAPIError | None:
    """The card error a test card answers with when it is charged (or attached), as Stripe words it; None: it pays."""
    outcome = TEST_PAYMENT_METHODS[test_id][2]
    if outcome is None:
        return None
    _, code, decline = outcome
    param = {"incorrect_cvc": "cvc", "expired_card": "exp_month"}.get(code, "")
    return StripeAPIError(
        402,
        CARD_MESSAGES[decline],
        type="card_error",
        code=code,
        param=param or None,
        decline_code=decline if code == "card_declined" else None,
    )


SUBSCRIPTION_STATUSES = (
    "active",
    "canceled",
    "ended",
    "incomplete",
    "incomplete_expired",
    "past_due",
    "paused",
    "trialing",
    "unpaid",
)


def _check_event_types(events: Any) -> None:
    """Each enabled event is one of Stripe's event types (its published list), or `*`."""
    from emulator.stripe_params import spec

    known = spec()["routes"]["POST /v1/webhook_endpoints"]["p"]["enabled_events"]["of"]["v"]
    for index, name in enumerate(events if isinstance(events, list) else [events]):
        if name not in known:
            raise StripeAPIError(
                400,
                f"Invalid enabled_events[{index}]: must be one of Stripe's event types (or *), not {str(name)[:64]}",
                param=f"enabled_events[{index}]",
            )


def _in_range(value: Any, bounds: Any) -> bool:
    """A list's range filter (`created[gte]=...`, or one exact value) on a timestamp."""
    if bounds in (None, ""):
        return True
    if not isinstance(bounds, dict):
        return value == int(bounds)
    checks = {
        "gt": lambda a, b: a > b,
        "gte": lambda a, b: a >= b,
        "lt": lambda a, b: a < b,
        "lte": lambda a, b: a <= b,
    }
    return value is not None and all(checks[op](value, int(limit)) for op, limit in bounds.items() if op in checks)


def subscription_item(price: dict[str, Any], quantity: int, subscription_id: str, now: int) -> dict[str, Any]:
    """A subscription item at API version 2026-10-28.endive: it carries the billing period."""
    return {
        "id": new_id("si_", 14),
        "object": "subscription_item",
        "created": now,
        "current_period_end": now + PERIOD_SECONDS,
        "current_period_start": now,
        "discounts": [],
        "metadata": {},
        "price": price,
        "quantity": quantity,
        "subscription": subscription_id,
        "tax_rates": [],
    }


def _pricing(price: dict[str, Any] | None) -> dict[str, Any] | None:
    """How an invoice line or item is priced since 2025-03-31 (`pricing.price_details`); None for an amount."""
    if price is None:
        return None
    return {
        "price_details": {"price": price["id"], "product": price["product"]},
        "type": "price_details",
        "unit_amount_decimal": str(price["unit_amount"]),
    }


def _line(
    invoice_id: str,
    amount: int,
    currency: str,
    description: str | None,
    parent: dict[str, Any],
    period: dict[str, int],
    quantity: int,
    price: dict[str, Any] | None,
) -> dict[str, Any]:
    """An invoice line item at 2026-10-28.endive: priced by `pricing`, its origin under `parent`."""
    return {
        "id": new_id("il_", 24),
        "object": "line_item",
        "amount": amount,
        "currency": currency,
        "description": description,
        "discount_amounts": [],
        "discountable": True,
        "discounts": [],
        "invoice": invoice_id,
        "livemode": False,
        "metadata": {},
        "parent": parent,
        "period": period,
        "pretax_credit_amounts": [],
        "pricing": _pricing(price),
        "quantity": quantity,
        "taxes": [],
    }


def sign_payload(payload: bytes, secret: str, timestamp: int) -> str:
    """`Stripe-Signature` exactly as Stripe computes it: HMAC-SHA256 of "{t}.{body}"."""
    signed = f"{timestamp}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def _merge_metadata(current: dict[str, str], update: Any) -> dict[str, str]:
    """Stripe merges metadata keys; an empty value deletes one; an empty string for the whole unsets all."""
    if update is None:
        return current
    if update == "":
        return {}
    if not isinstance(update, dict):
        raise StripeAPIError(400, "Invalid metadata: must be a hash", param="metadata")
    merged = dict(current)
    for key, value in update.items():
        if value in ("", None):
            merged.pop(key, None)
        else:
            merged[str(key)] = str(value)
    return merged


def as_int(params: dict[str, Any], name: str, *, required: bool = False, minimum: int | None = None) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise missing_param(name)
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise StripeAPIError(400, f"Invalid integer: {value}", param=name) from None
    if minimum is not None and number < minimum:
        raise StripeAPIError(400, f"This value must be greater than or equal to {minimum}.", param=name)
    return number


def _as_bool(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


def _redact(key: str) -> str:
    return f"{key[:8]}{'*' * 12}{key[-4:]}" if len(key) > 12 else "*" * len(key)
