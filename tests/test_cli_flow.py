"""`dream flow` through the real CLI on the embedded emulator."""

from __future__ import annotations

import json
import re

import pytest

from dreamcli.errors import ExitCode


def test_run_passes_and_shows_the_secret_once(dream):
    result = dream("flow", "run")
    assert result.exit_code == 0, result.stderr
    assert re.search(r"all 6 steps passed in \d+ ms", result.stderr)
    for phase in ("signup", "pay", "connect", "tiers", "credentials", "api call"):
        assert phase in result.stdout
    secret = re.search(r"secret key \(shown once\): (sk_live_[0-9a-f]{64})", result.stdout).group(1)
    report = dream.json("flow", "status", "--json")["developers"]
    assert len(report) == 1 and report[0]["next"] is None
    creds = dream.json("flow", "credentials", "--user", report[0]["userId"], "--json")
    assert creds["secretKey"] is None and secret not in json.dumps(creds)
    assert (
        dream("kv", "get", f"user:{report[0]['userId']}:secretKey", "--ns", "platform-tokens").exit_code
        == ExitCode.NOT_FOUND
    )


def test_run_json(dream):
    data = dream.json("flow", "run", "--json", "--email", "json@example.com")
    assert data["ok"] is True and [s["phase"] for s in data["steps"]] == [
        "signup",
        "pay",
        "connect",
        "tiers",
        "credentials",
        "api call",
    ]
    assert data["secretKey"].startswith("sk_live_") and all(step["ok"] for step in data["steps"])


def test_fault_run_reproduces_invalid_api_key(dream):
    result = dream("flow", "run", "--fault", "skip-api-replication")
    assert result.exit_code == ExitCode.FAILED
    assert (
        "error: api call: Invalid API key: API key not found or expired (missing in api-tokens: secretkey:"
        in result.stderr
    )
    for missing in (":publishableKey", "publishablekey:pk_live_", ":tierConfig"):
        assert missing in result.stderr
    assert "FAILED" in result.stdout


def test_mimic_plaintext_secret_writes_it_and_says_so(dream):
    data = dream.json("flow", "run", "--json", "--mimic-plaintext-secret")
    stored = dream("kv", "get", f"user:{data['userId']}:secretKey", "--ns", "platform-tokens", "--reveal")
    assert stored.stdout == data["secretKey"]


def test_steps_one_by_one(dream):
    signed = dream("flow", "signup", "--email", "dev@example.com")
    assert signed.exit_code == 0
    user_id, platform_id = signed.stdout.strip().split("\t")
    again = dream("flow", "signup", "--email", "dev@example.com")
    assert again.stdout.strip() == f"{user_id}\t{platform_id}" and "same platform id" in again.stderr
    early = dream("flow", "connect", "--user", "dev@example.com")
    assert early.exit_code == ExitCode.USAGE and "is on plan 'free': pay first" in early.stderr
    assert dream("flow", "pay", "--user", "dev@example.com").stdout == f"{user_id}\tplan paid\n"
    connected = dream.json("flow", "connect", "--user", user_id, "--json")
    assert connected["stripeUserId"].startswith("acct_") and len(connected["wrote"]) == 2
    tiers = dream.json("flow", "tiers", "--user", user_id, "--json")
    assert tiers["secretKey"].startswith("sk_live_") and len(tiers["products"]) == 3
    rerun = dream.json("flow", "tiers", "--user", user_id, "--file", str(_fixture("pro-raise.toml")), "--json")
    assert "secretKey" not in rerun and rerun["publishableKey"] == tiers["publishableKey"]
    creds = dream("flow", "credentials", "--user", user_id)
    assert f"publishable key: {tiers['publishableKey']}" in creds.stdout and tiers["secretKey"] not in creds.stdout


def _fixture(name):
    from pathlib import Path

    return Path(__file__).resolve().parent.parent / "fixtures" / "tiers" / name


def test_connect_denied_and_unknown_user(dream):
    dream("flow", "signup", "--email", "d@example.com")
    dream("flow", "pay", "--user", "d@example.com")
    denied = dream("flow", "connect", "--user", "d@example.com", "--deny")
    assert denied.exit_code == ExitCode.FAILED and denied.stderr == "error: Stripe Connect refused: access_denied\n"
    unknown = dream("flow", "pay", "--user", "nobody@example.com")
    assert unknown.exit_code == ExitCode.NOT_FOUND and "no developer with email nobody@example.com" in unknown.stderr
    forged = dream("flow", "connect", "--code", "ac_x", "--state", "forged")
    assert forged.exit_code == ExitCode.USAGE and "OAuth state is unknown, used already or expired" in forged.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[[tiers]\nname = 'x'", "not valid TOML"),
        (
            'currency = "dollars"\n[[tiers]]\nname = "a"\nprice = 1\nlimit = 1\n',
            "tiers.toml:1: currency must be a three-letter ISO code",
        ),
        (
            '[[tiers]]\nname = "a"\nprice = 1\nlimit = 1\n\n[[tiers]]\nname = "a"\nprice = 2\nlimit = 2\n',
            "tiers.toml:7: tier 'a' is defined twice",
        ),
        (
            '[[tiers]]\nname = "a"\nprice = 1\nlimit = 1\n\n[[tiers]]\nname = "b"\nprice = 2\nlimit = -5\n',
            "tiers.toml:9: tier 'b': limit must be an integer >= 0 or \"unlimited\" (got -5)",
        ),
        ('[[tiers]]\nname = "a"\nprice = -1\nlimit = 1\n', "tiers.toml:3: tier 'a': price must be >= 0 (got -1)"),
        ('[[tiers]]\nname = "a"\nprice = "cheap"\nlimit = 1\n', "tiers.toml:3: tier 'a': price must be a number"),
        ('[[tiers]]\nname = "Pro Plan"\nprice = 1\nlimit = 1\n', "tiers.toml:2: tier 1: name must be lowercase"),
        ('[[tiers]]\nname = "a"\nprice = 1\n', "tiers.toml:1: tier 'a': limit is missing"),
        (
            '[[tiers]]\nname = "a"\nprice = 1\nlimit = 1\ncolour = "red"\n',
            "tiers.toml:5: tier 1: unknown field 'colour'",
        ),
        ('currency = "usd"\n', "no tiers"),
    ],
)
def test_bad_tier_files_name_line_and_field(dream, tmp_path, content, message):
    (tmp_path / "tiers.toml").write_text(content)
    result = dream("flow", "tiers", "--user", "someone", "--file", "tiers.toml")
    assert result.exit_code == ExitCode.USAGE
    assert message in result.stderr and result.stderr.count("\n") == 1


def test_unknown_fault_is_a_usage_error(dream):
    result = dream("flow", "run", "--fault", "everything")
    assert result.exit_code == ExitCode.USAGE and "unknown fault 'everything'" in result.stderr


def test_status_of_an_empty_store(dream, empty_store):
    result = dream("flow", "status")
    assert result.exit_code == 0 and "no developers yet" in result.stderr


def test_tiers_plan_says_what_would_change_and_changes_nothing(dream, tmp_path):
    data = dream.json("flow", "run", "--json")
    raised = tmp_path / "raised.toml"
    raised.write_text(
        'currency = "usd"\n[[tiers]]\nname = "free"\nprice = 0\nlimit = 100\n'
        '[[tiers]]\nname = "pro"\nprice = 39\nlimit = 10000\n[[tiers]]\nname = "team"\nprice = 59\nlimit = 50000\n'
    )
    planned = dream.json("flow", "tiers", "-u", data["userId"], "-f", str(raised), "--plan", "--json")
    actions = {step["tier"]: step["action"] for step in planned["actions"]}
    assert actions == {"free": "keep", "pro": "reprice", "team": "create", "enterprise": "retire"}
    pro = next(step for step in planned["actions"] if step["tier"] == "pro")
    assert pro["was"]["unitAmount"] == 2900 and pro["unitAmount"] == 3900
    after = dream.json("flow", "credentials", "-u", data["userId"], "--json")
    assert sorted(p["tier"] for p in after["products"]) == ["enterprise", "free", "pro"]  # nothing changed
