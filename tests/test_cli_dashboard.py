"""`dream customers`, `dream usage` and `dream dashboard` through the CLI."""

from __future__ import annotations

from dreamcli.errors import ExitCode
from dreamcli.platform import customers as core
from dreamcli.platform.runtime import authenticate, record_usage
from emulator.store import open_emulator_store


def test_customers_usage_and_dashboard(dream, tmp_path):
    run = dream.json("flow", "run", "--json")
    store = open_emulator_store(tmp_path / "store.db")
    core.ensure_schema(store)
    caller = authenticate(store, run["secretKey"])
    store.database.execute(
        "INSERT INTO customers (id, platform_id, publishable_key, email, plan) VALUES ('c1', ?, ?, 'c@x.io', 'pro')",
        [run["platformId"], run["publishableKey"]],
    )
    store.database.execute(
        "INSERT INTO subscriptions (id, platform_id, customer_id, tier, status, amount) VALUES ('s1', ?, 'c1', 'pro', 'active', 2900)",
        [run["platformId"]],
    )
    daily = core.DailyUsageBuffer(store)
    for _ in range(3):
        record_usage(store, caller, "c1", "pro", now=1_800_000_000)
        daily.add(run["platformId"], "c1", 1_800_000_000)
    daily.flush()
    store.close()
    plt = run["platformId"]
    listed = dream.json("customers", "list", "-p", plt, "--json")["customers"]
    assert [(c["id"], c["plan"]) for c in listed] == [("c1", "pro")]
    assert dream.json("customers", "show", "c1", "-p", plt, "--json")["email"] == "c@x.io"
    assert dream("customers", "show", "c2", "-p", plt).exit_code == ExitCode.NOT_FOUND
    csv = dream("customers", "export", "-p", plt).stdout.splitlines()
    assert csv[0].startswith("id,platform_id,publishable_key,email") and csv[1].startswith("c1,")
    usage = dream.json("usage", "show", "-p", plt, "--json")["usage"]
    assert usage == [
        {
            "userId": "c1",
            "plan": "pro",
            "usageCount": 3,
            "limit": 10000,
            "periodStart": usage[0]["periodStart"],
            "periodEnd": usage[0]["periodEnd"],
        }
    ]
    data = dream.json("dashboard", "-p", plt, "--json")
    assert data["customersByPlan"] == {"pro": 1} and data["mrrCents"] == 2900 and data["daily"][0]["calls"] == 3
    shown = dream("dashboard", "-p", plt)
    assert "MRR: $29.00" in shown.stdout and "calls per day" in shown.stdout
    assert dream("dashboard", "-p", "plt_unknown").exit_code == ExitCode.NOT_FOUND


def test_usage_for_one_user_is_that_user_only(dream, tmp_path):
    """`--user u1` once listed u10 and u11 too: the exact key was used as a scan prefix."""
    run = dream.json("flow", "run", "--json")
    store = open_emulator_store(tmp_path / "store.db")
    caller = authenticate(store, run["secretKey"])
    for user in ("u1", "u10", "u11"):
        record_usage(store, caller, user, "free", now=1_800_000_000)
    store.close()
    one = dream.json("usage", "show", "-p", run["platformId"], "--user", "u1", "--json")["usage"]
    assert [row["userId"] for row in one] == ["u1"]
    every = dream.json("usage", "show", "-p", run["platformId"], "--json")["usage"]
    assert sorted(row["userId"] for row in every) == ["u1", "u10", "u11"]
    assert dream.json("usage", "show", "-p", run["platformId"], "--user", "nobody", "--json")["usage"] == []


def test_daily_usage_flush_writes_every_row_in_chunks(tmp_path):
    """The buffer writes 25 rows a statement (D1's 100 parameters): 60 users and repeats all land, summed."""
    store = open_emulator_store(tmp_path / "daily.db")
    core.ensure_schema(store)
    daily = core.DailyUsageBuffer(store, interval=3600)
    for _ in range(3):
        for user in range(60):
            daily.add("plt_x", f"u{user}", 1_800_000_000)
        daily.flush()
    rows = store.database.execute("SELECT customer_id, calls FROM usage_daily ORDER BY customer_id").results
    store.close()
    assert len(rows) == 60 and all(row["calls"] == 3 for row in rows)


def test_the_chart_catches_up_without_another_call(tmp_path):
    """Calls within `interval` of a flush reach D1 when it ends, not at the next call (4 calls showed as 1)."""
    import time

    store = open_emulator_store(tmp_path / "lag.db")
    core.ensure_schema(store)
    daily = core.DailyUsageBuffer(store, interval=0.2)
    for _ in range(4):
        daily.add("plt_x", "u1", 1_800_000_000)
    counted = lambda: store.database.execute("SELECT sum(calls) AS n FROM usage_daily").results[0]["n"]  # noqa: E731
    assert counted() == 1  # the first call flushed at once, the next three wait for the interval
    deadline = time.monotonic() + 5
    while counted() != 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert counted() == 4
    daily.flush()
    store.close()
