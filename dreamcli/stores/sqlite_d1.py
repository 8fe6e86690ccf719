"""A D1 database on a SQLite file (the emulator's, or Miniflare's on disk), answering with D1's result
shape and errors. User SQL runs behind an authorizer that refuses transactions, ATTACH and the names
the file reserves for itself (`_dream_*` in the emulator's file, `_cf_*` in Miniflare's), as D1 does."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dreamcli.errors import D1Error
from dreamcli.stores.ports import D1Meta, D1Result, Statement
from dreamcli.stores.sql import split_statements
from dreamcli.stores.sqlite_file import BUSY_TIMEOUT_MS, SQLiteFile

_DDL_VERBS = ("CREATE", "DROP", "ALTER")
_D1_LIMIT_PARAMS = 100


_REFUSED_ACTIONS = (sqlite3.SQLITE_TRANSACTION, sqlite3.SQLITE_SAVEPOINT, sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH)


class SQLiteD1Database:
    """User tables in a SQLite file, reached through a guarded connection."""

    def __init__(self, path: Path, database_id: str, *, reserved_prefix: str = "_dream_",
                 busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> None:
        self.id = database_id
        self.reserved_prefix = reserved_prefix
        self._guarded = False  # True only while user SQL is being prepared and run
        self.file = SQLiteFile(path, authorizer=self._authorize, busy_timeout_ms=busy_timeout_ms, foreign_keys=True)

    def _authorize(self, action: int, arg1: str | None, arg2: str | None, _db: str | None, _src: str | None) -> int:
        """User SQL may not use transactions, ATTACH or the emulator's own tables, as D1 refuses its `_cf_` ones."""
        if not self._guarded:
            return sqlite3.SQLITE_OK
        if action in _REFUSED_ACTIONS:
            return sqlite3.SQLITE_DENY
        for name in (arg1, arg2):
            if name and name.lower().startswith(self.reserved_prefix):
                return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK

    def execute(self, sql: str, params: Sequence[Any] = ()) -> D1Result:
        statements = split_statements(sql)
        if len(statements) != 1:
            raise D1Error(f"expected one SQL statement, got {len(statements)}: use a batch for several")
        return self.batch([Statement(statements[0], tuple(params))])[0]

    def batch(self, statements: Sequence[Statement]) -> list[D1Result]:
        if not statements:
            return []
        for statement in statements:
            if len(statement.params) > _D1_LIMIT_PARAMS:
                raise D1Error(f"too many SQL variables ({len(statement.params)} > {_D1_LIMIT_PARAMS}): SQLITE_ERROR")
        with self.file.write() as conn:
            results = [self._run(conn, index, statement, len(statements)) for index, statement in enumerate(statements)]
        size = self._size()
        return [D1Result(r.results, True, _with_size(r.meta, size)) for r in results]

    def _run(self, conn: sqlite3.Connection, index: int, statement: Statement, total: int) -> D1Result:
        started = time.perf_counter()
        before = conn.total_changes
        self._guarded = True
        try:
            cursor = conn.execute(statement.sql, tuple(statement.params))
            columns = [column[0] for column in cursor.description or ()]
            rows = [dict(zip(columns, row)) for row in cursor.fetchall()]
        except (sqlite3.DatabaseError, sqlite3.ProgrammingError) as exc:
            where = f" (statement {index + 1} of {total})" if total > 1 else ""
            raise D1Error(f"{_d1_message(exc)}{where}") from None
        finally:
            self._guarded = False
        changes = conn.total_changes - before
        verb = statement.sql.lstrip().split(None, 1)[0].upper() if statement.sql.strip() else ""
        meta = D1Meta(
            changes=cursor.rowcount if cursor.rowcount > 0 else changes if changes > 0 else 0,
            last_row_id=cursor.lastrowid or 0,
            rows_read=len(rows),
            rows_written=changes,
            duration=round((time.perf_counter() - started) * 1000, 3),
            changed_db=changes > 0 or verb in _DDL_VERBS,
        )
        return D1Result(rows, True, meta)

    def _size(self) -> int:
        def read(conn: sqlite3.Connection) -> int:
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            return pages * conn.execute("PRAGMA page_size").fetchone()[0]

        return self.file.read(read)

    def close(self) -> None:
        self.file.close()


def _with_size(meta: D1Meta, size: int) -> D1Meta:
    return D1Meta(
        meta.changes, meta.last_row_id, meta.rows_read, meta.rows_written, meta.duration, meta.changed_db, size
    )


def _d1_message(exc: sqlite3.Error) -> str:
    """D1 appends SQLite's error name: `no such table: x: SQLITE_ERROR`."""
    message = str(exc)
    if "not authorized" in message:
        message = "not authorized: statements may not use transactions, ATTACH or the store's reserved tables"
        return f"{message}: SQLITE_AUTH"
    name = getattr(exc, "sqlite_errorname", None) or "SQLITE_ERROR"
    return f"{message}: {name}"
