"""`dream customers`, `dream usage` and `dream dashboard` through the CLI."""

from __future__ import annotations

import pytest

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


class Timers:
    """The buffer's timers driven by hand: what was scheduled, run when the test says (no wall clock)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.due: list[tuple[float, object]] = []

    def schedule(self, delay, fn):
        entry = [delay, fn, False]
        self.due.append(entry)

        class Handle:
            def cancel(self) -> None:
                entry[2] = True

        return Handle()

    def fire(self) -> int:
        """Run every scheduled, uncancelled flush; how many ran."""
        ready, self.due = [e for e in self.due if not e[2]], []
        for _, fn, _ in ready:
            fn()
        return len(ready)


def buffer(tmp_path, name, **kwargs):
    store = open_emulator_store(tmp_path / name, **kwargs)
    core.ensure_schema(store)
    timers = Timers()
    daily = core.DailyUsageBuffer(store, interval=0.2, monotonic=lambda: timers.now, schedule=timers.schedule)
    return store, daily, timers


def counted(store) -> int:
    return store.database.execute("SELECT coalesce(sum(calls), 0) AS n FROM usage_daily").results[0]["n"]


def test_the_chart_catches_up_without_another_call(tmp_path):
    """Calls within `interval` of a flush reach D1 when it ends, not at the next call (4 calls showed as 1)."""
    store, daily, timers = buffer(tmp_path, "lag.db")
    daily.add("plt_x", "u1", 1_800_000_000)
    assert [entry[0] for entry in timers.due] == [0.0] and counted(store) == 0  # flushed off the request path
    assert timers.fire() == 1 and counted(store) == 1  # at once
    for _ in range(3):
        daily.add("plt_x", "u1", 1_800_000_000)
    assert [entry[0] for entry in timers.due] == [0.2]  # one timer, for the rest of the interval
    assert timers.fire() == 1
    assert counted(store) == 4
    daily.close()
    store.close()


def hold_d1(store):
    """Another process's long statement: D1's file write-locked from another connection."""
    import sqlite3

    holder = sqlite3.connect(store.database.file.path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    return holder


def test_a_locked_d1_keeps_the_daily_counts_says_so_and_retries(tmp_path, caplog):
    store, daily, timers = buffer(tmp_path, "locked.db", busy_timeout_ms=20)
    daily.add("plt_x", "u1", 1_800_000_000)
    timers.fire()  # written
    timers.now += 1
    holder = hold_d1(store)
    try:
        with caplog.at_level("WARNING", logger="dream.usage"):
            daily.add("plt_x", "u1", 1_800_000_000)
            timers.fire()  # the flush meets the lock
            daily.add("plt_x", "u2", 1_800_000_000)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert daily.pending == {("plt_x", "u1", "2027-01-15"): 1, ("plt_x", "u2", "2027-01-15"): 1}
    assert [r.getMessage() for r in caplog.records] == [
        f"the dashboard's daily usage could not be written to D1 (store {store.database.file.path} is locked by "
        "another process (waited 0.02 s); try again): 1 call kept for a retry in 0.2 s"
    ]
    assert timers.fire() == 1  # the retry, once the lock is gone
    assert counted(store) == 3 and daily.pending == {}
    daily.close()
    store.close()


def test_closing_with_d1_locked_reports_what_the_dashboard_will_not_show(tmp_path, caplog):
    store, daily, timers = buffer(tmp_path, "closing.db", busy_timeout_ms=20)
    daily.add("plt_x", "u1", 1_800_000_000)
    timers.fire()
    daily.add("plt_x", "u1", 1_800_000_000)  # within the interval: pending
    holder = hold_d1(store)
    try:
        with caplog.at_level("WARNING", logger="dream.usage"):
            daily.close()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert caplog.records[-1].levelname == "ERROR"
    assert caplog.records[-1].getMessage() == (
        "the dashboard's daily usage of 1 call was not written to D1 before closing"
    )
    assert timers.fire() == 0  # nothing scheduled after closing
    store.close()


def test_corrupt_usage_records_are_listed_as_such_never_a_crash(dream, tmp_path):
    run = dream.json("flow", "run", "--json")
    plt = run["platformId"]
    assert dream("kv", "put", f"usage:{plt}:bad", "not json", "--ns", "api-usage").exit_code == 0
    assert dream("kv", "put", f"usage:{plt}:nan", '{"usageCount": NaN}', "--ns", "api-usage").exit_code == 0
    rows = {row["userId"]: row for row in dream.json("usage", "show", "-p", plt, "--json")["usage"]}
    assert rows["bad"]["corrupt"] == "not JSON" and rows["bad"]["usageCount"] is None
    assert rows["nan"]["corrupt"] == "usageCount is NaN, not a non-negative integer"
    shown = dream("dashboard", "-p", plt)
    assert shown.exit_code == 0 and "bad\t-\tcorrupt\trefused" in shown.stdout
    assert "corrupt: bad: not JSON" in shown.stderr  # the note beside the table, not in it


@pytest.mark.parametrize("columns", [80, 100, 120])
def test_the_dashboard_is_a_table_at_ordinary_widths_busiest_first(tmp_path, columns):
    """At 80, 100 and 120 columns, with Clerk's 32-character end-user ids, counts in the thousands and a corrupt
    record: one drawn table that fits, the corrupt record first (its calls are refused), then the busiest, the first
    --limit of them, the title saying how many there are."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from tests.test_cli_terminal import on_a_terminal

    env = {**os.environ, "DREAM_STORE": f"emulator:{tmp_path / 'store.db'}", "NO_COLOR": "1"}
    exe = str(Path(sys.executable).with_name("dream"))

    def dream_run(*args: str) -> str:
        return subprocess.run([exe, *args], env=env, cwd=tmp_path, capture_output=True, text=True, check=True).stdout

    plt = json.loads(dream_run("flow", "run", "--json"))["platformId"]
    users = [f"user_2{index:02d}" + "x" * 25 for index in range(25)]  # 32 characters, as Clerk's
    pairs = [
        {"key": f"usage:{plt}:{user}", "value": json.dumps({"usageCount": 37 * index, "plan": "pro"})}
        for index, user in enumerate(users)
    ]
    pairs.append({"key": f"usage:{plt}:user_broken", "value": "not json"})
    (tmp_path / "usage.json").write_text(json.dumps(pairs))
    dream_run("kv", "bulk-put", str(tmp_path / "usage.json"), "--ns", "api-usage")

    code, text = on_a_terminal(["dashboard", "-p", plt], {**env, "COLUMNS": str(columns)}, tmp_path)
    lines = text.splitlines()
    assert code == 0, text
    table = [line for line in lines if line.startswith(("┏", "┃", "┡", "│", "└"))]
    assert table and all(len(line) <= columns for line in table), text
    assert "usage this month: the busiest 20 of 26 end-users" in text and "…" not in text
    rows = [line.split("│")[1].strip() for line in lines if line.startswith("│")]
    assert rows[:3] == ["user_broken", users[24], users[23]] and len(rows) == 20
    assert "888 / 10,000" in text  # 37 x 24 calls of pro's 10,000
    assert "corrupt: user_broken: not JSON" in text

    top = json.loads(dream_run("dashboard", "-p", plt, "--limit", "3", "--json"))
    assert [row["userId"] for row in top["usage"]] == ["user_broken", users[24], users[23]] and top["endUsers"] == 26
    every = json.loads(dream_run("dashboard", "-p", plt, "--limit", "0", "--json"))
    assert len(every["usage"]) == 26
