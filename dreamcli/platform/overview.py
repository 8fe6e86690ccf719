"""The operator's own view across every developer (`dream overview`, the console's first page): developers by plan,
paying developers, the platform's own MRR per currency (every active subscription on its Stripe account,
normalised to a month) with its trend, and the platforms that used the most (D1's usage)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, Protocol

from dreamcli.stores.ports import Store
from dreamcli.vendors.settings import DREAM_API, Vendors

# A price's interval in months: Stripe bills day/week/month/year, each `interval_count` of them.
_MONTHS = {"day": 12 / 365, "week": 12 / 52, "month": 1.0, "year": 12.0}
TREND_MONTHS = 6
# Statuses whose subscription never started billing: not revenue at any date.
_NEVER_BILLED = frozenset({"incomplete", "incomplete_expired"})


def monthly(unit_amount: int, quantity: int, interval: str, interval_count: int) -> float:
    """What a recurring price brings in a month, in the currency's smallest unit."""
    return unit_amount * quantity / (_MONTHS[interval] * max(1, interval_count))


class Terms(NamedTuple):
    """One subscription item's price terms."""

    currency: str | None
    unit_amount: int | None
    quantity: int
    interval: str | None
    interval_count: int

    def monthly(self) -> float | None:
        if self.currency is None or self.unit_amount is None or self.interval not in _MONTHS:
            return None  # a one-off or metered price: no fixed monthly amount
        return monthly(self.unit_amount, self.quantity, self.interval, self.interval_count)


@dataclass(frozen=True)
class SubscriptionTerms:
    """What the MRR needs of a subscription: its status, when it started and ended, its items' terms."""

    status: str
    created: int
    ended_at: int | None
    items: tuple[Terms, ...]

    @classmethod
    def of(cls, subscription: dict[str, Any]) -> SubscriptionTerms:
        items = []
        for item in (subscription.get("items") or {}).get("data") or []:
            price = item.get("price") or {}
            recurring = price.get("recurring") or {}
            items.append(
                Terms(
                    price.get("currency"),
                    price.get("unit_amount"),
                    item.get("quantity") or 1,
                    recurring.get("interval"),
                    recurring.get("interval_count") or 1,
                )
            )
        return cls(subscription["status"], subscription["created"], subscription.get("ended_at"), tuple(items))

    def billing_at(self, moment: float) -> bool:
        return (
            self.status not in _NEVER_BILLED
            and self.created <= moment
            and (self.ended_at is None or self.ended_at > moment)
        )


class Tallies(Protocol):
    """Where the overview's vendor figures come from: the vendors' APIs (`ListedTallies`), or the emulated vendors'
    state counted in SQL (`emulator.tallies.EmulatedTallies`): the same answers."""

    def plans(self) -> dict[str, int]: ...  # developers by plan (public_metadata.plan, "free" when unset)

    def subscriptions(self) -> list[SubscriptionTerms]: ...  # every subscription of the platform's own account


class ListedTallies:
    """The figures as a real vendor gives them: every developer and subscription listed, page by page."""

    def __init__(self, vendors: Vendors) -> None:
        self.vendors = vendors

    def plans(self) -> dict[str, int]:
        plans: Counter[str] = Counter()
        offset = 0
        clerk = self.vendors.clerk[DREAM_API]
        while True:
            page = clerk.list_users(limit=500, offset=offset)
            for user in page:
                plans[str((user.get("public_metadata") or {}).get("plan") or "free")] += 1
            if len(page) < 500:
                break
            offset += 500
        return dict(plans)

    def subscriptions(self) -> list[SubscriptionTerms]:
        return [SubscriptionTerms.of(s) for s in self.vendors.stripe.list_subscriptions(None, "all")]


def _month_ends(now: float, months: int) -> list[tuple[str, float]]:
    """(YYYY-MM, the instant that month ended, or now for this month), oldest first."""
    moment = datetime.fromtimestamp(now, UTC)
    ends: list[tuple[str, float]] = [(moment.strftime("%Y-%m"), now)]
    first = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    for _ in range(months - 1):
        ends.append(((first - timedelta(days=1)).strftime("%Y-%m"), first.timestamp() - 1))
        first = (first - timedelta(days=1)).replace(day=1)
    return list(reversed(ends))


def mrr(subscriptions: Iterable[SubscriptionTerms], now: float, months: int = TREND_MONTHS) -> dict[str, Any]:
    """MRR per currency now (active subscriptions) and at the end of each of the last `months` months (those
    billing then: started, not yet ended), at their current prices; in the currency's smallest unit."""
    subscriptions = list(subscriptions)
    current: dict[str, float] = {}
    active = 0
    for subscription in subscriptions:
        if subscription.status != "active":
            continue
        active += 1
        for terms in subscription.items:
            amount = terms.monthly()
            if amount is not None and terms.currency:
                current[terms.currency] = current.get(terms.currency, 0.0) + amount
    trend = []
    for month, moment in _month_ends(now, months):
        totals: dict[str, float] = {}
        for subscription in subscriptions:
            if subscription.billing_at(moment):
                for terms in subscription.items:
                    amount = terms.monthly()
                    if amount is not None and terms.currency:
                        totals[terms.currency] = totals.get(terms.currency, 0.0) + amount
        trend.append({"month": month, "mrr": {c: round(a) for c, a in sorted(totals.items())}})
    return {
        "activeSubscriptions": active,
        "mrr": {currency: round(amount) for currency, amount in sorted(current.items())},
        "trend": trend,
    }


def has_monthly_rollup(store: Store) -> bool:
    """D1 has dream's usage_monthly (migration 0003): the user's own migrations may not."""
    found = store.database.execute(
        "SELECT count(*) AS n FROM sqlite_master WHERE type = 'table' AND name = 'usage_monthly'"
    ).results
    return bool(found and found[0]["n"])


def calls_this_month(store: Store, now: float) -> int | None:
    """Every platform's calls this calendar month (UTC), from usage_monthly where D1 has it; None before D1 has a
    usage table at all (not migrated yet)."""
    from dreamcli.errors import DreamError

    month = datetime.fromtimestamp(now, UTC).strftime("%Y-%m")
    table, column = ("usage_monthly", "month") if has_monthly_rollup(store) else ("usage_daily", "substr(day, 1, 7)")
    try:
        rows = store.database.execute(
            f"SELECT coalesce(sum(calls), 0) AS calls FROM {table} WHERE {column} = ?", [month]
        ).results
    except DreamError:
        return None
    return int(rows[0]["calls"])


def busiest(store: Store, *, days: int | None, top: int, now: float) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The `top` platforms by calls: over the last `days` days (a sum over usage_daily), or, with `days` None, this
    calendar month (UTC: the period usage limits count), read off usage_monthly's index where D1 has it."""
    moment = datetime.fromtimestamp(now, UTC)
    db = store.database
    if days is None:
        month = moment.strftime("%Y-%m")
        window: dict[str, Any] = {"month": month}
        if has_monthly_rollup(store):
            rows = db.execute(
                "SELECT platform_id, calls, (SELECT count(*) FROM customers c WHERE c.platform_id = m.platform_id) "
                "AS customers FROM usage_monthly m WHERE month = ? AND calls > 0 "
                "ORDER BY calls DESC, platform_id LIMIT ?",
                [month, top],
            ).results
            return window, rows
        since_day = month + "-01"
        rows = db.execute(
            "SELECT platform_id, sum(calls) AS calls, count(DISTINCT customer_id) AS customers FROM usage_daily "
            "WHERE day >= ? GROUP BY platform_id ORDER BY calls DESC, platform_id LIMIT ?",
            [since_day, top],
        ).results
        return window, rows
    since = (moment - timedelta(days=days)).strftime("%Y-%m-%d")
    rows = db.execute(
        "SELECT platform_id, sum(calls) AS calls, count(DISTINCT customer_id) AS customers FROM usage_daily "
        "WHERE day > ? GROUP BY platform_id ORDER BY calls DESC, platform_id LIMIT ?",
        [since, top],
    ).results
    return {"days": days, "since": since}, rows


def overview(
    store: Store,
    vendors: Vendors,
    *,
    days: int | None = 30,
    top: int = 10,
    now: float | None = None,
    tallies: Tallies | None = None,
) -> dict[str, Any]:
    """`tallies`: where the vendor figures come from (default: listed through the vendors' APIs)."""
    from dreamcli.platform.customers import ensure_schema

    now = time.time() if now is None else now
    source = tallies if tallies is not None else ListedTallies(vendors)
    plans = source.plans()
    revenue = mrr(source.subscriptions(), now)
    ensure_schema(store)
    window, rows = busiest(store, days=days, top=top, now=now)
    return {
        "developers": sum(plans.values()),
        "developersByPlan": dict(sorted(plans.items())),
        "payingDevelopers": plans.get("paid", 0),
        "activeSubscriptions": revenue["activeSubscriptions"],
        "mrr": revenue["mrr"],
        "mrrTrend": revenue["trend"],
        "window": window,
        "topPlatforms": rows,
    }
