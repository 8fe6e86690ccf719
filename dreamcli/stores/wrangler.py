"""wrangler's local dev state on disk (Miniflare 4's format), read and written exactly as wrangler does.

Per namespace: an index `v3/kv/miniflare-KVNamespaceObject/<doId>.sqlite` (table `_mf_entries`: key,
blob_id, expiration in Unix ms, metadata JSON text) and the values as raw files under
`v3/kv/<sanitised namespace id>/blobs/<blob_id>`. D1: a plain SQLite file per database. Writes go blob
first, then the row in a transaction, then the old blob is removed, as Miniflare does; reads open the
index read-only so a running `wrangler dev` keeps its WAL to itself.
"""

from __future__ import annotations

import builtins
import functools
import hashlib
import hmac
import os
import re
import secrets
import sqlite3
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from dreamcli.errors import StoreError
from dreamcli.stores import kv_rules
from dreamcli.stores.discovery import READERS, Worker, discover, topology_of
from dreamcli.stores.kv_rules import decode_cursor, encode_cursor, key_range_sql
from dreamcli.stores.ports import KVValue, KVWrite, ListedKey, ListPage, PutAsBulkPut, ReadModifyWrite, Store
from dreamcli.stores.sqlite_d1 import SQLiteD1Database
from dreamcli.stores.sqlite_file import BUSY_TIMEOUT_MS, describe_sqlite_error

KV_OBJECT = "miniflare-KVNamespaceObject"
D1_OBJECT = "miniflare-D1DatabaseObject"
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS _mf_entries (key TEXT PRIMARY KEY, blob_id TEXT NOT NULL, expiration INTEGER, metadata TEXT)",
    "CREATE INDEX IF NOT EXISTS _mf_entries_expiration_idx ON _mf_entries(expiration)",
)


def durable_object_id(unique_key: str, name: str) -> str:
    """miniflare's `durableObjectNamespaceIdFromName`: the file name of a namespace's or database's state."""
    key = hashlib.sha256(unique_key.encode()).digest()
    head = hmac.new(key, name.encode(), hashlib.sha256).digest()[:16]
    return (head + hmac.new(key, head, hashlib.sha256).digest()[:16]).hex()


_RESERVED = re.compile(r"^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$", re.IGNORECASE)


def sanitise_path(name: str) -> str:
    """miniflare's sanitisePath: the blob folder name for a namespace id."""
    name = re.sub(r'[?<>*"\'^/\\:|\x00-\x1f\x80-\x9f]', "_", name)
    name = re.sub(r"^\.+$", lambda m: "_" * len(m.group(0)), name)
    if _RESERVED.match(name):
        name = "_"
    name = re.sub(r"^[ /]+", "_", name)
    name = re.sub(r"[ /]+$", "_", name)
    return name[:255]


def new_blob_id(now_ms: int) -> str:
    """32 random bytes + the write time as a signed 64-bit big-endian ms count, in hex (80 characters)."""
    return (secrets.token_bytes(32) + struct.pack(">q", now_ms)).hex()


_listed_key = functools.partial(tuple.__new__, ListedKey)


class WranglerKVNamespace(PutAsBulkPut, ReadModifyWrite):
    """One namespace in one state root."""

    def __init__(
        self,
        state_root: Path,
        namespace_id: str,
        clock: Callable[[], float] = time.time,
        busy_timeout_ms: int = BUSY_TIMEOUT_MS,
    ) -> None:
        self.id = namespace_id
        self.clock = clock
        self.index = state_root / "v3" / "kv" / KV_OBJECT / f"{durable_object_id(KV_OBJECT, namespace_id)}.sqlite"
        self.blobs = state_root / "v3" / "kv" / sanitise_path(namespace_id) / "blobs"
        self.busy_timeout_ms = busy_timeout_ms

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _read(self, sql: str, params: Sequence[Any]) -> builtins.list[tuple[Any, ...]]:
        if not self.index.exists():
            return []
        try:
            conn = sqlite3.connect(f"file:{self.index}?mode=ro", uri=True, timeout=self.busy_timeout_ms / 1000)
            try:
                return conn.execute(sql, params).fetchall()
            finally:
                conn.close()
        except sqlite3.Error as exc:
            if "no such table" in str(exc):
                return []
            raise describe_sqlite_error(self.index, exc, self.busy_timeout_ms) from None

    def _blob(self, blob_id: str) -> bytes | None:
        try:
            return (self.blobs / blob_id).read_bytes()
        except FileNotFoundError:
            return None  # written by a writer still between its blob and its row, or removed since

    # Reads

    def get(self, key: str) -> bytes | None:
        found = self.get_with_metadata(key)
        return None if found is None else found.value

    def get_with_metadata(self, key: str) -> KVValue | None:
        kv_rules.validate_key(key)
        rows = self._read(
            "SELECT blob_id, expiration, metadata FROM _mf_entries WHERE key = ? "
            "AND (expiration IS NULL OR expiration > ?)",
            (key, self._now_ms()),
        )
        if not rows:
            return None
        blob_id, expiration, metadata = rows[0]
        value = self._blob(blob_id)
        if value is None:
            return None
        return KVValue(value, kv_rules.decode_metadata(metadata), None if expiration is None else expiration // 1000)

    def bulk_get(self, keys: Sequence[str]) -> dict[str, KVValue | None]:
        kv_rules.check_keys(keys, kv_rules.MAX_BULK_GET, "Bulk get")
        return {key: self.get_with_metadata(key) for key in keys}

    def list(self, *, prefix: str = "", cursor: str | None = None, limit: int = 1000) -> ListPage:
        kv_rules.validate_list_limit(limit)
        rows = self._page(prefix, decode_cursor(cursor) if cursor else None, limit + 1, "key, expiration, metadata")
        more = len(rows) > limit
        rows = rows[:limit]
        keys = [
            ListedKey(k, None if e is None else e // 1000, None if m is None else kv_rules.decode_metadata(m))
            for k, e, m in rows
        ]
        return ListPage(keys, not more, encode_cursor(rows[-1][0]) if more else "")

    def _page(self, prefix: str, after: str | None, limit: int, columns: str) -> builtins.list[tuple[Any, ...]]:
        clauses = ["(expiration IS NULL OR expiration > ?)"]
        params: builtins.list[Any] = [self._now_ms()]
        more_clauses, more_params = key_range_sql(prefix, after)
        clauses += more_clauses
        params += more_params
        params.append(limit)
        return self._read(
            f"SELECT {columns} FROM _mf_entries WHERE {' AND '.join(clauses)} ORDER BY key LIMIT ?", params
        )

    def sql_source(self, now: int) -> None:
        return None  # values live outside SQL: verify copies them with `scan`

    def scan(self, *, prefix: str = "", batch: int = 5000) -> Iterator[tuple[str, bytes]]:
        after: str | None = None
        while True:
            rows = self._page(prefix, after, batch, "key, blob_id")
            for key, blob_id in rows:
                value = self._blob(blob_id)
                if value is not None:
                    yield key, value
            if len(rows) < batch:
                return
            after = rows[-1][0]

    # Writes

    def _write(self, rows: Sequence[tuple[str, str | None, int | None, str | None]], blobs: dict[str, bytes]) -> None:
        """Blobs first, then the rows in one transaction, then the blobs they replaced (Miniflare's order)."""
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.index.parent.mkdir(parents=True, exist_ok=True)
        for blob_id, value in blobs.items():
            temporary = self.blobs / f".{blob_id}.tmp"
            # Values hold Stripe tokens and key mappings: readable by their owner only (wrangler runs as them).
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(value)
            os.replace(temporary, self.blobs / blob_id)
        replaced: builtins.list[str] = []
        try:
            conn = sqlite3.connect(str(self.index), isolation_level=None, timeout=self.busy_timeout_ms / 1000)
            try:
                conn.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms}")
                conn.execute("PRAGMA journal_mode = WAL")
                for statement in SCHEMA:
                    conn.execute(statement)
                conn.execute("BEGIN IMMEDIATE")
                try:
                    keys = [row[0] for row in rows]
                    for start in range(0, len(keys), 500):
                        chunk = keys[start : start + 500]
                        replaced += [
                            r[0]
                            for r in conn.execute(
                                f"SELECT blob_id FROM _mf_entries WHERE key IN ({','.join('?' * len(chunk))})", chunk
                            )
                        ]
                    puts = [row for row in rows if row[1] is not None]
                    deletes = [(row[0],) for row in rows if row[1] is None]
                    conn.executemany(
                        "INSERT OR REPLACE INTO _mf_entries (key, blob_id, expiration, metadata) VALUES (?, ?, ?, ?)",
                        puts,
                    )
                    conn.executemany("DELETE FROM _mf_entries WHERE key = ?", deletes)
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    for blob_id in blobs:
                        (self.blobs / blob_id).unlink(missing_ok=True)
                    raise
            finally:
                conn.close()
        except sqlite3.Error as exc:
            raise describe_sqlite_error(self.index, exc, self.busy_timeout_ms) from None
        for blob_id in replaced:
            if blob_id not in blobs:
                (self.blobs / blob_id).unlink(missing_ok=True)

    def bulk_put(self, items: Sequence[KVWrite]) -> None:
        now = self.clock()
        rows = []
        blobs: dict[str, bytes] = {}
        now_ms = int(now * 1000)
        for key, value, expiration, metadata in kv_rules.check_writes(items, now):
            blob_id = new_blob_id(now_ms)
            blobs[blob_id] = value
            rows.append((key, blob_id, None if expiration is None else expiration * 1000, metadata))  # Miniflare: ms
        if rows:
            self._write(rows, blobs)

    def delete(self, key: str) -> None:
        self.bulk_delete([key])

    def bulk_delete(self, keys: Sequence[str]) -> None:
        kv_rules.check_keys(keys, kv_rules.MAX_BULK_DELETE, "Bulk delete")
        if keys and self.index.exists():
            self._write([(key, None, None, None) for key in keys], {})


def d1_path(state_root: Path, database_id: str) -> Path:
    return state_root / "v3" / "d1" / D1_OBJECT / f"{durable_object_id(D1_OBJECT, database_id)}.sqlite"


def parse_spec(where: str) -> tuple[Path, Path | None, bool]:
    """`PATH[,persist-to=DIR][,preview]`: the project folder, a shared state folder, preview ids."""
    parts = where.split(",")
    persist: Path | None = None
    preview = False
    for option in parts[1:]:
        name, _, value = option.partition("=")
        if name == "persist-to" and value:
            persist = Path(value)
        elif name == "preview" and not value:
            preview = True
        else:
            raise StoreError(f"unknown wrangler store option {option!r} (known: persist-to=DIR, preview)")
    return Path(parts[0] or "."), persist, preview


def open_wrangler_store(
    where: str, *, clock: Callable[[], float] = time.time, busy_timeout_ms: int = BUSY_TIMEOUT_MS
) -> Store:
    """The four namespaces as their reading worker sees them locally (platform-* from front-auth-api's
    state, api-* from api-multi's), and the D1 database of the first worker that binds one."""
    root, persist, preview = parse_spec(where)
    workers = discover(root)
    topology = topology_of(workers, preview=preview)
    by_name = {worker.name: worker for worker in workers}
    namespaces = {}
    for ref in topology.namespaces:
        worker_name, _ = READERS[ref.name]
        worker: Worker = by_name.get(worker_name) or workers[0]
        namespaces[ref.name] = WranglerKVNamespace(worker.state_root(persist), ref.id, clock, busy_timeout_ms)
    # api-multi writes the customers (the guide's D1 use): its local D1 is the one to read.
    d1_worker = by_name.get("api-multi") if by_name.get("api-multi") and by_name["api-multi"].d1 else None
    d1_worker = d1_worker or next((w for w in workers if w.d1), workers[0])
    database_path = d1_path(d1_worker.state_root(persist), topology.database.id)
    database_path.parent.mkdir(parents=True, exist_ok=True)
    database = SQLiteD1Database(database_path, topology.database.id, busy_timeout_ms=busy_timeout_ms)
    return Store("wrangler", str(root), topology, namespaces, database, database.close, clock)
