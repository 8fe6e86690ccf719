"""Open the emulator's store: one SQLite file holding the four KV namespaces and the vendors' state, and the
D1 database in a file of its own beside it (`<store>.d1/<database id>.sqlite`). Both files 0600."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from dreamcli.errors import StoreError
from dreamcli.stores.ports import Store
from dreamcli.stores.sqlite_d1 import SQLiteD1Database
from dreamcli.stores.sqlite_file import BUSY_TIMEOUT_MS, SQLiteFile
from dreamcli.stores.store_lock import StoreLock
from dreamcli.topology import GUIDE_TOPOLOGY, Topology
from emulator.kv import EmulatorKVNamespace
from emulator.schema import d1_path, migrate, refuse_foreign

DEFAULT_STORE_PATH = Path(".dream") / "emulator.db"


def open_emulator_store(
    path: Path | str = DEFAULT_STORE_PATH,
    *,
    topology: Topology = GUIDE_TOPOLOGY,
    clock: Callable[[], float] = time.time,
    busy_timeout_ms: int = BUSY_TIMEOUT_MS,
) -> Store:
    """Open (creating and migrating as needed) the store file at `path`."""
    path = Path(path)
    if path.is_dir():
        raise StoreError(f"store {path} is a directory; give the path of a file (e.g. {path / 'emulator.db'})")
    refuse_foreign(path)
    file = SQLiteFile(path, busy_timeout_ms=busy_timeout_ms, private=True)
    try:
        migrate(file)
        database = SQLiteD1Database(
            d1_path(path, topology.database.id), topology.database.id, busy_timeout_ms=busy_timeout_ms, private=True
        )
    except BaseException:
        file.close()
        raise
    seqs = _register_namespaces(file, topology)
    namespaces = {ref.name: EmulatorKVNamespace(file, ref.id, seqs[ref.id], clock) for ref in topology.namespaces}

    def close() -> None:
        database.close()
        file.close()

    lock = StoreLock([path], f"the emulator store {path}")
    return Store("emulator", str(path), topology, namespaces, database, close, clock, lock=lock)


def _register_namespaces(file: SQLiteFile, topology: Topology) -> dict[str, int]:
    """Namespace id -> the small integer its rows carry; new namespaces are registered once."""

    def known() -> dict[str, int]:
        return file.read(lambda conn: dict(conn.execute("SELECT id, seq FROM _dream_kv_namespaces").fetchall()))

    seqs = known()
    missing = [(ref.id, ref.name) for ref in topology.namespaces if ref.id not in seqs]
    if missing:
        with file.write() as conn:
            conn.executemany("INSERT OR IGNORE INTO _dream_kv_namespaces (id, title) VALUES (?, ?)", missing)
        seqs = known()
    return seqs
