"""The KV namespace contract, run against every store adapter through the `store` fixture."""

from __future__ import annotations

import pytest

from dreamcli.errors import KVError
from dreamcli.stores.ports import KVNamespace, KVWrite, iter_keys


@pytest.fixture
def ns(store) -> KVNamespace:
    return store.kv("api-tokens")


def test_every_adapter_is_a_namespace_whose_scans_tell_nobody_until_asked(store):
    for name in store.namespaces:
        namespace = store.kv(name)
        assert isinstance(namespace, KVNamespace) and namespace.scan_observer is None


def test_count_is_a_declared_capability(store, ns):
    """Every adapter answers `count` (the progress total of verify): a number where counting is cheap, else None."""
    ns.put("a", "1")
    ns.put("b", "2")
    counted = ns.count()
    assert counted == (None if store.kind == "cloudflare" else 2)


def test_put_get_text_and_binary(ns):
    ns.put("text", "héllo")
    ns.put("binary", bytes(range(256)))
    assert ns.get("text") == "héllo".encode()
    assert ns.get("binary") == bytes(range(256))
    assert ns.get("missing") is None


def test_overwrite_replaces_value_and_metadata(ns):
    ns.put("k", "one", metadata={"v": 1})
    ns.put("k", "two")
    found = ns.get_with_metadata("k")
    assert (found.value, found.metadata) == (b"two", None)


def test_metadata_round_trip(ns):
    ns.put("k", "v", metadata={"plan": "pro", "n": [1, 2]})
    found = ns.get_with_metadata("k")
    assert found.metadata == {"plan": "pro", "n": [1, 2]}
    assert ns.list(limit=10).keys[0].metadata == {"plan": "pro", "n": [1, 2]}


def test_namespaces_are_isolated(store):
    store.kv("api-tokens").put("same", "a")
    assert store.kv("platform-tokens").get("same") is None
    assert store.kv("a9f3331b0c8b48d58c32896482484208").get("same") == b"a"  # by namespace id


def test_delete_and_delete_missing(ns):
    ns.put("k", "v")
    ns.delete("k")
    ns.delete("k")
    assert ns.get("k") is None


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("", "Key names must not be empty"),
        (".", 'Illegal key name ".". Please use a different name.'),
        ("..", 'Illegal key name "..". Please use a different name.'),
        ("k" * 513, "UTF-8 encoded length of 513 exceeds key length limit of 512."),
        ("é" * 257, "UTF-8 encoded length of 514 exceeds key length limit of 512."),
    ],
)
def test_key_limits(ns, key, message):
    with pytest.raises(KVError, match=message.replace(".", r"\.").replace("(", r"\(")):
        ns.put(key, "v")
    with pytest.raises(KVError):
        ns.get(key)


def test_key_of_512_bytes_is_fine(ns):
    ns.put("k" * 512, "v")
    ns.put("é" * 256, "v")
    assert ns.get("k" * 512) == b"v"


def test_value_limit(ns):
    limit = 25 * 1024 * 1024
    ns.put("max", b"x" * limit)
    assert len(ns.get("max")) == limit
    with pytest.raises(KVError, match=f"Value length of {limit + 1} exceeds limit of {limit}."):
        ns.put("over", b"x" * (limit + 1))
    assert ns.get("over") is None


def test_metadata_limit(ns):
    ns.put("ok", "v", metadata={"a": "x" * (1024 - 8)})  # {"a":"..."} is exactly 1024 bytes
    with pytest.raises(KVError, match="Metadata length of 1025 exceeds limit of 1024."):
        ns.put("over", "v", metadata={"a": "x" * (1024 - 7)})
    with pytest.raises(KVError, match="Metadata must be serialisable as JSON"):
        ns.put("bad", "v", metadata={"a": object()})


def test_ttl_limits_and_expiry(ns, clock):
    with pytest.raises(KVError, match="Invalid expiration_ttl of 59. Expiration TTL must be at least 60."):
        ns.put("k", "v", expiration_ttl=59)
    with pytest.raises(KVError, match="Please specify integer greater than 0"):
        ns.put("k", "v", expiration_ttl=0)
    ns.put("k", "v", expiration_ttl=60)
    found = ns.get_with_metadata("k")
    assert found.expiration == int(clock()) + 60
    clock.advance(59)
    assert ns.get("k") == b"v"
    assert [key.name for key in ns.list(limit=10).keys] == ["k"]
    clock.advance(1)
    assert ns.get("k") is None
    assert ns.list(limit=10).keys == []
    assert ns.bulk_get(["k"]) == {"k": None}


def test_absolute_expiration_limits(ns, clock):
    now = int(clock())
    with pytest.raises(KVError, match="greater than the current number of seconds"):
        ns.put("k", "v", expiration=now)
    with pytest.raises(KVError, match="Expiration times must be at least 60 seconds in the future"):
        ns.put("k", "v", expiration=now + 59)
    ns.put("k", "v", expiration=now + 60)
    assert ns.list(limit=10).keys[0].expiration == now + 60


def test_ttl_wins_over_expiration(ns, clock):
    now = int(clock())
    ns.put("k", "v", expiration=now + 10_000, expiration_ttl=120)
    assert ns.get_with_metadata("k").expiration == now + 120


def test_list_is_utf8_byte_order(ns):
    names = ["b", "a", "Z", "é", "z", "\U0001f600", "ab", "a:b", "~"]
    ns.bulk_put([KVWrite(name, "v") for name in names])
    listed = [key.name for key in ns.list(limit=100).keys]
    assert listed == sorted(names, key=lambda name: name.encode("utf-8"))


def test_list_limit_bounds(ns):
    for bad in (9, 1001, 0):
        with pytest.raises(KVError, match=f"Invalid limit of {bad}"):
            ns.list(limit=bad)


def test_list_pages_with_cursor_and_prefix(ns):
    ns.bulk_put(
        [KVWrite(f"user:{i:03}:platformId", "p") for i in range(25)] + [KVWrite("zzz", "v"), KVWrite("use", "v")]
    )
    first = ns.list(prefix="user:", limit=10)
    assert len(first.keys) == 10 and not first.list_complete and first.cursor
    second = ns.list(prefix="user:", limit=10, cursor=first.cursor)
    third = ns.list(prefix="user:", limit=10, cursor=second.cursor)
    assert third.list_complete and third.cursor == ""
    names = [key.name for page in (first, second, third) for key in page.keys]
    assert names == [f"user:{i:03}:platformId" for i in range(25)]


def test_list_exact_multiple_of_limit_ends_cleanly(ns):
    ns.bulk_put([KVWrite(f"k{i:02}", "v") for i in range(20)])
    first = ns.list(limit=10)
    second = ns.list(limit=10, cursor=first.cursor)
    assert not first.list_complete
    assert second.list_complete and len(second.keys) == 10


def test_cursor_survives_deletion_of_its_key(ns):
    ns.bulk_put([KVWrite(f"k{i:02}", "v") for i in range(30)])
    first = ns.list(limit=10)
    ns.delete(first.keys[-1].name)
    ns.put("k99", "v")
    rest = []
    cursor = first.cursor
    while cursor:
        page = ns.list(limit=10, cursor=cursor)
        rest += [key.name for key in page.keys]
        cursor = page.cursor
    assert rest == [f"k{i:02}" for i in range(10, 30)] + ["k99"]


def test_bad_cursor_is_refused(ns):
    with pytest.raises(KVError, match="Invalid cursor"):
        ns.list(limit=10, cursor="not-a-cursor")


def test_iter_keys_follows_every_page(ns):
    ns.bulk_put([KVWrite(f"k{i:04}", "v") for i in range(2500)])
    assert [key.name for key in iter_keys(ns, page_size=1000)] == [f"k{i:04}" for i in range(2500)]


def test_bulk_put_is_all_or_nothing(ns):
    with pytest.raises(KVError, match="exceeds key length limit"):
        ns.bulk_put([KVWrite("good", "v"), KVWrite("x" * 600, "v")])
    assert ns.get("good") is None


@pytest.mark.parametrize("extra", [{}, {"metadata": {"n": 1}}], ids=["plain", "with metadata"])
def test_a_key_written_twice_in_one_bulk_write_keeps_the_last(ns, extra):
    """Sorted into key order before writing (the emulator's B-tree), the batch must still apply in the order given."""
    ns.bulk_put([KVWrite("b", b"first", **extra), KVWrite("a", b"x"), KVWrite("b", b"second", **extra)])
    assert ns.get("b") == b"second"
    assert ns.get("a") == b"x"


def test_bulk_limits(ns):
    with pytest.raises(KVError, match="Bulk write of 10001 keys exceeds the limit of 10000"):
        ns.bulk_put([KVWrite(f"k{i}", "v") for i in range(10_001)])
    assert ns.list(limit=10).keys == []
    with pytest.raises(KVError, match="Bulk get of 101 keys exceeds the limit of 100"):
        ns.bulk_get([f"k{i}" for i in range(101)])
    with pytest.raises(KVError, match="Bulk delete of 10001 keys exceeds the limit of 10000"):
        ns.bulk_delete([f"k{i}" for i in range(10_001)])


def test_bulk_put_10000_get_and_delete(ns):
    ns.bulk_put([KVWrite(f"k{i:05}", str(i), metadata={"i": i}) for i in range(10_000)])
    got = ns.bulk_get(["k00007", "k09999", "absent"])
    assert got["k00007"].value == b"7" and got["k00007"].metadata == {"i": 7}
    assert got["k09999"].value == b"9999"
    assert got["absent"] is None
    ns.bulk_delete([f"k{i:05}" for i in range(0, 10_000, 2)])
    assert len(list(iter_keys(ns))) == 5000


def test_bulk_put_with_ttl(ns, clock):
    ns.bulk_put([KVWrite("a", "1", expiration_ttl=60), KVWrite("b", "2")])
    clock.advance(60)
    assert ns.bulk_get(["a", "b"])["a"] is None
    assert ns.get("b") == b"2"


def test_keys_holding_a_value_are_found_alike_in_sql_and_by_scan(store, clock, ns):
    """`keys_holding` (list_keys' legacy pairs): exact values, under the prefix only, live keys only, in key order;
    the SQL path (the emulator) and the scan (wrangler, Cloudflare) answer alike."""
    from dreamcli.stores.ports import keys_holding

    now = int(store.clock())
    ns.put("publishablekey:pk_b:platformId", "plt_1")
    ns.put("publishablekey:pk_a:platformId", "plt_1")
    ns.put("publishablekey:pk_c:platformId", "plt_10")  # a longer value with the same start: not it
    ns.put("publishablekey:pk_d:platformId", "plt_1", expiration=now + 60)
    ns.put("secretkey:x:publishableKey", "plt_1")  # outside the prefix
    ns.put("publishablekey:pk_e:platformId", bytes([0xFF, 0xFE]))  # not UTF-8: never a match, never an error
    found = keys_holding(ns, ["plt_1", "plt_2"], prefix="publishablekey:", now=now)
    assert found == {
        "plt_1": ["publishablekey:pk_a:platformId", "publishablekey:pk_b:platformId", "publishablekey:pk_d:platformId"],
        "plt_2": [],
    }
    clock.advance(120)
    later = keys_holding(ns, ["plt_1"], prefix="publishablekey:", now=int(store.clock()))
    assert later == {"plt_1": ["publishablekey:pk_a:platformId", "publishablekey:pk_b:platformId"]}
