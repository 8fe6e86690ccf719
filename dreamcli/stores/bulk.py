"""Bulk writes larger than one request: check everything first, then write in Cloudflare-sized batches."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from dreamcli.errors import KVError
from dreamcli.stores import kv_rules
from dreamcli.stores.ports import KVNamespace, KVWrite

BULK_FIELDS = frozenset({"key", "value", "expiration", "expiration_ttl", "metadata", "base64"})


def parse_bulk_items(data: Any, *, what: str = "a bulk write") -> list[KVWrite]:
    """Cloudflare's bulk format, `[{key, value, expiration?, expiration_ttl?, metadata?, base64?}]`, checked
    item by item (KVError 400 naming the item); base64 values decoded to bytes."""
    if not isinstance(data, list):
        raise KVError(400, f"{what} must hold a JSON array of {{key, value, ...}} objects")
    items: list[KVWrite] = []
    for index, entry in enumerate(data):
        where = f"item {index}"
        if not isinstance(entry, dict):
            raise KVError(400, f"{where}: expected an object with key and value")
        unknown = set(entry) - BULK_FIELDS
        if unknown:
            raise KVError(400, f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        if not isinstance(entry.get("key"), str) or not isinstance(entry.get("value"), str):
            raise KVError(400, f"{where}: key and value must both be strings")
        value: bytes | str = entry["value"]
        if entry.get("base64"):
            try:
                value = base64.b64decode(entry["value"], validate=True)
            except (binascii.Error, ValueError):
                raise KVError(400, f"{where} ({entry['key']!r}): value is not valid base64") from None
        items.append(
            KVWrite(entry["key"], value, entry.get("expiration"), entry.get("expiration_ttl"), entry.get("metadata"))
        )
    return items


def check_all(items: Sequence[KVWrite], *, now: float) -> None:
    """Raise on the first pair any store would refuse, naming it, before a single write happens."""
    for index, item in enumerate(items):
        try:
            kv_rules.validate_key(item.key)
            kv_rules.value_bytes(item.value)
            kv_rules.resolve_expiration(now, item.expiration, item.expiration_ttl)
            kv_rules.encode_metadata(item.metadata)
        except KVError as exc:
            raise KVError(exc.status, f"item {index} ({item.key!r}): {exc}") from None


def write_in_batches(
    namespace: KVNamespace,
    items: Sequence[KVWrite],
    *,
    batch_size: int = kv_rules.MAX_BULK_WRITE,
    on_batch: Callable[[int, int], None] | None = None,
) -> int:
    """Write `items` in batches (each one all-or-nothing); re-running after a crash converges.

    Pairs go in key order (a stable sort, so the last of duplicate keys still wins): each batch
    then covers one key range, so a B-tree store rewrites a few pages per batch instead of
    pages all over the tree.
    """
    ordered = sorted(items, key=lambda item: item.key)
    total = len(ordered)
    for start in range(0, total, batch_size):
        namespace.bulk_put(ordered[start : start + batch_size])
        if on_batch is not None:
            on_batch(min(start + batch_size, total), total)
    return total


def presence(namespace: KVNamespace, keys: Sequence[str]) -> Iterator[tuple[str, bool]]:
    """Each key and whether it holds a value now, read 100 at a time (Cloudflare's bulk get): what a bulk write
    would replace, or a bulk delete remove (their --plan)."""
    for start in range(0, len(keys), kv_rules.MAX_BULK_GET):
        chunk = keys[start : start + kv_rules.MAX_BULK_GET]
        found = namespace.bulk_get(chunk)
        for key in chunk:
            yield key, found.get(key) is not None
