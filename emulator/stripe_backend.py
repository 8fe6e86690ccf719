"""Stripe's subset the platform uses: Connect OAuth, products and prices on connected accounts,
checkout sessions, customers, subscriptions, webhook endpoints and signed events.

State and logic only (no HTTP), in the moto shape: `emulator/stripe_http.py` parses requests,
calls these methods and wraps the results in Stripe's envelopes.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any
from urllib.parse import urlencode

from dreamcli.stores.sqlite_file import SQLiteFile
from emulator.schema import sha256_hex
from emulator.stripe_errors import StripeAPIError, StripeOAuthError, missing_param, no_such
from emulator.stripe_params import store_plain
from emulator.vendor_state import VendorState, new_id, public
from emulator.webhooks import Message, Outbox

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


class StripeBackend:
    def __init__(self, file: SQLiteFile, clock: Callable[[], float] = time.time, outbox: Outbox | None = None) -> None:
        self.state = VendorState(file, "stripe", clock)
        self.outbox = outbox or Outbox(file, clock)
        self._platform = self._ensure_platform()

    # Accounts and keys

    def _ensure_platform(self) -> dict[str, Any]:
        found = self.state.find(PLATFORM, "account")
        if found:
            return found[0]
        account_id = new_id("acct_", 16)
        account = {"id": account_id, "object": "account", "type": "standard", "created": self.state.now()}
        self.state.save(PLATFORM, account)
        self.state.issue_key(new_id("sk_test_", 32), account_id, "secret")
        self.state.issue_key(new_id("pk_test_", 32), account_id, "publishable")
        self.state.issue_key(new_id("ca_", 32), account_id, "client_id")
        return account

    def connect_redirect_uri(self) -> str:
        """The Connect application's default redirect URI (its dashboard setting; `dream dev` sets it to
        oauth-api's callback route)."""
        platform = self.state.load(self._platform["id"], PLATFORM, "account") or self._platform
        return str(platform.get("_connect_redirect_uri") or CONNECT_REDIRECT_URI)

    def set_connect_redirect_uri(self, url: str) -> None:
        platform = self.state.load(self._platform["id"], PLATFORM, "account") or dict(self._platform)
        platform["_connect_redirect_uri"] = url
        self.state.save(PLATFORM, platform)

    def _is_connected(self, account: str) -> bool:
        connected = self.state.load(account, self._platform["id"], "account")
        return connected is not None and not connected.get("_deauthorized")

    def config(self) -> dict[str, str]:
        """The emulator's own test credentials for the platform account."""
        account = self._platform["id"]
        return {
            "account": account,
            "secret_key": self.state.keys_of(account, "secret")[0],
            "publishable_key": self.state.keys_of(account, "publishable")[0],
            "client_id": self.state.keys_of(account, "client_id")[0],
        }

    def authenticate(self, api_key: str | None, stripe_account: str | None) -> str:
        """The account a request acts as: the key's own, or a connected account named by `Stripe-Account`."""
        if not api_key:
            raise StripeAPIError(
                401,
                "You did not provide an API key. You need to provide your API key in the Authorization header, "
                "using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
            )
        owner = self.state.key_owner(api_key)
        if owner is None or owner[1] not in ("secret", "access_token"):
            raise StripeAPIError(401, f"Invalid API Key provided: {_redact(api_key)}")
        account = owner[0]
        if stripe_account and stripe_account != account:
            if account != self._platform["id"] or not self._is_connected(stripe_account):
                raise StripeAPIError(
                    403,
                    f"The provided key '{_redact(api_key)}' does not have access to account '{stripe_account}' "
                    "(or that account does not exist). Application access may have been revoked.",
                    code="account_invalid",
                )
            return stripe_account
        return account

    def _require_platform_key(self, api_key: str | None) -> None:
        owner = self.state.key_owner(api_key or "")
        if owner is None or owner != (self._platform["id"], "secret"):
            raise StripeOAuthError("invalid_client", f"Invalid API Key provided: {_redact(api_key or '')}", 401)

    # Connect OAuth

    def oauth_authorize(self, params: dict[str, Any]) -> str:
        """The redirect target: `redirect_uri?code=...&state=...`, or `error=access_denied` when asked to deny."""
        client_id = params.get("client_id")
        if not client_id or self.state.key_owner(client_id) != (self._platform["id"], "client_id"):
            raise StripeOAuthError("invalid_client", f"No such application: '{client_id}'")
        if params.get("response_type", "code") != "code":
            raise StripeOAuthError("invalid_request", "response_type must be 'code'")
        # Without one, Stripe sends the user to the application's redirect URI from its Connect settings.
        redirect_uri = params.get("redirect_uri") or self.connect_redirect_uri()
        answer: dict[str, str] = {}
        if params.get("emulator_decision") == "deny":
            answer = {"error": "access_denied", "error_description": "The user denied your request"}
        else:
            account = {"id": new_id("acct_", 16), "object": "account", "type": "standard", "created": self.state.now()}
            self.state.save(self._platform["id"], account)
            code = new_id("ac_", 32)
            with self.state.file.write() as conn:
                conn.execute(
                    "INSERT INTO _dream_stripe_oauth_codes (code, account, client_id, expires) VALUES (?, ?, ?, ?)",
                    (code, account["id"], client_id, self.state.now() + OAUTH_CODE_TTL),
                )
            answer = {"code": code, "scope": params.get("scope", "read_write")}
        if params.get("state") is not None:
            answer["state"] = params["state"]
        separator = "&" if "?" in redirect_uri else "?"
        return f"{redirect_uri}{separator}{urlencode(answer)}"

    def oauth_token(self, api_key: str | None, params: dict[str, Any]) -> dict[str, Any]:
        self._require_platform_key(api_key)
        if params.get("grant_type") != "authorization_code":
            raise StripeOAuthError("unsupported_grant_type", f"Unsupported grant type: {params.get('grant_type')}")
        code = params.get("code")
        if not code:
            raise StripeOAuthError("invalid_request", "No authorization code provided")
        refusal: str | None = None
        with self.state.file.write() as conn:
            row = conn.execute(
                "SELECT account, expires, used FROM _dream_stripe_oauth_codes WHERE code = ?", (code,)
            ).fetchone()
            if row is None:
                refusal = f"Authorization code does not exist: {code}"
            elif row[2]:
                # Stripe revokes the connection when a code is used twice (committed before refusing).
                conn.execute(
                    "DELETE FROM _dream_vendor_keys WHERE vendor = 'stripe' AND scope = ? AND role = 'access_token'",
                    (row[0],),
                )
                refusal = f"Authorization code already used: {code}"
            elif row[1] <= self.state.now():
                refusal = f"Authorization code expired: {code}"
            else:
                account = row[0]
                conn.execute("UPDATE _dream_stripe_oauth_codes SET used = 1 WHERE code = ?", (code,))
                access_token = new_id("sk_test_", 32)
                publishable = new_id("pk_test_", 32)
                refresh = new_id("rt_", 32)
                conn.executemany(
                    "INSERT INTO _dream_vendor_keys (vendor, key, key_sha256, scope, role) VALUES ('stripe', ?, ?, ?, ?)",
                    [
                        (key, sha256_hex(key), account, role)
                        for key, role in (
                            (access_token, "access_token"),
                            (publishable, "publishable"),
                            (refresh, "refresh"),
                        )
                    ],
                )
        if refusal is not None:
            raise StripeOAuthError("invalid_grant", refusal)
        return {
            "access_token": access_token,
            "livemode": False,
            "refresh_token": refresh,
            "scope": "read_write",
            "stripe_publishable_key": publishable,
            "stripe_user_id": account,
            "token_type": "bearer",
        }

    def oauth_deauthorize(self, api_key: str | None, params: dict[str, Any]) -> dict[str, Any]:
        self._require_platform_key(api_key)
        account = params.get("stripe_user_id")
        if params.get("client_id") != self.config()["client_id"]:
            raise StripeOAuthError("invalid_client", f"No such application: '{params.get('client_id')}'")
        if not account or not self._is_connected(account):
            raise StripeOAuthError("invalid_client", f"No such user: {account}")
        self.state.revoke_keys(account, "access_token")
        connected = self.state.load(account, self._platform["id"], "account")
        if connected is not None:  # the platform no longer acts for it (Stripe-Account is refused from now on)
            connected["_deauthorized"] = self.state.now()
            self.state.save(self._platform["id"], connected)
        return {"stripe_user_id": account}

    # Products and prices

    def create_product(self, account: str, params: dict[str, Any]) -> dict[str, Any]:
        if not params.get("name"):
            raise missing_param("name")
        now = self.state.now()
        product = {
            "id": params.get("id") or new_id("prod_", 14),
            "object": "product",
            "active": _as_bool(params.get("active", True)),
            "created": now,
            "default_price": None,
            "description": params.get("description"),
            "images": [],
            "livemode": False,
            "marketing_features": [],
            "metadata": _merge_metadata({}, params.get("metadata")),
            "name": params["name"],
            "package_dimensions": None,
            "shippable": None,
            "statement_descriptor": None,
            "tax_code": None,
            "tax_details": None,
            "type": "service",
            "unit_label": None,
            "updated": now,
            "url": None,
        }
        if self.state.load(product["id"]) is not None:
            raise StripeAPIError(400, "Product already exists.", code="resource_already_exists", param="id")
        store_plain(
            product,
            params,
            "POST /v1/products",
            {"id", "active", "description", "metadata", "name", "default_price_data"},
        )
        self.state.save(account, product)
        data = params.get("default_price_data")
        if isinstance(data, dict):  # as Stripe: the product's first price, made with it and set as its default
            price = self.create_price(account, {**data, "product": product["id"]})
            product["default_price"] = price["id"]
            self.state.save(account, product)
        self.emit(account, "product.created", product)
        return product

    def get(self, account: str, kind: str, object_id: str, label: str | None = None) -> dict[str, Any]:
        found = self.state.load(object_id, account, kind)
        if found is None:
            raise no_such(label or kind, object_id)
        return found

    def update_product(self, account: str, product_id: str, params: dict[str, Any]) -> dict[str, Any]:
        product = self.get(account, "product", product_id)
        before = json.loads(json.dumps(product))
        if "name" in params:
            product["name"] = params["name"]
        if "active" in params:
            product["active"] = _as_bool(params["active"])
        if "description" in params:
            product["description"] = params["description"] or None
        product["metadata"] = _merge_metadata(product["metadata"], params.get("metadata"))
        product["updated"] = self.state.now()
        if params.get("default_price"):
            price = self.state.load(str(params["default_price"]), account, "price")
            if price is None or price["product"] != product_id:
                raise no_such("price", str(params["default_price"]), "default_price")
            product["default_price"] = price["id"]
        store_plain(
            product, params, "POST /v1/products/{id}", {"name", "active", "description", "metadata", "default_price"}
        )
        return self._updated(account, "product.updated", before, product)

    def create_price(self, account: str, params: dict[str, Any]) -> dict[str, Any]:
        currency = currency_of(params)
        if not params.get("product"):
            raise missing_param("product")
        self.get(account, "product", params["product"])
        unit_amount = as_int(params, "unit_amount", required=True, minimum=0)
        recurring = params.get("recurring")
        if recurring is not None:
            interval = recurring.get("interval") if isinstance(recurring, dict) else None
            if interval not in ("day", "week", "month", "year"):
                raise StripeAPIError(
                    400,
                    "Invalid recurring[interval]: must be one of day, week, month, or year",
                    param="recurring[interval]",
                )
            recurring = {
                "interval": interval,
                "interval_count": as_int(recurring, "interval_count", minimum=1) or 1,
                "meter": None,
                "trial_period_days": None,
                "usage_type": "licensed",
            }
        price = {
            "id": new_id("price_", 24),
            "object": "price",
            "active": _as_bool(params.get("active", True)),
            "billing_scheme": "per_unit",
            "created": self.state.now(),
            "currency": currency,
            "custom_unit_amount": None,
            "livemode": False,
            "lookup_key": None,
            "metadata": _merge_metadata({}, params.get("metadata")),
            "nickname": params.get("nickname"),
            "product": params["product"],
            "recurring": recurring,
            "tax_behavior": "unspecified",
            "tiers_mode": None,
            "transform_quantity": None,
            "type": "recurring" if recurring else "one_time",
            "unit_amount": unit_amount,
            "unit_amount_decimal": str(unit_amount),
        }
        store_plain(
            price,
            params,
            "POST /v1/prices",
            {"currency", "product", "unit_amount", "recurring", "active", "metadata", "nickname"},
        )
        self.state.save(account, price)
        self.emit(account, "price.created", price)
        return price

    def update_price(self, account: str, price_id: str, params: dict[str, Any]) -> dict[str, Any]:
        price = self.get(account, "price", price_id)
        before = json.loads(json.dumps(price))
        if "active" in params:
            price["active"] = _as_bool(params["active"])
        if "nickname" in params:
            price["nickname"] = params["nickname"] or None
        price["metadata"] = _merge_metadata(price["metadata"], params.get("metadata"))
        store_plain(price, params, "POST /v1/prices/{id}", {"active", "nickname", "metadata", "transfer_lookup_key"})
        return self._updated(account, "price.updated", before, price)

    def _updated(self, account: str, event_type: str, before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
        """Save a changed object; `*.updated` names what changed in `previous_attributes` (nothing: no event)."""
        self.state.save(account, after)
        previous = {key: value for key, value in before.items() if after.get(key) != value and key != "updated"}
        if previous:
            self.emit(account, event_type, public(after), public(previous))
        return after

    def list(
        self,
        account: str,
        kind: str,
        params: dict[str, Any],
        filters: dict[str, Any] | None = None,
        keep: Callable[[dict[str, Any]], bool] | None = None,
    ) -> dict[str, Any]:
        """A page of `kind`, newest first, filtered by `filters` (field = value), `keep`, and the `created` range
        and `ids` every list takes."""
        limit = as_int(params, "limit", minimum=1) or 10
        if limit > 100:
            raise StripeAPIError(400, "This value must be less than or equal to 100.", param="limit")
        items = self.state.find(account, kind)
        for name, value in (filters or {}).items():
            if value is not None:
                items = [item for item in items if str(item.get(name)).lower() == str(value).lower()]
        if keep is not None:
            items = [item for item in items if keep(item)]
        if params.get("created") not in (None, ""):
            items = [item for item in items if _in_range(item.get("created"), params["created"])]
        if isinstance(params.get("ids"), list):
            items = [item for item in items if item["id"] in params["ids"]]
        after, before = params.get("starting_after"), params.get("ending_before")
        if after and before:
            raise StripeAPIError(400, "You may only specify one of these parameters: ending_before, starting_after.")
        ids = [item["id"] for item in items]
        if after:
            if after not in ids:
                raise no_such(kind, after, "starting_after")
            items = items[ids.index(after) + 1 :]
            page = items[:limit]
        elif before:  # the page just before it (newest first), which auto-pagination walks back through
            if before not in ids:
                raise no_such(kind, before, "ending_before")
            items = items[: ids.index(before)]
            page = items[-limit:]
        else:
            page = items[:limit]
        return {
            "object": "list",
            "data": [public(item) for item in page],
            "has_more": len(items) > limit,
            "url": f"/v1/{kind.replace('.', '/')}s",
        }

    def search(self, account: str, kind: str, params: dict[str, Any]) -> dict[str, Any]:
        """GET /v1/{kind}s/search: the Search API's query language over the account's objects."""
        from emulator.stripe_search import page

        return page(kind, [public(item) for item in self.state.find(account, kind)], params)

    def list_subscriptions(self, account: str, params: dict[str, Any]) -> dict[str, Any]:
        """As Stripe lists them: not canceled ones unless `status` asks (`all`: every one; `ended`: canceled and
        incomplete_expired), by customer and price, and `created`/`current_period_*` ranges."""
        status = params.get("status")
        wanted: set[str] | None = {
            None: {s for s in SUBSCRIPTION_STATUSES if s not in ("canceled", "incomplete_expired")},
            "all": None,
            "ended": {"canceled", "incomplete_expired"},
        }.get(status, {str(status)})
        price = params.get("price")

        def keep(subscription: dict[str, Any]) -> bool:
            return (
                (wanted is None or subscription["status"] in wanted)
                and (not params.get("customer") or subscription["customer"] == params["customer"])
                and (not price or any(i["price"]["id"] == price for i in subscription["items"]["data"]))
                and _in_range(subscription["created"], params.get("created"))
            )

        return self.list(account, "subscription", params, keep=keep)

    # Expansion

    def line_items(self, account: str, session_id: str, params: dict[str, Any]) -> dict[str, Any]:
        """GET /v1/checkout/sessions/{id}/line_items: the session's items as Stripe lists them."""
        session = self.get(account, "checkout.session", session_id)
        data = []
        for index, item in enumerate(session["_line_items"]):
            price = self.get(account, "price", item["price"])
            amount = (price.get("unit_amount") or 0) * item["quantity"]
            data.append(
                {
                    "id": f"li_{session_id.removeprefix('cs_')[:20]}{index}",
                    "object": "item",
                    "amount_discount": 0,
                    "amount_subtotal": amount,
                    "amount_tax": 0,
                    "amount_total": amount,
                    "currency": price.get("currency"),
                    "description": None,
                    "metadata": None,
                    "price": public(price),
                    "quantity": item["quantity"],
                }
            )
        limit = as_int(params, "limit", minimum=1) or 10
        return {
            "object": "list",
            "data": data[:limit],
            "has_more": len(data) > limit,
            "url": f"/v1/checkout/sessions/{session_id}/line_items",
        }

    def expand(self, account: str, result: Any, paths: builtins.list[str]) -> Any:
        """`expand[]`: each path names an id field (`customer`, `subscription`, `data.product`, a list's items by
        `data.`) replaced by its object; `line_items` on a checkout session is its items' list."""
        for path in paths:
            self._expand(account, result, path.split("."), path)
        return result

    def _expand(self, account: str, obj: Any, parts: builtins.list[str], path: str) -> None:
        head, rest = parts[0], parts[1:]
        if isinstance(obj, dict) and obj.get("object") == "list" and head == "data":
            for item in obj.get("data", []):
                if rest:
                    self._expand(account, item, rest, path)
            return
        if not isinstance(obj, dict) or (head not in obj and head != "line_items"):
            raise StripeAPIError(400, f"This property cannot be expanded ({path}).", param="expand")
        if head == "line_items" and obj.get("object") == "checkout.session":
            obj["line_items"] = self.line_items(account, obj["id"], {"limit": 100})
        elif isinstance(obj[head], str):
            kind = EXPANDABLE.get(head)
            if kind is None:
                raise StripeAPIError(400, f"This property cannot be expanded ({path}).", param="expand")
            obj[head] = public(self.get(account, kind, obj[head]))
        if rest and obj.get(head) is not None:
            self._expand(account, obj[head], rest, path)

    # Customers, checkout, subscriptions

    def create_customer(self, account: str, params: dict[str, Any]) -> dict[str, Any]:
        method = params.get("payment_method")
        if method:
            self.payment_method(account, str(method), param="payment_method")
        settings = params.get("invoice_settings") or {}
        if not isinstance(settings, dict):
            raise StripeAPIError(400, "Invalid object", param="invoice_settings")
        default_method = settings.get("default_payment_method")
        if default_method:
            self.payment_method(account, str(default_method), param="invoice_settings[default_payment_method]")
        customer: dict[str, Any] = {
            "id": new_id("cus_", 14),
            "object": "customer",
            "address": None,
            "balance": 0,
            "created": self.state.now(),
            "currency": None,
            "default_source": None,
            "delinquent": False,
            "description": params.get("description"),
            "email": params.get("email"),
            "invoice_prefix": secrets.token_hex(4).upper(),
            "invoice_settings": {
                "custom_fields": None,
                "default_payment_method": default_method or None,
                "footer": None,
                "rendering_options": None,
            },
            "livemode": False,
            "metadata": _merge_metadata({}, params.get("metadata")),
            "name": params.get("name"),
            "next_invoice_sequence": 1,
            "phone": params.get("phone"),
            "preferred_locales": [],
            "shipping": None,
            "tax_exempt": "none",
            "test_clock": None,
        }
        store_plain(
            customer,
            params,
            "POST /v1/customers",
            {"email", "name", "description", "phone", "metadata", "payment_method", "invoice_settings"},
        )
        self.state.save(account, customer)
        self.emit(account, "customer.created", customer)
        return customer

    def update_customer(self, account: str, customer_id: str, params: dict[str, Any]) -> dict[str, Any]:
        customer = self.get(account, "customer", customer_id)
        before = json.loads(json.dumps(customer))
        for name in ("email", "name", "description", "phone"):
            if name in params:
                customer[name] = params[name] or None
        customer["metadata"] = _merge_metadata(customer["metadata"], params.get("metadata"))
        settings = params.get("invoice_settings")
        if isinstance(settings, dict) and settings.get("default_payment_method"):
            method = self.payment_method(account, str(settings["default_payment_method"]))
            customer["invoice_settings"]["default_payment_method"] = method["id"]
        store_plain(
            customer,
            params,
            "POST /v1/customers/{id}",
            {"email", "name", "description", "phone", "metadata", "invoice_settings"},
        )
        return self._updated(account, "customer.updated", before, customer)

    def delete_customer(self, account: str, customer_id: str) -> dict[str, Any]:
        customer = self.get(account, "customer", customer_id)
        self.state.delete(customer_id)
        self.emit(account, "customer.deleted", customer)
        return {"id": customer_id, "object": "customer", "deleted": True}

    # Payment methods: Stripe's test cards, by id or token

    def payment_method(self, account: str, method_id: str, param: str = "payment_method") -> dict[str, Any]:
        """A payment method of the account's, or one of Stripe's test ones (`pm_card_visa`: made on first use)."""
        found = self.state.load(method_id, account, "payment_method")
        if found is not None:
            return found
        if method_id not in TEST_PAYMENT_METHODS:
            raise no_such("PaymentMethod", method_id, param)
        return self._card(account, method_id, method_id, None)

    def _card(self, account: str, test_id: str, method_id: str, billing: Any) -> dict[str, Any]:
        brand, last4, _ = TEST_PAYMENT_METHODS[test_id]
        method = {
            "id": method_id,
            "object": "payment_method",
            "allow_redisplay": "unspecified",
            "billing_details": {
                "address": None,
                "email": None,
                "name": None,
                "phone": None,
                **(billing if isinstance(billing, dict) else {}),
            },
            "card": {
                "brand": brand,
                "country": "US",
                "exp_month": 12,
                "exp_year": 2034,
                "funding": "credit",
                "last4": last4,
            },
            "created": self.state.now(),
            "customer": None,
            "livemode": False,
            "metadata": {},
            "type": "card",
            "_test_id": test_id,
        }
        return self.state.save(account, method)

    def create_payment_method(self, account: str, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("type") != "card":
            raise StripeAPIError(400, "Only type=card is emulated.", param="type")
        card = params.get("card") or {}
        token = card.get("token") if isinstance(card, dict) else None
        if token not in TEST_CARD_TOKENS:
            raise StripeAPIError(
                400,
                f"Use one of Stripe's test tokens ({', '.join(TEST_CARD_TOKENS)}) as card[token].",
                param="card[token]",
            )
        return public(self._card(account, TEST_CARD_TOKENS[token], new_id("pm_", 24), params.get("billing_details")))

    def attach_payment_method(self, account: str, method_id: str, params: dict[str, Any]) -> dict[str, Any]:
        if not params.get("customer"):
            raise missing_param("customer")
        method = self.payment_method(account, method_id, "payment_method")
        outcome = TEST_PAYMENT_METHODS[method.get("_test_id", method["id"])][2]
        customer = self.get(account, "customer", str(params["customer"]))
        if outcome is not None and outcome[0] == "attach":  # Stripe checks the card when it is attached
            raise card_error(method.get("_test_id", method["id"])) or AssertionError
        if method["id"] in TEST_PAYMENT_METHODS:  # a shared test id: each attachment is a card of its own
            method = self._card(account, method["id"], new_id("pm_", 24), None)
        method["customer"] = customer["id"]
        self.state.save(account, method)
        self.emit(account, "payment_method.attached", public(method))
        return public(method)

    def _method_of(self, customer: dict[str, Any], method_id: str | None) -> str | None:
        return method_id or customer.get("invoice_settings", {}).get("default_payment_method") or None

    def _charge_error(self, account: str, customer: dict[str, Any], method_id: str | None) -> StripeAPIError | None:
        """What charging the customer now answers: None when it is paid; a card error when the card declines; a
        missing payment method when there is none to charge (the subscription or invoice stays unpaid)."""
        method_id = self._method_of(customer, method_id)
        if not method_id:
            return StripeAPIError(
                400,
                "This customer has no attached payment source or default payment method. Please consider adding a "
                "default payment method.",
                code="resource_missing",
            )
        method = self.payment_method(account, method_id)
        return card_error(method.get("_test_id", method["id"]))

    def _charge_succeeds(self, account: str, customer: dict[str, Any], method_id: str | None) -> bool:
        return self._charge_error(account, customer, method_id) is None

    def create_checkout_session(self, account: str, params: dict[str, Any], base_url: str) -> dict[str, Any]:
        mode = params.get("mode")
        if mode is None:
            raise missing_param("mode")
        if mode not in ("payment", "setup", "subscription"):
            raise StripeAPIError(400, "Invalid mode: must be one of payment, setup, or subscription", param="mode")
        if not params.get("success_url"):
            raise missing_param("success_url")
        raw_items = params.get("line_items") or []
        if mode == "setup" and raw_items:
            raise StripeAPIError(400, "You cannot pass `line_items` in `setup` mode.", param="line_items")
        if mode != "setup" and (not isinstance(raw_items, list) or not raw_items):
            raise missing_param("line_items")
        line_items = []
        amount = 0
        currency = currency_of(params) if mode == "setup" and params.get("currency") else None
        for index, item in enumerate(raw_items):
            price_id = item.get("price") if isinstance(item, dict) else None
            if not price_id:
                raise missing_param(f"line_items[{index}][price]")
            price = self.state.load(price_id, account, "price")
            if price is None:
                raise no_such("price", price_id, f"line_items[{index}][price]")
            if mode == "subscription" and price["type"] != "recurring":
                raise StripeAPIError(
                    400,
                    "You must provide at least one recurring price in `subscription` mode when using prices.",
                    param=f"line_items[{index}][price]",
                )
            if mode == "payment" and price["type"] == "recurring":
                raise StripeAPIError(
                    400,
                    "You specified `payment` mode but passed a recurring price. Either switch to `subscription` mode "
                    "or use only one-time prices.",
                    param=f"line_items[{index}][price]",
                )
            quantity = int(item.get("quantity", 1))
            line_items.append({"price": price_id, "quantity": quantity})
            amount += price["unit_amount"] * quantity
            currency = price["currency"]
        customer = params.get("customer")
        if customer:
            self.get(account, "customer", customer)
        now = self.state.now()
        session_id = new_id("cs_test_", 58)
        session = {
            "id": session_id,
            "object": "checkout.session",
            "adaptive_pricing": None,
            "after_expiration": None,
            "allow_promotion_codes": None,
            "allowed_payment_method_types": None,
            "amount_subtotal": None if mode == "setup" else amount,
            "amount_total": None if mode == "setup" else amount,
            "automatic_tax": {"enabled": False, "liability": None, "provider": None, "status": None},
            "billing_address_collection": None,
            "cancel_url": params.get("cancel_url"),
            "client_reference_id": params.get("client_reference_id"),
            "client_secret": None,
            "collected_information": None,
            "consent": None,
            "consent_collection": None,
            "created": now,
            "currency": currency,
            "currency_conversion": None,
            "custom_fields": [],
            "custom_text": {
                "after_submit": None,
                "shipping_address": None,
                "submit": None,
                "terms_of_service_acceptance": None,
            },
            "customer": customer,
            "customer_account": None,
            "customer_creation": None if customer else ("always" if mode == "subscription" else "if_required"),
            "customer_details": None,
            "customer_email": params.get("customer_email"),
            "discounts": [],
            "expires_at": now + 24 * 3600,
            "integration_identifier": None,
            "invoice": None,
            "invoice_creation": None,
            "livemode": False,
            "locale": None,
            "managed_payments": None,
            "metadata": _merge_metadata({}, params.get("metadata")),
            "mode": mode,
            "origin_context": None,
            "payment_intent": None,
            "payment_link": None,
            "payment_method_collection": "always" if mode != "payment" else None,
            "payment_method_configuration_details": None,
            "payment_method_options": None,
            "payment_method_types": ["card"],
            "payment_status": "no_payment_required" if mode == "setup" else "unpaid",
            "permissions": None,
            "recovered_from": None,
            "saved_payment_method_options": None,
            "setup_intent": None,
            "shipping_address_collection": None,
            "shipping_cost": None,
            "shipping_options": [],
            "status": "open",
            "submit_type": None,
            "subscription": None,
            "success_url": params["success_url"],
            "total_details": None if mode == "setup" else {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
            "ui_mode": "hosted_page",
            "url": f"{base_url}/_emulator/stripe/checkout/{session_id}",
            "wallet_options": None,
            "_line_items": line_items,
            "_payment_intent_data": params.get("payment_intent_data"),
            "_subscription_metadata": _merge_metadata({}, (params.get("subscription_data") or {}).get("metadata")),
            "_subscription_data": {
                key: value
                for key, value in (params.get("subscription_data") or {}).items()
                if key in ("trial_period_days", "trial_end", "description")
            },
        }
        self.state.save(account, session)
        return public(session)

    def complete_checkout_session(
        self,
        account: str | None,
        session_id: str,
        payment_method: str | None = None,
        expected_amount: int | None = None,
    ) -> dict[str, Any]:
        """Stand in for the customer paying (the hosted page's button, or the Stripe CLI's `payment_pages`
        confirm with a test card): customer + subscription (or payment), and their events."""
        account = account or self.state.scope_of(session_id)
        session = self.state.load(session_id, account, "checkout.session") if account else None
        if session is None or account is None:
            raise no_such("checkout.session", session_id)
        if session["status"] != "open":
            raise StripeAPIError(400, "This Checkout Session is no longer active.", code="checkout_session_inactive")
        if expected_amount is not None and expected_amount != session["amount_total"]:
            raise StripeAPIError(
                400,
                f"The expected amount ({expected_amount}) does not match the session's ({session['amount_total']}).",
                param="expected_amount",
            )
        payment_method = payment_method or "pm_card_visa"  # the hosted page's card, unless the caller names one
        method = self.payment_method(account, payment_method)
        declined = card_error(method.get("_test_id", method["id"]))
        if declined is not None:
            raise declined
        if session["customer"] is None:
            customer = self.create_customer(account, {"email": session.get("customer_email")})
            session["customer"] = customer["id"]
        buyer = self.get(account, "customer", session["customer"])
        session["customer_details"] = {
            "address": buyer.get("address"),
            "business_name": None,
            "email": buyer.get("email"),
            "individual_name": None,
            "name": buyer.get("name"),
            "phone": buyer.get("phone"),
            "tax_exempt": "none",
            "tax_ids": [],
        }
        if session["mode"] != "subscription":  # a one-time payment, or a card saved for later: no subscription
            if session["mode"] == "payment":
                session.update(status="complete", payment_status="paid", payment_intent=new_id("pi_", 24))
            else:
                session.update(status="complete", setup_intent=new_id("seti_", 24))
            self.state.save(account, session)
            self.emit(account, "checkout.session.completed", public(session))
            return public(session)
        prices = [(self.get(account, "price", item["price"]), item["quantity"]) for item in session["_line_items"]]
        subscription = self._start_subscription(
            account,
            self.get(account, "customer", session["customer"]),
            prices,
            session["_subscription_metadata"],
            payment_method=payment_method,
            trial_end=self._trial_end(session.get("_subscription_data") or {}, prices),
            description=(session.get("_subscription_data") or {}).get("description"),
        )
        session.update(status="complete", payment_status="paid", subscription=subscription["id"])
        self.state.save(account, session)
        self.emit(account, "checkout.session.completed", public(session))
        return public(session)

    def expire_checkout_session(self, account: str, session_id: str) -> dict[str, Any]:
        session = self.get(account, "checkout.session", session_id)
        if session["status"] != "open":
            raise StripeAPIError(
                400, f"Only Checkout Sessions with a status of `open` can be expired. This one is {session['status']}."
            )
        session.update(status="expired", url=None)
        self.state.save(account, session)
        self.emit(account, "checkout.session.expired", public(session))
        return public(session)

    def create_subscription(self, account: str, params: dict[str, Any]) -> dict[str, Any]:
        """POST /v1/subscriptions: charged at once to the customer's default card (a declining test card leaves
        the subscription `incomplete` with an open invoice, as Stripe's `allow_incomplete` does)."""
        if not params.get("customer"):
            raise missing_param("customer")
        customer = self.get(account, "customer", str(params["customer"]), label="customer")
        raw = params.get("items")
        if not isinstance(raw, list) or not raw:
            raise missing_param("items")
        behavior = params.get("payment_behavior", "allow_incomplete")
        if behavior not in ("allow_incomplete", "default_incomplete", "error_if_incomplete", "pending_if_incomplete"):
            raise StripeAPIError(400, f"Invalid payment_behavior: {str(behavior)[:32]}", param="payment_behavior")
        prices = []
        for index, item in enumerate(raw):
            if not isinstance(item, dict) or not item.get("price"):
                raise missing_param(f"items[{index}][price]")
            price = self.state.load(str(item["price"]), account, "price")
            if price is None:
                raise no_such("price", str(item["price"]), f"items[{index}][price]")
            if price["type"] != "recurring":
                raise StripeAPIError(
                    400,
                    "The price specified is set to `type=one_time` but this field only accepts prices with "
                    "`type=recurring`.",
                    param=f"items[{index}][price]",
                )
            prices.append((price, as_int(item, "quantity", minimum=1) or 1))
        method = params.get("default_payment_method")
        if method:
            self.payment_method(account, str(method), "default_payment_method")
        trial_end = self._trial_end(params, prices)
        if behavior == "error_if_incomplete" and trial_end is None:
            problem = self._charge_error(account, customer, method)
            if problem is not None:
                raise problem
        subscription = self._start_subscription(
            account,
            customer,
            prices,
            _merge_metadata({}, params.get("metadata")),
            payment_method=method or None,
            description=params.get("description"),
            trial_end=trial_end,
            charge=behavior != "default_incomplete",
        )
        store_plain(
            subscription,
            params,
            "POST /v1/subscriptions",
            {
                "customer",
                "items",
                "metadata",
                "default_payment_method",
                "description",
                "payment_behavior",
                "trial_end",
                "trial_period_days",
                "cancel_at",
                "cancel_at_period_end",
            },
        )
        self._cancel_fields(subscription, params)
        self.state.save(account, subscription)
        return subscription

    def _trial_end(self, params: dict[str, Any], prices: builtins.list[tuple[dict[str, Any], int]]) -> int | None:
        """When a trial asked for ends: `trial_end` (a time, or "now": none), else `trial_period_days`, else
        `trial_from_plan` with the price's own trial days."""
        now = self.state.now()
        if params.get("trial_end") not in (None, ""):
            if params["trial_end"] == "now":
                return None
            end = as_int(params, "trial_end")
            if end is None or end <= now:
                raise StripeAPIError(
                    400, "Invalid timestamp: must be an integer Unix timestamp in the future.", param="trial_end"
                )
            return end
        days = as_int(params, "trial_period_days", minimum=0)
        if days is None and _as_bool(params.get("trial_from_plan", False)):
            days = max(((p["recurring"] or {}).get("trial_period_days") or 0 for p, _ in prices), default=0)
        return now + days * 86400 if days else None

    def _cancel_fields(self, subscription: dict[str, Any], params: dict[str, Any]) -> None:
        """`cancel_at_period_end` and `cancel_at` (a time, or the period's end), and `cancellation_details`."""
        period_end = max(item["current_period_end"] for item in subscription["items"]["data"])
        if "cancel_at_period_end" in params:
            on = _as_bool(params["cancel_at_period_end"])
            subscription["cancel_at_period_end"] = on
            subscription["cancel_at"] = period_end if on else None
        if params.get("cancel_at") not in (None,):
            value = params["cancel_at"]
            if value == "":
                subscription.update(cancel_at=None, cancel_at_period_end=False)
            else:
                at = period_end if value in ("min_period_end", "max_period_end") else as_int(params, "cancel_at")
                subscription.update(cancel_at=at, cancel_at_period_end=False)
        details = params.get("cancellation_details")
        if isinstance(details, dict):
            for key in ("comment", "feedback"):
                if key in details:
                    subscription["cancellation_details"][key] = details[key] or None

    def _start_subscription(
        self,
        account: str,
        customer: dict[str, Any],
        prices: builtins.list[tuple[dict[str, Any], int]],
        metadata: dict[str, str],
        *,
        payment_method: str | None = None,
        description: str | None = None,
        trial_end: int | None = None,
        charge: bool = True,
    ) -> dict[str, Any]:
        """A new subscription and its first invoice, charged now, with the events Stripe sends in causal order:
        customer.subscription.created, invoice.created, invoice.finalized, then invoice.paid and
        invoice.payment_succeeded (or invoice.payment_failed, the subscription left `incomplete`). With a trial the
        subscription is `trialing` until `trial_end` and its first invoice is for 0; `charge=False`
        (payment_behavior=default_incomplete) leaves it `incomplete` with an open invoice awaiting payment, and a
        customer with no payment method to charge does too."""
        now = self.state.now()
        subscription_id = new_id("sub_", 24)
        items = [subscription_item(price, quantity, subscription_id, now) for price, quantity in prices]
        if trial_end is not None:
            for item in items:
                item["current_period_end"] = trial_end
        no_method = self._method_of(customer, payment_method) is None
        paid = trial_end is not None or (charge and self._charge_succeeds(account, customer, payment_method))
        attempt = trial_end is None and charge and not no_method
        subscription = {
            "id": subscription_id,
            "object": "subscription",
            "application": None,
            "application_fee_percent": None,
            "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
            "billing_cycle_anchor": now,
            "billing_cycle_anchor_config": None,
            "billing_mode": {"flexible": None, "type": "classic"},
            "billing_schedules": [],
            "billing_thresholds": None,
            "cancel_at": None,
            "cancel_at_period_end": False,
            "canceled_at": None,
            "cancellation_details": {"comment": None, "feedback": None, "reason": None},
            "collection_method": "charge_automatically",
            "created": now,
            "currency": prices[0][0]["currency"] if prices else None,
            "customer": customer["id"],
            "customer_account": None,
            "days_until_due": None,
            "default_payment_method": payment_method,
            "default_source": None,
            "default_tax_rates": [],
            "description": description,
            "discounts": [],
            "ended_at": None,
            "invoice_settings": {"account_tax_ids": None, "issuer": {"type": "self"}},
            # Since API version 2025-03-31 the billing period lives on each item, not on the subscription.
            "items": {
                "object": "list",
                "data": items,
                "has_more": False,
                "url": f"/v1/subscription_items?subscription={subscription_id}",
            },
            "latest_invoice": None,
            "livemode": False,
            "managed_payments": None,
            "metadata": metadata,
            "next_pending_invoice_item_invoice": None,
            "on_behalf_of": None,
            "pause_collection": None,
            "payment_settings": {
                "payment_method_options": None,
                "payment_method_types": None,
                "save_default_payment_method": "off",
            },
            "pending_invoice_item_interval": None,
            "pending_setup_intent": None,
            "pending_update": None,
            "schedule": None,
            "start_date": now,
            "status": "trialing" if trial_end is not None else "active" if paid else "incomplete",
            "test_clock": None,
            "transfer_data": None,
            "trial_end": trial_end,
            "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
            "trial_start": now if trial_end is not None else None,
        }
        if trial_end is not None:
            subscription["billing_cycle_anchor"] = trial_end
        subscription["latest_invoice"] = invoice_id = new_id("in_", 24)
        self.state.save(account, subscription)
        self.emit(account, "customer.subscription.created", subscription)
        invoice = self._invoice(
            account, customer, subscription, "subscription_create", invoice_id, trial=trial_end is not None
        )
        if paid or attempt:
            self._settle_invoice(account, invoice, paid)
        if trial_end is not None and trial_end - now <= 3 * 86400:  # Stripe tells three days ahead, or at once
            self.emit(account, "customer.subscription.trial_will_end", subscription)
        return subscription

    def _invoice(
        self,
        account: str,
        customer: dict[str, Any],
        subscription: dict[str, Any],
        reason: str,
        invoice_id: str,
        *,
        trial: bool = False,
    ) -> dict[str, Any]:
        """A subscription's invoice, finalized: `invoice.created` and `invoice.finalized` are emitted. A trial's
        first invoice is for 0 ("Trial period for ...")."""
        lines = [
            _line(
                invoice_id,
                0 if trial else item["price"]["unit_amount"] * item["quantity"],
                item["price"]["currency"],
                (
                    f"Trial period for {item['price'].get('nickname') or item['price']['product']}"
                    if trial
                    else f"{item['quantity']} × {item['price'].get('nickname') or item['price']['product']}"
                ),
                {
                    "invoice_item_details": None,
                    "subscription_item_details": {
                        "invoice_item": None,
                        "proration": False,
                        "proration_details": {"credited_items": None},
                        "subscription": subscription["id"],
                        "subscription_item": item["id"],
                    },
                    "type": "subscription_item_details",
                },
                {"end": item["current_period_end"], "start": item["current_period_start"]},
                item["quantity"],
                item["price"],
            )
            for item in subscription["items"]["data"]
        ]
        parent = {
            "quote_details": None,
            "subscription_details": {"metadata": subscription["metadata"], "subscription": subscription["id"]},
            "type": "subscription_details",
        }
        invoice = self._draft_invoice(
            account,
            customer,
            invoice_id,
            lines,
            reason,
            currency=subscription["currency"],
            parent=parent,
            default_payment_method=subscription.get("default_payment_method"),
        )
        invoice["_subscription"] = subscription["id"]  # the list filter `subscription=` reads it
        return self._finalize_invoice(account, invoice)

    def _draft_invoice(
        self,
        account: str,
        customer: dict[str, Any],
        invoice_id: str,
        lines: builtins.list[dict[str, Any]],
        reason: str,
        *,
        currency: str | None,
        parent: dict[str, Any] | None = None,
        default_payment_method: str | None = None,
        description: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """A draft invoice at 2026-10-28.endive (lines priced by `pricing`, its origin under `parent`); emits
        `invoice.created`."""
        now = self.state.now()
        total = sum(line["amount"] for line in lines)
        sequence = customer.get("next_invoice_sequence", 1)
        customer["next_invoice_sequence"] = sequence + 1
        self.state.save(account, customer)
        invoice = {
            "id": invoice_id,
            "object": "invoice",
            "account_country": "US",
            "account_name": None,
            "account_tax_ids": None,
            "amount_due": total,
            "amount_overpaid": 0,
            "amount_paid": 0,
            "amount_remaining": total,
            "amount_shipping": 0,
            "application": None,
            "attempt_count": 0,
            "attempted": False,
            "auto_advance": True,
            "automatic_tax": {
                "disabled_reason": None,
                "enabled": False,
                "liability": None,
                "provider": None,
                "status": None,
            },
            "automatically_finalizes_at": None,
            "billing_reason": reason,
            "collection_method": "charge_automatically",
            "confirmation_secret": None,
            "created": now,
            "currency": currency,
            "custom_fields": None,
            "customer": customer["id"],
            "customer_account": None,
            "customer_address": customer.get("address"),
            "customer_email": customer.get("email"),
            "customer_name": customer.get("name"),
            "customer_phone": customer.get("phone"),
            "customer_shipping": customer.get("shipping"),
            "customer_tax_exempt": customer.get("tax_exempt", "none"),
            "customer_tax_ids": [],
            "default_payment_method": default_payment_method,
            "default_source": None,
            "default_tax_rates": [],
            "description": description,
            "discounts": [],
            "due_date": None,
            "effective_at": None,
            "ending_balance": None,
            "footer": None,
            "from_invoice": None,
            "hosted_invoice_url": None,
            "invoice_pdf": None,
            "issuer": {"type": "self"},
            "last_finalization_error": None,
            "latest_revision": None,
            "lines": {"object": "list", "data": lines, "has_more": False, "url": f"/v1/invoices/{invoice_id}/lines"},
            "livemode": False,
            "metadata": metadata or {},
            "next_payment_attempt": None,
            "number": None,
            "on_behalf_of": None,
            "parent": parent,
            "payment_settings": {"default_mandate": None, "payment_method_options": None, "payment_method_types": None},
            "period_end": now,
            "period_start": now,
            "post_payment_credit_notes_amount": 0,
            "pre_payment_credit_notes_amount": 0,
            "receipt_number": None,
            "rendering": None,
            "shipping_cost": None,
            "shipping_details": None,
            "starting_balance": 0,
            "statement_descriptor": None,
            "status": "draft",
            "status_transitions": {
                "finalized_at": None,
                "marked_uncollectible_at": None,
                "paid_at": None,
                "voided_at": None,
            },
            "subtotal": total,
            "subtotal_excluding_tax": total,
            "test_clock": None,
            "total": total,
            "total_discount_amounts": [],
            "total_excluding_tax": total,
            "total_pretax_credit_amounts": [],
            "total_taxes": [],
            "webhooks_delivered_at": None,
        }
        invoice["_sequence"] = sequence
        self.state.save(account, invoice)
        self.emit(account, "invoice.created", public(json.loads(json.dumps(invoice))))
        return invoice

    def _finalize_invoice(self, account: str, invoice: dict[str, Any]) -> dict[str, Any]:
        """Draft -> open, numbered, with its hosted page; emits `invoice.finalized`."""
        now, invoice_id = self.state.now(), invoice["id"]
        customer = self.get(account, "customer", invoice["customer"])
        sequence = invoice["_sequence"]
        invoice.update(
            status="open",
            number=f"{customer.get('invoice_prefix', 'DREAM')}-{sequence:04d}",
            effective_at=now,
            ending_balance=0,
            hosted_invoice_url=f"https://invoice.stripe.com/i/{account}/{invoice_id}",
            invoice_pdf=f"https://pay.stripe.com/invoice/{account}/{invoice_id}/pdf",
        )
        invoice["status_transitions"]["finalized_at"] = now
        self.state.save(account, invoice)
        self.emit(account, "invoice.finalized", public(json.loads(json.dumps(invoice))))
        return invoice

    # Invoice items and one-off invoices (what the Stripe CLI's invoice triggers make)

    def create_invoice_item(self, account: str, params: dict[str, Any]) -> dict[str, Any]:
        if not params.get("customer"):
            raise missing_param("customer")
        customer = self.get(account, "customer", str(params["customer"]), label="customer")
        price = None
        if params.get("price") or params.get("pricing"):
            price_id = params.get("price") or (params.get("pricing") or {}).get("price")
            price = self.get(account, "price", str(price_id))
            quantity = as_int(params, "quantity", minimum=1) or 1
            amount, currency = price["unit_amount"] * quantity, price["currency"]
        else:
            amount = as_int(params, "amount", required=True) or 0
            currency, quantity = currency_of(params), 1
        now = self.state.now()
        item = {
            "id": new_id("ii_", 24),
            "object": "invoiceitem",
            "amount": amount,
            "currency": currency,
            "customer": customer["id"],
            "date": now,
            "description": params.get("description"),
            "discountable": True,
            "discounts": [],
            "invoice": None,
            "livemode": False,
            "metadata": _merge_metadata({}, params.get("metadata")),
            "parent": None,
            "period": {"end": now, "start": now},
            "pricing": _pricing(price),
            "proration": False,
            "quantity": quantity,
            "tax_rates": [],
            "test_clock": None,
            "_price": price,
        }
        self.state.save(account, item)
        self.emit(account, "invoiceitem.created", public(item))
        return public(item)

    def create_invoice(self, account: str, params: dict[str, Any]) -> dict[str, Any]:
        """A one-off draft invoice, holding the customer's pending invoice items unless told to exclude them."""
        if not params.get("customer"):
            raise missing_param("customer")
        customer = self.get(account, "customer", str(params["customer"]), label="customer")
        behavior = params.get("pending_invoice_items_behavior", "exclude")
        if behavior not in ("include", "exclude"):
            raise StripeAPIError(400, "Invalid pending_invoice_items_behavior", param="pending_invoice_items_behavior")
        if params.get("collection_method", "charge_automatically") != "charge_automatically":
            raise StripeAPIError(
                400, "Only collection_method=charge_automatically is emulated.", param="collection_method"
            )
        invoice_id = new_id("in_", 24)
        items = (
            [
                i
                for i in self.state.find(account, "invoiceitem", newest_first=False)
                if i["customer"] == customer["id"] and i["invoice"] is None
            ]
            if behavior == "include"
            else []
        )
        lines = []
        for item in items:
            parent = {
                "invoice_item_details": {
                    "invoice_item": item["id"],
                    "proration": False,
                    "proration_details": {"credited_items": None},
                    "subscription": None,
                },
                "subscription_item_details": None,
                "type": "invoice_item_details",
            }
            lines.append(
                _line(
                    invoice_id,
                    item["amount"],
                    item["currency"],
                    item["description"],
                    parent,
                    item["period"],
                    item["quantity"],
                    item["_price"],
                )
            )
            item["invoice"] = invoice_id
            self.state.save(account, item)
        currency = (
            items[0]["currency"] if items else (str(params["currency"]).lower() if params.get("currency") else "usd")
        )
        invoice = self._draft_invoice(
            account,
            customer,
            invoice_id,
            lines,
            "manual",
            currency=currency,
            default_payment_method=params.get("default_payment_method"),
            description=params.get("description"),
            metadata=_merge_metadata({}, params.get("metadata")),
        )
        invoice["auto_advance"] = _as_bool(params.get("auto_advance", False))
        self.state.save(account, invoice)
        return public(invoice)

    def finalize_invoice(self, account: str, invoice_id: str) -> dict[str, Any]:
        invoice = self.get(account, "invoice", invoice_id)
        if invoice["status"] != "draft":
            raise StripeAPIError(400, "This invoice is already finalized, you can't re-finalize a non-draft invoice.")
        return public(self._finalize_invoice(account, invoice))

    def pay_invoice(self, account: str, invoice_id: str, params: dict[str, Any]) -> dict[str, Any]:
        """Charge an invoice now (finalizing a draft first); a declining card answers 402 `card_error`, as Stripe
        does, after `invoice.payment_failed`."""
        invoice = self.get(account, "invoice", invoice_id)
        if invoice["status"] == "paid":
            raise StripeAPIError(400, "Invoice is already paid", code="invoice_already_paid")
        if invoice["status"] not in ("draft", "open"):
            raise StripeAPIError(400, f"You cannot pay an invoice that is {invoice['status']}.")
        if invoice["status"] == "draft":
            invoice = self._finalize_invoice(account, invoice)
        customer = self.get(account, "customer", invoice["customer"])
        method = params.get("payment_method") or invoice.get("default_payment_method")
        problem = self._charge_error(account, customer, str(method) if method else None)
        self._settle_invoice(account, invoice, problem is None)
        if problem is not None:
            raise problem
        return public(invoice)

    def _settle_invoice(self, account: str, invoice: dict[str, Any], paid: bool) -> None:
        """An attempt to charge an open invoice, and its events."""
        now = self.state.now()
        invoice.update(attempted=True, attempt_count=invoice["attempt_count"] + 1)
        if paid:
            invoice.update(status="paid", amount_paid=invoice["amount_due"], amount_remaining=0, auto_advance=False)
            invoice["status_transitions"]["paid_at"] = now
            self.state.save(account, invoice)
            self.emit(account, "invoice.paid", public(invoice))
            self.emit(account, "invoice.payment_succeeded", public(invoice))
        else:
            invoice["next_payment_attempt"] = now + 3 * 24 * 3600
            self.state.save(account, invoice)
            self.emit(account, "invoice.payment_failed", public(invoice))

    def update_subscription(self, account: str, subscription_id: str, params: dict[str, Any]) -> dict[str, Any]:
        subscription = self.get(account, "subscription", subscription_id)
        if subscription["status"] == "canceled" and set(params) - {"cancellation_details", "metadata", "expand"}:
            raise StripeAPIError(400, "A canceled subscription can only update its cancellation_details and metadata.")
        previous: dict[str, Any] = {}
        for index, change in enumerate(params.get("items") or []):
            if not isinstance(change, dict) or not change.get("price"):
                raise missing_param(f"items[{index}][price]")
            price = self.state.load(change["price"], account, "price")
            if price is None:
                raise no_such("price", change["price"], f"items[{index}][price]")
            previous.setdefault("items", json.loads(json.dumps(subscription["items"])))
            if not change.get("id"):  # as Stripe does: an item without an id is a new item, billed besides the others
                quantity = as_int(change, "quantity", minimum=1) or 1
                item = subscription_item(price, quantity, subscription["id"], self.state.now())
                subscription["items"]["data"].append(item)
                continue
            target = next((i for i in subscription["items"]["data"] if i["id"] == change["id"]), None)
            if target is None:
                raise no_such("subscription_item", change["id"], f"items[{index}][id]")
            target["price"] = price
        if "metadata" in params:
            previous["metadata"] = subscription["metadata"]
            subscription["metadata"] = _merge_metadata(subscription["metadata"], params["metadata"])
        for key in ("cancel_at_period_end", "cancel_at", "cancellation_details"):
            if key in params:
                previous[key] = json.loads(json.dumps(subscription[key]))
        self._cancel_fields(subscription, params)
        if "default_payment_method" in params and params["default_payment_method"]:
            previous["default_payment_method"] = subscription["default_payment_method"]
            method = self.payment_method(account, str(params["default_payment_method"]), "default_payment_method")
            subscription["default_payment_method"] = method["id"]
        if params.get("trial_end") == "now" and subscription["status"] == "trialing":
            previous["status"] = subscription["status"]
            subscription.update(status="active", trial_end=self.state.now())
        store_plain(
            subscription,
            params,
            "POST /v1/subscriptions/{id}",
            {
                "items",
                "metadata",
                "cancel_at_period_end",
                "cancel_at",
                "cancellation_details",
                "default_payment_method",
                "trial_end",
                "proration_behavior",
                "payment_behavior",
            },
        )
        self.state.save(account, subscription)
        self.emit(account, "customer.subscription.updated", subscription, previous)
        return subscription

    def cancel_subscription(self, account: str, subscription_id: str) -> dict[str, Any]:
        subscription = self.get(account, "subscription", subscription_id)
        if subscription["status"] == "canceled":
            raise StripeAPIError(
                400, f"No such subscription: '{subscription_id}'; it was canceled.", code="resource_missing"
            )
        now = self.state.now()
        subscription.update(status="canceled", canceled_at=now, ended_at=now)
        self.state.save(account, subscription)
        self.emit(account, "customer.subscription.deleted", subscription)
        return subscription

    # Webhooks and events

    def create_webhook_endpoint(self, account: str, params: dict[str, Any]) -> dict[str, Any]:
        if not params.get("url"):
            raise missing_param("url")
        events = params.get("enabled_events")
        if not events:
            raise missing_param("enabled_events")
        _check_event_types(events)
        endpoint = {
            "id": new_id("we_", 24),
            "object": "webhook_endpoint",
            "api_version": params.get("api_version"),
            "application": None,
            "created": self.state.now(),
            "description": params.get("description"),
            "enabled_events": list(events),
            "livemode": False,
            "metadata": _merge_metadata({}, params.get("metadata")),
            "status": "enabled",
            "url": params["url"],
            "_connect": _as_bool(params.get("connect", False)),
            "_secret": "whsec_" + secrets.token_hex(24),
        }
        self.state.save(account, endpoint)
        shown = public(endpoint)
        shown["secret"] = endpoint["_secret"]  # only on creation, as Stripe does
        return shown

    def listen_secret(self) -> str:
        """The platform's `dream stripe listen` signing secret (made once)."""
        account = self._platform["id"]
        known = self.state.keys_of(account, "listen_secret")
        return known[0] if known else self.state.issue_key("whsec_" + secrets.token_hex(32), account, "listen_secret")

    def add_listener(self, url: str, events: builtins.list[str], lane: str) -> tuple[str, builtins.list[str]]:
        """Endpoints for `dream stripe listen`: the platform's events and its connected accounts', delivered only
        by the listener's own lane and signed with the platform's listen secret, the same on every run (as the
        Stripe CLI's is, so a receiver configured once keeps working). Returns (secret, endpoint ids)."""
        account, secret = self._platform["id"], self.listen_secret()
        ids = []
        for connect in (False, True):
            made = self.create_webhook_endpoint(
                account,
                {"url": url, "enabled_events": events, "connect": connect, "description": "dream stripe listen"},
            )
            endpoint = self.get(account, "webhook_endpoint", made["id"])
            endpoint.update(_secret=secret, _lane=lane)
            self.state.save(account, endpoint)
            ids.append(made["id"])
        return secret, ids

    def ensure_webhook_endpoint(self, url: str, events: builtins.list[str], *, connect: bool = False) -> str:
        """The platform's endpoint for `url` (made once; `connect` for its connected accounts' events);
        returns its signing secret."""
        account = self._platform["id"]
        for endpoint in self.state.find(account, "webhook_endpoint"):
            if endpoint["url"] == url and endpoint["_connect"] == connect:
                return endpoint["_secret"]
        return self.create_webhook_endpoint(account, {"url": url, "enabled_events": events, "connect": connect})[
            "secret"
        ]

    def update_webhook_endpoint(self, account: str, endpoint_id: str, params: dict[str, Any]) -> dict[str, Any]:
        endpoint = self.get(account, "webhook_endpoint", endpoint_id)
        if "url" in params:
            if not params["url"]:
                raise missing_param("url")
            endpoint["url"] = params["url"]
        if params.get("enabled_events"):
            _check_event_types(params["enabled_events"])
            endpoint["enabled_events"] = list(params["enabled_events"])
        if "description" in params:
            endpoint["description"] = params["description"] or None
        if "metadata" in params:
            endpoint["metadata"] = _merge_metadata(endpoint["metadata"], params["metadata"])
        if "disabled" in params:
            endpoint["status"] = "disabled" if _as_bool(params["disabled"]) else "enabled"
        self.state.save(account, endpoint)
        return public(endpoint)

    def delete_product(self, account: str, product_id: str) -> dict[str, Any]:
        """As Stripe: a product with prices cannot be deleted (archive it with active=false)."""
        self.get(account, "product", product_id)
        if any(price.get("product") == product_id for price in self.state.find(account, "price")):
            raise StripeAPIError(
                400, "This product cannot be deleted because it has one or more user-created prices.", param="id"
            )
        self.state.delete(product_id)
        return {"id": product_id, "object": "product", "deleted": True}

    def delete_webhook_endpoint(self, account: str, endpoint_id: str) -> dict[str, Any]:
        self.get(account, "webhook_endpoint", endpoint_id)
        self.state.delete(endpoint_id)
        return {"id": endpoint_id, "object": "webhook_endpoint", "deleted": True}

    def emit(
        self, account: str, event_type: str, obj: dict[str, Any], previous: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Record an event and queue it for every enabled endpoint that wants it: the account's own endpoints, and
        for a connected account's event the platform's Connect endpoints. Delivery happens later, elsewhere."""
        event: dict[str, Any] = {
            "id": new_id("evt_", 24),
            "object": "event",
            "api_version": API_VERSION,
            "created": self.state.now(),
            "data": {"object": obj},
            "livemode": False,
            "pending_webhooks": 0,
            "request": dict(CURRENT_REQUEST.get() or {"id": None, "idempotency_key": None}),
            "type": event_type,
        }
        if previous:
            event["data"]["previous_attributes"] = previous
        connected = account != self._platform["id"]
        if connected:
            event["account"] = account
        targets = [e for e in self.state.find(account, "webhook_endpoint", newest_first=False) if not e["_connect"]]
        if connected:
            targets += [
                e
                for e in self.state.find(self._platform["id"], "webhook_endpoint", newest_first=False)
                if e["_connect"]
            ]
        targets = [
            e
            for e in targets
            if e["status"] == "enabled" and ("*" in e["enabled_events"] or event_type in e["enabled_events"])
        ]
        event["pending_webhooks"] = len(targets)
        body = json.dumps(event, indent=2).encode()
        with self.state.file.write() as conn:
            self.state.save(account, event, conn)
            for endpoint in targets:
                self.outbox.enqueue("stripe", event["id"], event_type, endpoint, body, conn)
        self.outbox.wake()
        return event

    def sign(self, message: Message, timestamp: int) -> dict[str, str] | None:
        """The headers of one delivery attempt, signed with the endpoint's current secret; None when the endpoint
        is gone or disabled (Stripe stops retrying then)."""
        account = self.state.scope_of(message.endpoint_id)
        endpoint = self.state.load(message.endpoint_id, account, "webhook_endpoint") if account else None
        if endpoint is None or endpoint["status"] != "enabled":
            return None
        return {
            "Content-Type": "application/json; charset=utf-8",
            "Stripe-Signature": sign_payload(message.body, endpoint["_secret"], timestamp),
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        }


def _redact(key: str) -> str:
    return f"{key[:8]}{'*' * 12}{key[-4:]}" if len(key) > 12 else "*" * len(key)
