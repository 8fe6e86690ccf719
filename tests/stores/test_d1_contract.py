"""The D1 database contract, run against every store adapter."""

from __future__ import annotations

import pytest

from dreamcli.errors import D1Error
from dreamcli.stores.ports import Statement


@pytest.fixture
def db(store):
    db = store.database
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT UNIQUE, blob BLOB)")
    return db


def test_execute_returns_rows_and_meta(db):
    inserted = db.execute("INSERT INTO t (name) VALUES (?)", ["a"])
    assert inserted.meta.changes == 1 and inserted.meta.last_row_id == 1 and inserted.meta.rows_written == 1
    assert inserted.meta.changed_db
    selected = db.execute("SELECT id, name FROM t WHERE name = ?", ["a"])
    assert selected.results == [{"id": 1, "name": "a"}]
    assert selected.meta.rows_read == 1 and selected.meta.changes == 0 and not selected.meta.changed_db
    assert selected.meta.duration >= 0 and selected.meta.size_after > 0
    assert set(selected.as_dict()["meta"]) >= {"changes", "last_row_id", "rows_read", "rows_written", "duration"}


def test_blobs_and_nulls_round_trip(db, store):
    if store.kind == "cloudflare":  # JSON carries no bytes: D1's REST API takes literals and answers byte arrays
        with pytest.raises(D1Error, match="BLOB parameters cannot be sent"):
            db.execute("INSERT INTO t (name, blob) VALUES (?, ?)", [None, b"\x00\xff"])
        db.execute("INSERT INTO t (name, blob) VALUES (NULL, X'00ff')")
        assert db.execute("SELECT name, blob FROM t").results == [{"name": None, "blob": [0, 255]}]
        return
    db.execute("INSERT INTO t (name, blob) VALUES (?, ?)", [None, b"\x00\xff"])
    assert db.execute("SELECT name, blob FROM t").results == [{"name": None, "blob": b"\x00\xff"}]


def test_batch_is_one_transaction(db):
    with pytest.raises(D1Error, match=r"UNIQUE constraint failed: t.name: SQLITE_CONSTRAINT.*statement 3 of 3"):
        db.batch(
            [
                Statement("INSERT INTO t (name) VALUES ('x')"),
                Statement("INSERT INTO t (name) VALUES ('y')"),
                Statement("INSERT INTO t (name) VALUES ('x')"),
            ]
        )
    assert db.execute("SELECT count(*) AS n FROM t").results == [{"n": 0}]
    results = db.batch([Statement("INSERT INTO t (name) VALUES ('x')"), Statement("SELECT name FROM t")])
    assert results[1].results == [{"name": "x"}]


def test_sql_errors_read_like_d1(db):
    with pytest.raises(D1Error, match="no such table: nope: SQLITE_ERROR"):
        db.execute("SELECT * FROM nope")
    with pytest.raises(D1Error, match="expected one SQL statement, got 2"):
        db.execute("SELECT 1; SELECT 2")


def test_user_sql_cannot_reach_reserved_tables_or_transactions(db):
    for sql in ("SELECT * FROM _cf_KV", "CREATE TABLE _cf_x (x)", "BEGIN", "ATTACH 'x.db' AS x"):
        with pytest.raises(D1Error):
            db.execute(sql)
    # and the database still works afterwards
    assert db.execute("SELECT 1 AS one").results == [{"one": 1}]


def test_d1_sees_only_its_own_database(db, store):
    """D1 lives in a file of its own: no KV value, vendor state or key is there to reach."""
    store.kv("api-tokens").put("secretkey:abc:publishableKey", "pk_live_secret_target")
    names = {row["name"] for row in db.execute("SELECT name FROM sqlite_master").results}
    assert not any(name.startswith(("_dream_", "_cf_KV")) for name in names), names
    with pytest.raises(D1Error, match="no such table"):
        db.execute("SELECT * FROM _dream_kv")
