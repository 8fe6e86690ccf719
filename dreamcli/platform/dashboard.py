"""What the dashboard shows for one platform, from D1 (customers, subscriptions, daily usage) and KV (limits)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from dreamcli import layout
from dreamcli.errors import NotFound
from dreamcli.platform.runtime import CorruptRecord, usage_record
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
    usage = store.kv(API_USAGE)
    if user_id:  # one end-user: their key, not a prefix (u1 must not list u10 and u11)
        key = layout.end_user_usage(platform_id, user_id)
        raw_one = usage.get(key)
        records: Iterable[tuple[str, bytes]] = [] if raw_one is None else [(key, raw_one)]
    else:
        records = scan_items(usage, prefix=layout.prefix(layout.KeyKind.END_USER_USAGE, owner=platform_id))
    rows = []
    for key, raw in records:
        try:
            record = usage_record(raw, key)
        except CorruptRecord as exc:  # shown as such (the API refuses its calls), never a crash of the listing
            rows.append(
                {
                    "userId": layout.parse(key, API_USAGE).fields.get("userId"),
                    "plan": None,
                    "usageCount": None,
                    "limit": None,
                    "periodStart": None,
                    "periodEnd": None,
                    "corrupt": exc.problem,
                }
            )
            continue
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


def by_calls(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Corrupt records first (their end-users' calls are refused), then the most calls, then by id."""
    return sorted(rows, key=lambda row: ("corrupt" not in row, -(row["usageCount"] or 0), row["userId"] or ""))


def summary(store: Store, platform_id: str, days: int = 14, top: int | None = 20) -> dict[str, Any]:
    """The dashboard's figures; its end-users' usage sorted by `by_calls`, the first `top` (None: all)."""
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
    rows = by_calls(usage(store, platform_id))
    return {
        "platformId": platform_id,
        "customersByPlan": by_plan,
        "mrrCents": mrr,
        "endUsers": len(rows),
        "usage": rows if top is None else rows[:top],
        "daily": list(reversed(daily)),
    }
