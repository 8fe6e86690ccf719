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
from typing import Any

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
    each: Callable[[int, str, str, str], None] | None = None,
) -> Seeded:
    """Write `platforms` synthetic platforms; a `drift` fraction of them broken (one break each). `each(i, user id,
    platform id, publishable key)` is told of every platform written."""
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
        if each is not None:
            user, written = _user_id(i), dict(data[PLATFORM_TOKENS])
            each(i, user, written[layout.user_platform_id(user)], written[layout.user_publishable_key(user)])
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


# What every view reads besides KV's tokens: D1's customers, subscriptions and daily usage, each end-user's month in
# api-usage, and the developers themselves in the emulated Clerk and Stripe.
END_USERS = 3  # per platform: one on pro, two on free
DAYS = 7  # of daily usage, ending today
PRO_CENTS = 2900


def _rows_per_statement(columns: int) -> int:
    return 100 // columns  # D1 binds at most 100 parameters a statement


def _insert(store: Store, table: str, columns: tuple[str, ...], rows: list[tuple[object, ...]]) -> None:
    from dreamcli.stores.ports import Statement

    per = _rows_per_statement(len(columns))
    one = "(" + ", ".join("?" * len(columns)) + ")"
    statements = []
    for start in range(0, len(rows), per):
        chunk = rows[start : start + per]
        statements.append(
            Statement(
                f"INSERT OR REPLACE INTO {table} ({', '.join(columns)}) VALUES " + ", ".join([one] * len(chunk)),
                [value for row in chunk for value in row],
            )
        )
    for start in range(0, len(statements), 1000):
        store.database.batch(statements[start : start + 1000])


def seed_views(
    store: Store,
    platforms: list[tuple[int, str, str, str]],
    *,
    now: float,
    seed_value: int = 1,
) -> tuple[int, int]:
    """For each platform (i, developer, platform id, publishable key): END_USERS end-users as D1 customers (one on
    pro, with its active subscription), their daily calls over the last DAYS days, and their month in api-usage as
    api-multi writes it. (end-users, D1 rows) written."""
    from datetime import UTC, datetime, timedelta

    from dreamcli.platform.customers import ensure_schema
    from dreamcli.platform.runtime import month_period
    from dreamcli.topology import API_USAGE

    ensure_schema(store)
    rng = random.Random(seed_value + 1)
    start, end = month_period(now)
    today = datetime.fromtimestamp(now, UTC)
    days = [(today - timedelta(days=back)).strftime("%Y-%m-%d") for back in range(DAYS - 1, -1, -1)]
    end_users = d1_rows = 0
    for first in range(0, len(platforms), 2000):
        customers: list[tuple[object, ...]] = []
        subscriptions: list[tuple[object, ...]] = []
        daily: list[tuple[object, ...]] = []
        usage: list[KVWrite] = []
        for i, _, plt, pk in platforms[first : first + 2000]:
            for k in range(END_USERS):
                customer = _user_id(1_000_000_000 + i * END_USERS + k)
                plan = "pro" if k == 0 else "free"
                customers.append((customer, plt, pk, f"customer{k}.{i}@seed.example", plan))
                if plan == "pro":
                    subscriptions.append((f"sub_seed{i:09d}", plt, customer, "pro", "active", PRO_CENTS, "usd"))
                calls = [rng.randrange(0, 13 if plan == "free" else 400) for _ in days]  # within each tier's limit
                daily += [(plt, customer, day, n) for day, n in zip(days, calls, strict=True)]
                record = {"usageCount": sum(calls), "plan": plan, "lastUpdated": int(now), "periodStart": start}
                usage.append(KVWrite(layout.end_user_usage(plt, customer), json.dumps({**record, "periodEnd": end})))
                end_users += 1
        _insert(store, "customers", ("id", "platform_id", "publishable_key", "email", "plan"), customers)
        _insert(
            store,
            "subscriptions",
            ("id", "platform_id", "customer_id", "tier", "status", "amount", "currency"),
            subscriptions,
        )
        _insert(store, "usage_daily", ("platform_id", "customer_id", "day", "calls"), daily)
        usage.sort(key=lambda item: item.key)
        store.kv(API_USAGE).bulk_put(usage)
        d1_rows += len(customers) + len(subscriptions) + len(daily)
    return end_users, d1_rows


def seed_vendors(
    emulator: Any,
    platforms: list[tuple[int, str, str, str]],
    *,
    paying: float,
    seed_value: int = 1,
) -> tuple[int, int]:
    """The developers in the emulated vendors: each a Clerk user of the dream-api instance (its plan in
    public_metadata), and a `paying` fraction on plan paid with an active Stripe subscription to the platform's own
    price, made by the emulated Stripe's own code (as `dream flow pay` makes one). (developers, paying) written."""
    from dreamcli.platform.onboarding import platform_price_id
    from dreamcli.vendors.settings import DREAM_API, Vendors, settings_from_emulator

    rng = random.Random(seed_value + 2)
    vendors = Vendors(settings_from_emulator(emulator.config()), emulator.client())
    try:
        price = platform_price_id(vendors)
    finally:
        vendors.http.close()
    account = emulator.stripe._ensure_platform()["id"]
    paid = {i for i, *_ in platforms if rng.random() < paying}
    for first in range(0, len(platforms), 10_000):
        chunk = platforms[first : first + 10_000]
        emulator.clerk.import_users(
            DREAM_API,
            [
                {
                    "id": user,
                    "email": f"developer{i}@seed.example",
                    "public_metadata": {"plan": "paid" if i in paid else "free"},
                }
                for i, user, _, _ in chunk
            ],
        )
    for i, user, _, _ in platforms:
        if i not in paid:
            continue
        customer = emulator.stripe.create_customer(
            account,
            {
                "email": f"developer{i}@seed.example",
                "payment_method": "pm_card_visa",
                "invoice_settings": {"default_payment_method": "pm_card_visa"},
                "metadata": {"userId": user},
            },
        )
        emulator.stripe.create_subscription(
            account, {"customer": customer["id"], "items": [{"price": price}], "metadata": {"userId": user}}
        )
    return len(platforms), len(paid)
