"""api-multi's customers: end-users in Clerk's shared end-user-api app, scoped by publishable key, with a
queryable copy in D1 (the guide's dual write), checkout on the developer's connected account, and the
connected-account webhooks that move a customer between tiers."""

from __future__ import annotations

import csv
import hmac
import io
import json
import logging
import math
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from dreamcli import layout
from dreamcli.errors import D1Error, DreamError, ExitCode, NotFound, StoreError, UsageError
from dreamcli.platform.runtime import Caller, CorruptRecord, usage_record
from dreamcli.plural import plural
from dreamcli.stores.ports import Statement, Store
from dreamcli.topology import API_USAGE, PLATFORM_TOKENS
from dreamcli.vendors.errors import VendorError
from dreamcli.vendors.settings import END_USER_API, Vendors

usage_log = logging.getLogger("dream.usage")

COLUMNS = ("id", "platform_id", "publishable_key", "email", "name", "plan", "created_at", "updated_at")


class BadRequest(UsageError):
    """A request body that is not what the route takes."""


class CustomerNotFound(NotFound):
    """No such customer for this platform (another platform's customers do not exist for it)."""


class CheckoutRefused(UsageError):
    """A checkout for a tier that cannot be bought (free or unknown)."""


class Forbidden(DreamError):
    """Authenticated, but not allowed to act on this (an end-user acting for another user)."""

    exit_code = ExitCode.FAILED


class WebhookRefused(DreamError):
    """A signed Connect event that may not touch what its metadata names (another platform, another customer)."""

    exit_code = ExitCode.FAILED


def ensure_schema(store: Store) -> None:
    from dreamcli.stores.d1_migrations import apply_migrations, default_migrations_dir

    apply_migrations(store.database, default_migrations_dir())


def create_customer(store: Store, vendors: Vendors, caller: Caller, body: Any) -> dict[str, Any]:
    """POST /customers: the end-user in Clerk (publicMetadata {publishableKey, plan}) and a row in D1."""
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object with email, name and plan")
    email, name, plan = body.get("email"), body.get("name"), body.get("plan", "free")
    if not isinstance(email, str) or "@" not in email:
        raise BadRequest("email is required")
    if caller.tier(str(plan)) is None:
        raise BadRequest(f"plan {plan!r} is not one of this platform's tiers")
    user = vendors.clerk[END_USER_API].create_user(
        email,
        first_name=name if isinstance(name, str) else None,
        public_metadata={"publishableKey": caller.publishable_key, "plan": plan},
    )
    store.database.execute(
        "INSERT INTO customers (id, platform_id, publishable_key, email, name, plan) VALUES (?, ?, ?, ?, ?, ?)",
        [user["id"], caller.platform_id, caller.publishable_key, email, name if isinstance(name, str) else None, plan],
    )
    return get_customer(store, caller.platform_id, user["id"])


def list_customers(store: Store, platform_id: str, limit: int | None = None) -> list[dict[str, Any]]:
    """The platform's customers, oldest first (the first `limit`, or all)."""
    return store.database.execute(
        f"SELECT {', '.join(COLUMNS)} FROM customers WHERE platform_id = ? ORDER BY created_at, id"
        + (" LIMIT ?" if limit is not None else ""),
        [platform_id, *([limit] if limit is not None else [])],
    ).results


def get_customer(store: Store, platform_id: str, customer_id: str) -> dict[str, Any]:
    rows = store.database.execute(
        f"SELECT {', '.join(COLUMNS)} FROM customers WHERE platform_id = ? AND id = ?", [platform_id, customer_id]
    ).results
    if not rows:
        raise CustomerNotFound(f"no customer {customer_id} on this platform")
    return rows[0]


def plan_of(store: Store, vendors: Vendors, caller: Caller, customer_id: str) -> str:
    """An end-user's plan from their record (D1, else their Clerk metadata), never from what the request says:
    `X-User-Plan` is the developer's backend speaking, and an end-user token is not."""
    rows = store.database.execute(
        "SELECT plan FROM customers WHERE platform_id = ? AND id = ?", [caller.platform_id, customer_id]
    ).results
    if rows and rows[0]["plan"]:
        return str(rows[0]["plan"])
    try:
        metadata = vendors.clerk[END_USER_API].get_user(customer_id).get("public_metadata") or {}
    except VendorError as exc:
        # Neither the free tier (a paying end-user would get its limits) nor a guess: the call is refused
        # uncounted, worth a retry (503), and the operator is told which Clerk request failed.
        raise PlanUnavailable(customer_id, exc) from None
    if metadata.get("publishableKey") != caller.publishable_key:
        return "free"
    plan = metadata.get("plan")
    return plan if isinstance(plan, str) and caller.tier(plan) is not None else "free"


def export_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(COLUMNS))
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    return out.getvalue()


def connected_account(store: Store, platform_id: str) -> str | None:
    """The platform's Stripe Connect account (`platform:{plt}:stripeToken` -> stripeUserId), if connected."""
    raw = store.kv(PLATFORM_TOKENS).get(layout.platform_stripe_token(platform_id))
    if raw is None:
        return None
    try:
        account = json.loads(raw).get("stripeUserId")
    except (ValueError, AttributeError):
        return None
    return account if isinstance(account, str) else None


def _account(store: Store, platform_id: str) -> str:
    account = connected_account(store, platform_id)
    if account is None:
        raise DreamError(f"platform {platform_id} has no connected Stripe account")
    return account


def start_checkout(
    store: Store, vendors: Vendors, caller: Caller, body: Any, *, end_user: str | None = None
) -> dict[str, Any]:
    """POST /checkout: a subscription checkout for a paid tier, on the developer's connected account. With an
    end-user token (`end_user`), only for that user."""
    if (
        not isinstance(body, dict)
        or not isinstance(body.get("customerId"), str)
        or not isinstance(body.get("tier"), str)
    ):
        raise BadRequest("body must be {customerId, tier, successUrl?}")
    if end_user is not None and body["customerId"] != end_user:
        raise Forbidden("an end-user token checks out only its own user")
    customer = get_customer(store, caller.platform_id, body["customerId"])
    tier = caller.tier(body["tier"])
    if tier is None:
        raise CheckoutRefused(f"tier {body['tier']!r} does not exist")
    if not tier.get("price") or not tier.get("priceId"):
        raise CheckoutRefused(f"tier {body['tier']!r} is free: nothing to check out")
    session = vendors.stripe.create_subscription_checkout(
        _account(store, caller.platform_id),
        tier["priceId"],
        success_url=str(body.get("successUrl") or "http://localhost:5173/success"),
        customer_email=customer.get("email"),
        client_reference_id=customer["id"],
        metadata={"platformId": caller.platform_id, "customerId": customer["id"], "tier": tier["name"]},
    )
    return {"sessionId": session.id, "url": session.url}


def _tier_of_subscription(subscription: dict[str, Any]) -> tuple[str | None, int, str]:
    items = (subscription.get("items") or {}).get("data") or []
    price = items[0].get("price") if items else None
    if not price:
        return None, 0, "usd"
    return (
        (price.get("metadata") or {}).get("tierName"),
        int(price.get("unit_amount") or 0),
        price.get("currency", "usd"),
    )


def _set_plan(store: Store, vendors: Vendors, platform_id: str, customer_id: str, plan: str) -> None:
    """The customer's plan everywhere it is kept: Clerk metadata, D1, and their usage record."""
    vendors.clerk[END_USER_API].update_metadata(customer_id, public={"plan": plan})
    store.database.execute(
        "UPDATE customers SET plan = ?, updated_at = CURRENT_TIMESTAMP WHERE platform_id = ? AND id = ?",
        [plan, platform_id, customer_id],
    )
    key = layout.end_user_usage(platform_id, customer_id)

    def with_plan(raw: bytes | None) -> bytes:
        if raw is None:
            raise _NoRecord  # an end-user with no calls yet: their first call writes the record
        record = usage_record(raw, key)
        record["plan"] = plan
        return json.dumps(record).encode()

    try:
        # One atomic read-change-write where the store can (a call counted meanwhile is never overwritten by the
        # count read before it), get and put on stores that cannot (as api-multi itself counts on Workers KV).
        store.kv(API_USAGE).update(key, with_plan)
    except _NoRecord:
        pass
    except CorruptRecord as exc:  # the plan is set where it is kept; the corrupt record is said, not rewritten
        usage_log.warning("%s", exc)


class _NoRecord(Exception):
    """Raised inside an update to leave the key as it is (no record to change)."""


def _check_tenant(store: Store, account: Any, platform_id: Any, customer_id: Any) -> tuple[str, str]:
    """The event's metadata may name only the platform whose connected account sent it, and only a customer
    of that platform: a developer controls the metadata of objects on their own account, nothing else."""
    if not isinstance(platform_id, str) or not isinstance(customer_id, str):
        raise WebhookRefused("metadata platformId/customerId must be strings")
    if not isinstance(account, str) or not account:
        raise WebhookRefused(f"event for platform {platform_id} carries no connected account")
    owner = connected_account(store, platform_id) if layout.is_valid_id(platform_id) else None
    if owner is None or not hmac.compare_digest(owner.encode(), account.encode()):
        raise WebhookRefused(f"connected account {account} is not platform {platform_id}'s")
    found = store.database.execute(
        "SELECT 1 AS one FROM customers WHERE platform_id = ? AND id = ?", [platform_id, customer_id]
    ).results
    if not found:
        raise WebhookRefused(f"customer {customer_id} does not belong to platform {platform_id}")
    return platform_id, customer_id


def handle_connect_webhook(store: Store, vendors: Vendors, payload: bytes, signature: str | None) -> str:
    """api-multi /webhook/stripe: events of the developers' connected accounts move customers between tiers.
    WebhookRefused when an event names a platform or customer its connected account does not own."""
    from dreamcli.vendors.stripe_gateway import StripeGateway

    secret = vendors.settings.stripe.connect_webhook_secret
    if not secret:
        raise UsageError("no Connect webhook secret configured (STRIPE_CONNECT_WEBHOOK_SECRET)")
    event = StripeGateway.construct_event(payload, signature, secret, now=vendors.clock()).to_dict()
    obj = event["data"]["object"]
    kind = event["type"]
    if kind == "checkout.session.completed":
        if obj.get("payment_status", "paid") != "paid":  # a card saved (setup mode) or a payment still pending
            return f"ignored a checkout with payment_status {obj.get('payment_status')}"
        meta = obj.get("metadata") or {}
        if not meta.get("platformId") or not meta.get("customerId"):
            return "ignored a checkout without dream metadata"
        platform_id, customer_id = _check_tenant(store, event.get("account"), meta["platformId"], meta["customerId"])
        _set_plan(store, vendors, platform_id, customer_id, str(meta.get("tier", "free")))
        return f"{customer_id} is on {meta.get('tier')}"
    if kind in ("customer.subscription.created", "customer.subscription.updated", "customer.subscription.deleted"):
        meta = obj.get("metadata") or {}
        if not meta.get("platformId") or not meta.get("customerId"):
            return f"ignored {kind} without dream metadata"
        platform_id, customer_id = _check_tenant(store, event.get("account"), meta["platformId"], meta["customerId"])
        tier, amount, currency = _tier_of_subscription(obj)
        status = "canceled" if kind.endswith("deleted") else obj.get("status", "active")
        store.database.batch(
            [
                Statement(
                    "INSERT INTO subscriptions (id, platform_id, customer_id, tier, status, amount, currency) VALUES (?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (id) DO UPDATE SET tier = excluded.tier, status = excluded.status, amount = excluded.amount, "
                    "updated_at = CURRENT_TIMESTAMP",
                    (obj["id"], platform_id, customer_id, tier or "?", status, amount, currency),
                )
            ]
        )
        if kind.endswith("deleted"):
            _set_plan(store, vendors, platform_id, customer_id, "free")
            return f"{customer_id} is back on free"
        if kind.endswith("updated") and tier:
            _set_plan(store, vendors, platform_id, customer_id, tier)
            return f"{customer_id} is on {tier}"
        return f"recorded {kind}"
    return f"ignored {kind}"


_DAILY_ROWS_PER_STATEMENT = 25  # 4 parameters a row: D1 binds at most 100 per statement


def _daily_upsert(rows: int) -> str:
    values = ", ".join(["(?, ?, ?, ?)"] * rows)
    return (
        f"INSERT INTO usage_daily (platform_id, customer_id, day, calls) VALUES {values} "
        "ON CONFLICT (platform_id, customer_id, day) DO UPDATE SET calls = calls + excluded.calls"
    )


class DailyUsageBuffer:
    """The dashboard's per-day counts, written to D1 in one batch at most every `interval` seconds.

    KV holds the exact usage that limits enforce; D1 is the analytics copy (the guide's dual write), so
    coalescing its writes trades at most `interval` seconds of chart data on a crash for a quarter of
    api-multi's throughput (measured with bench/api_bench.py)."""

    def __init__(
        self,
        store: Store,
        interval: float = 0.5,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        schedule: Callable[[float, Callable[[], None]], Any] | None = None,
    ) -> None:
        self.store = store
        self.interval = interval
        self.monotonic = monotonic
        # (delay, fn) -> something with .cancel(): a daemon timer thread, or the tests' hand-driven stand-in
        self.schedule = schedule or _start_timer
        self.pending: dict[tuple[str, str, str], int] = {}
        self.lock = threading.Lock()
        self.flushed_at = -math.inf
        self._timer: Any = None  # the flush of calls that no later call will bring
        self.closed = False

    def add(self, platform_id: str, customer_id: str, now: float) -> None:
        """Count one call. Never writes D1 itself: the request path must not wait for D1's lock (a long statement
        from REST or `dream d1 execute` holds it for up to 30 s), so the flush runs on the timer's thread, at once
        when the last one is `interval` old, else when that interval ends."""
        day = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")
        with self.lock:
            self.pending[(platform_id, customer_id, day)] = self.pending.get((platform_id, customer_id, day), 0) + 1
            if self._timer is None and not self.closed:
                waited = self.monotonic() - self.flushed_at
                self._timer = self.schedule(max(0.0, self.interval - waited), self._timed_flush)

    def _timed_flush(self) -> None:
        with self.lock:
            self._timer = None
        self.flush()

    def flush(self) -> bool:
        """Write the pending counts to D1 in one batch; True when they were (or nothing was pending).

        A D1 that cannot take them now (locked by a long statement from REST or `dream d1 execute`, or closed under
        the timer) loses nothing: the counts go back into the buffer, merged with those added meanwhile, a warning
        says how many are waiting and why, and a retry is scheduled `interval` seconds on."""
        with self.lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            pending, self.pending = self.pending, {}
            self.flushed_at = self.monotonic()
        if not pending:
            return True
        try:
            # Rows 25 to a statement: one statement per row made each flush stall api-multi's event loop for
            # tens of milliseconds (its p99), for Python's per-statement work, not SQLite's.
            rows = [(*key, calls) for key, calls in pending.items()]
            chunks = [rows[i : i + _DAILY_ROWS_PER_STATEMENT] for i in range(0, len(rows), _DAILY_ROWS_PER_STATEMENT)]
            self.store.database.batch(
                [Statement(_daily_upsert(len(chunk)), tuple(v for row in chunk for v in row)) for chunk in chunks]
            )
        except (D1Error, StoreError) as exc:
            self._keep(pending, exc)
            return False
        return True

    def _keep(self, pending: dict[tuple[str, str, str], int], exc: Exception) -> None:
        """Put counts that could not be written back, and retry them later."""
        with self.lock:
            for key, calls in pending.items():
                self.pending[key] = self.pending.get(key, 0) + calls
            waiting = sum(self.pending.values())
            if self._timer is None and not self.closed:
                self._timer = self.schedule(self.interval, self._timed_flush)
        usage_log.warning(
            "the dashboard's daily usage could not be written to D1 (%s): %s kept for a retry in %g s",
            exc,
            plural(waiting, "call"),
            self.interval,
        )

    def close(self, attempts: int = 3) -> None:
        """The last flushes, before the store closes (each waits out a lock for the store's busy timeout); if D1
        still cannot take them, an error says how many calls the dashboard will not show."""
        with self.lock:
            self.closed = True  # no timer from now on
        written = False
        for _ in range(attempts):
            if written := self.flush():
                break
        with self.lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            lost = sum(self.pending.values())
            self.pending = {}
        if not written:
            usage_log.error(
                "the dashboard's daily usage of %s was not written to D1 before closing", plural(lost, "call")
            )


def _start_timer(delay: float, fn: Callable[[], None]) -> threading.Timer:
    timer = threading.Timer(delay, fn)
    timer.daemon = True
    timer.start()
    return timer


class PlanUnavailable(DreamError):
    """An end-user's plan cannot be known now: no record in D1 and Clerk failed."""

    exit_code = ExitCode.REMOTE

    def __init__(self, customer_id: str, cause: VendorError) -> None:
        trace = f", Clerk request {cause.request_id}" if cause.request_id else ""
        super().__init__(f"the plan of {customer_id} is unknown: {cause}{trace}")
        self.request_id = cause.request_id


class Unauthorized(DreamError):
    """A request without valid credentials."""

    exit_code = ExitCode.FAILED
