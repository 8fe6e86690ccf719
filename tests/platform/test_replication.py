"""Replication invariants on synthetic and flow-made data: each class found, each fix safe."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from dreamcli.platform import onboarding, replication, synthetic
from dreamcli.platform.replication import FindingClass as C
from dreamcli.platform.runtime import authenticate
from dreamcli.platform.tiers import parse_tiers
from dreamcli.stores.ports import iter_keys, scan_items
from emulator.store import open_emulator_store

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "tiers"


def found(store):
    return {(str(f.cls), f.namespace, f.key) for f in replication.verify(store).findings}


def repair(store, **flags):
    plan = replication.plan_repair(replication.verify(store), **flags)
    return replication.apply_plan(store, plan)


@pytest.fixture
def seeded(store):
    synthetic.seed(store, 20)
    assert replication.verify(store).clean
    return store


def first_platform(store):
    pt = store.kv("platform-tokens")
    user_key = next(e.name for e in iter_keys(pt, prefix="user:") if e.name.endswith(":platformId"))
    user = user_key.split(":")[1]
    plt = pt.get(user_key).decode()
    pk = pt.get(f"user:{user}:publishableKey").decode()
    return user, plt, pk


def test_two_way_mapping(seeded):
    user, plt, _ = first_platform(seeded)
    pt = seeded.kv("platform-tokens")
    pt.delete(f"platform:{plt}:userId")
    assert found(seeded) == {("missing", "platform-tokens", f"platform:{plt}:userId")}
    repair(seeded)
    assert pt.get(f"platform:{plt}:userId") == user.encode()
    pt.put(f"platform:{plt}:userId", "user_someone_else")
    assert found(seeded) == {("stale", "platform-tokens", f"platform:{plt}:userId")}
    repair(seeded)
    pt.delete(f"user:{user}:platformId")
    assert ("missing", "platform-tokens", f"user:{user}:platformId") in found(seeded)
    repair(seeded)
    assert pt.get(f"user:{user}:platformId") == plt.encode() and replication.verify(seeded).clean


def test_mirrored_keys_missing_stale_orphaned_dangling(seeded):
    _, plt, pk = first_platform(seeded)
    api = seeded.kv("api-tokens")
    api.put(f"publishablekey:{pk}:platformId", "plt_" + "f" * 32)
    api.put("secretkey:" + "a" * 64 + ":publishableKey", "pk_live_nowhere")
    seeded.kv("platform-tokens").put("secretkey:" + "b" * 64 + ":publishableKey", "pk_live_nowhere")
    result = replication.verify(seeded)
    classes = {(str(f.cls), f.namespace, f.key) for f in result.findings}
    assert ("stale", "api-tokens", f"publishablekey:{pk}:platformId") in classes
    assert ("orphaned", "api-tokens", "secretkey:" + "a" * 64 + ":publishableKey") in classes
    assert ("dangling", "platform-tokens", "secretkey:" + "b" * 64 + ":publishableKey") in classes
    assert ("missing", "api-tokens", "secretkey:" + "b" * 64 + ":publishableKey") in classes
    stale = next(f for f in result.findings if f.cls is C.STALE)
    assert (stale.expected, stale.actual, stale.platform) == (plt, "plt_" + "f" * 32, plt)


def test_stripe_tokens_agree(seeded):
    user, plt, _ = first_platform(seeded)
    pt = seeded.kv("platform-tokens")
    pt.put(f"user:{user}:stripeToken", json.dumps({"accessToken": "sk_test_old", "stripeUserId": "acct_old"}))
    result = replication.verify(seeded)
    assert [(str(f.cls), f.key) for f in result.findings] == [("stale", f"user:{user}:stripeToken")]
    assert "sk_test_old" not in json.dumps(result.as_json())  # tokens are shown by account only
    repair(seeded)
    assert pt.get(f"user:{user}:stripeToken") == pt.get(f"platform:{plt}:stripeToken")
    pt.delete(f"platform:{plt}:stripeToken")
    assert found(seeded) == {("missing", "platform-tokens", f"platform:{plt}:stripeToken")}
    repair(seeded)
    assert replication.verify(seeded).clean


def test_corrupt_values(seeded):
    user, plt, pk = first_platform(seeded)
    pt, api = seeded.kv("platform-tokens"), seeded.kv("api-tokens")
    pt.put(f"platform:{plt}:stripeToken", "not json")
    api.put(f"platform:{plt}:tierConfig", '{"tiers": "many"}')
    pt.put(f"publishablekey:{pk}:platformId", "garbage value")
    classes = {(str(f.cls), f.key) for f in replication.verify(seeded).findings}
    assert {
        ("corrupt", f"platform:{plt}:stripeToken"),
        ("corrupt", f"platform:{plt}:tierConfig"),
        ("corrupt", f"publishablekey:{pk}:platformId"),
    } <= classes
    plan = replication.plan_repair(replication.verify(seeded), prune=True, remove_plaintext=True)
    assert all(f.cls is not C.CORRUPT for _, f in plan.fixes)
    assert {f.key for f, why in plan.skipped if why == "reported, not guessed at"} >= {f"platform:{plt}:stripeToken"}


def test_tier_config_stale_against_products(seeded):
    user, plt, _ = first_platform(seeded)
    api = seeded.kv("api-tokens")
    config = json.loads(api.get(f"platform:{plt}:tierConfig"))
    config["tiers"][1]["priceId"] = "price_old"
    api.put(f"platform:{plt}:tierConfig", json.dumps(config))
    result = replication.verify(seeded)
    assert [(str(f.cls), f.key) for f in result.findings] == [("stale", f"platform:{plt}:tierConfig")]
    assert result.findings[0].fix.action is replication.Action.REBUILD_TIER_CONFIG


def test_the_guides_free_tier_without_a_stripe_product_is_valid(seeded):
    """The guide: "If free tier truly has NO Stripe product, then priceId is `null` ... But we still save the tier
    config to KV!" (its example has no productId at all)."""
    user, plt, _ = first_platform(seeded)
    pt, api = seeded.kv("platform-tokens"), seeded.kv("api-tokens")
    config = json.loads(api.get(f"platform:{plt}:tierConfig"))
    products = json.loads(pt.get(f"user:{user}:products"))
    free = next(t for t in config["tiers"] if t["name"] == "free")
    free["priceId"] = None
    del free["productId"]
    for entry in products:
        if entry["tier"] == "free":
            entry["priceId"], entry["productId"] = None, None
    api.put(f"platform:{plt}:tierConfig", json.dumps(config))
    pt.put(f"user:{user}:products", json.dumps(products))
    assert replication.verify(seeded).clean
    free["name"] = None  # a tier without a name is still corrupt
    api.put(f"platform:{plt}:tierConfig", json.dumps(config))
    assert ("corrupt", "api-tokens", f"platform:{plt}:tierConfig") in found(seeded)


def test_a_failed_tier_config_rebuild_never_lets_its_keys_authenticate(store):
    synthetic.seed(store, 3)
    _, plt, pk = first_platform(store)
    api = store.kv("api-tokens")
    keys_before = {e.name for e in iter_keys(api)}
    secret_keys = [k for k in keys_before if k.startswith("secretkey:") and api.get(k) == pk.encode()]
    for key in [f"platform:{plt}:tierConfig", f"publishablekey:{pk}:platformId", *secret_keys]:
        api.delete(key)
    plan = replication.plan_repair(replication.verify(store))
    done, failed = replication.apply_plan(store, plan, build_tier_config=None)
    assert done == 0 and len(failed) == 3 and "Stripe is needed" in failed[0][1]
    assert all("would authenticate without one" in why for _, why in failed[1:])
    assert api.get(f"publishablekey:{pk}:platformId") is None


def test_stripe_check_and_rebuild_on_flow_data(platform, connected):
    store, vendors = platform.store, platform.vendors
    signed = connected("s@example.com")
    result = onboarding.configure_tiers(store, vendors, signed.user_id, parse_tiers(FIXTURES / "guide.toml"))
    build = lambda plt, user: onboarding.tier_config_from_stripe(store, vendors, plt, user)  # noqa: E731
    check = replication.stripe_agreement(store, build)
    assert replication.verify(store, stripe_check=check).clean
    token = json.loads(store.kv("platform-tokens").get(f"platform:{signed.platform_id}:stripeToken"))
    pro = next(p for p in result.products if p["tier"] == "pro")
    vendors.stripe.update_price(token["stripeUserId"], pro["priceId"], metadata={"limit": "50000"})
    assert replication.verify(store).clean  # KV alone cannot see it
    findings = replication.verify(store, stripe_check=check).findings
    assert [(str(f.cls), f.key) for f in findings] == [("stale", f"platform:{signed.platform_id}:tierConfig")]
    plan = replication.plan_repair(replication.verify(store, stripe_check=check))
    replication.apply_plan(store, plan, build_tier_config=build)
    assert authenticate(store, result.secret_key).tier("pro")["limit"] == 50000


def test_memory_does_not_hold_values(store):
    """The checker keeps a few ids per platform, not the namespaces: its state stays small."""
    synthetic.seed(store, 2000)
    import tracemalloc

    tracemalloc.start()
    replication.verify(store)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 8 * 1024 * 1024, peak  # 2,000 platforms, ~22,000 keys


# `dream kv repair --yes --prune`'s core, saying after each batch how far it is ("done total"), so the test kills
# it at a moment it has seen: mid-repair for certain, not by a guess at how long a repair takes.
KILL_REPAIR = """
import sys
from dreamcli.platform import replication
from emulator.store import open_emulator_store
store = open_emulator_store(sys.argv[1])
plan = replication.plan_repair(replication.verify(store), prune=True)
def progress(done, total):  # said after each batch is written, then wait for the test's word to go on: the kill
    print(done, total, flush=True)  # lands where the test saw it, however busy the machine
    sys.stdin.readline()
replication.apply_plan(store, plan, batch_size=int(sys.argv[2]), on_progress=progress)
"""


@pytest.mark.slow
def test_sigkill_at_random_points_always_converges(tmp_path):
    """Kill `dream kv repair --yes` mid-plan, again and again: every re-run converges, nothing is lost."""
    path = tmp_path / "drift.db"
    store = open_emulator_store(path)
    synthetic.seed(store, 6000, drift=0.5, seed_value=9)
    source = {(e.name, store.kv("platform-tokens").get(e.name)) for e in iter_keys(store.kv("platform-tokens"))}
    working_before = working_secrets(store)
    remaining = len(replication.verify(store).findings)
    assert remaining > 2000
    store.close()
    rng = random.Random(5)
    env = {**os.environ, "DREAM_STORE": str(path)}
    dream = Path(sys.executable).with_name("dream")
    kills = []
    for _ in range(6):
        proc = subprocess.Popen(
            [sys.executable, "-c", KILL_REPAIR, str(path), "100"],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        stop_at = rng.uniform(0.1, 0.8)  # the share of the plan after which it dies
        seen = (0, 0)
        for line in proc.stdout:
            seen = tuple(map(int, line.split()))
            if stop_at * seen[1] <= seen[0] < seen[1]:
                proc.send_signal(signal.SIGKILL)  # after a batch it said was written, before the last one
                kills.append(seen)
                break
            proc.stdin.write("\n")  # go on
            proc.stdin.flush()
        proc.stdin.close()
        proc.stdout.close()
        proc.wait(timeout=60)
        if not kills or kills[-1] is not seen:
            assert proc.returncode == 0, seen  # what was left fitted before its stop point: it finished
            break
        assert proc.returncode == -signal.SIGKILL
        check = open_emulator_store(path)
        assert working_before <= working_secrets(check), "a key that authenticated stopped authenticating"
        now = len(replication.verify(check).findings)
        assert now <= remaining, "a killed repair left more to fix than before"
        remaining = now
        check.close()
    final = subprocess.run([str(dream), "kv", "repair", "--yes", "--prune"], env=env, capture_output=True, text=True)
    assert final.returncode == 0, final.stderr
    store = open_emulator_store(path)
    assert replication.verify(store).clean
    after = {(e.name, store.kv("platform-tokens").get(e.name)) for e in iter_keys(store.kv("platform-tokens"))}
    lost = {key for key, _ in source} - {key for key, _ in after}
    assert not lost, f"repair lost platform-tokens keys: {sorted(lost)[:5]}"
    assert working_before <= working_secrets(store)
    store.close()
    assert len(kills) >= 3 and all(0 < done < total for done, total in kills), kills  # each kill landed mid-repair


def working_secrets(store):
    """api-tokens secret hashes that resolve all the way: publishable key -> platform -> tier config."""
    api = store.kv("api-tokens")
    working = set()
    for key, value in scan_items(api, prefix="secretkey:"):
        plt = api.get(f"publishablekey:{value.decode()}:platformId")
        if plt is not None and api.get(f"platform:{plt.decode()}:tierConfig") is not None:
            working.add(key)
    return working


class _ScanOnly:
    """A namespace SQL cannot read in place (as wrangler's and Cloudflare's): verify copies its scan."""

    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def sql_source(self, now):
        return None


def test_verify_reads_in_place_and_from_a_scan_alike(store):
    """The snapshot SQLite joins is the store's own file (emulator) or a copy of its scan (other stores): the
    findings are the same either way."""
    synthetic.seed(store, 200, drift=0.3)
    in_place = replication.verify(store).findings
    scanned = dataclasses.replace(store, namespaces={k: _ScanOnly(v) for k, v in store.namespaces.items()})
    assert in_place and replication.verify(scanned).findings == in_place


def test_verify_leaves_no_files_behind(store, tmp_path, monkeypatch):
    """The snapshot holds Stripe tokens: it lives in a private folder removed when verify ends."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    synthetic.seed(store, 20, drift=0.5)
    assert not replication.verify(store).clean
    assert [p for p in tmp_path.iterdir() if p.name.startswith("dream-verify-")] == []


def test_verify_in_two_processes_finds_what_one_finds(tmp_path):
    """A process with no other thread builds the snapshot in two processes at once (see snapshot._Parts):
    its findings are the same as one process building it alone (as here, under pytest's threads)."""
    store = open_emulator_store(tmp_path / "emulator.db")
    synthetic.seed(store, 300, drift=0.3)
    import threading

    done = threading.Event()
    other = threading.Thread(target=done.wait)  # a second thread: this process builds alone
    other.start()
    try:
        alone = [f.as_json() for f in replication.verify(store, now=1_800_000_000).findings]
    finally:
        done.set()
        other.join()
    script = (
        "import json, sys, threading\n"
        "from dreamcli.platform import replication\n"
        "from emulator.store import open_emulator_store\n"
        "assert threading.active_count() == 1\n"
        "result = replication.verify(open_emulator_store(sys.argv[1]), now=1_800_000_000)\n"
        "print(json.dumps([f.as_json() for f in result.findings]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, store.location],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert alone and json.loads(out.stdout) == alone
