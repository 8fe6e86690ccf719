"""One connection per store file per process: a second handle on a file never drops the process's locks.

POSIX drops every lock a process holds on a file when ANY of its descriptors of that file closes (SQLite's "How To
Corrupt An SQLite Database File", 2.2): a second handle that opened and closed a raw descriptor let another process
write under the first one's lock, then checkpoint and delete the WAL the first was still writing into."""

from __future__ import annotations

import ast
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from dreamcli.errors import StoreError
from dreamcli.stores.sqlite_d1 import SQLiteD1Database
from dreamcli.stores.sqlite_file import SQLiteFile
from dreamcli.stores.sqlite_file import open_connections as connections
from emulator.app import Emulator
from emulator.store import open_emulator_store
from tests.processes import deleted_while_open, open_files


def open_connections(folder: Path) -> dict[str, int]:
    """This process's store connections on files under `folder` (other tests' leftovers aside)."""
    return {path: users for path, users in connections().items() if path.startswith(str(folder))}


ROOT = Path(__file__).resolve().parents[2]

# Another process reading the file and closing its connection: the last connection it knows of checkpoints and
# deletes the WAL, unless some process still holds its shared lock on the file. Prints what it counted.
READ_AND_CLOSE = (
    "import sqlite3, sys\n"
    "conn = sqlite3.connect(sys.argv[1], timeout=5)\n"
    "print(conn.execute(sys.argv[2]).fetchone()[0])\n"
    "conn.close()\n"
)


def other_process_reads(path: Path, sql: str = "SELECT count(*) FROM sqlite_master") -> str:
    done = subprocess.run([sys.executable, "-c", READ_AND_CLOSE, str(path), sql], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_second_handle_keeps_the_first_ones_locks(tmp_path):
    """Fails where opening a second handle closed a raw descriptor: the WAL was deleted under the first."""
    path = tmp_path / "s.db"
    first = SQLiteFile(path, private=True)
    with first.write() as conn:
        conn.execute("CREATE TABLE t (x)")
        conn.execute("INSERT INTO t VALUES (1)")
    second = SQLiteFile(path, private=True)  # the store opened again in this process ...
    second.close()  # ... and closed
    assert other_process_reads(path, "SELECT count(*) FROM t") == "1"  # another process comes and goes
    assert deleted_while_open("self", tmp_path) == []
    assert path.with_name("s.db-wal").exists()
    with first.write() as conn:  # so what the first handle writes now reaches every process
        conn.execute("INSERT INTO t VALUES (2)")
    assert other_process_reads(path, "SELECT count(*) FROM t") == "2"
    first.close()
    assert other_process_reads(path, "PRAGMA integrity_check") == "ok"


def test_handles_share_one_connection_closed_with_the_last(tmp_path):
    path = tmp_path / "s.db"
    first = SQLiteFile(path, private=True)
    second = SQLiteFile(tmp_path / "." / "s.db")  # another spelling of the same file
    link = tmp_path / "hard.db"
    os.link(path, link)
    third = SQLiteFile(link)
    assert first.conn is second.conn is third.conn
    assert open_connections(tmp_path) == {str(path): 3}
    first.close()
    first.close()  # twice: still one user less, not two
    assert open_connections(tmp_path) == {str(path): 2}
    with second.write() as conn:  # the others keep working
        conn.execute("CREATE TABLE t (x)")
    second.close()
    third.close()
    assert open_connections(tmp_path) == {}
    with pytest.raises(sqlite3.ProgrammingError):
        first.conn.execute("SELECT 1")  # really closed


def test_a_kv_file_and_a_d1_file_are_not_confused(tmp_path):
    path = tmp_path / "s.db"
    kv = SQLiteFile(path)
    with pytest.raises(StoreError, match="open in this process as another kind of file"):
        SQLiteD1Database(path, "db")
    kv.close()
    assert open_connections(tmp_path) == {}


def test_two_d1_handles_share_one_guard(tmp_path):
    """The authorizer is the connection's: a second handle's user SQL is guarded as the first's is."""
    path = tmp_path / "d1.sqlite"
    first = SQLiteD1Database(path, "db")
    second = SQLiteD1Database(path, "db")
    assert first.guard is second.guard
    from dreamcli.errors import D1Error

    with pytest.raises(D1Error, match="SQLITE_AUTH"):
        second.execute("ATTACH DATABASE 'x.db' AS x")
    first.close()
    with pytest.raises(D1Error, match="SQLITE_AUTH"):
        second.execute("PRAGMA writable_schema = 1")
    second.close()


def test_the_emulator_and_its_platform_store_share_the_connections(tmp_path):
    """The server's path that lost its locks: the emulator opens the store again at the first platform request."""
    path = tmp_path / "s.db"
    emulator = Emulator(path)
    try:
        emulator.platform()
        users = open_connections(tmp_path)
        assert users[str(path)] == 2  # the emulator's and its platform store's, on one connection
        assert len(users) == 2  # and the D1 file's
        store = open_emulator_store(path)  # a third open (a CLI command in the same process) ...
        store.kv("api-tokens").put("k", "v")
        store.close()
        other_process_reads(path)  # ... then another process comes and goes
        assert deleted_while_open("self", tmp_path) == []
        emulator.platform().store.kv("api-tokens").put("k2", "v2")
        assert other_process_reads(path, "SELECT count(*) FROM _dream_kv") == "2"
    finally:
        emulator.close()
    assert open_connections(tmp_path) == {}


def test_another_process_closing_its_connection_never_deletes_our_wal(tmp_path):
    path = tmp_path / "s.db"
    store = open_emulator_store(path)
    store.kv("api-tokens").put("before", "1")
    open_emulator_store(path).close()  # a second open and close in this process
    for _ in range(3):  # other processes come and go (each the last connection it knows of)
        other_process_reads(path)
    assert [name for name in open_files() if name.startswith(str(path.resolve()))]  # the check can see them
    assert deleted_while_open("self", tmp_path) == []
    store.kv("api-tokens").put("after", "2")
    store.close()
    assert other_process_reads(path, "PRAGMA integrity_check") == "ok"
    check = open_emulator_store(path)
    assert check.kv("api-tokens").get("before") == b"1" and check.kv("api-tokens").get("after") == b"2"
    check.close()


# Every raw descriptor dream would open on a path, and why it cannot be a SQLite file open in this process: none.
# New files are made with mknod (dreamcli.private_files), without a descriptor at all.
RAW_DESCRIPTORS_ALLOWED: dict[tuple[str, str], str] = {
    ("dreamcli/stores/store_lock.py", "_one"): "a lock file of its own (flock), never a database file",
}


def test_no_raw_descriptor_on_a_database_file():
    """`os.open` / `os.close` / `os.fchmod` only where the file is known not to be an open SQLite file."""
    found: set[tuple[str, str]] = set()
    for package in ("dreamcli", "emulator"):
        for source in (ROOT / package).rglob("*.py"):
            tree = ast.parse(source.read_text())
            for function in ast.walk(tree):
                if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                for node in ast.walk(function):
                    if (
                        isinstance(node, ast.Call)
                        and isinstance(node.func, ast.Attribute)
                        and isinstance(node.func.value, ast.Name)
                        and node.func.value.id == "os"
                        and node.func.attr in ("open", "close", "fchmod", "fdopen")
                    ):
                        found.add((source.relative_to(ROOT).as_posix(), function.name))
    assert found <= set(RAW_DESCRIPTORS_ALLOWED), sorted(found - set(RAW_DESCRIPTORS_ALLOWED))


def test_a_wrangler_value_replaced_while_it_is_read_is_read_new_never_missing(tmp_path):
    """Miniflare's writer puts the new blob, then the row, then removes the old blob: a reader between the row and
    the blob finds the old blob gone. It reads the row again (the new value), never "no such key"."""
    from dreamcli.stores.wrangler import WranglerKVNamespace

    reader = WranglerKVNamespace(tmp_path / "state", "ns-id")
    writer = WranglerKVNamespace(tmp_path / "state", "ns-id")  # another process's view of the same namespace
    writer.put("usage:k", "1", metadata={"n": 1})
    writer.put("usage:other", "x")
    read_blob = reader._blob
    replaced: list[str] = []

    def replaced_while_read(blob_id: str) -> bytes | None:
        if not replaced:  # between this reader's row and its blob, another writer replaces the key
            replaced.append(blob_id)
            writer.put("usage:k", "2", metadata={"n": 2})
        return read_blob(blob_id)

    reader._blob = replaced_while_read  # type: ignore[method-assign]
    found = reader.get_with_metadata("usage:k")
    assert found is not None and (found.value, found.metadata) == (b"2", {"n": 2})
    replaced.clear()
    assert dict(reader.scan(prefix="usage:")) == {"usage:k": b"2", "usage:other": b"x"}
    replaced.clear()
    writer.delete("usage:other")
    assert reader.get("usage:other") is None  # a key deleted, not replaced, is gone
