"""The console's listings that no CLI command prints as such: a page of KV keys, of platforms, of one key's value
as a report may show it. A page at a time (the store's own list cursor): nothing here reads a whole namespace."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from dreamcli import layout
from dreamcli.platform.replication.findings import shown
from dreamcli.stores.ports import ListedKey, Store
from dreamcli.topology import PLATFORM_TOKENS

PAGE = 50
MAX_PREFIX = 512
BULK_GET_MAX = 100  # Workers KV's bulk get: at most 100 keys a request  # Cloudflare's key names are at most 512 bytes


@dataclass(frozen=True)
class KeyPage:
    keys: list[ListedKey]
    cursor: str  # "" on the last page


def kv_page(store: Store, namespace: str, prefix: str, cursor: str | None, limit: int = PAGE) -> KeyPage:
    page = store.kv(namespace).list(prefix=prefix, cursor=cursor or None, limit=limit)
    return KeyPage(page.keys, page.cursor if not page.list_complete else "")


@dataclass(frozen=True)
class ShownValue:
    key: str
    namespace: str
    kind: str
    description: str
    value: str | None  # as a report may show it: secrets never (findings.shown)
    masked: bool
    metadata: str | None
    expiration: int | None
    binary: bool


def kv_value(store: Store, namespace: str, key: str) -> ShownValue | None:
    found = store.kv(namespace).get_with_metadata(key)
    if found is None:
        return None
    parsed = layout.parse(key, namespace)
    try:
        text, binary = found.value.decode("utf-8"), False
    except UnicodeDecodeError:
        text, binary = found.value.decode("utf-8", errors="replace"), True
    secret = parsed.spec is not None and parsed.spec.secret
    value = shown(parsed.kind, text) if secret else text
    return ShownValue(
        key=key,
        namespace=namespace,
        kind=str(parsed.kind.value) if parsed.known else "not in the guide's schema",
        description=parsed.spec.value if parsed.spec is not None else "",
        value=value,
        masked=secret,
        metadata=None if found.metadata is None else json.dumps(found.metadata, indent=2, sort_keys=True),
        expiration=found.expiration,
        binary=binary,
    )


@dataclass(frozen=True)
class PlatformRow:
    platform_id: str
    owner: str | None


def platform_page(store: Store, cursor: str | None, limit: int = PAGE) -> tuple[list[PlatformRow], str]:
    """Platforms in id order, by their `platform:{plt}:userId` keys, and the cursor of the next page: platform-tokens'
    `platform:` keys are read a list page at a time until at least `limit` platforms or the end (a page holds a few
    keys a platform, so a little more than `limit` may come: a cursor can only resume after a whole list page)."""
    namespace = store.kv(PLATFORM_TOKENS)
    prefix = layout.prefix(layout.KeyKind.PLATFORM_USER_ID)
    rows: list[PlatformRow] = []
    wanted: list[str] = []
    next_cursor = cursor or None
    while len(wanted) < limit:
        page = namespace.list(prefix=prefix, cursor=next_cursor, limit=min(1000, 8 * limit))
        for listed in page.keys:
            kind, fields, _, _ = layout.classify(listed.name)
            if kind is layout.KeyKind.PLATFORM_USER_ID and fields is not None:
                wanted.append(listed.name)
        next_cursor = page.cursor if not page.list_complete else ""
        if not next_cursor:
            break
    owners: dict[str, Any] = {}
    for start in range(0, len(wanted), BULK_GET_MAX):
        owners |= namespace.bulk_get(wanted[start : start + BULK_GET_MAX])
    for key in wanted:
        fields = layout.classify(key)[1] or {}
        found = owners.get(key)
        rows.append(PlatformRow(fields.get("platformId", ""), found.text() if found is not None else None))
    return rows, next_cursor or ""


def masked_object(obj: Any) -> Any:
    """A vendor object as the console shows it: fields that hold secrets (webhook secrets, client secrets, password
    digests, tokens) replaced by "(secret)"."""
    if isinstance(obj, dict):
        return {
            key: "(secret)" if _secret_field(key) and value not in (None, "") else masked_object(value)
            for key, value in obj.items()
        }
    if isinstance(obj, list):
        return [masked_object(item) for item in obj]
    return obj


def _secret_field(name: str) -> bool:
    lowered = name.lower()
    return any(part in lowered for part in ("secret", "password", "token", "private"))
