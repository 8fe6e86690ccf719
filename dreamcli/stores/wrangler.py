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
import re
import secrets
import sqlite3
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dreamcli.errors import NotFound, StoreError
from dreamcli.private_files import replace_private
from dreamcli.stores import kv_rules
from dreamcli.stores.discovery import Project, open_project
from dreamcli.stores.kv_rules import decode_cursor, encode_cursor, key_range_sql
from dreamcli.stores.ports import (
    KVNamespace,
    KVValue,
    KVWrite,
    ListedKey,
    ListPage,
    PutAsBulkPut,
    ReadModifyWrite,
    ScanObserver,
    Store,
)
from dreamcli.stores.sqlite_d1 import SQLiteD1Database, writes
from dreamcli.stores.sqlite_file import BUSY_TIMEOUT_MS, describe_sqlite_error
from dreamcli.stores.store_lock import StoreLock

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


# What Miniflare names a blob (new_blob_id): anything else in an index row (`../../etc/passwd`) would reach outside
# the state folder, so it is refused, never read, written or deleted.
_BLOB_ID = re.compile(r"[0-9a-f]{80}")


class UnsafeState(StoreError):
    """A state folder whose index names a file outside it (crafted, or corrupt)."""


def new_blob_id(now_ms: int) -> str:
    """32 random bytes + the write time as a signed 64-bit big-endian ms count, in hex (80 characters)."""
    return (secrets.token_bytes(32) + struct.pack(">q", now_ms)).hex()


READ_AGAIN = 5  # a key's row read again, at most, when each blob it names is replaced before it can be read

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
        self.state_root = state_root
        self.scan_observer: ScanObserver | None = None  # its scans read local files: never long
        # The other local copies of this namespace (other workers' states): a delete happens in them too, so a key
        # revoked here is not found "stranded" in a writer's copy and copied back (see replication.copies); and
        # dream's writes go to those a worker reads too (`readers`), so every worker sees what the operator wrote.
        self.copies: builtins.list[WranglerKVNamespace] = []
        self.readers: builtins.list[WranglerKVNamespace] = []
        self.index = state_root / "v3" / "kv" / KV_OBJECT / f"{durable_object_id(KV_OBJECT, namespace_id)}.sqlite"
        self.blobs = state_root / "v3" / "kv" / sanitise_path(namespace_id) / "blobs"
        self.busy_timeout_ms = busy_timeout_ms

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _read(
        self, sql: str, params: Sequence[Any], attach: WranglerKVNamespace | None = None
    ) -> builtins.list[tuple[Any, ...]]:
        """Rows of `sql` over this copy's index, opened read-only (with `attach`'s as `other`); none if absent."""
        if not self.index.exists():
            return []
        try:
            conn = sqlite3.connect(f"file:{self.index}?mode=ro", uri=True, timeout=self.busy_timeout_ms / 1000)
            try:
                if attach is not None:
                    conn.execute("ATTACH DATABASE ? AS other", (f"file:{attach.index}?mode=ro",))
                return conn.execute(sql, params).fetchall()
            finally:
                conn.close()
        except sqlite3.Error as exc:
            if "no such table" in str(exc):
                return []
            raise describe_sqlite_error(self.index, exc, self.busy_timeout_ms) from None

    def _blob(self, blob_id: str) -> bytes | None:
        if not _BLOB_ID.fullmatch(blob_id):
            raise UnsafeState(
                f"{self.index}: a key's blob id {blob_id[:100]!r} is not one Miniflare writes and would be read from "
                f"outside {self.blobs}: refused (a crafted or corrupt state folder; delete the key, or the folder)"
            )
        try:
            return (self.blobs / blob_id).read_bytes()
        except FileNotFoundError:
            return None  # replaced since its row was read (the writer removes the old blob last), or lost

    def _current(self, key: str, blob_id: str) -> tuple[bytes, int | None, str | None] | None:
        """(value, expiration ms, metadata) of a key whose blob `blob_id` was gone when read: a writer replaced it
        after its row was read (Miniflare writes the new blob, then the row, then removes the old blob), so the row
        read again names the new one. None only if the key is gone or expired now, or its blob is lost for good."""
        for _ in range(READ_AGAIN):
            rows = self._read(
                "SELECT blob_id, expiration, metadata FROM _mf_entries WHERE key = ? "
                "AND (expiration IS NULL OR expiration > ?)",
                (key, self._now_ms()),
            )
            if not rows or rows[0][0] == blob_id:
                return None
            blob_id, expiration, metadata = rows[0]
            value = self._blob(blob_id)
            if value is not None:
                return value, expiration, metadata
        return None

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
            current = self._current(key, blob_id)  # replaced while read: the new value, expiration and metadata
            if current is None:
                return None
            value, expiration, metadata = current
        return KVValue(value, kv_rules.decode_metadata(metadata), None if expiration is None else expiration // 1000)

    def ahead_of_me(
        self, other: WranglerKVNamespace
    ) -> builtins.list[tuple[str, str, int | None, str | None, str | None]]:
        """The live keys `other` (another copy of this namespace) holds that this copy lacks or holds older, by the
        write time their blob ids carry: (key, other's blob id, expiration ms, metadata, this copy's blob id or
        None). One join of the two index files, attached read-only: memory holds only what it returns."""
        if not other.index.exists():
            return []
        now = self._now_ms()
        fresh = "(o.expiration IS NULL OR o.expiration > ?)"
        if not self.index.exists():
            return other._read(
                f"SELECT o.key, o.blob_id, o.expiration, o.metadata, NULL FROM _mf_entries o WHERE {fresh}", (now,)
            )
        # blob ids end in 16 hex digits of the write time: fixed width, so text order is time order
        return self._read(
            "SELECT o.key, o.blob_id, o.expiration, o.metadata, l.blob_id FROM other._mf_entries o "
            "LEFT JOIN main._mf_entries l ON l.key = o.key AND (l.expiration IS NULL OR l.expiration > ?) "
            f"WHERE {fresh} AND (l.key IS NULL OR substr(o.blob_id, 65) > substr(l.blob_id, 65)) ORDER BY o.key",
            (now, now),
            attach=other,
        )

    def count(self) -> int:
        """How many keys (expired ones not yet removed included): a progress total, not a listing."""
        rows = self._read("SELECT count(*) FROM _mf_entries", ())
        return int(rows[0][0]) if rows else 0

    def blob(self, blob_id: str) -> bytes | None:
        return self._blob(blob_id)

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
                if value is None and (current := self._current(key, blob_id)) is not None:
                    value = current[0]  # replaced while the page was read
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
            # Values hold Stripe tokens and key mappings: readable by their owner only (wrangler runs as them).
            replace_private(self.blobs / blob_id, value)
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
                    for blob_id in blobs:  # ours (new_blob_id): inside the folder
                        (self.blobs / blob_id).unlink(missing_ok=True)
                    raise
            finally:
                conn.close()
        except sqlite3.Error as exc:
            raise describe_sqlite_error(self.index, exc, self.busy_timeout_ms) from None
        for blob_id in replaced:
            # A row naming a file outside the folder is replaced or deleted, its "blob" never touched.
            if blob_id not in blobs and _BLOB_ID.fullmatch(blob_id):
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
            for reader in self.readers:
                reader.bulk_put(items)

    def delete(self, key: str) -> None:
        self.bulk_delete([key])

    def bulk_delete(self, keys: Sequence[str]) -> None:
        kv_rules.check_keys(keys, kv_rules.MAX_BULK_DELETE, "Bulk delete")
        for copy in (self, *self.copies):
            if keys and copy.index.exists():
                copy._write([(key, None, None, None) for key in keys], {})


def d1_path(state_root: Path, database_id: str) -> Path:
    return state_root / "v3" / "d1" / D1_OBJECT / f"{durable_object_id(D1_OBJECT, database_id)}.sqlite"


@dataclass(frozen=True)
class Spec:
    root: Path
    persist_to: Path | None = None
    env: str | None = None
    production: bool = False
    worker_persist_to: dict[str, Path] = field(default_factory=dict)


def parse_spec(where: str) -> Spec:
    """`PATH[,persist-to=DIR][,WORKER.persist-to=DIR][,env=NAME][,production]`: the project folder; the state
    folder every worker shares (`wrangler dev --persist-to DIR`, relative to PATH), or one worker's; the
    `[env.NAME]` the workers run with (`--env NAME`); and which ids name the files: `wrangler dev`'s (`preview_id
    ?? id`, the default; `preview` says so explicitly) or, with `production`, the `id`s (what `wrangler kv ...
    --local --preview false` writes)."""
    parts = where.split(",")
    persist: Path | None = None
    env: str | None = None
    production = False
    per_worker: dict[str, Path] = {}
    for option in parts[1:]:
        name, _, value = option.partition("=")
        if name == "persist-to" and value:
            persist = Path(value).expanduser()
        elif name.endswith(".persist-to") and value:
            per_worker[name.removesuffix(".persist-to")] = Path(value).expanduser()
        elif name == "env" and value:
            env = value
        elif name in ("preview", "production") and not value:
            production = name == "production"
        else:
            raise StoreError(
                f"unknown wrangler store option {option!r} "
                "(known: persist-to=DIR, WORKER.persist-to=DIR, env=NAME, production)"
            )
    return Spec(Path(parts[0] or ".").expanduser(), persist, env, production, per_worker)


class LocalD1:
    """wrangler's local D1 file, opened when first used; a file that does not exist yet is made by the first
    statement that writes (as `wrangler d1 execute --local` makes it) and never by a read: reading it is "not
    found", naming the path, rather than an empty database made as a side effect."""

    def __init__(self, path: Path, database_id: str, busy_timeout_ms: int) -> None:
        self.id = database_id
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self._open: SQLiteD1Database | None = None

    def _database(self, statements: Sequence[Any]) -> SQLiteD1Database:
        if self._open is None:
            if not self.path.exists() and not writes(statements):
                raise NotFound(f"no local D1 database at {self.path}: nothing has written it yet")
            self._open = SQLiteD1Database(self.path, self.id, busy_timeout_ms=self.busy_timeout_ms)
        return self._open

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        from dreamcli.stores.ports import Statement

        return self._database([Statement(sql, tuple(params))]).execute(sql, params)

    def batch(self, statements: Sequence[Any]) -> list[Any]:
        return self._database(statements).batch(statements)

    def close(self) -> None:
        if self._open is not None:
            self._open.close()


def open_project_of(where: str) -> Project:
    spec = parse_spec(where)
    return open_project(
        spec.root,
        persist_to=spec.persist_to,
        env=spec.env,
        production_ids=spec.production,
        worker_persist_to=spec.worker_persist_to,
    )


def open_wrangler_store(
    where: str, *, clock: Callable[[], float] = time.time, busy_timeout_ms: int = BUSY_TIMEOUT_MS
) -> Store:
    """The four namespaces as the workers that serve them see them under `wrangler dev` (platform-* in
    front-auth-api's state, api-* in api-multi's), and api-multi's D1; `store.project` knows every other copy
    (the writers' own states), which verify compares and repair brings to the live one."""
    from dreamcli.topology import GUIDE_TOPOLOGY, DatabaseRef, NamespaceRef, Topology

    project = open_project_of(where)
    namespaces: dict[str, KVNamespace] = {}
    refs = []
    for ref in GUIDE_TOPOLOGY.namespaces:
        copies = project.copies.get(ref.name, [])
        live = next((copy for copy in copies if copy.live), None)
        if live is not None:
            namespace = WranglerKVNamespace(live.state_root, live.id, clock, busy_timeout_ms)
            others = {copy.place: copy for copy in copies if copy.place != live.place}
            namespace.copies = [
                WranglerKVNamespace(c.state_root, c.id, clock, busy_timeout_ms) for c in others.values()
            ]
            namespace.readers = [
                ns for ns, c in zip(namespace.copies, others.values(), strict=True) if "reads" in c.role
            ]
            namespaces[ref.name] = namespace
        refs.append(NamespaceRef(ref.name, live.id if live else ref.id, ref.bindings))
    owner = project.live_d1()
    database_ref = GUIDE_TOPOLOGY.database
    if owner is not None:
        database_ref = DatabaseRef(owner.binding, database_ref.name, owner.id)
        state_root = owner.state_root
    else:  # no worker binds D1: api-multi's (or the first worker's) state, as wrangler would put it
        worker = project.roles.get("api-multi", (project.workers[0], ""))[0]
        state_root = worker.state_root(project.persist_to)
    database = LocalD1(d1_path(state_root, database_ref.id), database_ref.id, busy_timeout_ms)
    places = {state_root, *(copy.state_root for copies in project.copies.values() for copy in copies)}
    return Store(
        "wrangler",
        str(project.root),
        Topology(tuple(refs), database_ref),
        namespaces,
        database,
        database.close,
        clock,
        project,
        lock=StoreLock(places, f"wrangler's state in {project.root}"),
    )
