"""What the dashboard shows for one platform, from D1 (customers, subscriptions, daily usage) and KV (limits)."""

from __future__ import annotations

import json
from typing import Any

from dreamcli import layout
from dreamcli.errors import NotFound
from dreamcli.stores.ports import Store, scan_items
from dreamcli.topology import API_TOKENS, API_USAGE


def tier_config(store: Store, platform_id: str) -> dict[str, Any]:
    raw = store.kv(API_TOKENS).get(layout.tier_config(platform_id))
    if raw is None:
        raise NotFound(f"platform {platform_id} has no tier config in api-tokens")
    return json.loads(raw)


def usage(store: Store, platform_id: str, user_id: str | None = None) -> list[dict[str, Any]]:
    """This month's usage records of the platform's end-users (api-usage), with their tier's limit."""
    limits = {t["name"]: t.get("limit") for t in tier_config(store, platform_id).get("tiers", [])}
    prefix = layout.end_user_usage(platform_id, user_id) if user_id else layout.end_user_usage(platform_id, "x")[:-1]
    rows = []
    for key, raw in scan_items(store.kv(API_USAGE), prefix=prefix):
        record = json.loads(raw)
        plan = record.get("plan", "free")
        rows.append(
            {
                "userId": layout.parse(key, API_USAGE).fields.get("userId"),
                "plan": plan,
                "usageCount": record.get("usageCount", 0),
                "limit": limits.get(plan),
                "periodStart": record.get("periodStart"),
                "periodEnd": record.get("periodEnd"),
            }
        )
    return rows


def summary(store: Store, platform_id: str, days: int = 14) -> dict[str, Any]:
    db = store.database
    by_plan = {
        row["plan"]: row["n"]
        for row in db.execute(
            "SELECT plan, count(*) AS n FROM customers WHERE platform_id = ? GROUP BY plan ORDER BY plan", [platform_id]
        ).results
    }
    mrr = db.execute(
        "SELECT COALESCE(sum(amount), 0) AS cents FROM subscriptions WHERE platform_id = ? AND status = 'active'",
        [platform_id],
    ).results[0]["cents"]
    daily = db.execute(
        "SELECT day, sum(calls) AS calls FROM usage_daily WHERE platform_id = ? GROUP BY day ORDER BY day DESC LIMIT ?",
        [platform_id, days],
    ).results
    return {
        "platformId": platform_id,
        "customersByPlan": by_plan,
        "mrrCents": mrr,
        "usage": usage(store, platform_id),
        "daily": list(reversed(daily)),
    }
