"""Vendor objects (Stripe, Clerk) as JSON documents in the store file, shared by both backends."""

from __future__ import annotations

import hmac
import json
import secrets
import string
from collections.abc import Callable
from typing import Any

from dreamcli.stores.sqlite_file import SQLiteFile
from emulator.schema import sha256_hex

_ALPHABET = string.ascii_letters + string.digits


def public(obj: dict[str, Any], *, hidden: frozenset[str] = frozenset()) -> dict[str, Any]:
    """An object as the vendor's API shows it: without the emulator's own `_` fields, nor `hidden` ones."""
    return {key: value for key, value in obj.items() if not key.startswith("_") and key not in hidden}


def new_id(prefix: str, length: int = 24) -> str:
    """Ids shaped like the vendor's: a prefix and random base62 (`prod_...`, `user_...`)."""
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(length))


class VendorState:
    def __init__(self, file: SQLiteFile, vendor: str, clock: Callable[[], float]) -> None:
        self.file = file
        self.vendor = vendor
        self.clock = clock

    def now(self) -> int:
        return int(self.clock())

    def save(self, scope: str, obj: dict[str, Any], conn: Any = None) -> dict[str, Any]:
        row = (self.vendor, obj["id"], scope, obj["object"], obj.get("created", self.now()), json.dumps(obj))
        sql = (
            "INSERT INTO _dream_vendor_objects (vendor, id, scope, type, created, data) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (vendor, id) DO UPDATE SET data = excluded.data"
        )
        if conn is not None:
            conn.execute(sql, row)
        else:
            with self.file.write() as tx:
                tx.execute(sql, row)
        return obj

    def load(self, object_id: str, scope: str | None = None, kind: str | None = None) -> dict[str, Any] | None:
        row = self.file.read(
            lambda conn: conn.execute(
                "SELECT scope, type, data FROM _dream_vendor_objects WHERE vendor = ? AND id = ?",
                (self.vendor, object_id),
            ).fetchone()
        )
        if row is None or (scope is not None and row[0] != scope) or (kind is not None and row[1] != kind):
            return None
        return json.loads(row[2])

    def scope_of(self, object_id: str) -> str | None:
        row = self.file.read(
            lambda conn: conn.execute(
                "SELECT scope FROM _dream_vendor_objects WHERE vendor = ? AND id = ?", (self.vendor, object_id)
            ).fetchone()
        )
        return None if row is None else row[0]

    def delete(self, object_id: str) -> None:
        with self.file.write() as conn:
            conn.execute("DELETE FROM _dream_vendor_objects WHERE vendor = ? AND id = ?", (self.vendor, object_id))

    def find(self, scope: str, kind: str, newest_first: bool = True) -> list[dict[str, Any]]:
        order = "DESC" if newest_first else "ASC"
        rows = self.file.read(
            lambda conn: conn.execute(
                "SELECT data FROM _dream_vendor_objects WHERE vendor = ? AND scope = ? AND type = ? "
                f"ORDER BY created {order}, rowid {order}",
                (self.vendor, scope, kind),
            ).fetchall()
        )
        return [json.loads(row[0]) for row in rows]

    # Keys the emulator issues.

    def issue_key(self, key: str, scope: str, role: str) -> str:
        with self.file.write() as conn:
            conn.execute(
                "INSERT INTO _dream_vendor_keys (vendor, key, key_sha256, scope, role) VALUES (?, ?, ?, ?, ?)",
                (self.vendor, key, sha256_hex(key), scope, role),
            )
        return key

    def key_owner(self, key: str) -> tuple[str, str] | None:
        """Who a presented key belongs to, found by its digest and compared in constant time."""
        row = self.file.read(
            lambda conn: conn.execute(
                "SELECT key, scope, role FROM _dream_vendor_keys WHERE vendor = ? AND key_sha256 = ?",
                (self.vendor, sha256_hex(key)),
            ).fetchone()
        )
        if row is None or not hmac.compare_digest(row[0].encode(), key.encode()):
            return None
        return row[1], row[2]

    def keys_of(self, scope: str, role: str) -> list[str]:
        rows = self.file.read(
            lambda conn: conn.execute(
                "SELECT key FROM _dream_vendor_keys WHERE vendor = ? AND scope = ? AND role = ? ORDER BY rowid",
                (self.vendor, scope, role),
            ).fetchall()
        )
        return [row[0] for row in rows]

    def revoke_keys(self, scope: str, role: str) -> None:
        with self.file.write() as conn:
            conn.execute(
                "DELETE FROM _dream_vendor_keys WHERE vendor = ? AND scope = ? AND role = ?", (self.vendor, scope, role)
            )

    # Webhook delivery log (written by emulator.webhooks).

    def deliveries(self) -> list[dict[str, Any]]:
        rows = self.file.read(
            lambda conn: conn.execute(
                "SELECT event_id, event_type, url, status, error, attempted_at, attempt FROM _dream_webhook_deliveries "
                "WHERE vendor = ? ORDER BY seq",
                (self.vendor,),
            ).fetchall()
        )
        names = ("event_id", "event_type", "url", "status", "error", "attempted_at", "attempt")
        return [dict(zip(names, row, strict=True)) for row in rows]


def inventory(file: SQLiteFile) -> list[tuple[str, str, str, int]]:
    """(vendor, scope, type, count) of every object the emulated vendors hold: Stripe's per account, Clerk's per
    instance (read off the listing index alone)."""
    rows = file.read(
        lambda conn: conn.execute(
            "SELECT vendor, scope, type, count(*) FROM _dream_vendor_objects GROUP BY vendor, scope, type "
            "ORDER BY vendor, scope, type"
        ).fetchall()
    )
    return [(vendor, scope, kind, count) for vendor, scope, kind, count in rows]


def objects_page(
    file: SQLiteFile, vendor: str, scope: str, kind: str, before: tuple[int, str] | None, limit: int = 50
) -> list[dict[str, Any]]:
    """The newest `limit` objects of one type in one scope, older than `before` (created, id): a page in the
    listing index's order, as the vendors' own lists page."""
    after_clause = ""
    args: list[Any] = [vendor, scope, kind]
    if before is not None:
        after_clause = "AND (created < ? OR (created = ? AND id < ?))"
        args += [before[0], before[0], before[1]]
    rows = file.read(
        lambda conn: conn.execute(
            "SELECT data FROM _dream_vendor_objects WHERE vendor = ? AND scope = ? AND type = ? "
            f"{after_clause} ORDER BY created DESC, id DESC LIMIT ?",
            (*args, limit),
        ).fetchall()
    )
    return [public(json.loads(row[0])) for row in rows]


def one_object(file: SQLiteFile, vendor: str, object_id: str) -> tuple[str, dict[str, Any]] | None:
    """(scope, the object as its API shows it), or None."""
    row = file.read(
        lambda conn: conn.execute(
            "SELECT scope, data FROM _dream_vendor_objects WHERE vendor = ? AND id = ?", (vendor, object_id)
        ).fetchone()
    )
    return None if row is None else (row[0], public(json.loads(row[1])))
