"""Workers KV namespaces in the emulator's SQLite file, with Cloudflare's semantics and limits."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from typing import Any

from dreamcli.errors import KVError
from dreamcli.stores import kv_rules
from dreamcli.stores.ports import KVValue, KVWrite, ListedKey, ListPage
from emulator.sqlite import SQLiteFile

_CURSOR_VERSION = "c1"


def encode_cursor(after_key: bytes) -> str:
    """Opaque to callers; it names the last key returned, so it stays valid while keys come and go."""
    return f"{_CURSOR_VERSION}.{base64.urlsafe_b64encode(after_key).decode('ascii').rstrip('=')}"


def decode_cursor(cursor: str) -> bytes:
    version, _, body = cursor.partition(".")
    if version != _CURSOR_VERSION or not body:
        raise KVError(400, f"Invalid cursor {cursor!r}: pass back a cursor returned by a previous list call.")
    try:
        return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        raise KVError(400, f"Invalid cursor {cursor!r}: pass back a cursor returned by a previous list call.") from None


def prefix_upper_bound(prefix: bytes) -> bytes | None:
    """The smallest byte string greater than every string starting with `prefix`.

    UTF-8 never contains 0xFF, so incrementing the last byte is always possible.
    """
    if not prefix:
        return None
    return prefix[:-1] + bytes([prefix[-1] + 1])


class EmulatorKVNamespace:
    """One namespace (rows of `_dream_kv` with this `ns`)."""

    def __init__(self, file: SQLiteFile, namespace_id: str, clock: Callable[[], float]) -> None:
        self.file = file
        self.id = namespace_id
        self.clock = clock

    def _now(self) -> int:
        return int(self.clock())

    # Reads

    def get(self, key: str) -> bytes | None:
        found = self.get_with_metadata(key)
        return None if found is None else found.value

    def get_with_metadata(self, key: str) -> KVValue | None:
        raw = kv_rules.validate_key(key)
        row = self.file.read(
            lambda conn: conn.execute(
                "SELECT value, metadata, expiration FROM _dream_kv "
                "WHERE ns = ? AND key = ? AND (expiration IS NULL OR expiration > ?)",
                (self.id, raw, self._now()),
            ).fetchone()
        )
        if row is None:
            return None
        return KVValue(row[0], kv_rules.decode_metadata(row[1]), row[2])

    def bulk_get(self, keys: Sequence[str]) -> dict[str, KVValue | None]:
        kv_rules.validate_bulk_size(keys, kv_rules.MAX_BULK_GET, "Bulk get")
        raws = [kv_rules.validate_key(key) for key in keys]
        if not raws:
            return {}
        marks = ",".join("?" * len(raws))
        rows = self.file.read(
            lambda conn: conn.execute(
                f"SELECT key, value, metadata, expiration FROM _dream_kv WHERE ns = ? AND key IN ({marks}) "
                "AND (expiration IS NULL OR expiration > ?)",
                (self.id, *raws, self._now()),
            ).fetchall()
        )
        found = {bytes(row[0]): KVValue(row[1], kv_rules.decode_metadata(row[2]), row[3]) for row in rows}
        return {key: found.get(raw) for key, raw in zip(keys, raws)}

    def list(self, *, prefix: str = "", cursor: str | None = None, limit: int = 1000) -> ListPage:
        kv_rules.validate_list_limit(limit)
        low = prefix.encode("utf-8")
        clauses = ["ns = ?", "(expiration IS NULL OR expiration > ?)"]
        params: list[Any] = [self.id, self._now()]
        if cursor:
            after = decode_cursor(cursor)
            if after >= low:
                clauses.append("key > ?")
                params.append(after)
            else:
                clauses.append("key >= ?")
                params.append(low)
        elif low:
            clauses.append("key >= ?")
            params.append(low)
        high = prefix_upper_bound(low)
        if high is not None:
            clauses.append("key < ?")
            params.append(high)
        params.append(limit + 1)
        sql = f"SELECT key, expiration, metadata FROM _dream_kv WHERE {' AND '.join(clauses)} ORDER BY key LIMIT ?"
        rows = self.file.read(lambda conn: conn.execute(sql, params).fetchall())
        more = len(rows) > limit
        if more:
            rows = rows[:limit]
        keys = [
            ListedKey(row[0].decode("utf-8"), row[1], None if row[2] is None else kv_rules.decode_metadata(row[2]))
            for row in rows
        ]
        if not more:
            return ListPage(keys, True, "")
        return ListPage(keys, False, encode_cursor(bytes(rows[-1][0])))

    # Writes: each call is one transaction, all of it or nothing.

    def put(
        self,
        key: str,
        value: bytes | str,
        *,
        expiration: int | None = None,
        expiration_ttl: int | None = None,
        metadata: Any = None,
    ) -> None:
        self.bulk_put([KVWrite(key, value, expiration, expiration_ttl, metadata)], limit=1)

    def bulk_put(self, items: Sequence[KVWrite], *, limit: int = kv_rules.MAX_BULK_WRITE) -> None:
        kv_rules.validate_bulk_size(items, limit, "Bulk write")
        now = self._now()
        rows = [
            (
                self.id,
                kv_rules.validate_key(item.key),
                kv_rules.resolve_expiration(now, item.expiration, item.expiration_ttl),
                kv_rules.encode_metadata(item.metadata),
                kv_rules.value_bytes(item.value),
            )
            for item in items
        ]
        if not rows:
            return
        with self.file.write() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO _dream_kv (ns, key, expiration, metadata, value) VALUES (?, ?, ?, ?, ?)", rows
            )
            # Expired rows are invisible already; reclaim them while we hold the write lock.
            conn.execute("DELETE FROM _dream_kv WHERE expiration IS NOT NULL AND expiration <= ?", (now,))

    def delete(self, key: str) -> None:
        self.bulk_delete([key])

    def bulk_delete(self, keys: Sequence[str]) -> None:
        kv_rules.validate_bulk_size(keys, kv_rules.MAX_BULK_DELETE, "Bulk delete")
        raws = [(self.id, kv_rules.validate_key(key)) for key in keys]
        if not raws:
            return
        with self.file.write() as conn:
            conn.executemany("DELETE FROM _dream_kv WHERE ns = ? AND key = ?", raws)
