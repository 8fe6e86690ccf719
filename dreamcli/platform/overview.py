"""The operator's own view across every developer (`dream overview`): developers by plan, paying developers, the
platform's own MRR per currency (every active subscription on its Stripe account, normalised to a month), and the
platforms that used the most over a window (D1's daily usage)."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from dreamcli.stores.ports import Store
from dreamcli.vendors.settings import DREAM_API, Vendors

# A price's interval in months: Stripe bills day/week/month/year, each `interval_count` of them.
_MONTHS = {"day": 12 / 365, "week": 12 / 52, "month": 1.0, "year": 12.0}


def monthly(unit_amount: int, quantity: int, interval: str, interval_count: int) -> float:
    """What a recurring price brings in a month, in the currency's smallest unit."""
    return unit_amount * quantity / (_MONTHS[interval] * max(1, interval_count))


def overview(
    store: Store, vendors: Vendors, *, days: int = 30, top: int = 10, now: float | None = None
) -> dict[str, Any]:
    from dreamcli.platform.customers import ensure_schema

    plans: Counter[str] = Counter()
    offset = 0
    clerk = vendors.clerk[DREAM_API]
    while True:
        page = clerk.list_users(limit=500, offset=offset)
        for user in page:
            plans[str((user.get("public_metadata") or {}).get("plan") or "free")] += 1
        if len(page) < 500:
            break
        offset += 500
    mrr: dict[str, float] = {}
    subscriptions = 0
    for subscription in vendors.stripe.list_subscriptions(None, "active"):
        subscriptions += 1
        for item in subscription["items"]["data"]:
            price = item["price"]
            recurring = price.get("recurring") or {}
            if recurring and price.get("unit_amount") is not None:
                mrr[price["currency"]] = mrr.get(price["currency"], 0.0) + monthly(
                    price["unit_amount"],
                    item.get("quantity") or 1,
                    recurring["interval"],
                    recurring.get("interval_count", 1),
                )
    ensure_schema(store)
    since = (datetime.fromtimestamp(now if now is not None else time.time(), UTC) - timedelta(days=days)).strftime(
        "%Y-%m-%d"
    )
    busiest = store.database.execute(
        "SELECT platform_id, sum(calls) AS calls, count(DISTINCT customer_id) AS customers FROM usage_daily "
        "WHERE day > ? GROUP BY platform_id ORDER BY calls DESC, platform_id LIMIT ?",
        [since, top],
    ).results
    return {
        "developers": sum(plans.values()),
        "developersByPlan": dict(sorted(plans.items())),
        "payingDevelopers": plans.get("paid", 0),
        "activeSubscriptions": subscriptions,
        "mrr": {currency: round(amount) for currency, amount in sorted(mrr.items())},
        "window": {"days": days, "since": since},
        "topPlatforms": busiest,
    }
