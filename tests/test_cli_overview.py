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
