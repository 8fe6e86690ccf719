"""`dream overview`: the operator's view across developers."""

from __future__ import annotations

from dreamcli.platform.overview import monthly


def test_monthly_normalisation():
    assert monthly(1200, 1, "year", 1) == 100
    assert monthly(1500, 2, "month", 1) == 3000
    assert monthly(1500, 1, "month", 3) == 500
    assert round(monthly(100, 1, "week", 1)) == 433


def test_developers_paying_mrr_and_the_busiest_platforms(dream):
    first = dream.json("flow", "run", "--json")
    second = dream.json("flow", "run", "--json")
    dream("flow", "signup", "--email", "free@example.com")  # signed up, never paid
    env = {"DREAM_NOW": "1800000000"}  # 2027-01-15
    rows = [
        (first["platformId"], "u1", "2027-01-14", 40),
        (first["platformId"], "u2", "2027-01-10", 10),
        (second["platformId"], "u3", "2027-01-13", 70),
        (second["platformId"], "u3", "2026-11-01", 1000),  # outside a 30-day window
    ]
    for platform, user, day, calls in rows:
        done = dream(
            "d1",
            "execute",
            "--command",
            "INSERT INTO usage_daily VALUES (?, ?, ?, ?)",
            "--param",
            platform,
            "--param",
            user,
            "--param",
            day,
            "--param",
            str(calls),
            env=env,
        )
        assert done.exit_code == 0, done.stderr
    data = dream.json("overview", "--json", env=env)
    assert data["developers"] == 3 and data["developersByPlan"] == {"free": 1, "paid": 2}
    assert data["payingDevelopers"] == 2 and data["mrr"] == {"usd": 3000}  # two developers at $15/month
    assert [(r["platform_id"], r["calls"], r["customers"]) for r in data["topPlatforms"]] == [
        (second["platformId"], 70, 1),
        (first["platformId"], 50, 2),
    ]
    wide = dream.json("overview", "--days", "120", "--top", "1", "--json", env=env)
    assert [(r["platform_id"], r["calls"]) for r in wide["topPlatforms"]] == [(second["platformId"], 1070)]
    shown = dream("overview", env=env)
    assert "paying: 2" in shown.stdout and "MRR: 30.00 USD (2 active subscriptions)" in shown.stdout


def test_after_dream_seed_every_view_has_data(dream):
    """`dream seed` writes what every view reads (it wrote only the token keys: overview said "developers: 0"):
    developers in Clerk with their plan, the paying ones subscribed in Stripe, each platform's end-users in D1
    with their subscriptions and daily calls, and their month in api-usage; the seeded store verifies clean."""
    import json

    seeded = dream.json("seed", "--platforms", "40", "--paying", "0.5", "--json")
    assert (seeded["platforms"], seeded["endUsers"], seeded["developers"]) == (40, 120, 40)
    assert 0 < seeded["paying"] < 40  # a fraction, drawn from the seed
    over = dream.json("overview", "--json")
    assert over["developers"] == 40 and over["payingDevelopers"] == seeded["paying"]
    assert over["activeSubscriptions"] == seeded["paying"]
    assert over["mrr"] == {"usd": seeded["paying"] * 1500}  # the guide's $15 a month each, in cents
    top = over["topPlatforms"][0]
    assert top["customers"] == 3 and top["calls"] > 0
    board = dream.json("dashboard", "-p", top["platform_id"], "--json")
    assert board["customersByPlan"] == {"free": 2, "pro": 1} and board["mrrCents"] == 2900
    assert board["endUsers"] == 3 and len(board["daily"]) == 7
    assert sum(row["usageCount"] for row in board["usage"]) == sum(day["calls"] for day in board["daily"])
    assert all(row["usageCount"] <= row["limit"] for row in board["usage"])  # within each tier's limit
    listed = dream.json("customers", "list", "-p", top["platform_id"], "--json")["customers"]
    assert sorted(c["plan"] for c in listed) == ["free", "free", "pro"]
    assert dream("kv", "verify").exit_code == 0
    again = dream("seed", "--platforms", "5", "--keys-only", "--json")
    assert json.loads(again.stdout)["endUsers"] == 0  # the keys alone
