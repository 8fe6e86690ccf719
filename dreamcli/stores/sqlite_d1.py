"""A D1 database on a SQLite file of its own (the emulator's, or Miniflare's on disk), answering with D1's
result shape and errors. User SQL runs behind an authorizer that allows what D1 allows and nothing that
reaches beyond the database: no transactions or ATTACH, only D1's PRAGMAs (never `writable_schema`), no
`load_extension` or `fts3_tokenizer`, no `dbstat`, no virtual-table modules but FTS5, and not the names the
file reserves for itself (`_cf_*` in Miniflare's files, as D1 refuses them). A statement running longer than
D1's 30 s limit is interrupted."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from dreamcli.errors import D1Error
from dreamcli.stores.ports import D1Meta, D1Result, Statement
from dreamcli.stores.sql import split_statements
from dreamcli.stores.sqlite_file import BUSY_TIMEOUT_MS, SQLiteFile

_DDL_VERBS = ("CREATE", "DROP", "ALTER")
_D1_LIMIT_PARAMS = 100
QUERY_TIME_LIMIT_S = 30.0  # D1's "maximum SQL query duration"
_RESERVED_PREFIX = "_cf_"  # the names Miniflare's D1 files keep for themselves (D1 refuses them too)

_REFUSED_ACTIONS = frozenset(
    {sqlite3.SQLITE_TRANSACTION, sqlite3.SQLITE_SAVEPOINT, sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH}
)
# The PRAGMAs D1 documents as supported (reading `data_version` is what SQLite's FTS5 does on its own).
ALLOWED_PRAGMAS = frozenset(
    {
        "table_list",
        "table_info",
        "table_xinfo",
        "index_list",
        "index_info",
        "index_xinfo",
        "quick_check",
        "foreign_key_check",
        "foreign_key_list",
        "case_sensitive_like",
        "ignore_check_constraints",
        "legacy_alter_table",
        "recursive_triggers",
        "reverse_unordered_selects",
        "foreign_keys",
        "defer_foreign_keys",
        "optimize",
        "data_version",
    }
)
_REFUSED_FUNCTIONS = frozenset({"load_extension", "fts3_tokenizer", "sqlite_offset"})
_REFUSED_TABLES = frozenset({"dbstat", "sqlite_dbpage", "sqlite_stmt"})
_ALLOWED_MODULES = frozenset({"fts5"})
# D1's documented limits (developers.cloudflare.com/d1/platform/limits), as SQLite's own limits on the connection:
# a string, BLOB or row of 2,000,000 bytes, a statement of 100,000 bytes, 100 bound parameters, 32 arguments to a
# function, a LIKE or GLOB pattern of 50 bytes, 100 columns a table. And a result of at most 50 MB.
_D1_SQLITE_LIMITS = {
    sqlite3.SQLITE_LIMIT_LENGTH: 2_000_000,
    sqlite3.SQLITE_LIMIT_SQL_LENGTH: 100_000,
    sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER: 100,
    sqlite3.SQLITE_LIMIT_FUNCTION_ARG: 32,
    sqlite3.SQLITE_LIMIT_LIKE_PATTERN_LENGTH: 50,
    sqlite3.SQLITE_LIMIT_COLUMN: 100,
}
MAX_RESULT_BYTES = 50_000_000
# The tables an FTS5 table keeps its index in: written by SQLite alone (a user write corrupts the index).
_FTS5_SHADOWS = ("_data", "_idx", "_content", "_docsize", "_config")


class D1Guard:
    """What user SQL may do on one D1 file, shared by every user of the process's one connection to it (see
    `SQLiteFile`): the authorizer and the time limit look at whether user SQL is running now, whoever runs it."""

    def __init__(self, conn: sqlite3.Connection | None = None) -> None:
        self.guarded = False  # True only while user SQL is being prepared and run (under the file's lock)
        self.deadline = 0.0
        self.shadows: frozenset[str] = frozenset()  # FTS5 shadow tables, read before each user statement
        if conn is not None:
            conn.set_authorizer(self.authorize)
            conn.set_progress_handler(self.over_time, 10_000)
            for limit, value in _D1_SQLITE_LIMITS.items():
                conn.setlimit(limit, value)

    def learn_shadows(self, conn: sqlite3.Connection) -> None:
        """The FTS5 tables' shadow tables now (asked before user SQL runs)."""
        names = [
            row[0]
            for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND sql LIKE '%USING fts5%'")
        ]
        self.shadows = frozenset(f"{name}{suffix}".lower() for name in names for suffix in _FTS5_SHADOWS)

    def authorize(self, action: int, arg1: str | None, arg2: str | None, _db: str | None, _src: str | None) -> int:
        """What user SQL may do: D1's surface, within this one database (see the module docstring)."""
        if not self.guarded:
            return sqlite3.SQLITE_OK
        if action in _REFUSED_ACTIONS:
            return sqlite3.SQLITE_DENY
        if action == sqlite3.SQLITE_PRAGMA:
            return sqlite3.SQLITE_OK if (arg1 or "").lower() in ALLOWED_PRAGMAS else sqlite3.SQLITE_DENY
        if action == sqlite3.SQLITE_FUNCTION:
            return sqlite3.SQLITE_DENY if (arg2 or "").lower() in _REFUSED_FUNCTIONS else sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_CREATE_VTABLE or action == sqlite3.SQLITE_DROP_VTABLE:
            if (arg2 or "").lower() not in _ALLOWED_MODULES:
                return sqlite3.SQLITE_DENY
        if action == sqlite3.SQLITE_READ and (arg1 or "").lower() in _REFUSED_TABLES:
            return sqlite3.SQLITE_DENY
        for name in (arg1, arg2):
            if name and name.lower().startswith(_RESERVED_PREFIX):
                return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK

    def over_time(self) -> int:
        """SQLite calls this every few thousand steps; non-zero interrupts the statement (D1's time limit)."""
        return 1 if self.guarded and time.monotonic() > self.deadline else 0


class SQLiteD1Database:
    """User tables in a SQLite file, reached through a guarded connection."""

    def __init__(
        self,
        path: Path,
        database_id: str,
        *,
        busy_timeout_ms: int = BUSY_TIMEOUT_MS,
        private: bool = False,
        time_limit_s: float = QUERY_TIME_LIMIT_S,
    ) -> None:
        self.id = database_id
        self.time_limit_s = time_limit_s
        self.file = SQLiteFile(path, busy_timeout_ms=busy_timeout_ms, foreign_keys=True, private=private)
        try:
            self.guard = self.file.attachment("d1-guard", D1Guard)
        except BaseException:
            self.file.close()
            raise

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
        self.guard.learn_shadows(conn)
        # FTS5 writes its index tables through this same connection, so the authorizer cannot tell its writes from
        # the user's: a statement that names one (to write it, or a trigger or view that would) is refused whole.
        named = [name for name in self.guard.shadows if name in statement.sql.lower()]
        if named:
            raise D1Error(f"not authorized: {named[0]} is FTS5's own index table: SQLITE_AUTH")
        self.guard.guarded = True
        self.guard.deadline = time.monotonic() + self.time_limit_s
        try:
            cursor = conn.execute(statement.sql, tuple(statement.params))
            columns = [column[0] for column in cursor.description or ()]
            rows = [dict(zip(columns, row, strict=True)) for row in _bounded(cursor)]
        except (sqlite3.DatabaseError, sqlite3.ProgrammingError) as exc:
            where = f" (statement {index + 1} of {total})" if total > 1 else ""
            raise D1Error(f"{_d1_message(exc)}{where}") from None
        finally:
            self.guard.guarded = False
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


def _bounded(cursor: sqlite3.Cursor) -> Iterator[tuple[Any, ...]]:
    """The rows, until they pass D1's 50 MB result limit (then D1's error, not the memory of a 2M-row CTE)."""
    size = 0
    while batch := cursor.fetchmany(1000):
        for row in batch:
            size += sum(len(value) if isinstance(value, str | bytes) else 8 for value in row)
            if size > MAX_RESULT_BYTES:
                raise D1Error("D1's result limit of 50 MB was exceeded: SQLITE_TOOBIG")
            yield row


def _with_size(meta: D1Meta, size: int) -> D1Meta:
    return D1Meta(
        meta.changes, meta.last_row_id, meta.rows_read, meta.rows_written, meta.duration, meta.changed_db, size
    )


def _d1_message(exc: sqlite3.Error) -> str:
    """D1 appends SQLite's error name: `no such table: x: SQLITE_ERROR`."""
    message = str(exc)
    if "not authorized" in message:
        message = (
            "not authorized: D1 does not allow this statement (transactions, ATTACH, PRAGMAs other than "
            "D1's, extensions, internal tables)"
        )
        return f"{message}: SQLITE_AUTH"
    if "interrupted" in message:
        return "D1 DB exceeded its query time limit and the statement was stopped: SQLITE_INTERRUPT"
    name = getattr(exc, "sqlite_errorname", None) or "SQLITE_ERROR"
    return f"{message}: {name}"


# What SQLite's authorizer says a statement writes (a D1 file that does not exist yet is created only for these).
_WRITES = frozenset(
    getattr(sqlite3, name)
    for name in dir(sqlite3)
    if name.startswith(("SQLITE_CREATE_", "SQLITE_DROP_"))
    or name in ("SQLITE_INSERT", "SQLITE_UPDATE", "SQLITE_DELETE", "SQLITE_ALTER_TABLE", "SQLITE_REINDEX")
)


def writes(statements: Sequence[Any]) -> bool:
    """Whether any statement would write, as SQLite prepares it on an empty database (nothing is run)."""
    seen: list[int] = []

    guard = D1Guard()  # what user SQL may not do, it may not do here either (a PRAGMA acting as it is prepared)
    guard.guarded = True

    def record(action: int, *args: Any) -> int:
        seen.append(action)
        return guard.authorize(action, *args)

    probe = sqlite3.connect(":memory:")
    try:
        probe.set_authorizer(record)
        for statement in statements:
            # A table that does not exist yet fails the EXPLAIN: what was authorized before it still counts.
            with contextlib.suppress(sqlite3.Error):
                probe.execute("EXPLAIN " + statement.sql, tuple(statement.params))
    finally:
        probe.close()
    return any(action in _WRITES for action in seen)
