"""The emulator file's own schema: `_dream_*` tables, created and evolved by numbered migrations.

The file holds only these: each D1 database lives in a SQLite file of its own beside it (`d1_path`), as
Miniflare keeps them, so no D1 statement can see KV values, vendor state or keys at all.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

from dreamcli.errors import StoreError
from dreamcli.private_files import create_private
from dreamcli.stores.sql import split_statements
from dreamcli.stores.sqlite_file import BUSY_TIMEOUT_MS, SQLiteFile, describe_sqlite_error, is_open

# What the tally indexes (migration 6) hold: a Clerk user's plan; a subscription's status, dates, item count and
# first item's price terms. emulator/tallies.py asks in these very expressions, so SQLite reads the index alone.
CLERK_PLAN = "json_extract(data, '$.public_metadata.plan')"
SUBSCRIPTION_TERMS = (
    "json_extract(data, '$.status')",
    "json_extract(data, '$.created')",
    "json_extract(data, '$.ended_at')",
    "json_array_length(data, '$.items.data')",
    "json_extract(data, '$.items.data[0].price.currency')",
    "json_extract(data, '$.items.data[0].price.unit_amount')",
    "json_extract(data, '$.items.data[0].quantity')",
    "json_extract(data, '$.items.data[0].price.recurring.interval')",
    "json_extract(data, '$.items.data[0].price.recurring.interval_count')",
)

# Numbered, append-only. Each runs in one transaction and is recorded in _dream_schema.
Migration = str | Callable[[sqlite3.Connection, Path], None]  # SQL, or a step that needs Python
SCHEMA_MIGRATIONS: tuple[tuple[int, str, Migration], ...] = (
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
    (
        3,
        "vendor key digests",
        # Keys are found by the SHA-256 of the key presented, so a lookup's timing says nothing about the key.
        """
        ALTER TABLE _dream_vendor_keys ADD COLUMN key_sha256 TEXT;
        UPDATE _dream_vendor_keys SET key_sha256 = dream_sha256(key);
        CREATE UNIQUE INDEX _dream_vendor_keys_digest ON _dream_vendor_keys (vendor, key_sha256);
        """,
    ),
    (4, "d1 in its own file", lambda conn, path: move_d1_tables(conn, path)),
    (
        5,
        "webhook outbox",
        # Events wait here, a row per endpoint, until a delivery loop has posted them (emulator/webhooks.py).
        # next_at is when the next attempt is due; NULL once the message is delivered or has failed for good.
        """
        CREATE TABLE _dream_webhook_outbox (
            seq INTEGER PRIMARY KEY,
            vendor TEXT NOT NULL,
            message_id TEXT NOT NULL,
            event_type TEXT NOT NULL,
            endpoint_id TEXT NOT NULL,
            url TEXT NOT NULL,
            body BLOB NOT NULL,
            lane TEXT NOT NULL DEFAULT '',
            attempts INTEGER NOT NULL DEFAULT 0,
            state TEXT NOT NULL DEFAULT 'pending',
            next_at REAL,
            created REAL NOT NULL
        );
        CREATE INDEX _dream_webhook_outbox_due ON _dream_webhook_outbox (lane, next_at) WHERE next_at IS NOT NULL;
        CREATE INDEX _dream_webhook_outbox_message ON _dream_webhook_outbox (vendor, message_id);
        ALTER TABLE _dream_webhook_deliveries ADD COLUMN attempt INTEGER;
        ALTER TABLE _dream_webhook_deliveries ADD COLUMN outbox_seq INTEGER;
        """,
    ),
    (
        6,
        "vendor tallies",
        # The operator's figures (`dream overview`, the console) counted in these indexes alone, not by reading
        # every user's and subscription's JSON: 100,000 developers in milliseconds (emulator/tallies.py).
        f"""
        CREATE INDEX _dream_clerk_user_plan ON _dream_vendor_objects (scope, {CLERK_PLAN})
            WHERE vendor = 'clerk' AND type = 'user';
        CREATE INDEX _dream_stripe_subscription_terms ON _dream_vendor_objects (scope, {", ".join(SUBSCRIPTION_TERMS)})
            WHERE vendor = 'stripe' AND type = 'subscription';
        """,
    ),
)
LATEST_SCHEMA = SCHEMA_MIGRATIONS[-1][0]


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def d1_path(store_path: Path, database_id: str) -> Path:
    """Where the D1 database `database_id` of the store at `store_path` lives: a file of its own."""
    return store_path.with_name(store_path.name + ".d1") / f"{database_id}.sqlite"


def move_d1_tables(conn: sqlite3.Connection, store_path: Path) -> None:
    """Stores made before D1 had its own file kept D1's tables in the store file: copy them (rows, indexes,
    views, triggers, sequences) into the D1 file, then drop them from the store, nothing lost.

    Runs inside the migration's write transaction, so no other process uses either file meanwhile. The copy
    is built aside and renamed into place; the drop commits with the migration's version row, so a crash at
    any point leaves either the old layout (and the next open moves again) or the new one."""
    user = conn.execute(
        "SELECT type, name FROM sqlite_master WHERE name NOT LIKE '\\_dream\\_%' ESCAPE '\\' "
        "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND type IN ('table', 'view', 'trigger')"
    ).fetchall()
    if not user:
        return
    from dreamcli.topology import GUIDE_TOPOLOGY

    target = d1_path(store_path, GUIDE_TOPOLOGY.database.id)
    if not target.parent.exists():
        target.parent.mkdir(parents=True, mode=0o700)
    aside = target.with_name(target.name + ".moving")
    aside.unlink(missing_ok=True)
    create_private(aside)  # VACUUM INTO fills an empty file, which is 0600 from the start
    reader = sqlite3.connect(str(store_path), isolation_level=None)
    try:
        reader.execute("VACUUM INTO ?", (str(aside),))
    finally:
        reader.close()
    copy = sqlite3.connect(str(aside), isolation_level=None)
    try:
        internal = [
            row[0]
            for row in copy.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE '\\_dream\\_%' ESCAPE '\\'"
            )
        ]
        for name in internal:
            copy.execute(f'DROP TABLE "{name}"')
        copy.execute("VACUUM")  # rebuilt from scratch: no page of the dropped tables survives in the D1 file
    finally:
        copy.close()
    for stale in (target, target.with_name(target.name + "-wal"), target.with_name(target.name + "-shm")):
        stale.unlink(missing_ok=True)
    os.replace(aside, target)
    for kind in ("trigger", "view", "table"):
        for row_kind, name in user:
            if row_kind == kind:
                conn.execute(f'DROP {kind.upper()} IF EXISTS "{name}"')


def refuse_foreign(path: Path) -> None:
    """Refuse a file that is not a dream store (notes, /etc/passwd, another program's database) before anything
    touches it: not its mode, not its journal. Asked through SQLite, read-only; a store this process holds open
    was checked when it was opened."""
    if not path.exists() or is_open(path) or path.stat().st_size == 0:
        return
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
        try:
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        if "not a database" in str(exc):
            raise StoreError(
                f"{path} is not a dream store (not a SQLite database: another file, or a corrupt store): refused, "
                "nothing changed; move it aside to start a new one"
            ) from None
        raise describe_sqlite_error(path, exc) from None
    if tables and "_dream_schema" not in tables:
        raise StoreError(f"{path} is a SQLite database but not a dream store (it holds other tables): refused")


def migrate(file: SQLiteFile) -> int:
    """Bring the internal schema to the latest version; refuse files that are not dream stores."""

    def current(conn: sqlite3.Connection) -> tuple[int, list[str]]:
        # sqlite_master itself, not sqlite_utils: every command opens a store, and sqlite_utils costs ~30 ms to import
        tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
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
        conn.create_function("dream_sha256", 1, sha256_hex, deterministic=True)
        for number, name, step in SCHEMA_MIGRATIONS:
            if number <= done:
                continue
            if callable(step):
                step(conn, file.path)
            else:
                for statement in split_statements(step):
                    conn.execute(statement)
            conn.execute("INSERT INTO _dream_schema (version, name) VALUES (?, ?)", (number, name))
    return LATEST_SCHEMA
