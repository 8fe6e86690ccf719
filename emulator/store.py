"""Open the emulator's store: one SQLite file holding the four KV namespaces and the D1 database."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from dreamcli.stores.ports import Store
from dreamcli.topology import GUIDE_TOPOLOGY, Topology
from emulator.d1 import EmulatorDatabase
from emulator.kv import EmulatorKVNamespace
from emulator.sqlite import SQLiteFile, migrate

DEFAULT_STORE_PATH = Path(".dream") / "emulator.db"


def open_emulator_store(
    path: Path | str = DEFAULT_STORE_PATH,
    *,
    topology: Topology = GUIDE_TOPOLOGY,
    clock: Callable[[], float] = time.time,
) -> Store:
    """Open (creating and migrating as needed) the store file at `path`."""
    path = Path(path)
    file = SQLiteFile(path)
    try:
        migrate(file)
        _register_namespaces(file, topology)
        database = EmulatorDatabase(path, topology.database.id)
    except BaseException:
        file.close()
        raise
    namespaces = {ref.name: EmulatorKVNamespace(file, ref.id, clock) for ref in topology.namespaces}

    def close() -> None:
        database.close()
        file.close()

    return Store("emulator", str(path), topology, namespaces, database, close)


def _register_namespaces(file: SQLiteFile, topology: Topology) -> None:
    known = file.read(lambda conn: {row[0] for row in conn.execute("SELECT id FROM _dream_kv_namespaces")})
    missing = [(ref.id, ref.name) for ref in topology.namespaces if ref.id not in known]
    if missing:
        with file.write() as conn:
            conn.executemany("INSERT OR IGNORE INTO _dream_kv_namespaces (id, title) VALUES (?, ?)", missing)
