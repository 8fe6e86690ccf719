"""Workers KV namespaces in the emulator's SQLite file, with Cloudflare's semantics and limits."""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from dreamcli.stores import kv_rules
from dreamcli.stores.kv_rules import decode_cursor, encode_cursor, key_range_sql
from dreamcli.stores.ports import KVValue, KVWrite, ListedKey, ListPage, PutAsBulkPut, ScanObserver, SQLSource
from dreamcli.stores.sqlite_file import SQLiteFile

_listed_key = functools.partial(tuple.__new__, ListedKey)
_by_key = operator.itemgetter(0)


class EmulatorKVNamespace(PutAsBulkPut):
    """One namespace (rows of `_dream_kv` with this `ns`)."""

    def __init__(self, file: SQLiteFile, namespace_id: str, seq: int, clock: Callable[[], float]) -> None:
        self.file = file
        self.id = namespace_id
        self.seq = seq
        self.clock = clock
        self.scan_observer: ScanObserver | None = None  # its scans are read in place: never long

    def _now(self) -> int:
        return int(self.clock())

    # Reads

    def get(self, key: str) -> bytes | None:
        found = self.get_with_metadata(key)
        return None if found is None else found.value

    def get_with_metadata(self, key: str) -> KVValue | None:
        kv_rules.validate_key(key)
        row = self.file.read(
            lambda conn: conn.execute(
                "SELECT value, metadata, expiration FROM _dream_kv "
                "WHERE ns = ? AND key = ? AND (expiration IS NULL OR expiration > ?)",
                (self.seq, key, self._now()),
            ).fetchone()
        )
        if row is None:
            return None
        return KVValue(row[0], kv_rules.decode_metadata(row[1]), row[2])

    def bulk_get(self, keys: Sequence[str]) -> dict[str, KVValue | None]:
        kv_rules.check_keys(keys, kv_rules.MAX_BULK_GET, "Bulk get")
        if not keys:
            return {}
        marks = ",".join("?" * len(keys))
        rows = self.file.read(
            lambda conn: conn.execute(
                f"SELECT key, value, metadata, expiration FROM _dream_kv WHERE ns = ? AND key IN ({marks}) "
                "AND (expiration IS NULL OR expiration > ?)",
                (self.seq, *keys, self._now()),
            ).fetchall()
        )
        found = {row[0]: KVValue(row[1], kv_rules.decode_metadata(row[2]), row[3]) for row in rows}
        return {key: found.get(key) for key in keys}

    def list(self, *, prefix: str = "", cursor: str | None = None, limit: int = 1000) -> ListPage:
        kv_rules.validate_list_limit(limit)
        clauses = ["ns = ?", "(expiration IS NULL OR expiration > ?)"]
        params: list[Any] = [self.seq, self._now()]
        after = decode_cursor(cursor) if cursor else None
        more_clauses, more_params = key_range_sql(prefix, after)
        clauses += more_clauses
        params += more_params
        params.append(limit + 1)
        sql = f"SELECT key, expiration, metadata FROM _dream_kv WHERE {' AND '.join(clauses)} ORDER BY key LIMIT ?"
        rows = self.file.read(lambda conn: conn.execute(sql, params).fetchall())
        more = len(rows) > limit
        if more:
            del rows[limit:]
        # Rows become ListedKeys without a Python frame per key (lists return millions of them);
        # only the rare rows with metadata are rebuilt with it decoded.
        keys = list(map(_listed_key, rows))
        for index, row in enumerate(rows):
            if row[2] is not None:
                keys[index] = ListedKey(row[0], row[1], kv_rules.decode_metadata(row[2]))
        if not more:
            return ListPage(keys, True, "")
        return ListPage(keys, False, encode_cursor(rows[-1][0]))

    def scan(self, *, prefix: str = "", batch: int = 5000) -> Iterator[tuple[str, bytes]]:
        """(key, value) in key order, in batches that each hold the lock briefly (see ports.scan_items)."""
        after: str | None = None
        while True:
            clauses = ["ns = ?", "(expiration IS NULL OR expiration > ?)"]
            params: list[Any] = [self.seq, self._now()]
            more_clauses, more_params = key_range_sql(prefix, after)
            clauses += more_clauses
            params += more_params
            params.append(batch)
            sql = f"SELECT key, value FROM _dream_kv WHERE {' AND '.join(clauses)} ORDER BY key LIMIT ?"
            rows = self.file.read(functools.partial(_fetch, sql, params))
            yield from rows
            if len(rows) < batch:
                return
            after = rows[-1][0]

    def count(self) -> int:
        """How many keys (expired ones not yet removed included): a progress total, not a listing."""
        return int(
            self.file.read(
                lambda conn: conn.execute("SELECT count(*) FROM _dream_kv WHERE ns = ?", (self.seq,)).fetchone()[0]
            )
        )

    def sql_source(self, now: int) -> SQLSource:
        return SQLSource(
            str(self.file.path),
            f"SELECT key, value FROM {{schema}}._dream_kv "
            f"WHERE ns = {int(self.seq)} AND (expiration IS NULL OR expiration > {int(now)})",
        )

    def update(self, key: str, change: Callable[[bytes | None], bytes], *, expiration_ttl: int | None = None) -> bytes:
        """Read, change and write one key in one IMMEDIATE transaction: concurrent callers never lose an
        update (Workers KV cannot do this; see the README on counters)."""
        kv_rules.validate_key(key)
        now = self._now()
        expiration = kv_rules.resolve_expiration(now, None, expiration_ttl)
        with self.file.write() as conn:
            row = conn.execute(
                "SELECT value FROM _dream_kv WHERE ns = ? AND key = ? AND (expiration IS NULL OR expiration > ?)",
                (self.seq, key, now),
            ).fetchone()
            new = kv_rules.value_bytes(change(None if row is None else row[0]))
            conn.execute(
                "INSERT OR REPLACE INTO _dream_kv (ns, key, expiration, metadata, value) VALUES (?, ?, ?, NULL, ?)",
                (self.seq, key, expiration, new),
            )
        return new

    # Writes: each call is one transaction, all of it or nothing.

    def bulk_put(self, items: Sequence[KVWrite], *, limit: int = kv_rules.MAX_BULK_WRITE) -> None:
        now = self._now()
        pairs = kv_rules.plain_writes(items, limit=limit)
        rows: list[Any] = pairs if pairs is not None else kv_rules.each_checked(items, now)
        if not rows:
            return
        rows.sort(key=_by_key)  # B-tree order: far fewer page splits; stable, so of a key written twice the last wins
        with self.file.write() as conn:
            if pairs is not None:  # no expirations, no metadata: binding two NULLs a row costs a fifth of the insert
                conn.executemany(f"INSERT OR REPLACE INTO _dream_kv (ns, key, value) VALUES ({self.seq:d}, ?, ?)", rows)
            else:
                conn.executemany(
                    "INSERT OR REPLACE INTO _dream_kv (ns, key, value, expiration, metadata) "
                    f"VALUES ({self.seq:d}, ?, ?, ?, ?)",
                    rows,
                )
            # Expired rows are invisible already; reclaim them while we hold the write lock.
            conn.execute("DELETE FROM _dream_kv WHERE expiration IS NOT NULL AND expiration <= ?", (now,))

    def delete(self, key: str) -> None:
        self.bulk_delete([key])

    def bulk_delete(self, keys: Sequence[str]) -> None:
        kv_rules.check_keys(keys, kv_rules.MAX_BULK_DELETE, "Bulk delete")
        raws = [(self.seq, key) for key in keys]
        if not raws:
            return
        with self.file.write() as conn:
            conn.executemany("DELETE FROM _dream_kv WHERE ns = ? AND key = ?", raws)


def _fetch(sql: str, params: list[Any], conn: Any) -> list[Any]:
    return conn.execute(sql, params).fetchall()
