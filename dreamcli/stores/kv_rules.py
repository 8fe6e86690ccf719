"""Workers KV limits, checked the same way by every adapter, with Cloudflare's wording.

The messages are those of Cloudflare's API and Miniflare (`KV PUT failed: 400 ...`
is how a Worker sees them), so an operator who meets one here recognises it.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from typing import Any

from dreamcli.errors import KVError

MAX_KEY_BYTES = 512
MAX_VALUE_BYTES = 25 * 1024 * 1024
MAX_METADATA_BYTES = 1024
MIN_TTL_SECONDS = 60
MIN_LIST_LIMIT = 10
MAX_LIST_LIMIT = 1000
MAX_BULK_WRITE = 10_000
MAX_BULK_DELETE = 10_000
MAX_BULK_GET = 100


def validate_key(key: str) -> str:
    """The key, or KVError if Cloudflare would refuse the key name."""
    # Fast path for bulk writes: 128 characters are at most 512 UTF-8 bytes.
    if type(key) is str and 0 < len(key) <= MAX_KEY_BYTES // 4 and key != "." and key != "..":
        return key
    if not isinstance(key, str):
        raise KVError(400, f"Key names must be strings, not {type(key).__name__}")
    if key == "":
        raise KVError(400, "Key names must not be empty")
    if key in (".", ".."):
        raise KVError(400, f'Illegal key name "{key}". Please use a different name.')
    try:
        raw = key.encode("utf-8")
    except UnicodeEncodeError:
        raise KVError(400, "Key names must be valid UTF-8") from None
    if len(raw) > MAX_KEY_BYTES:
        raise KVError(414, f"UTF-8 encoded length of {len(raw)} exceeds key length limit of {MAX_KEY_BYTES}.")
    return key


def value_bytes(value: bytes | str) -> bytes:
    """The value as bytes (text is UTF-8), or KVError if it is over 25 MiB."""
    if type(value) is bytes and len(value) <= MAX_VALUE_BYTES // 4:  # fast path, see below for the rest
        return value
    if isinstance(value, str):
        try:
            value = value.encode("utf-8")
        except UnicodeEncodeError:
            raise KVError(400, "Values given as text must be valid Unicode (no lone surrogates)") from None
    elif isinstance(value, (bytearray, memoryview)):
        value = bytes(value)
    elif not isinstance(value, bytes):
        raise KVError(400, f"Values must be bytes or text, not {type(value).__name__}")
    if len(value) > MAX_VALUE_BYTES:
        raise KVError(413, f"Value length of {len(value)} exceeds limit of {MAX_VALUE_BYTES}.")
    return value


def resolve_expiration(now: float, expiration: int | None, expiration_ttl: int | None) -> int | None:
    """Absolute expiration in Unix seconds; `expiration_ttl` wins when both are given, as in the REST API."""
    if expiration is None and expiration_ttl is None:
        return None
    now_s = int(now)
    if expiration_ttl is not None:
        ttl = _as_int(expiration_ttl, "expiration_ttl")
        if ttl is None or ttl <= 0 or ttl > MAX_EXPIRATION:
            raise KVError(400, f"Invalid expiration_ttl of {expiration_ttl}. Please specify integer greater than 0.")
        if ttl < MIN_TTL_SECONDS:
            raise KVError(
                400, f"Invalid expiration_ttl of {expiration_ttl}. Expiration TTL must be at least {MIN_TTL_SECONDS}."
            )
        return now_s + ttl
    if expiration is not None:
        at = _as_int(expiration, "expiration")
        if at is None or at <= now_s or at > MAX_EXPIRATION:
            raise KVError(
                400,
                f"Invalid expiration of {expiration}. Please specify integer greater than the current number of "
                "seconds since the UNIX epoch.",
            )
        if at < now_s + MIN_TTL_SECONDS:
            raise KVError(
                400,
                f"Invalid expiration of {expiration}. Expiration times must be at least {MIN_TTL_SECONDS} "
                "seconds in the future.",
            )
        return at
    return None


MAX_EXPIRATION = 2**53 - 1  # JavaScript's largest safe integer: what a Worker can hold


def _as_int(value: Any, name: str) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit() and value.isascii() and len(value) < 32:
        return int(value)
    return None


def encode_metadata(metadata: Any) -> str | None:
    """Metadata as compact JSON text (what `JSON.stringify` writes), at most 1024 bytes; None for none."""
    if metadata is None:
        return None
    try:
        text = json.dumps(metadata, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise KVError(400, f"Metadata must be serialisable as JSON: {exc}") from None
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise KVError(400, "Metadata must be valid Unicode (no lone surrogates)") from None
    if size > MAX_METADATA_BYTES:
        raise KVError(413, f"Metadata length of {size} exceeds limit of {MAX_METADATA_BYTES}.")
    return text


def decode_metadata(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def validate_list_limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not MIN_LIST_LIMIT <= limit <= MAX_LIST_LIMIT:
        raise KVError(
            400, f"Invalid limit of {limit}. Please specify an integer between {MIN_LIST_LIMIT} and {MAX_LIST_LIMIT}."
        )
    return limit


def validate_bulk_size(items: Sequence[Any], limit: int, what: str) -> None:
    if len(items) > limit:
        raise KVError(413, f"{what} of {len(items)} keys exceeds the limit of {limit} keys per request.")


# A write every rule has passed: (key, value bytes, absolute expiration or None, metadata JSON text or None).
CheckedWrite = tuple[str, bytes, int | None, str | None]


def plain_writes(items: Sequence[Any], *, limit: int = MAX_BULK_WRITE) -> list[tuple[str, bytes]] | None:
    """(key, value) of each of `items` (KVWrite) when every one is the common write: a short text key, a bytes value,
    no expiration, no metadata, nothing a rule could refuse; else None (`check_writes` then says which rule).
    A bulk write of 10,000 keys pays for every call made here, so the test is inline."""
    validate_bulk_size(items, limit, "Bulk write")
    pairs: list[tuple[str, bytes]] = []
    append = pairs.append
    short, large = MAX_KEY_BYTES // 4, MAX_VALUE_BYTES // 4  # 128 characters are at most 512 UTF-8 bytes
    for key, value, expiration, expiration_ttl, metadata in items:
        if not (
            expiration is None
            and expiration_ttl is None
            and metadata is None
            and type(key) is str
            and 0 < len(key) <= short
            and key != "."
            and key != ".."
            and type(value) is bytes
            and len(value) <= large
        ):
            return None
        append((key, value))
    return pairs


def check_writes(items: Sequence[Any], now: float, *, limit: int = MAX_BULK_WRITE) -> list[CheckedWrite]:
    """Cloudflare's rules for a write request of `items` (KVWrite), checked in this one place for every store;
    KVError with Cloudflare's wording on the first item it would refuse, before anything is written."""
    pairs = plain_writes(items, limit=limit)
    if pairs is not None:
        return [(key, value, None, None) for key, value in pairs]
    return each_checked(items, now)


def each_checked(items: Sequence[Any], now: float) -> list[CheckedWrite]:
    """Every item through every rule (its size checked already): where `plain_writes` found one not plain."""
    return [
        (
            validate_key(key),
            value_bytes(value),
            resolve_expiration(now, expiration, expiration_ttl),
            encode_metadata(metadata),
        )
        for key, value, expiration, expiration_ttl, metadata in items
    ]


def check_keys(keys: Sequence[Any], limit: int, what: str) -> None:
    """A read or delete request's keys: at most `limit` of them, each a key Cloudflare accepts."""
    validate_bulk_size(keys, limit, what)
    for key in keys:
        validate_key(key)


# Cursors: opaque to callers; they name the last key returned, so they stay valid while keys come and go.
_CURSOR_VERSION = "c1"


def encode_cursor(after_key: str) -> str:
    """Opaque to callers; it names the last key returned, so it stays valid while keys come and go."""
    return f"{_CURSOR_VERSION}.{base64.urlsafe_b64encode(after_key.encode('utf-8')).decode('ascii').rstrip('=')}"


def decode_cursor(cursor: str) -> str:
    version, _, body = cursor.partition(".")
    try:
        if version != _CURSOR_VERSION or not body:
            raise ValueError(cursor)
        return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode("utf-8")
    except (binascii.Error, ValueError):
        raise KVError(400, f"Invalid cursor {cursor!r}: pass back a cursor returned by a previous list call.") from None


def prefix_upper_bound(prefix: bytes) -> bytes | None:
    """The smallest byte string greater than every string starting with `prefix`.

    UTF-8 never contains 0xFF, so incrementing the last byte is always possible. The
    result may not be valid UTF-8, so SQL compares against CAST(? AS TEXT) of it.
    """
    if not prefix:
        return None
    return prefix[:-1] + bytes([prefix[-1] + 1])


def key_range_sql(prefix: str, after: str | None) -> tuple[list[str], list[Any]]:
    """WHERE clauses (and their parameters) for keys under `prefix` and strictly after `after`, in the
    byte order of a SQLite TEXT key column: the range scan every SQLite-backed adapter lists with."""
    clauses: list[str] = []
    params: list[Any] = []
    if after is not None and after >= prefix:
        clauses.append("key > ?")
        params.append(after)
    elif prefix:
        clauses.append("key >= ?")
        params.append(prefix)
    high = prefix_upper_bound(prefix.encode("utf-8"))
    if high is not None:
        clauses.append("key < CAST(? AS TEXT)")  # the bound may not be valid UTF-8: compare it as raw bytes
        params.append(high)
    return clauses, params
