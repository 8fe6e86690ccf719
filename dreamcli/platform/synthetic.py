"""Synthetic platforms in the guide's layout, for benchmarks, load tests and crash tests.

Each platform holds the keys `dream flow run` writes (8 in platform-tokens, 3 in api-tokens, one usage
record): 12 keys, so 100,000 platforms make about 1.2 million. `drift` breaks a fraction of them in
ways `dream kv repair` fixes without Stripe (missing or stale api-tokens copies, a missing reverse
mapping, disagreeing Stripe tokens).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from dreamcli import layout
from dreamcli.platform.secrets import hash_secret
from dreamcli.stores.ports import KVWrite, Store
from dreamcli.topology import API_TOKENS, PLATFORM_TOKENS, PLATFORM_USAGE

DRIFTS = ("api-secret-missing", "api-publishable-missing", "api-publishable-stale", "reverse-missing", "token-stale")


@dataclass(frozen=True)
class Seeded:
    platforms: int
    keys: int
    drifted: int


_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _user_id(i: int) -> str:
    """A Clerk-shaped user id (`user_` + 27 base62 characters, this decade's "2" first), the same for the same `i`."""
    number = int.from_bytes(hashlib.blake2b(i.to_bytes(8, "big"), digest_size=20).digest(), "big")
    chars = []
    for _ in range(26):
        number, digit = divmod(number, 62)
        chars.append(_BASE62[digit])
    return "user_2" + "".join(chars)


def _platform(i: int, rng: random.Random) -> dict[str, list[tuple[str, str]]]:
    user = _user_id(i)
    plt = f"plt_{rng.getrandbits(128):032x}"
    pk = f"pk_live_{rng.getrandbits(128):032x}"
    digest = hash_secret(f"sk_live_{rng.getrandbits(256):064x}")
    token = json.dumps({"accessToken": f"sk_test_{rng.getrandbits(128):032x}", "stripeUserId": f"acct_{i:016d}"})
    products = [
        {"tier": name, "priceId": f"price_{i}_{name}", "productId": f"prod_{i}_{name}"} for name in ("free", "pro")
    ]
    config = {
        "tiers": [
            {
                "name": p["tier"],
                "limit": 100 if p["tier"] == "free" else 10000,
                "price": 0 if p["tier"] == "free" else 29,
                "currency": "usd",
                "priceId": p["priceId"],
                "productId": p["productId"],
                "features": "",
            }
            for p in products
        ]
    }
    return {
        PLATFORM_TOKENS: [
            (layout.user_platform_id(user), plt),
            (layout.platform_user_id(plt), user),
            (layout.user_stripe_token(user), token),
            (layout.platform_stripe_token(plt), token),
            (layout.user_publishable_key(user), pk),
            (layout.user_products(user), json.dumps(products)),
            (layout.publishable_key_platform(pk), plt),
            (layout.secret_key_publishable(digest), pk),
        ],
        API_TOKENS: [
            (layout.tier_config(plt), json.dumps(config)),
            (layout.publishable_key_platform(pk), plt),
            (layout.secret_key_publishable(digest), pk),
        ],
        PLATFORM_USAGE: [(layout.developer_usage(user), json.dumps({"usageCount": i % 500, "plan": "paid"}))],
    }


def _drift(data: dict[str, list[tuple[str, str]]], kind: str) -> None:
    if kind == "api-secret-missing":
        data[API_TOKENS] = data[API_TOKENS][:2]
    elif kind == "api-publishable-missing":
        data[API_TOKENS] = [data[API_TOKENS][0], data[API_TOKENS][2]]
    elif kind == "api-publishable-stale":
        key, _ = data[API_TOKENS][1]
        data[API_TOKENS][1] = (key, "plt_" + "0" * 32)
    elif kind == "reverse-missing":
        data[PLATFORM_TOKENS] = [data[PLATFORM_TOKENS][0]] + data[PLATFORM_TOKENS][2:]
    elif kind == "token-stale":
        key, _ = data[PLATFORM_TOKENS][2]
        data[PLATFORM_TOKENS][2] = (key, json.dumps({"accessToken": "sk_test_old", "stripeUserId": "acct_old"}))


def seed(
    store: Store,
    platforms: int,
    *,
    drift: float = 0.0,
    seed_value: int = 1,
    on_progress: Callable[[int], None] | None = None,
    batch: int = 10_000,
) -> Seeded:
    """Write `platforms` synthetic platforms; a `drift` fraction of them broken (one break each)."""
    rng = random.Random(seed_value)
    buffers: dict[str, list[KVWrite]] = {PLATFORM_TOKENS: [], API_TOKENS: [], PLATFORM_USAGE: []}
    keys = drifted = 0

    def flush(namespace: str) -> None:
        items = buffers[namespace]
        if items:
            items.sort(key=lambda item: item.key)  # key-ordered batches write far fewer B-tree pages
            store.kv(namespace).bulk_put(items)
            buffers[namespace] = []

    for i in range(platforms):
        data = _platform(i, rng)
        if drift and rng.random() < drift:
            _drift(data, DRIFTS[drifted % len(DRIFTS)])
            drifted += 1
        for namespace, pairs in data.items():
            buffers[namespace].extend(KVWrite(key, value) for key, value in pairs)
            keys += len(pairs)
            if len(buffers[namespace]) >= batch - 16:
                flush(namespace)
        if on_progress is not None and i % 500 == 0:  # cheap: the caller decides when to redraw
            on_progress(i)
    for namespace in buffers:
        flush(namespace)
    return Seeded(platforms, keys, drifted)


def platform_ids(store: Store) -> Iterator[str]:
    from dreamcli.stores.ports import iter_keys

    for entry in iter_keys(store.kv(PLATFORM_TOKENS), prefix=layout.PLATFORM_PREFIX):
        parsed = layout.parse(entry.name)
        if parsed.kind is layout.KeyKind.PLATFORM_USER_ID:
            yield parsed.fields["platformId"]
