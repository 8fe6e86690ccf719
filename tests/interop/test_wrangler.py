"""dream and wrangler 4.86 on the same local state: each reads what the other wrote (real wrangler, no mocks)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from dreamcli.stores.wrangler import open_wrangler_store
from tests.conftest import copy_workers
from tests.peers import ROOT, WRANGLER

pytestmark = [pytest.mark.peer("wrangler", "workers")]


@pytest.fixture
def project(tmp_path):
    target = tmp_path / "workers"
    copy_workers(target)
    # the D1 migrations_dir points three levels up from each worker: give it the project's migrations
    shutil.copytree(ROOT / "migrations", tmp_path.parent / "migrations", dirs_exist_ok=True)
    return target


def wrangler(project, worker, *args, check=True):
    env = {**os.environ, "WRANGLER_SEND_METRICS": "false", "CI": "true", "NO_COLOR": "1"}
    result = subprocess.run(
        [str(WRANGLER), *args], cwd=project / worker, capture_output=True, text=True, env=env, timeout=120
    )
    if check and result.returncode != 0:
        raise AssertionError(f"wrangler {' '.join(args)} failed: {result.stderr[-2000:]}")
    return result


def test_dream_reads_what_wrangler_wrote(project, tmp_path):
    wrangler(
        project,
        "front-auth-api",
        "kv",
        "key",
        "put",
        "--local",
        "--binding",
        "TOKENS_KV",
        "user:u1:platformId",
        "plt_1",
        "--metadata",
        '{"source":"wrangler"}',
        "--ttl",
        "3600",
    )
    blob = tmp_path / "blob.bin"
    blob.write_bytes(bytes(range(256)))
    wrangler(
        project,
        "front-auth-api",
        "kv",
        "key",
        "put",
        "--local",
        "--binding",
        "TOKENS_KV",
        "binary",
        "--path",
        str(blob),
    )
    bulk = tmp_path / "bulk.json"
    bulk.write_text(json.dumps([{"key": f"k{i}", "value": f"v{i}"} for i in range(5)]))
    wrangler(project, "api-multi", "kv", "bulk", "put", "--local", "--binding", "TOKENS_KV", str(bulk))
    store = open_wrangler_store(str(project))
    found = store.kv("platform-tokens").get_with_metadata("user:u1:platformId")
    assert found.value == b"plt_1" and found.metadata == {"source": "wrangler"} and found.expiration is not None
    assert store.kv("platform-tokens").get("binary") == bytes(range(256))
    assert [e.name for e in store.kv("api-tokens").list(limit=10).keys] == [f"k{i}" for i in range(5)]
    store.close()


def test_wrangler_reads_what_dream_wrote(project):
    store = open_wrangler_store(str(project))
    store.kv("api-tokens").put(
        "secretkey:" + "a" * 64 + ":publishableKey", "pk_live_x", metadata={"by": "dream"}, expiration_ttl=7200
    )
    store.kv("api-tokens").put("bin", b"\x00\xffdream")
    store.close()
    got = wrangler(
        project,
        "api-multi",
        "kv",
        "key",
        "get",
        "--local",
        "--binding",
        "TOKENS_KV",
        "secretkey:" + "a" * 64 + ":publishableKey",
    )
    assert got.stdout.strip().endswith("pk_live_x")
    listed = wrangler(project, "api-multi", "kv", "key", "list", "--local", "--binding", "TOKENS_KV")
    entries = json.loads(listed.stdout[listed.stdout.index("[") :])
    entry = next(e for e in entries if e["name"].startswith("secretkey:"))
    assert entry["metadata"] == {"by": "dream"} and entry["expiration"] > 0
    binary = subprocess.run(
        [str(WRANGLER), "kv", "key", "get", "--local", "--binding", "TOKENS_KV", "bin"],
        cwd=project / "api-multi",
        capture_output=True,
        env={**os.environ, "WRANGLER_SEND_METRICS": "false"},
    )
    assert binary.stdout.endswith(b"\x00\xffdream")


def d1_execute(project: Path, sql: str, *flags: str) -> Any:
    """`wrangler d1 execute dream-api --local` in api-multi's folder."""
    return wrangler(project, "api-multi", "d1", "execute", "dream-api", "--local", *flags, "--command", sql)


def test_d1_both_ways_and_migrations(project):
    d1_execute(
        project,
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT); INSERT INTO notes (body) VALUES ('from wrangler')",
    )
    store = open_wrangler_store(str(project))
    assert store.database.execute("SELECT body FROM notes").results == [{"body": "from wrangler"}]
    from dreamcli.stores.d1_migrations import apply_migrations

    applied = apply_migrations(store.database, ROOT / "migrations")
    assert [m.name for m in applied] == ["0001_customers.sql", "0002_subscriptions_usage.sql", "0003_usage_monthly.sql"]
    store.database.execute("INSERT INTO customers (id, platform_id, publishable_key) VALUES ('c1', 'plt_1', 'pk_1')")
    store.close()
    listed = wrangler(project, "api-multi", "d1", "migrations", "list", "dream-api", "--local")
    assert "No migrations to apply" in listed.stdout, listed.stdout
    rows = d1_execute(project, "SELECT id, plan FROM customers", "--json")
    assert json.loads(rows.stdout)[0]["results"] == [{"id": "c1", "plan": "free"}]
    # usage_monthly's triggers run in wrangler's own D1 too: a worker's usage_daily upsert reaches the month.
    for calls in (3, 4):
        d1_execute(
            project,
            "INSERT INTO usage_daily (platform_id, customer_id, day, calls) VALUES ('plt_1', 'c1', '2027-01-15', "
            f"{calls}) ON CONFLICT (platform_id, customer_id, day) DO UPDATE SET calls = calls + excluded.calls",
        )
    store = open_wrangler_store(str(project))
    assert store.database.execute("SELECT month, platform_id, calls FROM usage_monthly").results == [
        {"month": "2027-01", "platform_id": "plt_1", "calls": 7}
    ]
    store.close()
