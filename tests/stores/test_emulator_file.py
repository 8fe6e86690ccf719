"""What only the emulator's SQLite file has: migrations, bad files, locking, several processes."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap

import pytest

from dreamcli.errors import StoreError
from emulator.schema import LATEST_SCHEMA
from emulator.store import open_emulator_store


def test_schema_is_created_by_recorded_migrations(tmp_path):
    path = tmp_path / "s.db"
    open_emulator_store(path).close()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT max(version) FROM _dream_schema").fetchone()[0] == LATEST_SCHEMA
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    ids = {row[0] for row in conn.execute("SELECT id FROM _dream_kv_namespaces")}
    assert "a9f3331b0c8b48d58c32896482484208" in ids and len(ids) == 4
    conn.close()
    open_emulator_store(path).close()  # reopening migrates nothing and keeps working


def test_garbage_file_is_reported_corrupt(tmp_path):
    path = tmp_path / "s.db"
    path.write_bytes(b"this is not sqlite at all" * 100)
    path.chmod(0o644)
    with pytest.raises(
        StoreError,
        match=r"is not a dream store \(not a SQLite database: another file, or a corrupt store\): refused, nothing ",
    ):
        open_emulator_store(path)
    assert path.read_bytes().startswith(b"this is not sqlite")  # untouched
    assert path.stat().st_mode & 0o777 == 0o644  # its mode too


def test_foreign_sqlite_database_is_refused(tmp_path):
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE mine (x)")
    conn.commit()
    conn.close()
    path.chmod(0o644)
    with pytest.raises(StoreError, match="not a dream store"):
        open_emulator_store(path)
    assert path.stat().st_mode & 0o777 == 0o644 and not path.with_name("other.db-wal").exists()


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "s.db"
    open_emulator_store(path).close()
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO _dream_schema (version, name) VALUES (999, 'future')")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="newer than this dream"):
        open_emulator_store(path)


def test_directory_is_refused(tmp_path):
    with pytest.raises(StoreError, match="is a directory"):
        open_emulator_store(tmp_path)


def test_locked_store_is_reported_and_nothing_written(tmp_path):
    path = tmp_path / "s.db"
    store = open_emulator_store(path, busy_timeout_ms=100)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreError, match=r"locked by another process \(waited 0.1 s\)"):
            store.kv("api-tokens").put("k", "v")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert store.kv("api-tokens").get("k") is None
    store.kv("api-tokens").put("k", "v")  # the connection is usable again
    assert store.kv("api-tokens").get("k") == b"v"
    store.close()


WRITER = textwrap.dedent(
    """
    import sys
    from dreamcli.stores.ports import KVWrite
    from emulator.store import open_emulator_store
    store = open_emulator_store(sys.argv[1])
    ns = store.kv("api-usage")
    worker = sys.argv[2]
    for batch in range(20):
        ns.bulk_put([KVWrite(f"w{worker}:{batch:02}:{i:03}", "v") for i in range(50)])
    store.close()
    """
)


def test_several_processes_write_at_once_without_loss(tmp_path):
    path = tmp_path / "s.db"
    open_emulator_store(path).close()
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(n)]) for n in range(4)]
    assert [proc.wait(timeout=120) for proc in procs] == [0, 0, 0, 0]
    store = open_emulator_store(path)
    from dreamcli.stores.ports import iter_keys

    assert len(list(iter_keys(store.kv("api-usage")))) == 4 * 20 * 50
    store.close()
