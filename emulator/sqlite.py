"""The emulator's one SQLite file: opening it safely and evolving its schema by migrations.

Internal tables are named `_dream_*`; D1 statements run on their own connection
whose authorizer refuses those names, so user SQL cannot reach the KV data.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import sqlite_utils

from dreamcli.errors import StoreError
from dreamcli.stores.sql import split_statements

BUSY_TIMEOUT_MS = 5000
INTERNAL_PREFIX = "_dream_"

# Numbered, append-only. Each runs in one transaction and is recorded in _dream_schema.
SCHEMA_MIGRATIONS: tuple[tuple[int, str, str], ...] = (
    (
        1,
        "kv",
        """
        CREATE TABLE _dream_kv_namespaces (
            seq INTEGER PRIMARY KEY,      -- what _dream_kv.ns holds: a small int keeps the B-tree keys short
            id TEXT NOT NULL UNIQUE,      -- the Cloudflare namespace id
            title TEXT NOT NULL
        );
        CREATE TABLE _dream_kv (
            ns INTEGER NOT NULL,          -- _dream_kv_namespaces.seq
            key TEXT NOT NULL,            -- BINARY collation compares UTF-8 bytes: byte order, as Cloudflare
            expiration INTEGER,           -- Unix seconds, NULL = never
            metadata TEXT,                -- compact JSON, NULL = none
            value BLOB NOT NULL,
            PRIMARY KEY (ns, key)
        ) WITHOUT ROWID;
        CREATE INDEX _dream_kv_expiring ON _dream_kv (expiration) WHERE expiration IS NOT NULL;
        """,
    ),
    (
        2,
        "vendors",
        """
        -- Stripe and Clerk objects as JSON documents, scoped by Stripe account or Clerk instance.
        CREATE TABLE _dream_vendor_objects (
            vendor TEXT NOT NULL,
            id TEXT NOT NULL,
            scope TEXT NOT NULL,
            type TEXT NOT NULL,
            created INTEGER NOT NULL,
            data TEXT NOT NULL,
            PRIMARY KEY (vendor, id)
        );
        CREATE INDEX _dream_vendor_objects_listing ON _dream_vendor_objects (vendor, scope, type, created, id);
        -- API keys the emulator issued (test credentials of the emulator, not real secrets).
        CREATE TABLE _dream_vendor_keys (
            vendor TEXT NOT NULL,
            key TEXT NOT NULL,
            scope TEXT NOT NULL,
            role TEXT NOT NULL,
            PRIMARY KEY (vendor, key)
        );
        CREATE TABLE _dream_stripe_oauth_codes (
            code TEXT PRIMARY KEY,
            account TEXT NOT NULL,
            client_id TEXT NOT NULL,
            expires INTEGER NOT NULL,
            used INTEGER NOT NULL DEFAULT 0
        );
        CREATE TABLE _dream_stripe_idempotency (
            account TEXT NOT NULL,
            key TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            status INTEGER NOT NULL,
            body TEXT NOT NULL,
            created INTEGER NOT NULL,
            PRIMARY KEY (account, key)
        );
        CREATE TABLE _dream_webhook_deliveries (
            seq INTEGER PRIMARY KEY,
            vendor TEXT NOT NULL,
            event_id TEXT NOT NULL,
            event_type TEXT NOT NULL,
            url TEXT NOT NULL,
            status INTEGER,
            error TEXT,
            attempted_at INTEGER NOT NULL
        );
        """,
    ),
)
LATEST_SCHEMA = SCHEMA_MIGRATIONS[-1][0]

T = TypeVar("T")


def describe_sqlite_error(path: Path, exc: sqlite3.Error, waited_ms: int = BUSY_TIMEOUT_MS) -> StoreError:
    """One clear line for the ways a store file goes wrong."""
    message = str(exc)
    if "locked" in message or "busy" in message:
        return StoreError(f"store {path} is locked by another process (waited {waited_ms / 1000:g} s); try again")
    if "not a database" in message or "malformed" in message or "corrupt" in message:
        return StoreError(f"store {path} is corrupt ({message}); move it aside to start a new one")
    if "readonly" in message or "unable to open" in message:
        return StoreError(f"store {path} cannot be written ({message})")
    return StoreError(f"store {path}: {message}")


class SQLiteFile:
    """A connection to the store file with one lock, WAL, a busy timeout and write transactions."""

    def __init__(
        self,
        path: Path,
        *,
        authorizer: Callable[..., int] | None = None,
        busy_timeout_ms: int = BUSY_TIMEOUT_MS,
        foreign_keys: bool = False,
    ) -> None:
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self.lock = threading.RLock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(
                str(path), isolation_level=None, check_same_thread=False, timeout=busy_timeout_ms / 1000
            )
            self.conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            mode = self.conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise StoreError(f"store {path} cannot use WAL mode (got {mode})")
            self.conn.execute("PRAGMA synchronous = NORMAL")
            # Bulk writes land in random key order: a 32 MiB page cache keeps them off the disk until
            # commit (SQLite's 2 MiB default thrashes past a few 100k keys). No mmap: mapped file pages
            # would count in the process's memory for nothing measurable.
            self.conn.execute("PRAGMA cache_size = -32768")
            self.conn.execute("PRAGMA temp_store = MEMORY")
            if foreign_keys:  # D1 enforces foreign keys; the KV tables have none to check
                self.conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            raise describe_sqlite_error(path, exc, busy_timeout_ms) from None
        except OSError as exc:
            raise StoreError(f"store {path} cannot be opened: {exc.strerror or exc}") from None
        if authorizer is not None:
            self.conn.set_authorizer(authorizer)

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """An IMMEDIATE transaction: all of it is written, or none of it."""
        with self.lock:
            try:
                self.conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise describe_sqlite_error(self.path, exc, self.busy_timeout_ms) from None
            try:
                yield self.conn
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise
            try:
                self.conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise describe_sqlite_error(self.path, exc, self.busy_timeout_ms) from None

    def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self.lock:
            try:
                return fn(self.conn)
            except sqlite3.Error as exc:
                raise describe_sqlite_error(self.path, exc, self.busy_timeout_ms) from None

    def close(self) -> None:
        with self.lock:
            self.conn.close()


def migrate(file: SQLiteFile) -> int:
    """Bring the internal schema to the latest version; refuse files that are not dream stores."""

    def current(conn: sqlite3.Connection) -> tuple[int, list[str]]:
        db = sqlite_utils.Database(conn)
        tables = db.table_names()
        if "_dream_schema" not in tables:
            return 0, tables
        return conn.execute("SELECT COALESCE(MAX(version), 0) FROM _dream_schema").fetchone()[0], tables

    version, tables = file.read(current)
    if version == 0 and tables:
        raise StoreError(f"{file.path} is a SQLite database but not a dream store (it holds other tables)")
    if version > LATEST_SCHEMA:
        raise StoreError(f"store {file.path} has schema {version}, newer than this dream ({LATEST_SCHEMA}): upgrade")
    if version == LATEST_SCHEMA:
        return version
    with file.write() as conn:
        # Another process may have migrated between our read and our lock.
        conn.execute(
            "CREATE TABLE IF NOT EXISTS _dream_schema ("
            "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)"
        )
        done = conn.execute("SELECT COALESCE(MAX(version), 0) FROM _dream_schema").fetchone()[0]
        for number, name, sql in SCHEMA_MIGRATIONS:
            if number <= done:
                continue
            for statement in split_statements(sql):
                conn.execute(statement)
            conn.execute("INSERT INTO _dream_schema (version, name) VALUES (?, ?)", (number, name))
    return LATEST_SCHEMA
