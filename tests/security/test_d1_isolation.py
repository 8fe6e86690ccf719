"""D1 statements reach their own database and nothing else: not the store's KV values, vendor state or keys,
not the schema tables, not extensions. Every attack here worked on the single-file store."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dreamcli.errors import D1Error
from dreamcli.stores.sqlite_file import SQLiteFile
from dreamcli.topology import GUIDE_TOPOLOGY
from emulator import schema
from emulator.store import open_emulator_store
from tests.security.corpus import D1_ATTACKS as ATTACKS

SECRET = "sk_live_target_value_that_must_stay_in_kv"


@pytest.fixture
def store(tmp_path):
    opened = open_emulator_store(tmp_path / "store.db")
    opened.kv("platform-tokens").put("user:u1:stripeToken", SECRET)
    opened.database.execute("CREATE TABLE customers_probe (id TEXT)")
    yield opened
    opened.close()


@pytest.mark.parametrize("sql", ATTACKS)
def test_attack_is_refused_and_reaches_nothing(store, sql):
    with pytest.raises(D1Error):
        store.database.execute(sql)
    assert store.kv("platform-tokens").get("user:u1:stripeToken") == SECRET.encode()
    assert store.database.execute("SELECT count(*) AS n FROM customers_probe").results == [{"n": 0}]


def test_views_and_triggers_over_internal_tables_reach_nothing(store):
    """SQLite accepts a view or trigger naming a table that does not exist; using it finds no such table."""
    db = store.database
    db.execute("CREATE VIEW leak AS SELECT * FROM _dream_kv")
    db.execute("CREATE TRIGGER wipe AFTER INSERT ON customers_probe BEGIN DELETE FROM _dream_kv; END")
    with pytest.raises(D1Error, match="no such table"):
        db.execute("SELECT * FROM leak")
    with pytest.raises(D1Error, match="no such table"):
        db.execute("INSERT INTO customers_probe VALUES ('x')")
    assert store.kv("platform-tokens").get("user:u1:stripeToken") == SECRET.encode()


def test_d1s_own_pragmas_and_fts5_still_work(store):
    db = store.database
    assert [row["name"] for row in db.execute("PRAGMA table_info(customers_probe)").results] == ["id"]
    assert db.execute("PRAGMA foreign_keys").results == [{"foreign_keys": 1}]
    db.execute("CREATE VIRTUAL TABLE docs USING fts5(body)")
    db.execute("INSERT INTO docs (body) VALUES ('hello world')")
    assert db.execute("SELECT body FROM docs WHERE docs MATCH 'hello'").results == [{"body": "hello world"}]
    assert db.execute("SELECT count(*) AS n FROM json_each('[1,2,3]')").results == [{"n": 3}]


def test_no_byte_of_kv_is_in_the_d1_file(store, tmp_path):
    d1_file = schema.d1_path(tmp_path / "store.db", GUIDE_TOPOLOGY.database.id)
    store.database.execute("INSERT INTO customers_probe VALUES ('c1')")
    assert d1_file.exists()
    assert SECRET.encode() not in d1_file.read_bytes()
    names = {row["name"] for row in store.database.execute("SELECT name FROM sqlite_master").results}
    assert names == {"customers_probe"}


def test_a_runaway_statement_is_stopped(tmp_path):
    from dreamcli.stores.sqlite_d1 import SQLiteD1Database

    db = SQLiteD1Database(tmp_path / "d1.sqlite", "db", time_limit_s=0.2)
    try:
        with pytest.raises(D1Error, match="time limit"):
            db.execute("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c")
        assert db.execute("SELECT 1 AS one").results == [{"one": 1}]
    finally:
        db.close()


def test_fts3_tokenizer_cannot_crash_the_process(tmp_path):
    """On the single-file store this segfaulted the server and leaked a library address."""
    script = textwrap.dedent(f"""
        from emulator.store import open_emulator_store
        from dreamcli.errors import D1Error
        store = open_emulator_store({str(tmp_path / "s.db")!r})
        for sql in ("SELECT hex(fts3_tokenizer('simple'))",
                    "SELECT fts3_tokenizer('simple', x'4141414141414141')",
                    "CREATE VIRTUAL TABLE f USING fts3(tokenize=simple)"):
            try:
                store.database.execute(sql)
                print("accepted", sql)
            except D1Error:
                pass
        print("alive")
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "alive\n"


def test_store_files_are_private(tmp_path):
    store = open_emulator_store(tmp_path / "new" / "store.db")
    store.kv("api-tokens").put("k", "v")
    store.database.execute("CREATE TABLE t (a)")
    store.close()
    folder = tmp_path / "new"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for path in [folder / "store.db", *folder.glob("store.db-*"), *(folder / "store.db.d1").iterdir()]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE((folder / "store.db.d1").stat().st_mode) == 0o700


def test_an_existing_world_readable_store_is_made_private(tmp_path):
    path = tmp_path / "old.db"
    open_emulator_store(path).close()
    path.chmod(0o644)
    open_emulator_store(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def _legacy_store(path: Path) -> None:
    """A store as dream wrote it before D1 had its own file (schema 2, D1 tables in the store file)."""
    file = SQLiteFile(path)
    with file.write() as conn:
        conn.execute(
            "CREATE TABLE _dream_schema (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
            "applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)"
        )
        for number, name, sql in schema.SCHEMA_MIGRATIONS[:2]:
            for statement in schema.split_statements(sql):
                conn.execute(statement)
            conn.execute("INSERT INTO _dream_schema (version, name) VALUES (?, ?)", (number, name))
        conn.execute("INSERT INTO _dream_kv_namespaces (id, title) VALUES ('ns', 'x')")
        conn.execute("INSERT INTO _dream_kv (ns, key, value) VALUES (1, 'k', ?)", (SECRET.encode(),))
        conn.execute(
            "INSERT INTO _dream_vendor_keys (vendor, key, scope, role) VALUES ('clerk', 'sk_test_old', 'i', 'secret')"
        )
        conn.execute("CREATE TABLE customers (id TEXT PRIMARY KEY, plan TEXT)")
        conn.execute("CREATE INDEX customers_plan ON customers (plan)")
        conn.execute("CREATE TABLE seq (n INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT)")
        conn.execute("CREATE VIEW paying AS SELECT id FROM customers WHERE plan != 'free'")
        conn.execute("CREATE TRIGGER stamp AFTER INSERT ON customers BEGIN INSERT INTO seq (v) VALUES (new.id); END")
        conn.executemany("INSERT INTO customers VALUES (?, ?)", [("c1", "free"), ("c2", "pro")])
    file.close()


def test_a_legacy_store_moves_its_d1_tables_nothing_lost(tmp_path):
    path = tmp_path / "legacy.db"
    _legacy_store(path)
    store = open_emulator_store(path)
    try:
        db = store.database
        assert db.execute("SELECT id, plan FROM customers ORDER BY id").results == [
            {"id": "c1", "plan": "free"},
            {"id": "c2", "plan": "pro"},
        ]
        assert db.execute("SELECT id FROM paying").results == [{"id": "c2"}]
        assert db.execute("SELECT v FROM seq ORDER BY n").results == [{"v": "c1"}, {"v": "c2"}]
        db.execute("INSERT INTO customers VALUES ('c3', 'pro')")  # the trigger came along
        assert db.execute("SELECT n, v FROM seq WHERE v = 'c3'").results == [{"n": 3, "v": "c3"}]
        assert {r["name"] for r in db.execute("PRAGMA index_list(customers)").results} >= {"customers_plan"}
    finally:
        store.close()
    main = sqlite3.connect(path)
    left = {
        row[0]
        for row in main.execute(
            "SELECT name FROM sqlite_master WHERE name NOT LIKE '\\_dream\\_%' ESCAPE '\\' "
            "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
        )
    }
    digest = main.execute("SELECT key_sha256 FROM _dream_vendor_keys").fetchone()[0]
    main.close()
    assert left == set(), "D1 tables left in the store file"
    assert digest == schema.sha256_hex("sk_test_old")
    d1_file = schema.d1_path(path, GUIDE_TOPOLOGY.database.id)
    assert SECRET.encode() not in d1_file.read_bytes()
    assert stat.S_IMODE(d1_file.stat().st_mode) == 0o600


def test_a_move_interrupted_after_the_copy_is_redone_on_next_open(tmp_path, monkeypatch):
    path = tmp_path / "legacy.db"
    _legacy_store(path)
    real_replace = os.replace

    def replace_then_crash(src, dst):
        real_replace(src, dst)
        raise OSError("power cut")

    monkeypatch.setattr(schema.os, "replace", replace_then_crash)
    with pytest.raises(OSError, match="power cut"):
        open_emulator_store(path)
    monkeypatch.setattr(schema.os, "replace", real_replace)
    store = open_emulator_store(path)
    try:
        assert store.database.execute("SELECT count(*) AS n FROM customers").results == [{"n": 2}]
    finally:
        store.close()


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("INSERT INTO t VALUES (zeroblob(20000000))", "too big"),  # 20 MB: D1 stores at most 2,000,000 bytes
        ("SELECT zeroblob(999999999)", "too big"),  # was a 500 after +1.9 GB
        ("SELECT 1 AS n" + ", 1" * 60_000, "too large"),  # a statement over 100,000 bytes
        (
            "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c LIMIT 3000000) "
            "SELECT n, printf('%.40c', 'x') AS pad FROM c",
            "result limit of 50 MB",
        ),  # 2M+ rows: refused past D1's result size, not held in memory whole
        ("INSERT INTO docs_data VALUES (99, x'00')", "not authorized"),  # FTS5's own index tables
        ("DELETE FROM docs_idx", "not authorized"),
        ("PRAGMA hard_heap_limit = 1", "not authorized"),  # was "unexpected MemoryError" through the probe
    ],
)
def test_d1s_own_limits_apply(tmp_path, sql, message):
    from dreamcli.stores.sqlite_d1 import SQLiteD1Database

    database = SQLiteD1Database(tmp_path / "limits.sqlite", "db")
    try:
        database.execute("CREATE TABLE t (v BLOB)")
        database.execute("CREATE VIRTUAL TABLE docs USING fts5(body)")
        database.execute("INSERT INTO docs VALUES ('hello world')")
        with pytest.raises(D1Error, match=message):
            database.execute(sql)
        assert database.execute("SELECT count(*) AS n FROM t").results == [{"n": 0}]
        # printf past the limit is NULL, as SQLite makes it: nothing of 20 MB is stored either
        database.execute("INSERT INTO t VALUES (printf('%.*c', 20000000, 'x'))")
        assert database.execute("SELECT length(v) AS n FROM t").results == [{"n": None}]
        assert database.execute("SELECT body FROM docs WHERE docs MATCH 'hello'").results == [{"body": "hello world"}]
        database.execute("DROP TABLE docs")  # the index is intact: it drops cleanly
    finally:
        database.close()


def test_a_d1_probe_never_runs_a_pragma_unguarded(tmp_path, dream, empty_store):
    refused = dream("d1", "execute", "--command", "PRAGMA hard_heap_limit=1")
    assert refused.exit_code in (1, 2) and "unexpected" not in refused.stderr, refused.stderr
    assert dream("d1", "execute", "--command", "SELECT 1 AS one", "--json").exit_code == 0  # the process is fine
