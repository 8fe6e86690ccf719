"""The tier config against Stripe: the connected account's products and prices are its source of truth."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from dreamcli import layout
from dreamcli.errors import DreamError
from dreamcli.layout import KeyKind
from dreamcli.platform.replication.findings import Action, Finding, FindingClass, Fix, Phase, shown
from dreamcli.platform.replication.repair import TierConfigBuilder
from dreamcli.stores.ports import Store
from dreamcli.topology import API_TOKENS


def _tiers_of(config_text: str) -> list[tuple[Any, ...]] | None:
    try:
        tiers = json.loads(config_text).get("tiers")
        return sorted(
            (t.get("name"), t.get("limit"), t.get("price"), t.get("currency"), t.get("priceId"), t.get("productId"))
            for t in tiers
        )
    except (json.JSONDecodeError, AttributeError, TypeError):
        return None


def stripe_agreement(store: Store, build: TierConfigBuilder) -> Callable[[str, str], list[Finding]]:
    """A check for `verify(stripe_check=...)`: tierConfig against the connected account's products and prices."""

    def check(platform_id: str, user_id: str) -> list[Finding]:
        key = layout.tier_config(platform_id)
        current = store.kv(API_TOKENS).get(key)
        if current is None:
            return []  # reported as missing by the pass itself
        try:
            expected = build(platform_id, user_id)
        except DreamError as exc:
            return [
                Finding(
                    FindingClass.DANGLING, API_TOKENS, key, platform_id, f"cannot read its products from Stripe: {exc}"
                )
            ]
        if _tiers_of(current.decode("utf-8", errors="replace")) == _tiers_of(expected):
            return []
        return [
            Finding(
                FindingClass.STALE,
                API_TOKENS,
                key,
                platform_id,
                "disagrees with Stripe's products and prices",
                expected=shown(KeyKind.TIER_CONFIG, expected),
                actual=shown(KeyKind.TIER_CONFIG, current.decode()),
                fix=Fix(Action.REBUILD_TIER_CONFIG, API_TOKENS, key, Phase.TIER_CONFIG, user_id=user_id),
            )
        ]

    return check
