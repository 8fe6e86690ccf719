"""The two ports every store implements: a Workers KV namespace and a D1 database.

Commands and platform code receive these and never ask which store is behind
them (emulator SQLite file, wrangler's local state, or Cloudflare's REST API).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, runtime_checkable

from dreamcli.errors import UnknownNamespace
from dreamcli.stores.store_lock import StoreLock
from dreamcli.topology import Topology


@dataclass(frozen=True, slots=True)
class KVValue:
    """A value read with its metadata and absolute expiration (Unix seconds)."""

    value: bytes
    metadata: Any = None
    expiration: int | None = None

    def text(self) -> str:
        return self.value.decode("utf-8")


class ListedKey(NamedTuple):
    """One key of a list page, as Cloudflare returns it (no value). A tuple: lists make millions."""

    name: str
    expiration: int | None = None
    metadata: Any = None


@dataclass(frozen=True, slots=True)
class ListPage:
    """A page of keys; `cursor` is "" on the last page (then `list_complete`)."""

    keys: list[ListedKey]
    list_complete: bool
    cursor: str = ""


class KVWrite(NamedTuple):
    """One pair of a bulk write; `expiration_ttl` wins over `expiration` when both are set (a tuple: cheap in bulk)."""

    key: str
    value: bytes | str
    expiration: int | None = None
    expiration_ttl: int | None = None
    metadata: Any = None


@dataclass(frozen=True, slots=True)
class SQLSource:
    """Where SQL can read a namespace's live rows in place: a SQLite file, and a SELECT of (key, value) in it
    with `{schema}` for the name the file is attached under."""

    path: str
    select: str


class ScanObserver(Protocol):
    """Told how a long scan goes, by the stores whose scans are long: Cloudflare's REST API (under its rate limit) and
    the verifier Worker (in shards). The others never call it."""

    def listed(self, keys: int, reads: int, seconds: float) -> None:
        """The names are listed: `keys` of them, `reads` bulk reads to go, `seconds` of them at the rate limit."""
        ...

    def shards(self, done: int, total: int, keys: int) -> None:
        """`done` of `total` shards read, `keys` keys so far."""
        ...


@runtime_checkable
class KVNamespace(Protocol):
    """A Workers KV namespace with Cloudflare's semantics and limits."""

    id: str
    scan_observer: ScanObserver | None  # None: nobody is told (every adapter starts so)

    def get(self, key: str) -> bytes | None: ...

    def get_with_metadata(self, key: str) -> KVValue | None: ...

    def put(
        self,
        key: str,
        value: bytes | str,
        *,
        expiration: int | None = None,
        expiration_ttl: int | None = None,
        metadata: Any = None,
    ) -> None: ...

    def delete(self, key: str) -> None: ...

    def list(self, *, prefix: str = "", cursor: str | None = None, limit: int = 1000) -> ListPage: ...

    def bulk_put(self, items: Sequence[KVWrite]) -> None: ...

    def bulk_get(self, keys: Sequence[str]) -> dict[str, KVValue | None]: ...

    def bulk_delete(self, keys: Sequence[str]) -> None: ...

    # What adapters offer beyond Cloudflare's API, each declared here rather than probed for:

    def update(self, key: str, change: Callable[[bytes | None], bytes], *, expiration_ttl: int | None = None) -> bytes:
        """Read, change and write one key: one transaction where the store can (the emulator), else a
        Worker's read-modify-write (`ReadModifyWrite`: concurrent writers can lose updates)."""
        ...

    def scan(self, *, prefix: str = "") -> Iterator[tuple[str, bytes]]:
        """Every live (key, value) under `prefix` in key order, in one pass where the storage allows."""
        ...

    def sql_source(self, now: int) -> SQLSource | None:
        """The live rows at `now` as SQL can read them in place, when the store keeps values in SQLite (the
        emulator); None when only `scan` can read them (wrangler's blob files, Cloudflare's API)."""
        ...

    def count(self) -> int | None:
        """How many keys, when the store can count them without reading them (a progress total, expired keys not
        yet removed included): the local stores; None where counting costs a listing (Cloudflare's API)."""
        ...


class PutAsBulkPut:
    """`put` as a bulk write of one pair: for the stores whose bulk write is their one write path (the emulator,
    wrangler's state), so a single put passes the same rules and the same transaction."""

    def put(
        self,
        key: str,
        value: bytes | str,
        *,
        expiration: int | None = None,
        expiration_ttl: int | None = None,
        metadata: Any = None,
    ) -> None:
        namespace: Any = self
        namespace.bulk_put([KVWrite(key, value, expiration, expiration_ttl, metadata)])


class ReadModifyWrite:
    """`update` as a Worker does it on Workers KV: get, change, put. Concurrent writers can lose updates: the
    stores that cannot do better (wrangler's state, Cloudflare's API) use it, exactly as the platform would."""

    def update(self, key: str, change: Callable[[bytes | None], bytes], *, expiration_ttl: int | None = None) -> bytes:
        namespace: Any = self
        new = change(namespace.get(key))
        namespace.put(key, new, expiration_ttl=expiration_ttl)
        return new


def iter_pages(ns: KVNamespace, *, prefix: str = "", page_size: int = 1000) -> Iterator[ListPage]:
    """Every page under `prefix`, following cursors to the end (a page may be empty while more remain)."""
    cursor: str | None = None
    while True:
        page = ns.list(prefix=prefix, cursor=cursor, limit=page_size)
        yield page
        if page.list_complete or not page.cursor:
            return
        cursor = page.cursor


def iter_keys(ns: KVNamespace, *, prefix: str = "", page_size: int = 1000) -> Iterator[ListedKey]:
    """Every live key under `prefix`, in UTF-8 byte order."""
    for page in iter_pages(ns, prefix=prefix, page_size=page_size):
        yield from page.keys


def scan_items(ns: KVNamespace, *, prefix: str = "") -> Iterator[tuple[str, bytes]]:
    """Every live (key, value) under `prefix` in key order, memory bounded by the adapter's batch."""
    return ns.scan(prefix=prefix)


def keys_holding(ns: KVNamespace, values: Collection[str], *, prefix: str, now: int) -> dict[str, list[str]]:
    """For each of `values`, the live keys under `prefix` holding exactly it, in key order: compared in SQLite
    where the namespace lives in it (`sql_source`: 100,000 keys in milliseconds), else in one scan."""
    found: dict[str, list[str]] = {value: [] for value in values}
    if not found:
        return found
    source = ns.sql_source(now)
    if source is None:
        wanted = {value.encode(): value for value in found}
        for key, raw in ns.scan(prefix=prefix):
            if raw in wanted:
                found[wanted[raw]].append(key)
        return found
    import sqlite3

    # A connection of its own, read-only: SQLite shares one file's locks between its connections in a process, so
    # closing this one drops none of the store's (unlike a raw descriptor: see stores/sqlite_file.py).
    conn = sqlite3.connect(f"file:{source.path}?mode=ro", uri=True)
    try:
        conn.execute("ATTACH DATABASE ? AS src", (f"file:{source.path}?mode=ro",))
        bounds = "key >= ?" + (" AND key < ?" if prefix else "")
        args: list[Any] = [prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)] if prefix else [""]
        marks = ", ".join("CAST(? AS BLOB)" for _ in found)
        rows = conn.execute(
            f"SELECT key, CAST(value AS TEXT) FROM ({source.select.format(schema='src')}) "
            f"WHERE {bounds} AND value IN ({marks}) ORDER BY key",
            (*args, *found),
        ).fetchall()
    finally:
        conn.close()
    for key, value in rows:
        found[value].append(key)
    return found


@dataclass(frozen=True, slots=True)
class Statement:
    """One SQL statement with positional parameters."""

    sql: str
    params: Sequence[Any] = ()


@dataclass(frozen=True, slots=True)
class D1Meta:
    """D1's per-statement meta. `duration` is in milliseconds."""

    changes: int = 0
    last_row_id: int = 0
    rows_read: int = 0
    rows_written: int = 0
    duration: float = 0.0
    changed_db: bool = False
    size_after: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "changes": self.changes,
            "last_row_id": self.last_row_id,
            "rows_read": self.rows_read,
            "rows_written": self.rows_written,
            "duration": self.duration,
            "changed_db": self.changed_db,
            "size_after": self.size_after,
        }


@dataclass(frozen=True, slots=True)
class D1Result:
    """The result of one statement, shaped like D1's: rows (as objects) plus meta."""

    results: list[dict[str, Any]] = field(default_factory=list)
    success: bool = True
    meta: D1Meta = field(default_factory=D1Meta)

    def as_dict(self) -> dict[str, Any]:
        return {"results": self.results, "success": self.success, "meta": self.meta.as_dict()}


@runtime_checkable
class Database(Protocol):
    """A D1 database."""

    id: str

    def execute(self, sql: str, params: Sequence[Any] = ()) -> D1Result: ...

    def batch(self, statements: Sequence[Statement]) -> list[D1Result]: ...


@dataclass
class Store:
    """The four logical namespaces and the D1 database of one place where data lives."""

    kind: str
    location: str
    topology: Topology
    namespaces: Mapping[str, KVNamespace]
    database: Database
    closer: Any = None
    # The store's own clock: what its expirations are checked against (the emulator's clock, Cloudflare's from
    # its API's Date header). Expirations dream computes use it, never the laptop's.
    clock: Callable[[], float] = time.time
    # Where more than one local copy of a namespace exists (wrangler's state, one per worker folder unless they
    # share --persist-to): the project and its copies (dreamcli.stores.discovery.Project); None elsewhere.
    project: Any = None
    # Values the key schema marks secret arrive sealed (dreamcli.layout.SEAL: digests, never the secrets), as the
    # verifier Worker sends them; its token namespaces then copy such values inside the Worker (`copy_sealed`).
    sealed: bool = False
    # Local stores: the lock dream's changes of several keys hold (dreamcli.stores.store_lock); None on Cloudflare,
    # where no lock spans KV.
    lock: StoreLock | None = None

    def locked(self, *, shared: bool = False) -> AbstractContextManager[None]:
        """Held while dream changes several keys at once (exclusive), or reads them all (shared: verify)."""
        return nullcontext() if self.lock is None else self.lock.hold(shared=shared)

    def kv(self, name_or_id: str) -> KVNamespace:
        """The namespace named by its logical name (`api-tokens`) or its namespace id."""
        ref = self.topology.namespace(name_or_id)
        if ref is None:
            known = ", ".join(self.topology.names())
            raise UnknownNamespace(f"unknown namespace {name_or_id!r} (known: {known}, or their ids)")
        if ref.name not in self.namespaces:
            if self.project is not None:
                self.project.live(ref.name)  # says which worker should serve it and what was found
            raise UnknownNamespace(f"{ref.name} is not reachable in {self.kind} store {self.location}")
        return self.namespaces[ref.name]

    def close(self) -> None:
        if self.closer is not None:
            self.closer()
