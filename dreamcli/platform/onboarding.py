"""The onboarding flow of the guide, phases 1-5: what front-auth-api and oauth-api do, over the store
and vendor ports. Each function is one step; `dream flow` and the emulator's HTTP routes call them.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlparse

from dreamcli import layout
from dreamcli.errors import D1Error, DreamError, ExitCode, NotFound, StoreError, UsageError
from dreamcli.layout import KeyKind
from dreamcli.platform.developers import platform_of
from dreamcli.platform.keys import KeyIndexEntry
from dreamcli.platform.secrets import KeyPair, new_key_pair, new_platform_id
from dreamcli.platform.tiers import Tier, tier_json
from dreamcli.stores.ports import KVWrite, Store, iter_keys
from dreamcli.topology import API_TOKENS, PLATFORM_TOKENS
from dreamcli.vendors.settings import DREAM_API, Vendors

OAUTH_STATE_TTL = 600  # the guide's 10 minutes
PLATFORM_PLAN_CENTS = 1500  # $15/month
PLATFORM_PRICE_TAG = {"dream": "platform-subscription"}
DEFAULT_REDIRECT_URI = "http://localhost:8789/callback"  # oauth-api's /callback on the guide's port
DEFAULT_SUCCESS_URL = "http://localhost:5173/dashboard?paid=1"


class OutOfOrder(UsageError):
    """A flow step asked for before the step it depends on."""


class TierInUse(UsageError):
    """A tier removed from the config while customers are still on it."""


class OAuthStateError(UsageError):
    """An OAuth callback whose state is unknown, used already or expired."""


class FlowFailed(DreamError):
    """A step that ran but did not reach the state the guide says it must."""

    exit_code = ExitCode.FAILED


# Where writes go, in the order they happen (the step table shows them; tests inject failures here).
AfterWrite = Callable[[str, str], None]


@dataclass
class Writes:
    after_write: AfterWrite | None = None
    done: list[str] = field(default_factory=list)

    def put(self, store: Store, namespace: str, key: str, value: str, *, ttl: int | None = None) -> None:
        store.kv(namespace).put(key, value, expiration_ttl=ttl)
        self.done.append(f"{namespace}: {key}")
        if self.after_write is not None:
            self.after_write(namespace, key)

    def delete(self, store: Store, namespace: str, key: str) -> None:
        store.kv(namespace).delete(key)
        self.done.append(f"{namespace}: -{key}")
        if self.after_write is not None:
            self.after_write(namespace, key)


def _text(store: Store, namespace: str, key: str) -> str | None:
    raw = store.kv(namespace).get(key)
    return None if raw is None else raw.decode("utf-8", errors="replace")


def _json(store: Store, namespace: str, key: str) -> Any:
    raw = _text(store, namespace, key)
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        raise FlowFailed(f"{key} in {namespace} is not JSON; run `dream kv verify`") from None


# Phase 1: signup


@dataclass(frozen=True)
class SignupResult:
    user_id: str
    platform_id: str
    new_platform: bool
    writes: list[str]


def signup(store: Store, vendors: Vendors, *, email: str | None = None, user_id: str | None = None) -> SignupResult:
    """A developer in Clerk's dream-api app, and the platform id both ways. Running it again changes nothing."""
    clerk = vendors.clerk[DREAM_API]
    if user_id is not None:
        user = clerk.get_user(user_id)
    else:
        if not email:
            raise UsageError("signup needs --email (a new developer) or --user (an existing Clerk user)")
        found = clerk.list_users(email=email, limit=1)
        user = found[0] if found else clerk.create_user(email, public_metadata={"plan": "free"})
    uid = user["id"]
    writes = Writes()
    with store.locked():  # two signups of one user at once make one platform; verify never sees a half
        existing = _text(store, PLATFORM_TOKENS, layout.user_platform_id(uid))
        if existing is not None:
            if _text(store, PLATFORM_TOKENS, layout.platform_user_id(existing)) is None:
                writes.put(store, PLATFORM_TOKENS, layout.platform_user_id(existing), uid)  # heal a half-done signup
            return SignupResult(uid, existing, False, writes.done)
        platform_id = new_platform_id()
        # Reverse mapping first: a crash between the two leaves an orphan, never a user pointing nowhere.
        writes.put(store, PLATFORM_TOKENS, layout.platform_user_id(platform_id), uid)
        writes.put(store, PLATFORM_TOKENS, layout.user_platform_id(uid), platform_id)
    return SignupResult(uid, platform_id, True, writes.done)


# Phase 2: payment


def platform_price_id(vendors: Vendors) -> str:
    """The $15/month price on the platform's own account (STRIPE_PRICE_ID in the guide); made once if absent."""
    stripe = vendors.stripe
    for price in stripe.list_prices(None):
        metadata = price.metadata.to_dict() if price.metadata else {}
        if metadata.get("dream") == PLATFORM_PRICE_TAG["dream"] and price.active:
            return price.id
    product = stripe.create_product(
        None, "dream-api platform", PLATFORM_PRICE_TAG, idempotency_key="dream-platform-product-v1"
    )
    price = stripe.create_monthly_price(
        None, product.id, PLATFORM_PLAN_CENTS, "usd", PLATFORM_PRICE_TAG, idempotency_key="dream-platform-price-v1"
    )
    return price.id


@dataclass(frozen=True)
class Checkout:
    session_id: str
    url: str
    user_id: str


def start_payment(store: Store, vendors: Vendors, user_id: str, *, success_url: str = DEFAULT_SUCCESS_URL) -> Checkout:
    platform_of(store, user_id)
    user = vendors.clerk[DREAM_API].get_user(user_id)
    email = next((e["email_address"] for e in user.get("email_addresses", [])), None)
    session = vendors.stripe.create_subscription_checkout(
        None,
        platform_price_id(vendors),
        success_url=success_url,
        customer_email=email,
        client_reference_id=user_id,
        metadata={"userId": user_id},
    )
    return Checkout(session.id, session.url, user_id)


def plan_of(vendors: Vendors, user_id: str) -> str:
    return (vendors.clerk[DREAM_API].get_user(user_id).get("public_metadata") or {}).get("plan") or "free"


def wait_for_plan(vendors: Vendors, user_id: str, plan: str, timeout: float = 15.0) -> str:
    """The developer's plan once it is `plan`, or whatever it is after `timeout` seconds: the webhook that sets it
    arrives after the checkout, in the background, as Stripe's do."""
    deadline = time.monotonic() + timeout
    pause = 0.01
    while (current := plan_of(vendors, user_id)) != plan and time.monotonic() < deadline:
        time.sleep(pause)
        pause = min(pause * 2, 0.25)
    return current


def handle_stripe_webhook(vendors: Vendors, payload: bytes, signature: str | None) -> str:
    """front-auth-api /webhook/stripe: a signed event on the platform's own account updates the plan."""
    secret = vendors.settings.stripe.webhook_secret
    if not secret:
        raise UsageError("no Stripe webhook secret configured (STRIPE_WEBHOOK_SECRET)")
    from dreamcli.vendors.stripe_gateway import StripeGateway

    event = StripeGateway.construct_event(payload, signature, secret, now=vendors.clock()).to_dict()
    if event.get("account"):
        return f"ignored {event['type']}: it belongs to connected account {event['account']}"
    obj = event["data"]["object"]
    clerk = vendors.clerk[DREAM_API]
    if event["type"] == "checkout.session.completed":
        if obj.get("payment_status", "paid") != "paid":  # a card saved (setup mode) or a payment still pending
            return f"ignored checkout.session.completed with payment_status {obj.get('payment_status')}"
        user_id = obj.get("client_reference_id") or (obj.get("metadata") or {}).get("userId")
        if not user_id:
            return "ignored checkout.session.completed without a user"
        clerk.update_metadata(user_id, public={"plan": "paid"})
        return f"{user_id} is on plan paid"
    if event["type"] == "customer.subscription.deleted":
        user_id = (obj.get("metadata") or {}).get("userId")
        if user_id:
            clerk.update_metadata(user_id, public={"plan": "free"})
            return f"{user_id} is back on plan free"
    return f"ignored {event['type']}"


# Phase 3: Stripe Connect OAuth


def connect_start(
    store: Store, vendors: Vendors, user_id: str, *, redirect_uri: str = DEFAULT_REDIRECT_URI, **authorize_extra: str
) -> tuple[str, str]:
    """oauth-api /authorize: refuse before payment; a random single-use state for 10 minutes."""
    platform_of(store, user_id)
    plan = plan_of(vendors, user_id)
    if plan != "paid":
        raise OutOfOrder(f"developer {user_id} is on plan {plan!r}: pay first (`dream flow pay`), then connect Stripe")
    state = secrets.token_urlsafe(32)
    store.kv(PLATFORM_TOKENS).put(layout.oauth_state(state), user_id, expiration_ttl=OAUTH_STATE_TTL)
    return vendors.stripe.authorize_url(state, redirect_uri, **authorize_extra), state


@dataclass(frozen=True)
class ConnectResult:
    user_id: str
    platform_id: str
    stripe_user_id: str
    writes: list[str]


def connect_callback(
    store: Store, vendors: Vendors, *, code: str | None, state: str | None, error: str | None = None
) -> ConnectResult:
    """oauth-api /callback: consume the state, exchange the code, store the token under user and platform."""
    if not state:
        raise OAuthStateError("OAuth callback without a state: refused (CSRF protection)")
    state_key = layout.oauth_state(state)
    tokens = store.kv(PLATFORM_TOKENS)
    user_id = _text(store, PLATFORM_TOKENS, state_key)
    if user_id is None:
        raise OAuthStateError("OAuth state is unknown, used already or expired: start again with `dream flow connect`")
    tokens.delete(state_key)  # single use, even when what follows fails
    if error:
        raise FlowFailed(f"Stripe Connect refused: {error}")
    if not code:
        raise OAuthStateError("OAuth callback without a code")
    platform_id = platform_of(store, user_id)
    account = vendors.stripe.exchange_code(code)
    token = json.dumps({"accessToken": account.access_token, "stripeUserId": account.stripe_user_id})
    writes = Writes()
    tokens.bulk_put(
        [
            KVWrite(layout.user_stripe_token(user_id), token),
            KVWrite(layout.platform_stripe_token(platform_id), token),
        ]
    )
    writes.done += [
        f"{PLATFORM_TOKENS}: {layout.user_stripe_token(user_id)}",
        f"{PLATFORM_TOKENS}: {layout.platform_stripe_token(platform_id)}",
    ]
    return ConnectResult(user_id, platform_id, account.stripe_user_id, writes.done)


# Phase 4: tiers -> products -> keys


@dataclass(frozen=True)
class TiersResult:
    user_id: str
    platform_id: str
    publishable_key: str
    secret_key: str | None  # only when the pair was created by this call: shown once
    products: list[dict[str, Any]]
    writes: list[str]
    archived: list[str]


def _idempotency(*parts: Any) -> str:
    return "dream-" + hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:40]


def customers_on_tier(store: Store, platform_id: str, tier: str) -> int | None:
    """How many customers are on `tier`; None when D1 cannot say now (locked, unreachable): unknown, never 0."""
    try:
        rows = store.database.execute(
            "SELECT count(*) AS n FROM customers WHERE platform_id = ? AND plan = ?", [platform_id, tier]
        ).results
    except D1Error as exc:
        if "no such table: customers" in str(exc):  # D1 not migrated yet: nobody can be on the tier
            return 0
        return None
    except StoreError:  # the database locked by another process for longer than the busy timeout
        return None
    return int(rows[0]["n"])


def _new_monthly_price(
    stripe: Any, account: str, platform_id: str, product_id: str, tier: Tier, metadata: dict[str, str]
) -> Any:
    """A tier's monthly price on the connected account, idempotent for the same product, amount and metadata."""
    key = _idempotency(platform_id, "price", product_id, tier.unit_amount, tier.currency, metadata)
    return stripe.create_monthly_price(
        account, product_id, tier.unit_amount, tier.currency, metadata, idempotency_key=key
    )


def plan_tiers(store: Store, vendors: Vendors, user_id: str, tiers: list[Tier]) -> list[dict[str, Any]]:
    """What `configure_tiers` would do, tier by tier, with only reads (Stripe's current prices included): `create`
    (a product and a monthly price), `reprice` (a new price, the old one retired: Stripe prices are immutable),
    `keep`, or `retire` (a tier no longer listed, with the customers on it); and whether a key pair is made."""
    platform_id = platform_of(store, user_id)
    token = _json(store, PLATFORM_TOKENS, layout.platform_stripe_token(platform_id))
    if not token or not token.get("stripeUserId"):
        raise OutOfOrder(f"developer {user_id} has not connected Stripe: run `dream flow connect` first")
    existing = {p["tier"]: p for p in (_json(store, PLATFORM_TOKENS, layout.user_products(user_id)) or [])}
    plan: list[dict[str, Any]] = []
    for tier in tiers:
        previous = existing.get(tier.name)
        if previous is None:
            plan.append(
                {"tier": tier.name, "action": "create", "unitAmount": tier.unit_amount, "currency": tier.currency}
            )
            continue
        price = vendors.stripe.retrieve_price(token["stripeUserId"], previous["priceId"])
        changed = price.unit_amount != tier.unit_amount or price.currency != tier.currency
        plan.append(
            {
                "tier": tier.name,
                "action": "reprice" if changed else "keep",
                "unitAmount": tier.unit_amount,
                "currency": tier.currency,
                "was": {"unitAmount": price.unit_amount, "currency": price.currency, "priceId": price.id},
            }
        )
    names = {tier.name for tier in tiers}
    for name in existing:
        if name not in names:
            plan.append({"tier": name, "action": "retire", "customers": customers_on_tier(store, platform_id, name)})
    if _text(store, PLATFORM_TOKENS, layout.user_publishable_key(user_id)) is None:
        plan.append({"tier": None, "action": "new key pair"})
    return plan


def configure_tiers(
    store: Store,
    vendors: Vendors,
    user_id: str,
    tiers: list[Tier],
    *,
    force: bool = False,
    mimic_plaintext_secret: bool = False,
    skip_api_replication: bool = False,
    after_write: AfterWrite | None = None,
    store_now: Callable[[], float] = time.time,
) -> TiersResult:
    """oauth-api /create-products: products and prices on the connected account, keys, and the guide's
    phase 4 (e)-(g) writes, ordered so that no secret authenticates before its tier config exists."""
    platform_id = platform_of(store, user_id)
    token = _json(store, PLATFORM_TOKENS, layout.platform_stripe_token(platform_id))
    if not token or not token.get("stripeUserId"):
        raise OutOfOrder(f"developer {user_id} has not connected Stripe: run `dream flow connect` first")
    account = token["stripeUserId"]
    existing = {p["tier"]: p for p in (_json(store, PLATFORM_TOKENS, layout.user_products(user_id)) or [])}
    names = {tier.name for tier in tiers}
    removed = [name for name in existing if name not in names]
    for name in removed:
        in_use = customers_on_tier(store, platform_id, name)
        if in_use is None and not force:
            raise TierInUse(
                f"tier {name!r} is removed, and D1 cannot say now whether customers are on it: try again, or pass --force"
            )
        if in_use and not force:
            raise TierInUse(f"tier {name!r} is removed but {in_use} customer(s) are on it: keep it, or pass --force")

    stripe = vendors.stripe
    products: list[dict[str, Any]] = []
    config: list[dict[str, Any]] = []
    for tier in tiers:
        metadata = {"platformId": platform_id, "tierName": tier.name, "limit": tier.limit_text}
        product_name = f"{tier.name.replace('-', ' ').replace('_', ' ').title()} Plan"
        previous = existing.get(tier.name)
        if previous is None:
            product = stripe.create_product(
                account,
                product_name,
                metadata,
                description=tier.features or None,
                idempotency_key=_idempotency(platform_id, "product", tier.name, metadata, tier.features),
            )
            price = _new_monthly_price(stripe, account, platform_id, product.id, tier, metadata)
        else:
            product = stripe.update_product(
                account,
                previous["productId"],
                name=product_name,
                metadata=metadata,
                description=tier.features or "",
                active=True,
            )
            price = stripe.retrieve_price(account, previous["priceId"])
            if price.unit_amount != tier.unit_amount or price.currency != tier.currency:
                # Stripe prices are immutable: a new one, and the old one retired.
                old_id = price.id
                price = _new_monthly_price(stripe, account, platform_id, product.id, tier, metadata)
                stripe.update_price(account, old_id, active=False)
            else:
                price = stripe.update_price(account, price.id, metadata=metadata)
        products.append({"tier": tier.name, "priceId": price.id, "productId": product.id})
        config.append(tier_json(tier, price.id, product.id))
    for name in removed:
        stripe.update_product(account, existing[name]["productId"], active=False)

    with store.locked():  # the pair's keys appear to verify all at once, and one pair for two runs at once
        publishable_key = _text(store, PLATFORM_TOKENS, layout.user_publishable_key(user_id))
        pair: KeyPair | None = None
        if publishable_key is None:
            pair = new_key_pair()
            publishable_key = pair.publishable_key

        writes = Writes(after_write)
        tier_config = json.dumps({"tiers": config})
        # 1. What an authenticated call needs, before anything that lets a call authenticate.
        if not skip_api_replication:
            writes.put(store, API_TOKENS, layout.tier_config(platform_id), tier_config)
        # 2. The developer's view (phase 4e).
        writes.put(store, PLATFORM_TOKENS, layout.user_products(user_id), json.dumps(products))
        writes.put(store, PLATFORM_TOKENS, layout.user_publishable_key(user_id), publishable_key)
        writes.put(store, PLATFORM_TOKENS, layout.publishable_key_platform(publishable_key), platform_id)
        if pair is not None:
            index = KeyIndexEntry.for_new_pair(pair, "production", store_now())
            writes.put(store, PLATFORM_TOKENS, layout.platform_key_index(platform_id, publishable_key), index.to_json())
            if mimic_plaintext_secret:
                writes.put(store, PLATFORM_TOKENS, layout.user_secret_key(user_id), pair.secret_key)
            writes.put(store, PLATFORM_TOKENS, layout.secret_key_publishable(pair.secret_hash), publishable_key)
        # 3. api-multi's copies (phase 4f): the secret's own mapping last, so it never leads nowhere.
        if not skip_api_replication:
            writes.put(store, API_TOKENS, layout.publishable_key_platform(publishable_key), platform_id)
            if pair is not None:
                writes.put(store, API_TOKENS, layout.secret_key_publishable(pair.secret_hash), publishable_key)
    # 4. Clerk metadata (phase 4g).
    vendors.clerk[DREAM_API].update_metadata(user_id, public={"publishableKey": publishable_key})
    return TiersResult(
        user_id, platform_id, publishable_key, pair.secret_key if pair else None, products, writes.done, removed
    )


def tier_configs_from_stripe(store: Store, vendors: Vendors) -> Callable[[str, str | None], str]:
    """`tier_config_from_stripe` for any (platform, developer) of this store: what repair and verify's Stripe check
    are handed."""
    return lambda platform_id, user_id: tier_config_from_stripe(store, vendors, platform_id, user_id)


def tier_config_from_stripe(store: Store, vendors: Vendors, platform_id: str, user_id: str | None = None) -> str:
    """`platform:{plt}:tierConfig` rebuilt from its source of truth: the products and prices on the
    developer's connected account (metadata tierName/limit, amount, currency, description)."""
    user_id = user_id or _text(store, PLATFORM_TOKENS, layout.platform_user_id(platform_id))
    if user_id is None:
        raise FlowFailed(f"{platform_id} has no platform:{platform_id}:userId: cannot find its products")
    products = _json(store, PLATFORM_TOKENS, layout.user_products(user_id))
    token = _json(store, PLATFORM_TOKENS, layout.platform_stripe_token(platform_id))
    if not products or not token:
        raise FlowFailed(
            f"{platform_id} has no products or no Stripe token in platform-tokens: re-run `dream flow tiers`"
        )
    config = []
    for entry in products:
        product = vendors.stripe.retrieve_product(token["stripeUserId"], entry["productId"])
        price = vendors.stripe.retrieve_price(token["stripeUserId"], entry["priceId"])
        metadata = price.metadata.to_dict() if price.metadata else {}
        limit_text = metadata.get("limit", "unlimited")
        cents = price.unit_amount or 0
        amount = cents // 100 if cents % 100 == 0 else cents / 100
        config.append(
            {
                "name": metadata.get("tierName", entry["tier"]),
                "limit": None if limit_text == "unlimited" else int(limit_text),
                "price": amount,
                "currency": price.currency,
                "priceId": price.id,
                "productId": product.id,
                "features": product.description or "",
            }
        )
    return json.dumps({"tiers": config})


# Phase 5 (the developer's view): credentials


def credentials(store: Store, user_id: str) -> dict[str, Any]:
    platform_id = platform_of(store, user_id)
    publishable_key = _text(store, PLATFORM_TOKENS, layout.user_publishable_key(user_id))
    if publishable_key is None:
        raise OutOfOrder(f"developer {user_id} has no keys yet: run `dream flow tiers` first")
    return {
        "userId": user_id,
        "platformId": platform_id,
        "publishableKey": publishable_key,
        "products": _json(store, PLATFORM_TOKENS, layout.user_products(user_id)) or [],
        "secretKey": None,
        "secretKeyNote": "shown once, when it was created; it is stored only as its SHA-256",
    }


# Where every developer is


PHASES = ("signup", "paid", "connected", "tiers", "keys", "replicated")


def developer_status(store: Store, vendors: Vendors | None, user_id: str, platform_id: str) -> dict[str, Any]:
    platform = store.kv(PLATFORM_TOKENS)
    api = store.kv(API_TOKENS)
    publishable_key = _text(store, PLATFORM_TOKENS, layout.user_publishable_key(user_id))
    plan = None
    if vendors is not None:
        try:
            plan = plan_of(vendors, user_id)
        except NotFound:
            plan = "unknown user"
    phases = {
        "signup": True,
        "paid": None if vendors is None else plan == "paid",
        "connected": platform.get(layout.platform_stripe_token(platform_id)) is not None,
        "tiers": platform.get(layout.user_products(user_id)) is not None,
        "keys": publishable_key is not None,
        "replicated": publishable_key is not None
        and api.get(layout.publishable_key_platform(publishable_key)) is not None
        and api.get(layout.tier_config(platform_id)) is not None,
    }
    next_step = next((name for name in PHASES if phases[name] is False), None)
    return {
        "userId": user_id,
        "platformId": platform_id,
        "plan": plan,
        "publishableKey": publishable_key,
        "phases": phases,
        "next": next_step,
    }


def status(store: Store, vendors: Vendors | None) -> list[dict[str, Any]]:
    """Every developer the store knows (from `user:{u}:platformId`), and how far each got."""
    rows = []
    platform = store.kv(PLATFORM_TOKENS)
    for entry in iter_keys(platform, prefix=layout.SPEC_BY_KIND[KeyKind.USER_PLATFORM_ID].prefix):
        parsed = layout.parse(entry.name, PLATFORM_TOKENS)
        if parsed.kind is not KeyKind.USER_PLATFORM_ID:
            continue
        platform_id = _text(store, PLATFORM_TOKENS, entry.name)
        if platform_id is None:
            continue
        rows.append(developer_status(store, vendors, parsed.fields["userId"], platform_id))
    return rows


# The emulator's stand-ins for what a person does in a browser


def pay_in_emulator(vendors: Vendors, checkout: Checkout) -> None:
    """The developer paying on the checkout page (the emulator's checkout URL accepts POST .../complete), then
    waiting, as the guide's frontend does, for Stripe's webhook to reach front-auth-api and make the plan paid."""
    response = vendors.http.post(checkout.url.rstrip("/") + "/complete")
    if response.status_code != 200:
        raise FlowFailed(f"checkout {checkout.session_id} could not be completed: {response.text[:200]}")
    plan = wait_for_plan(vendors, checkout.user_id, "paid")
    if plan != "paid":
        raise FlowFailed(f"checkout {checkout.session_id} paid but the webhook left the plan at {plan!r}")


def consent_in_emulator(vendors: Vendors, authorize_url: str, *, deny: bool = False) -> dict[str, str]:
    """The developer clicking "Connect" on Stripe's consent screen; returns the callback's parameters."""
    url = authorize_url + ("&emulator_decision=deny" if deny else "")
    response = vendors.http.get(url, follow_redirects=False)
    if response.status_code != 302:
        raise FlowFailed(f"Stripe Connect authorize failed: {response.text[:200]}")
    query = parse_qs(urlparse(response.headers["location"]).query)
    return {name: values[0] for name, values in query.items()}
