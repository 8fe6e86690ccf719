"""The overview's figures: counted in SQL on the emulated vendors, the same as listed through their APIs; the MRR trend
from the subscriptions' dates; D1's usage_monthly kept equal to usage_daily by its triggers."""

from __future__ import annotations

from datetime import UTC, datetime

from dreamcli.platform.customers import ensure_schema
from dreamcli.platform.overview import ListedTallies, SubscriptionTerms, Terms, mrr, overview
from dreamcli.vendors.settings import DREAM_API


def _sorted(terms: list[SubscriptionTerms]) -> list[SubscriptionTerms]:
    return sorted(terms, key=lambda s: (s.created, s.status, s.items))


def test_sql_tallies_equal_the_vendors_listings(platform, connected):
    connected("one@example.com")
    connected("two@example.com")
    emulator = platform.emulator
    emulator.clerk.import_users(DREAM_API, [{"id": "user_free", "email": "free@example.com", "public_metadata": {}}])
    account = emulator.stripe.config()["account"]
    price = platform.vendors.stripe.list_prices(None)[0]["id"]
    customer = emulator.stripe.create_customer(
        account,
        {
            "email": "many@example.com",
            "payment_method": "pm_card_visa",
            "invoice_settings": {"default_payment_method": "pm_card_visa"},
        },
    )
    emulator.stripe.create_subscription(
        account, {"customer": customer["id"], "items": [{"price": price}, {"price": price, "quantity": 2}]}
    )
    canceled = emulator.stripe.create_subscription(account, {"customer": customer["id"], "items": [{"price": price}]})
    platform.vendors.stripe.cancel_subscription(None, canceled["id"])
    sql, listed = emulator.tallies(), ListedTallies(platform.vendors)
    assert sql.plans() == listed.plans() == {"paid": 2, "free": 1}
    assert _sorted(sql.subscriptions()) == _sorted(listed.subscriptions())
    assert len(sql.subscriptions()) == 4  # two developers', one with two items, one canceled
    assert any(len(s.items) == 2 for s in sql.subscriptions()) and any(s.ended_at for s in sql.subscriptions())
    now = platform.store.clock()
    by_sql = overview(platform.store, platform.vendors, now=now, tallies=sql)
    by_api = overview(platform.store, platform.vendors, now=now)
    assert by_sql == by_api
    assert by_sql["mrr"] == {"usd": 1500 * 2 + 1500 * 3} and by_sql["activeSubscriptions"] == 3


def test_the_mrr_trend_counts_each_subscription_while_it_bills():
    def at(text: str) -> int:
        return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())

    monthly = (Terms("usd", 1000, 1, "month", 1),)
    yearly = (Terms("eur", 12000, 1, "year", 1),)
    subscriptions = [
        SubscriptionTerms("active", at("2026-09-10"), None, monthly),
        SubscriptionTerms("canceled", at("2026-08-01"), at("2026-10-15"), monthly),
        SubscriptionTerms("active", at("2026-11-20"), None, yearly),
        SubscriptionTerms("incomplete_expired", at("2026-07-01"), None, monthly),  # never billed
    ]
    figures = mrr(subscriptions, now=at("2026-12-03"), months=6)
    assert figures["mrr"] == {"eur": 1000, "usd": 1000} and figures["activeSubscriptions"] == 2
    assert [(m["month"], m["mrr"]) for m in figures["trend"]] == [
        ("2026-07", {}),
        ("2026-08", {"usd": 1000}),
        ("2026-09", {"usd": 2000}),
        ("2026-10", {"usd": 1000}),
        ("2026-11", {"eur": 1000, "usd": 1000}),
        ("2026-12", {"eur": 1000, "usd": 1000}),
    ]


def test_usage_monthly_follows_every_change_to_usage_daily(platform):
    store = platform.store
    ensure_schema(store)
    db = store.database
    db.execute(
        "INSERT INTO usage_daily (platform_id, customer_id, day, calls) VALUES "
        "('plt_a', 'c1', '2027-01-02', 5), ('plt_a', 'c2', '2027-01-03', 7), ('plt_b', 'c3', '2027-02-01', 1)"
    )
    upsert = (
        "INSERT INTO usage_daily (platform_id, customer_id, day, calls) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (platform_id, customer_id, day) DO UPDATE SET calls = calls + excluded.calls"
    )
    db.execute(upsert, ["plt_a", "c1", "2027-01-02", 3])  # the usage flush's upsert
    db.execute("UPDATE usage_daily SET day = '2027-02-02' WHERE customer_id = 'c2'")  # moved to another month
    db.execute("DELETE FROM usage_daily WHERE customer_id = 'c3'")
    rollup = db.execute("SELECT month, platform_id, calls FROM usage_monthly WHERE calls != 0 ORDER BY 1, 2").results
    truth = db.execute(
        "SELECT substr(day, 1, 7) AS month, platform_id, sum(calls) AS calls FROM usage_daily GROUP BY 1, 2 ORDER BY 1, 2"
    ).results
    assert (
        rollup
        == truth
        == [
            {"month": "2027-01", "platform_id": "plt_a", "calls": 8},
            {"month": "2027-02", "platform_id": "plt_a", "calls": 7},
        ]
    )
