"""`dream keys` through the CLI, with a controllable clock (DREAM_NOW)."""

from __future__ import annotations

import json

from dreamcli.errors import ExitCode

T0 = 1_800_000_000


def at(seconds):
    return {"DREAM_NOW": str(T0 + seconds)}


def onboarded(dream):
    data = dream.json("flow", "run", "--json", env=at(0))
    return data["platformId"], data["publishableKey"], data["secretKey"]


def call(dream, secret, seconds):
    return dream("flow", "call", input=secret, env=at(seconds)).exit_code == 0


def test_create_list_and_secret_shown_once(dream):
    plt, pk, _ = onboarded(dream)
    created = dream.json("keys", "create", "--platform", plt, "--env", "staging", "--json", env=at(10))
    assert created["env"] == "staging" and created["secretKey"].startswith("sk_live_")
    assert call(dream, created["secretKey"], 11)
    listed = dream.json("keys", "list", "--platform", plt, "--json", env=at(20))
    assert [(k["publishableKey"], k["env"], k["status"]) for k in listed["keys"]] == [
        (pk, "production", "active"),
        (created["publishableKey"], "staging", "active"),
    ]
    assert listed["keys"][1]["secretStart"] == created["secretKey"][:12] + "..."
    assert created["secretKey"] not in json.dumps(listed)
    table = dream("keys", "list", "--platform", plt, env=at(20))
    assert "staging" in table.stdout and created["secretKey"] not in table.stdout
    assert dream("kv", "verify").exit_code == 0


def test_rotation_with_grace_has_zero_failed_calls_then_revoke(dream):
    plt, old_pk, old_secret = onboarded(dream)
    rotated = dream.json(
        "keys", "rotate", "--platform", plt, "--env", "production", "--grace", "1h", "--json", env=at(100)
    )
    new_secret = rotated["secretKey"]
    assert rotated["old"] == old_pk and rotated["oldExpiresAt"] == T0 + 100 + 3600
    for moment in (100, 101, 1800, 3699):  # during the grace both work
        assert call(dream, old_secret, moment) and call(dream, new_secret, moment)
    listed = dream.json("keys", "list", "--platform", plt, "--json", env=at(200))
    assert [k["status"] for k in listed["keys"]] == ["expiring", "active"]
    creds = dream.json(
        "flow", "credentials", "--user", dream.json("flow", "status", "--json")["developers"][0]["userId"], "--json"
    )
    assert creds["publishableKey"] == rotated["publishableKey"]  # the developer's primary key follows the rotation
    assert not call(dream, old_secret, 3700) and call(dream, new_secret, 3700)  # after it, only the new one
    assert dream.json("keys", "list", "--platform", plt, "--json", env=at(3700))["keys"][0]["status"] == "expired"
    assert dream("kv", "verify", env=at(3700)).exit_code == 0


def test_revoke_takes_effect_at_once_and_refuses_the_last_pair(dream):
    plt, pk, secret = onboarded(dream)
    last = dream("keys", "revoke", "--platform", plt, "--key", pk, "--yes", env=at(5))
    assert last.exit_code == ExitCode.USAGE and "is the last active pair" in last.stderr
    assert call(dream, secret, 6)
    other = dream.json("keys", "create", "--platform", plt, "--env", "test", "--json", env=at(7))
    revoked = dream("keys", "revoke", "--platform", plt, "--key", pk, "--yes", env=at(8))
    assert revoked.exit_code == 0 and revoked.stderr == f"revoked {pk}\n"
    assert not call(dream, secret, 8) and call(dream, other["secretKey"], 8)
    statuses = {
        k["publishableKey"]: k["status"] for k in dream.json("keys", "list", "-p", plt, "--json", env=at(9))["keys"]
    }
    assert statuses == {pk: "revoked", other["publishableKey"]: "active"}
    again = dream("keys", "revoke", "--platform", plt, "--key", pk, "--yes", env=at(10))
    assert again.exit_code == ExitCode.USAGE and "revoked already" in again.stderr
    forced = dream(
        "keys", "revoke", "--platform", plt, "--key", other["publishableKey"], "--force", "--yes", env=at(11)
    )
    assert forced.exit_code == 0 and not call(dream, other["secretKey"], 11)
    assert dream("kv", "verify", env=at(12)).exit_code == 0


def test_rotation_without_grace_keeps_the_old_pair_until_revoked(dream):
    plt, pk, secret = onboarded(dream)
    rotated = dream.json("keys", "rotate", "--platform", plt, "--key", pk, "--json", env=at(1))
    assert rotated["oldExpiresAt"] is None
    assert call(dream, secret, 10**6) and call(dream, rotated["secretKey"], 10**6)


def test_grace_never_outlives_the_old_keys_own_expiry(dream):
    plt, pk, _ = onboarded(dream)
    first = dream.json("keys", "rotate", "--platform", plt, "--key", pk, "--grace", "2h", "--json", env=at(0))
    assert first["oldExpiresAt"] == T0 + 7200
    create = dream.json("keys", "create", "--platform", plt, "--env", "staging", "--json", env=at(0))
    later = dream.json(
        "keys", "rotate", "--platform", plt, "--key", create["publishableKey"], "--grace", "1d", "--json", env=at(60)
    )
    assert later["oldExpiresAt"] == T0 + 60 + 86400
    # rotating the already-expiring production key again: its grace stays at its own expiry
    again = dream("keys", "rotate", "--platform", plt, "--key", pk, "--grace", "7d", "--json", env=at(120))
    assert json.loads(again.stdout)["oldExpiresAt"] == T0 + 7200


def test_keys_made_before_the_index_are_found(dream):
    plt, pk, _ = onboarded(dream)
    legacy_pk = "pk_live_" + "c" * 32
    digest = "d" * 64
    for ns in ("platform-tokens", "api-tokens"):
        dream("kv", "put", f"publishablekey:{legacy_pk}:platformId", plt, "--ns", ns)
        dream("kv", "put", f"secretkey:{digest}:publishableKey", legacy_pk, "--ns", ns)
    listed = dream.json("keys", "list", "--platform", plt, "--json", env=at(1))
    legacy = next(k for k in listed["keys"] if k["publishableKey"] == legacy_pk)
    assert (legacy["env"], legacy["status"], legacy["indexed"], legacy["secretStart"]) == (
        "legacy",
        "active",
        False,
        None,
    )
    assert dream("keys", "revoke", "-p", plt, "-k", legacy_pk, "--yes", env=at(2)).exit_code == 0
    assert (
        dream("kv", "get", f"secretkey:{digest}:publishableKey", "--ns", "api-tokens").exit_code == ExitCode.NOT_FOUND
    )


def test_refusals(dream):
    plt, pk, _ = onboarded(dream)
    cases = [
        (["keys", "create", "--env", "prod"], ExitCode.USAGE, "give --platform PLT or --user U"),
        (["keys", "create", "-p", plt, "--env", "Prod Env"], ExitCode.USAGE, "env label 'Prod Env'"),
        (["keys", "create", "-p", "plt_nope", "--env", "test"], ExitCode.NOT_FOUND, "platform plt_nope is unknown"),
        (["keys", "rotate", "-p", plt], ExitCode.USAGE, "rotate needs --key PK or --env ENV"),
        (["keys", "rotate", "-p", plt, "--env", "production", "--grace", "soon"], ExitCode.USAGE, "duration 'soon'"),
        (
            ["keys", "rotate", "-p", plt, "--env", "production", "--grace", "30s"],
            ExitCode.USAGE,
            "--grace must be at least 60 s",
        ),
        (["keys", "rotate", "-p", plt, "--env", "staging"], ExitCode.NOT_FOUND, "has no live staging key"),
        (
            ["keys", "revoke", "-p", plt, "-k", "pk_live_unknown", "--yes"],
            ExitCode.NOT_FOUND,
            "pk_live_unknown is not a key of",
        ),
        (
            ["keys", "list", "--user", "nobody@example.com"],
            ExitCode.NOT_FOUND,
            "no developer with email nobody@example.com",
        ),
    ]
    for args, code, message in cases:
        result = dream(*args, env=at(1))
        assert result.exit_code == code, (args, result.stderr)
        assert message in result.stderr and result.stderr.count("\n") == 1


def test_create_needs_a_tier_config(dream):
    dream("flow", "signup", "--email", "early@example.com")
    result = dream("keys", "create", "--user", "early@example.com", "--env", "test")
    assert result.exit_code == ExitCode.USAGE and "has no tier config in api-tokens" in result.stderr


def test_revoke_plans_refuses_without_yes_and_asks_on_a_terminal(dream, tmp_path):
    data = dream.json("flow", "run", "--json")
    plt, pk = data["platformId"], data["publishableKey"]
    created = dream.json(
        "keys", "create", "-p", plt, "--env", "production", "--json"
    )  # a second pair, so revoking the first is allowed
    planned = dream.json("keys", "revoke", "-p", plt, "-k", pk, "--plan", "--json")
    assert planned["schemaVersion"] == 1 and len(planned["deletes"]) == 4
    refused = dream("keys", "revoke", "-p", plt, "-k", pk)
    assert refused.exit_code == ExitCode.USAGE and "refused without --yes" in refused.stderr
    assert dream("flow", "call", input=data["secretKey"]).exit_code == 0  # nothing was revoked
    import os
    import pty
    import subprocess
    import sys
    from pathlib import Path

    dream_exe = str(Path(sys.executable).with_name("dream"))

    def under_a_terminal(answer: bytes) -> tuple[int, bytes]:
        leader, follower = pty.openpty()
        process = subprocess.Popen(
            [dream_exe, "keys", "revoke", "-p", plt, "-k", pk],
            stdin=follower,
            stdout=follower,
            stderr=follower,
            cwd=tmp_path,
            env=os.environ.copy(),
        )
        os.close(follower)
        seen = b""
        while b"[y/N]" not in seen:
            seen += os.read(leader, 1024)
        os.write(leader, answer)
        process.wait(timeout=30)
        try:
            while chunk := os.read(leader, 1024):
                seen += chunk
        except OSError:
            pass
        os.close(leader)
        return process.returncode, seen

    code, shown = under_a_terminal(b"n\n")
    assert code == ExitCode.FAILED and b"nothing changed" in shown
    code, shown = under_a_terminal(b"y\n")
    assert code == 0 and b"revoked " + pk.encode() in shown
    assert dream("flow", "call", input=data["secretKey"]).exit_code == ExitCode.FAILED
    assert created["publishableKey"] != pk


def test_rotate_and_bulk_put_plan_without_changing_anything(dream, tmp_path):
    data = dream.json("flow", "run", "--json", env={"DREAM_NOW": "1800000000"})
    plt, pk = data["platformId"], data["publishableKey"]
    planned = dream.json(
        "keys", "rotate", "-p", plt, "-k", pk, "--grace", "24h", "--plan", "--json", env={"DREAM_NOW": "1800000000"}
    )
    assert planned == {
        "schemaVersion": 1,
        "action": "rotate",
        "old": pk,
        "newPairEnv": "production",
        "oldExpiresAt": 1800000000 + 86400,
    }
    assert len(dream.json("keys", "list", "-p", plt, "--json")["keys"]) == 1  # nothing created
    pairs = tmp_path / "pairs.json"
    pairs.write_text(json.dumps([{"key": f"platform:{plt}:userId", "value": "x"}, {"key": "fresh", "value": "y"}]))
    shown = dream("kv", "bulk-put", str(pairs), "--ns", "platform-tokens", "--plan")
    assert shown.stdout == f"replace\tplatform:{plt}:userId\nnew\tfresh\n"
    assert dream("kv", "get", "fresh", "--ns", "platform-tokens").exit_code == ExitCode.NOT_FOUND
