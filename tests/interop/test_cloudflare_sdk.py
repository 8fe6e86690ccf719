"""Conformance: the official `cloudflare` Python SDK against the emulator's Cloudflare REST API on loopback."""

from __future__ import annotations

import pytest

cloudflare = pytest.importorskip("cloudflare", reason="the cloudflare SDK is a test extra: pip install -e '.[test]'")

from emulator.app import Emulator  # noqa: E402
from emulator.server import LoopbackServer  # noqa: E402

pytestmark = pytest.mark.socket
NS = "a9f3331b0c8b48d58c32896482484208"
DB = "00000000-0000-4000-8000-00000000d1d1"


@pytest.fixture
def sdk(tmp_path):
    emulator = Emulator(tmp_path / "sdk.db")
    with LoopbackServer(emulator.app) as base:
        config = emulator.config(base)["cloudflare"]
        client = cloudflare.Cloudflare(
            api_token=config["api_token"], base_url=config["base_url"], max_retries=0, timeout=10
        )
        yield client, config["account_id"]
    emulator.close()


def test_kv_through_the_official_sdk(sdk):
    cf, account = sdk
    assert NS in [n.id for n in cf.kv.namespaces.list(account_id=account)]
    cf.kv.namespaces.values.update(
        "user:u1:platformId", account_id=account, namespace_id=NS, value=b"plt_1", metadata='{"a":1}'
    )
    assert cf.kv.namespaces.values.get("user:u1:platformId", account_id=account, namespace_id=NS).text() == "plt_1"
    assert cf.kv.namespaces.metadata.get("user:u1:platformId", account_id=account, namespace_id=NS) == {"a": 1}
    cf.kv.namespaces.bulk_update(
        namespace_id=NS, account_id=account, body=[{"key": f"k{i:04}", "value": "v"} for i in range(1500)]
    )
    names = [
        k.name for k in cf.kv.namespaces.keys.list(namespace_id=NS, account_id=account, limit=1000)
    ]  # follows cursors
    assert len(names) == 1501 and names == sorted(names)
    got = cf.kv.namespaces.bulk_get(namespace_id=NS, account_id=account, keys=["k0001", "nope"])
    assert got.values == {"k0001": "v", "nope": None}
    cf.kv.namespaces.bulk_delete(namespace_id=NS, account_id=account, body=["k0001"])
    cf.kv.namespaces.values.delete("user:u1:platformId", account_id=account, namespace_id=NS)
    with pytest.raises(cloudflare.NotFoundError) as caught:
        cf.kv.namespaces.values.get("user:u1:platformId", account_id=account, namespace_id=NS)
    assert caught.value.status_code == 404 and "10009" in str(caught.value)


def test_errors_and_d1_through_the_official_sdk(sdk):
    cf, account = sdk
    assert [
        page.results for page in cf.d1.database.query(database_id=DB, account_id=account, sql="SELECT 1 AS one")
    ] == [[{"one": 1}]]
    with pytest.raises(cloudflare.BadRequestError) as bad_sql:
        cf.d1.database.query(database_id=DB, account_id=account, sql="SELECT * FROM nope")
    assert "7500" in str(bad_sql.value) and "no such table: nope" in str(bad_sql.value)
    with pytest.raises(cloudflare.NotFoundError):
        cf.kv.namespaces.keys.list(namespace_id="0" * 32, account_id=account)
    wrong = cloudflare.Cloudflare(api_token="wrong", base_url=str(cf.base_url), max_retries=0)
    with pytest.raises(cloudflare.PermissionDeniedError):
        wrong.kv.namespaces.list(account_id=account)
