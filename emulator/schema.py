"""The emulator file's own schema: `_dream_*` tables, created and evolved by numbered migrations.

D1 statements run on their own connection whose authorizer refuses these names, so user SQL
cannot reach the KV or vendor data.
"""

from __future__ import annotations

import sqlite3

import sqlite_utils

from dreamcli.errors import StoreError
from dreamcli.stores.sql import split_statements
from dreamcli.stores.sqlite_file import SQLiteFile

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
