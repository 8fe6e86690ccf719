"""The verifier Worker (dreamcli/data/verifier/index.js) under real `wrangler dev`, over wrangler state dream seeded,
driven by the CLI exactly as a deployed one: the same findings and JSON as verify reading the files itself, secret
values never in clear on the wire, its secret required, its refusals, repair through its bindings. The deployed path
(`wrangler deploy`, then `wrangler delete`) with a stand-in wrangler, and the project it deploys with wrangler's own
dry run. `bench/verifier_bench.py` runs the same at 100,000 platforms."""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
import stat
import subprocess
import tempfile
from pathlib import Path

import httpx
import pytest

from dreamcli import layout
from dreamcli.platform import synthetic
from dreamcli.stores.ports import KVWrite
from dreamcli.stores.verifier import (
    SCANNED,
    Verifier,
    VerifierError,
    through_worker,
    verifier_for,
)
from dreamcli.stores.wrangler import open_wrangler_store
from dreamcli.topology import GUIDE_TOPOLOGY
from tests.conftest import copy_workers, served_cloudflare
from tests.interop.test_wrangler import WRANGLER

# Tests that run the Worker under real wrangler carry `needs_wrangler`; the ones with a Python stand-in for
# wrangler need nothing.
pytestmark = [pytest.mark.socket]
needs_wrangler = pytest.mark.peer("wrangler")

PLATFORMS = int(os.environ.get("DREAM_TEST_VERIFIER_PLATFORMS", "1500"))
PLAINTEXT = "sk_live_" + "ab" * 32
ACCESS_TOKEN = "sk_test_" + "cd" * 16


def seeded(tmp_path: Path, platforms: int = PLATFORMS) -> str:
    """A copy of the guide's project whose workers share one state folder, seeded with `platforms` developers (2% of
    them broken), and keys of every sort a scan must carry: the guide's plaintext secret, a stale Stripe token, ids of
    other shapes (outside every shard), a key with a newline, values in other scripts."""
    project = copy_workers(tmp_path / "workers")
    (project / ".state").mkdir()
    spec = f"{project},persist-to=.state"
    store = open_wrangler_store(spec)
    try:
        synthetic.seed(store, platforms, drift=0.02)
        user = "user_2legacyPlaintextHolder000000"
        plt, *others = itertools.islice(synthetic.platform_ids(store), 4)
        pt = store.kv("platform-tokens")
        owner, *owners = [pt.get(layout.platform_user_id(p)).decode() for p in (plt, *others)]
        # Tokens sealed field by field must compare as Python compares them: equal whatever the order of their keys
        # at any depth, unequal when a nested value differs, corrupt when the access token is no string.
        nested = {"accessToken": "sk_test_n", "stripeUserId": "acct_n", "extra": {"a": 1, "b": [1, {"c": 2}]}}
        reordered = {"extra": {"b": [1, {"c": 2}], "a": 1.0}, "stripeUserId": "acct_n", "accessToken": "sk_test_n"}
        changed = {**nested, "extra": {"a": 1, "b": [1, {"c": 3}]}}
        tricky = [
            (nested, reordered),
            (nested, changed),
            ({"accessToken": 12345, "stripeUserId": "acct_n"}, {"accessToken": 12345, "stripeUserId": "acct_n"}),
        ]
        pairs = [
            pair
            for (platform_token, user_token), p, o in zip(tricky, others, owners, strict=True)
            for pair in (
                (layout.platform_stripe_token(p), json.dumps(platform_token)),
                (layout.user_stripe_token(o), json.dumps(user_token)),
            )
        ]
        pairs += [
            (layout.user_platform_id(user), "plt_legacy"),
            (layout.platform_user_id("plt_legacy"), user),
            (layout.user_secret_key(user), PLAINTEXT),
            (layout.user_publishable_key(user), "pk_live_legacy"),
            (layout.publishable_key_platform("pk_live_legacy"), "plt_legacy"),
            (layout.user_stripe_token(owner), json.dumps({"accessToken": ACCESS_TOKEN, "stripeUserId": "acct_x"})),
            ("user:legacy-id:platformId", "plt_nothex!"),
            ("misc:a\nb", "ünïcødé ✓"),
        ]
        pt.bulk_put([KVWrite(key, value) for key, value in pairs])
    finally:
        store.close()
    return spec


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> str:
    return seeded(tmp_path_factory.mktemp("verifier"))


@pytest.fixture(scope="module")
def running(project: str):
    """One verifier under wrangler dev over the module's state, and its client."""
    store = open_wrangler_store(project)
    verifier = verifier_for(store)
    client = verifier.start()
    try:
        yield store, client
    finally:
        verifier.stop()
        store.close()


@needs_wrangler
def test_findings_are_identical_through_the_worker(project, dream):
    plain = dream("--store", f"wrangler:{project}", "kv", "verify", "--json")
    through = dream("--store", f"wrangler:{project}", "kv", "verify", "--via-worker", "--json")
    assert plain.exit_code == through.exit_code == 1, through.stderr
    assert through.stdout == plain.stdout  # byte for byte: findings, order, messages, counts
    found = json.loads(through.stdout)
    assert found["summary"]["keys_scanned"] > 10 * PLATFORMS
    assert found["summary"]["by_class"]["insecure"] == 1  # the plaintext secret, known by its digest alone
    keys = {f["key"] for f in found["findings"]}
    digest = hashlib.sha256(PLAINTEXT.encode()).hexdigest()
    assert layout.secret_key_publishable(digest) in keys  # its missing hash mapping, derived from the digest
    token_findings = [(f["class"], f["message"]) for f in found["findings"] if f["key"].endswith(":stripeToken")]
    assert ("corrupt", "value is not {accessToken, stripeUserId}") in token_findings  # the numeric access token
    assert sum(1 for cls, _ in token_findings if cls == "stale") >= 2  # the nested change and the hand-made one
    assert "starting (wrangler dev) the verifier worker dream-verify-" in through.stderr
    assert "verifier worker: " in through.stderr and " invocations, " in through.stderr


@needs_wrangler
def test_secret_values_never_leave_in_clear(running):
    _, client = running
    out = io.StringIO()
    client.scan_shard("platform-tokens", "", [], out)
    wire = out.getvalue()
    assert PLAINTEXT not in wire and ACCESS_TOKEN not in wire and '"accessToken":"sk_test_' not in wire
    values = dict(json.loads(line) for line in wire.splitlines())
    secret = values[layout.user_secret_key("user_2legacyPlaintextHolder000000")]
    assert secret == layout.SEAL + hashlib.sha256(PLAINTEXT.encode()).hexdigest()
    tokens = [json.loads(v) for k, v in values.items() if k.endswith(":stripeToken")]
    sealed = [t["accessToken"] if isinstance(t["accessToken"], str) else t["accessToken"]["sealed"] for t in tokens]
    assert tokens and all(text.startswith(layout.SEAL) for text in sealed)
    assert '"accessToken":12345' not in wire and any(isinstance(t["accessToken"], dict) for t in tokens)
    assert all(t["stripeUserId"].startswith("acct_") for t in tokens)  # the account is no secret: reports show it
    assert values["misc:a\nb"] == "ünïcødé ✓"  # other values as they are


@needs_wrangler
def test_the_worker_wants_its_secret_and_refuses_what_it_does_not_know(running):
    _, client = running
    url = client.url
    with httpx.Client() as http:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Bearer " + "x" * 43}):
            answer = http.post(url + "/scan", json={"namespace": "platform-tokens"}, headers=headers)
            assert answer.status_code == 401 and answer.json() == {"error": "unauthorized"}
        auth = client._headers()
        for namespace in ("DREAM_VERIFY_TOKEN", "PLATFORM_TOKENS", "__proto__", "api-usage", 7):
            answer = http.post(url + "/scan", json={"namespace": namespace}, headers=auth)
            assert answer.status_code == 400 and "unknown namespace" in answer.json()["error"]
        for body in (b"[]", b"not json", b'"text"'):
            answer = http.post(url + "/scan", content=body, headers=auth)
            assert answer.status_code == 400 and answer.json() == {"error": "the body must be a JSON object"}
        answer = http.post(url + "/scan", json={"namespace": "api-tokens", "skip": "user:"}, headers=auth)
        assert answer.status_code == 400 and "skip must be a list of strings" in answer.json()["error"]
        assert http.get(url + "/keys", headers=auth).status_code == 404
        too_many = {"namespace": "api-tokens", "deletes": [f"k{i}" for i in range(901)]}
        assert http.post(url + "/write", json=too_many, headers=auth).status_code == 413
        # A sealed value is never written: it could only come from a scan, and it is no token.
        sealed = json.dumps({"accessToken": layout.SEAL + "0" * 64, "stripeUserId": "acct_x"})
        put = {"namespace": "platform-tokens", "puts": [{"key": layout.user_stripe_token("user_2x"), "value": sealed}]}
        answer = http.post(url + "/write", json=put, headers=auth).json()
        assert answer["written"] == 0 and "never written" in answer["refused"][0]["why"]
        # What KV itself refuses is said per key, in the envelope, not a 500 (which dream would retry).
        bad = {"namespace": "api-tokens", "puts": [{"key": "k" * 600, "value": "v"}, {"key": "ok", "value": "v"}]}
        answer = http.post(url + "/write", json=bad, headers=auth)
        assert answer.status_code == 200 and answer.json()["written"] == 1
        assert answer.json()["refused"][0]["key"] == "k" * 600 and "512" in answer.json()["refused"][0]["why"]
        http.post(url + "/write", json={"namespace": "api-tokens", "deletes": ["ok"]}, headers=auth)


@needs_wrangler
def test_repair_through_the_worker(tmp_path, dream):
    spec = seeded(tmp_path, 400)
    before = json.loads(dream("--store", f"wrangler:{spec}", "kv", "verify", "--json").stdout)
    assert before["summary"]["by_class"]["stale"] >= 2  # among them the Stripe tokens, copied inside the Worker
    assert any(f["key"].endswith(":stripeToken") and f["class"] == "stale" for f in before["findings"])
    repaired = dream("--store", f"wrangler:{spec}", "kv", "repair", "--via-worker", "--yes", "--json")
    result = json.loads(repaired.stdout)
    after = json.loads(dream("--store", f"wrangler:{spec}", "kv", "verify", "--json").stdout)
    # Everything is repaired but what needs Stripe (the hand-made plt_legacy has no products, so its keys wait for a
    # tier config), a decision (its plaintext secret) or a person (the corrupt values: never guessed at).
    left = {(f["class"], f["key"]) for f in after["findings"]}
    assert all(f["class"] == "corrupt" or f["platform"] == "plt_legacy" for f in after["findings"]), left
    assert result["applied"] == before["summary"]["findings"] - len(left) and result["applied"] > 5
    assert {f["key"] for f in result["failed"]} <= {key for _, key in left}
    store = open_wrangler_store(spec)
    try:
        tokens = [v for k, v in store.kv("platform-tokens").scan(prefix="user:") if k.endswith(":stripeToken")]
        assert tokens and not any(layout.SEAL.encode() in token for token in tokens)  # real tokens were copied
    finally:
        store.close()


@needs_wrangler
def test_a_kept_verifier_serves_the_next_run(running, project, dream):
    """`--keep-worker` leaves the verifier and its address and secret (0600) for the next run, which reuses it instead
    of deploying. The running local verifier stands in for a deployed one: dream reads through it as it would, and as
    any deploy or delete here goes to the emulated REST API (which has no Workers scripts), reaching it at all
    proves the reuse."""
    _, client = running
    with served_cloudflare(Path("cf.db")) as (_, env):
        ids = {name: GUIDE_TOPOLOGY.namespace(name).id for name in SCANNED}
        identity = Verifier(ids, None, env)._identity()
        kept = Path(".dream") / f"verifier-{env['CLOUDFLARE_ACCOUNT_ID']}.json"
        kept.parent.mkdir()
        record = {"name": "dream-verify-kept0001", "url": client.url, "token": client._token, "identity": identity}
        kept.write_text(json.dumps(record))
        plain = dream("--store", f"wrangler:{project}", "kv", "verify", "--json")
        again = dream("--store", "cloudflare", "kv", "verify", "--via-worker", "--keep-worker", "--json", env=env)
        assert again.exit_code == 1 and again.stdout == plain.stdout, again.stderr
        assert "reusing the kept verifier dream-verify-kept0001" in again.stderr
        assert "dream-verify-kept0001 kept for the next --via-worker run" in again.stderr
        assert stat.S_IMODE(kept.stat().st_mode) == 0o600 and json.loads(kept.read_text())["token"] == client._token
        last = dream("--store", "cloudflare", "kv", "verify", "--via-worker", "--json", env=env)
    assert last.exit_code == 1 and last.stdout == plain.stdout
    # Not kept this time: deleted (here wrangler's delete reaches the emulator, which cannot, and dream says so).
    assert "could not delete dream-verify-kept0001: run `wrangler delete --name dream-verify-kept0001`" in last.stderr
    assert not kept.exists()


@needs_wrangler
def test_a_copy_is_refused_when_its_source_changed_since_verify(running):
    store, client = running
    namespace = through_worker(store, client).kv("platform-tokens")
    plt = next(synthetic.platform_ids(store))
    source = layout.platform_stripe_token(plt)
    target = layout.user_stripe_token("user_2copyTarget")
    out = io.StringIO()
    client.scan_shard("platform-tokens", source, [], out)
    (_, seal), *_ = [json.loads(line) for line in out.getvalue().splitlines()]
    assert namespace.copy_sealed([(target, source, layout.SEAL + "f" * 64)]) == [
        (target, f"{source} changed since verify read it")
    ]
    assert namespace.copy_sealed([(target, "platform:plt_gone:stripeToken", seal)])[0][1].endswith("no longer exists")
    assert namespace.copy_sealed([(target, source, seal)]) == []
    assert store.kv("platform-tokens").get(target) == store.kv("platform-tokens").get(source)
    namespace.bulk_delete([target])
    assert store.kv("platform-tokens").get(target) is None


def test_via_worker_refusals(tmp_path, dream):
    assert dream("kv", "verify", "--keep-worker").exit_code == 2
    dream("kv", "put", "k", "v", "--ns", "api-usage")
    refused = dream("kv", "verify", "--via-worker")
    assert refused.exit_code == 2 and "the emulator store is read in place" in refused.stderr
    project = copy_workers(tmp_path / "apart")  # every worker its own state: the live copies are apart
    kept = dream("--store", f"wrangler:{project}", "kv", "verify", "--via-worker", "--keep-worker")
    assert kept.exit_code == 2 and "keeps a deployed verifier" in kept.stderr
    apart = dream("--store", f"wrangler:{project}", "kv", "verify", "--via-worker")
    assert apart.exit_code == 2 and "--merge-into" in apart.stderr


# The deployed path.


@needs_wrangler
def test_the_deployed_project_passes_wranglers_dry_run(tmp_path):
    verifier = Verifier({name: f"{i:032x}" for i, name in enumerate(SCANNED, 1)})
    folder = verifier.write_project()
    try:
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        done = subprocess.run(
            [str(WRANGLER), "deploy", "--dry-run", "--config", "wrangler.json", "--outdir", str(tmp_path / "out")],
            cwd=folder,
            capture_output=True,
            text=True,
            env={**os.environ, "WRANGLER_SEND_METRICS": "false", "CI": "1", "NO_COLOR": "1"},
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        output = done.stdout + done.stderr
        assert "env.PLATFORM_TOKENS (00000000000000000000000000000001)" in output
        assert "env.API_TOKENS (00000000000000000000000000000002)" in output
        assert "DREAM_VERIFY_TOKEN" not in output  # the secret is no var: it goes up with the deployment only
    finally:
        verifier.stop()


@needs_wrangler
def test_the_deploy_goes_where_the_store_points(tmp_path, dream, monkeypatch):
    """dream's CLOUDFLARE_BASE_URL is handed to wrangler as its CLOUDFLARE_API_BASE_URL: pointed at the emulated REST
    API (which has no Workers scripts), real wrangler's deploy reaches it, not Cloudflare, and fails cleanly."""
    private = tmp_path / "tmp"
    private.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    with served_cloudflare(tmp_path / "cf.db") as (_, env):
        failed = dream("--store", "cloudflare", "kv", "verify", "--via-worker", env=env)
    assert failed.exit_code == 4, failed.stderr
    assert "wrangler deploy of the verifier failed" in failed.stderr and "is not a route here" in failed.stderr
    assert env["CLOUDFLARE_API_TOKEN"] not in failed.stderr
    assert not list(private.glob("dream-verifier-*"))  # its private folder removed


STAND_IN = """#!/usr/bin/env python3
import json, os, stat, sys
log = os.environ["STAND_IN_LOG"]
args = sys.argv[1:]
entry = {"args": args, "cwd": os.getcwd()}
if "--secrets-file" in args:
    path = args[args.index("--secrets-file") + 1]
    entry["mode"] = oct(stat.S_IMODE(os.stat(path).st_mode))
    entry["secret_keys"] = sorted(json.load(open(path)))
with open(log, "a") as out:
    out.write(json.dumps(entry) + "\\n")
if args[0] == "deploy":
    print("Uploaded dream-verify (1.2 sec)")
    print("Deployed dream-verify triggers (0.3 sec)")
    if os.environ.get("STAND_IN_SUBDOMAIN") != "off":
        print("  https://dream-verify.example-subdomain.workers.dev")
"""


def stand_in_wrangler(folder: Path) -> tuple[Path, Path]:
    """A wrangler that logs its calls (and what it sees of the secrets file) to the returned log, and deploys nothing."""
    stand_in = folder / "wrangler"
    stand_in.write_text(STAND_IN)
    stand_in.chmod(0o755)
    return stand_in, folder / "calls.jsonl"


def test_a_deployed_verifier_is_deleted_even_when_it_never_answers(tmp_path):
    stand_in, log = stand_in_wrangler(tmp_path)
    environ = {**os.environ, "STAND_IN_LOG": str(log), "CLOUDFLARE_API_TOKEN": "cf-token"}
    verifier = Verifier(dict.fromkeys(SCANNED, "0" * 32), None, environ, wrangler=stand_in, ready_timeout=0.5)
    with pytest.raises(VerifierError, match="did not answer within 0.5 s"):
        verifier.start()  # workers.dev cannot be reached from here
    deploy, delete = [json.loads(line) for line in log.read_text().splitlines()]
    assert deploy["args"][:3] == ["deploy", "--config", "wrangler.json"]
    assert deploy["mode"] == "0o600" and deploy["secret_keys"] == ["DREAM_VERIFY_TOKEN"]
    assert verifier._token not in " ".join(deploy["args"])  # never on a command line
    assert delete["args"] == ["delete", "--name", verifier.name, "--force"]
    assert not Path(deploy["cwd"]).exists() and not Path(delete["cwd"]).exists()  # the secret file with them


def test_a_deployment_without_workers_dev_says_so_and_is_deleted(tmp_path):
    stand_in, log = stand_in_wrangler(tmp_path)
    environ = {**os.environ, "STAND_IN_LOG": str(log), "STAND_IN_SUBDOMAIN": "off"}
    verifier = Verifier(dict.fromkeys(SCANNED, "0" * 32), None, environ, keep=True, wrangler=stand_in)
    with pytest.raises(VerifierError, match="enable the account's workers.dev subdomain"):
        verifier.start()
    calls = [json.loads(line)["args"][0] for line in log.read_text().splitlines()]
    assert calls == ["deploy", "delete"]  # --keep-worker keeps a verifier that served, not one that never could
    assert "CLOUDFLARE" not in repr(verifier) and verifier._token not in repr(verifier)


def test_a_kept_verifier_of_another_kind_is_deleted_not_used(tmp_path):
    stand_in, log = stand_in_wrangler(tmp_path)
    kept = tmp_path / "verifier-acct.json"
    stale = {"account": "acct", "namespaces": {}, "source": "an older verifier"}
    kept.write_text(json.dumps({"name": "dream-verify-old00001", "url": "https://x", "token": "t", "identity": stale}))
    environ = {**os.environ, "STAND_IN_LOG": str(log), "CLOUDFLARE_ACCOUNT_ID": "acct"}
    verifier = Verifier(
        dict.fromkeys(SCANNED, "0" * 32), None, environ, wrangler=stand_in, ready_timeout=0.5, kept=kept
    )
    with pytest.raises(VerifierError, match="did not answer"):
        verifier.start()
    calls = [json.loads(line)["args"] for line in log.read_text().splitlines()]
    assert calls[0] == ["delete", "--name", "dream-verify-old00001", "--force"]  # the old one, never asked anything
    assert calls[1][0] == "deploy" and calls[2] == ["delete", "--name", verifier.name, "--force"]
    assert verifier.name != "dream-verify-old00001" and not kept.exists()


@needs_wrangler
def test_a_killed_via_worker_run_leaves_nothing_serving(project, tmp_path):
    """SIGKILL of `kv verify --via-worker`: its wrangler dev and workerd (serving the state, holding the one-time
    secret) stop with it, and the folder of its secret goes; checked through /proc and the temporary folder."""
    import signal
    import subprocess
    import sys
    import time

    from tests.interop.test_dev import processes_under

    temp = tmp_path / "tmp"
    temp.mkdir()
    dream = str(Path(sys.executable).with_name("dream"))
    run = subprocess.Popen(
        [dream, "--store", f"wrangler:{project}", "kv", "verify", "--via-worker"],
        env={**os.environ, "TMPDIR": str(temp)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120  # guards only
    while not processes_under(temp) and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_under(temp), "the verifier never started"
    run.send_signal(signal.SIGKILL)
    run.wait(timeout=30)
    while (processes_under(temp) or list(temp.glob("dream-verifier-*"))) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_under(temp) == [] and list(temp.glob("dream-verifier-*")) == []
