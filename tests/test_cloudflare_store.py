"""The cloudflare store over real HTTP to the emulator's REST API: retries, error codes, the token kept secret."""

from __future__ import annotations

import json

import pytest

from dreamcli.errors import ExitCode, RemoteError, UnknownNamespace
from dreamcli.stores.cloudflare import open_cloudflare_store
from dreamcli.topology import GUIDE_TOPOLOGY, NamespaceRef, Topology
from emulator.app import Emulator
from emulator.server import LoopbackServer

pytestmark = pytest.mark.socket


@pytest.fixture
def served(tmp_path, clock):
    emulator = Emulator(tmp_path / "cf.db", clock=clock)
    with LoopbackServer(emulator.app) as base:
        config = emulator.config(base)["cloudflare"]
        env = {
            "CLOUDFLARE_API_TOKEN": config["api_token"],
            "CLOUDFLARE_ACCOUNT_ID": config["account_id"],
            "CLOUDFLARE_BASE_URL": config["base_url"],
        }
        yield emulator, env
    emulator.close()


def test_retries_on_429_honour_retry_after(served):
    emulator, env = served
    slept = []
    store = open_cloudflare_store(env, sleep=slept.append)
    emulator.cloudflare_knobs.rate_limit, emulator.cloudflare_knobs.window_s = 2, 60
    ns = store.kv("api-tokens")
    ns.put("a", "1")
    ns.put("b", "2")
    with pytest.raises(RemoteError, match=r"rate limited \(971\) after 5 attempts"):
        ns.put("c", "3")
    assert slept and all(seconds >= 1 for seconds in slept)  # Retry-After was honoured
    emulator.cloudflare_knobs.rate_limit = None
    assert ns.get("a") == b"1" and ns.get("c") is None
    store.close()


def test_errors_are_named_and_the_token_never_shown(served):
    _, env = served
    wrong = open_cloudflare_store({**env, "CLOUDFLARE_API_TOKEN": "not-the-token-123"}, sleep=lambda s: None)
    with pytest.raises(RemoteError) as caught:
        wrong.kv("api-tokens").get("k")
    assert "authentication failed (10000)" in str(caught.value) and "not-the-token-123" not in str(caught.value)
    topology = Topology((NamespaceRef("api-tokens", "0" * 32),), GUIDE_TOPOLOGY.database)
    missing = open_cloudflare_store(env, topology=topology, sleep=lambda s: None)
    with pytest.raises(UnknownNamespace, match="namespace not found"):
        missing.kv("api-tokens").list(limit=10)
    assert env["CLOUDFLARE_API_TOKEN"] not in repr(missing.kv("api-tokens").api)


def test_cli_on_the_cloudflare_store(served, dream):
    _, env = served
    assert dream("--store", "cloudflare", "kv", "put", "k", "v", "--ns", "api-tokens", env=env).exit_code == 0
    assert dream("--store", "cloudflare", "kv", "get", "k", "--ns", "api-tokens", env=env).stdout == "v"
    assert dream.json("--store", "cloudflare", "kv", "list", "--ns", "api-tokens", "--json", env=env)["keys"] == [
        {"name": "k"}
    ]
    bad = dream(
        "--store",
        "cloudflare",
        "kv",
        "get",
        "k",
        "--ns",
        "api-tokens",
        env={**env, "CLOUDFLARE_API_TOKEN": "wrong-token-xyz"},
    )
    assert bad.exit_code == ExitCode.REMOTE and "wrong-token-xyz" not in bad.stderr
    unset = dream(
        "--store",
        "cloudflare",
        "kv",
        "get",
        "k",
        "--ns",
        "api-tokens",
        env={"CLOUDFLARE_API_TOKEN": "", "CLOUDFLARE_ACCOUNT_ID": ""},
    )
    assert unset.exit_code == ExitCode.USAGE and "needs CLOUDFLARE_API_TOKEN and CLOUDFLARE_ACCOUNT_ID" in unset.stderr
    sql = dream.json("--store", "cloudflare", "d1", "execute", "-c", "SELECT 1 AS one", "--json", env=env)
    assert sql[0]["results"] == [{"one": 1}]


def test_verify_over_rest_stays_near_the_request_bound(served):
    """keys/1000 list calls + keys/100 bulk gets is the floor; verify may not wander far from it."""
    emulator, env = served
    from dreamcli.platform import replication, synthetic

    store = open_cloudflare_store(env, sleep=lambda s: None)
    synthetic.seed(store, 300)
    api = store.kv("api-tokens").api
    before = api.requests
    result = replication.verify(store)
    used = api.requests - before
    pt, at = 300 * 8, 300 * 3
    bound = sum(-(-n // 1000) + -(-n // 100) for n in (pt, at))
    assert result.clean and used <= 1.2 * bound, (used, bound)
    assert json.dumps(result.as_json())  # nothing unserialisable came back over HTTP
