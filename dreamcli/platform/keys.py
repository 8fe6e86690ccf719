"""Key pairs per platform: create, list, rotate (with a bounded grace), revoke.

Every pair of a platform links to the same platform id, so customers, usage and tier config stay
attached across rotations. The index `platform:{plt}:key:{pk}` (one entry per pair, in platform-tokens)
is dream's extension of the guide's schema; pairs made before it existed are found from their mappings.

Write order: a new pair's mappings go platform-tokens first and the api-tokens secret mapping last (it
is the entry point of authentication), so a new secret never exists that does not authenticate;
revocation removes the api-tokens secret mapping first, so a revoked secret stops at once.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from dreamcli import layout
from dreamcli.errors import NotFound, UsageError
from dreamcli.platform.developers import owner_of
from dreamcli.platform.secrets import KeyPair, new_key_pair, secret_start
from dreamcli.stores.kv_rules import MIN_TTL_SECONDS
from dreamcli.stores.ports import KVWrite, Store, keys_holding, scan_items
from dreamcli.topology import API_TOKENS, PLATFORM_TOKENS

ENV_LABEL = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


class KeyNotFoundError(NotFound):
    """A publishable key that is not one of the platform's pairs."""


class LastActivePair(UsageError):
    """Revoking the platform's last active pair would leave it with no working key."""


@dataclass
class KeyIndexEntry:
    """The value of `platform:{plt}:key:{pk}`: one pair's settings and state, never its secret."""

    env: str
    created: int | None
    secret_start: str | None
    secret_hash: str | None
    expires_at: int | None = None
    revoked_at: int | None = None

    @classmethod
    def for_new_pair(cls, pair: KeyPair, env: str, now: float) -> KeyIndexEntry:
        return cls(env, int(now), secret_start(pair.secret_key), pair.secret_hash)

    @classmethod
    def from_json(cls, raw: bytes | str | None) -> KeyIndexEntry:
        """ValueError when the value is not the index's JSON object."""
        try:
            entry = json.loads(raw or "")
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ValueError("not JSON") from None
        if not isinstance(entry, dict):
            raise ValueError("not a JSON object")
        return cls(
            str(entry.get("env", "?")),
            entry.get("created"),
            entry.get("secretStart"),
            entry.get("secretHash"),
            entry.get("expiresAt"),
            entry.get("revokedAt"),
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "env": self.env,
                "created": self.created,
                "secretStart": self.secret_start,
                "secretHash": self.secret_hash,
                "expiresAt": self.expires_at,
                "revokedAt": self.revoked_at,
            }
        )


@dataclass
class KeyInfo(KeyIndexEntry):
    """A pair of the platform as `dream keys list` shows it: its index entry, or what its mappings tell."""

    publishable_key: str = ""
    indexed: bool = False

    def status(self, now: float) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None:
            return "expired" if self.expires_at <= now else "expiring"
        return "active"

    def live(self, now: float) -> bool:
        return self.status(now) in ("active", "expiring")

    def as_json(self, now: float) -> dict[str, Any]:
        return {
            "publishableKey": self.publishable_key,
            "env": self.env,
            "created": self.created,
            "status": self.status(now),
            "expiresAt": self.expires_at,
            "revokedAt": self.revoked_at,
            "secretStart": self.secret_start,
            "indexed": self.indexed,
        }

    def index_entry(self) -> KeyIndexEntry:
        return KeyIndexEntry(
            self.env, self.created, self.secret_start, self.secret_hash, self.expires_at, self.revoked_at
        )


def list_keys(store: Store, platform_id: str) -> list[KeyInfo]:
    """Every pair of the platform: the index, plus pairs made before the index (found from their mappings)."""
    owner_of(store, platform_id)
    platform = store.kv(PLATFORM_TOKENS)
    found: dict[str, KeyInfo] = {}
    for key, raw in scan_items(platform, prefix=layout.platform_key_index_prefix(platform_id)):
        pk = layout.parse(key).fields["publishableKey"]
        try:
            entry = KeyIndexEntry.from_json(raw)
        except ValueError:
            entry = KeyIndexEntry("?", None, None, None)
        found[pk] = KeyInfo(**vars(entry), publishable_key=pk, indexed=True)
    # Pairs written by the guide's own workers: publishablekey:* -> this platform, and their secret hashes.
    now = int(store.clock())
    legacy: set[str] = {
        named
        for key in keys_holding(platform, [platform_id], prefix=layout.PUBLISHABLE_KEY_PREFIX, now=now)[platform_id]
        if (named := layout.parse(key).fields.get("publishableKey"))
    }
    for legacy_pk in legacy - set(found):
        found[legacy_pk] = KeyInfo("legacy", None, None, None, publishable_key=legacy_pk)
    missing_hash = {pk for pk, info in found.items() if info.secret_hash is None}
    for pk, hashes in keys_holding(platform, missing_hash, prefix=layout.SECRET_KEY_PREFIX, now=now).items():
        for key in hashes:
            found[pk].secret_hash = layout.parse(key).fields.get("hash")
    for info in found.values():
        if not info.indexed:
            mapping = platform.get_with_metadata(layout.publishable_key_platform(info.publishable_key))
            info.expires_at = mapping.expiration if mapping else None
    return sorted(found.values(), key=lambda info: (info.created or 0, info.publishable_key))


@dataclass(frozen=True)
class Created:
    pair: KeyPair
    env: str
    platform_id: str


def create_key(store: Store, platform_id: str, env: str, *, now: float) -> Created:
    """A new pair for the platform; the secret is returned once and stored only as its hash."""
    if not ENV_LABEL.match(env):
        raise UsageError(f"env label {env!r}: use lowercase letters, digits, - or _ (production, staging, test, ...)")
    with store.locked():  # another process sees the pair whole, or not at all
        owner_of(store, platform_id)
        if store.kv(API_TOKENS).get(layout.tier_config(platform_id)) is None:
            raise UsageError(
                f"platform {platform_id} has no tier config in api-tokens: run `dream flow tiers` first "
                "(a key without one would not authenticate)"
            )
        pair = new_key_pair()
        write_pair(store, platform_id, pair, KeyIndexEntry.for_new_pair(pair, env, now))
    return Created(pair, env, platform_id)


def write_pair(store: Store, platform_id: str, pair: KeyPair, entry: KeyIndexEntry) -> None:
    platform, api = store.kv(PLATFORM_TOKENS), store.kv(API_TOKENS)
    platform.bulk_put(
        [
            KVWrite(layout.platform_key_index(platform_id, pair.publishable_key), entry.to_json()),
            KVWrite(layout.publishable_key_platform(pair.publishable_key), platform_id),
            KVWrite(layout.secret_key_publishable(pair.secret_hash), pair.publishable_key),
        ]
    )
    api.put(layout.publishable_key_platform(pair.publishable_key), platform_id)
    api.put(layout.secret_key_publishable(pair.secret_hash), pair.publishable_key)  # last: now it authenticates


def _find(store: Store, platform_id: str, publishable_key: str) -> KeyInfo:
    for info in list_keys(store, platform_id):
        if info.publishable_key == publishable_key:
            return info
    raise KeyNotFoundError(f"{publishable_key} is not a key of {platform_id}")


def _pick_by_env(store: Store, platform_id: str, env: str, now: float) -> KeyInfo:
    live = [info for info in list_keys(store, platform_id) if info.env == env and info.live(now)]
    if not live:
        raise KeyNotFoundError(f"platform {platform_id} has no live {env} key")
    return max(live, key=lambda info: info.created or 0)


@dataclass(frozen=True)
class Rotated:
    new: Created
    old: str
    old_expires_at: int | None


@dataclass(frozen=True)
class RotationPlan:
    """What a rotation will do: a new pair in `env`; `old` kept working until `expires_at` (None: until revoked)."""

    old: KeyInfo
    env: str
    expires_at: int | None

    def as_json(self) -> dict[str, Any]:
        return {
            "action": "rotate",
            "old": self.old.publishable_key,
            "newPairEnv": self.env,
            "oldExpiresAt": self.expires_at,
        }


def plan_rotation(
    store: Store,
    platform_id: str,
    *,
    publishable_key: str | None = None,
    env: str | None = None,
    grace_seconds: int | None = None,
    now: float,
) -> RotationPlan:
    """The rotation `rotate_key` would make, decided before anything is written (from the store's clock)."""
    if (publishable_key is None) == (env is None):
        raise UsageError("rotate needs --key PK or --env ENV")
    old = (
        _find(store, platform_id, publishable_key)
        if publishable_key
        else _pick_by_env(store, platform_id, env or "", now)
    )
    if not old.live(now):
        raise UsageError(f"{old.publishable_key} is {old.status(now)}: nothing to rotate")
    if grace_seconds is not None and grace_seconds < MIN_TTL_SECONDS:
        raise UsageError(f"--grace must be at least {MIN_TTL_SECONDS} s (KV's shortest expiration)")
    # Decided before anything is written, from the store's clock (`now`): a refused expiration must not
    # leave a new pair written whose secret was never shown.
    expires_at = old.expires_at
    if grace_seconds is not None:
        wanted = int(now) + grace_seconds
        expires_at = wanted if old.expires_at is None else min(old.expires_at, wanted)
    return RotationPlan(old, old.env if old.env != "legacy" else "production", expires_at)


def rotate_key(
    store: Store,
    platform_id: str,
    *,
    publishable_key: str | None = None,
    env: str | None = None,
    grace_seconds: int | None = None,
    now: float,
) -> Rotated:
    """A new pair for the same platform and env; the old pair works until revoked, or for `grace_seconds`
    (KV expiration on its mappings in both namespaces), never past its own expiry."""
    with store.locked():  # planned and made with no other key change between
        plan = plan_rotation(
            store, platform_id, publishable_key=publishable_key, env=env, grace_seconds=grace_seconds, now=now
        )
        old, expires_at = plan.old, plan.expires_at
        created = create_key(store, platform_id, plan.env, now=now)
        if expires_at is not None and expires_at != old.expires_at:
            _expire_pair(store, platform_id, old, expires_at)
        _move_primary(store, platform_id, old.publishable_key, created.pair.publishable_key)
    return Rotated(created, old.publishable_key, expires_at)


def _expire_pair(store: Store, platform_id: str, old: KeyInfo, expires_at: int) -> None:
    """The old mappings again, with an absolute expiration, in both namespaces.

    The index records the grace first: if the writes stop half-way, `dream kv verify` sees a mapping that
    outlives its pair's grace (or a missing one) and `dream kv repair` puts it right, never the reverse."""
    old.expires_at = expires_at
    store.kv(PLATFORM_TOKENS).put(
        layout.platform_key_index(platform_id, old.publishable_key), old.index_entry().to_json()
    )
    writes = [KVWrite(layout.publishable_key_platform(old.publishable_key), platform_id, expiration=expires_at)]
    if old.secret_hash:
        writes.append(
            KVWrite(layout.secret_key_publishable(old.secret_hash), old.publishable_key, expiration=expires_at)
        )
    store.kv(API_TOKENS).bulk_put(writes)
    store.kv(PLATFORM_TOKENS).bulk_put(writes)


def _move_primary(store: Store, platform_id: str, old_pk: str, new_pk: str | None) -> None:
    """The guide's `user:{u}:publishableKey` (what credentials show) follows the newest pair."""
    user = owner_of(store, platform_id)
    platform = store.kv(PLATFORM_TOKENS)
    primary = platform.get(layout.user_publishable_key(user))
    if primary is not None and primary.decode() == old_pk:
        if new_pk is None:
            platform.delete(layout.user_publishable_key(user))
        else:
            platform.put(layout.user_publishable_key(user), new_pk)


def revocation_keys(store: Store, platform_id: str, publishable_key: str) -> list[tuple[str, str]]:
    """(namespace, key) of every mapping `revoke_key` would delete (its plan); NotFound for a key not the platform's."""
    target = next((info for info in list_keys(store, platform_id) if info.publishable_key == publishable_key), None)
    if target is None:
        raise KeyNotFoundError(f"{publishable_key} is not a key of {platform_id}")
    doomed = []
    if target.secret_hash:
        doomed += [(ns, layout.secret_key_publishable(target.secret_hash)) for ns in (API_TOKENS, PLATFORM_TOKENS)]
    return doomed + [(ns, layout.publishable_key_platform(publishable_key)) for ns in (API_TOKENS, PLATFORM_TOKENS)]


def revoke_key(store: Store, platform_id: str, publishable_key: str, *, force: bool = False, now: float) -> KeyInfo:
    """Remove the pair's mappings from both namespaces: the index says revoked, then the api-tokens secret goes."""
    with store.locked():  # verify never reads a pair half revoked (its index says so, a mapping remains)
        keys = list_keys(store, platform_id)
        target = next((info for info in keys if info.publishable_key == publishable_key), None)
        if target is None:
            raise KeyNotFoundError(f"{publishable_key} is not a key of {platform_id}")
        if target.status(now) == "revoked":
            raise UsageError(f"{publishable_key} is revoked already")
        others = [info for info in keys if info.publishable_key != publishable_key and info.live(now)]
        if not others and not force:
            raise LastActivePair(
                f"{publishable_key} is the last active pair of {platform_id}: its API calls would all fail; "
                "create or rotate first, or pass --force"
            )
        platform, api = store.kv(PLATFORM_TOKENS), store.kv(API_TOKENS)
        # The index records the revocation first: should the deletes stop half-way, `dream kv repair`
        # finishes them instead of copying the pair back from platform-tokens.
        target.revoked_at = int(now)
        target.expires_at = None
        platform.put(layout.platform_key_index(platform_id, publishable_key), target.index_entry().to_json())
        if target.secret_hash:
            api.delete(layout.secret_key_publishable(target.secret_hash))  # the secret stops here, at once
            platform.delete(layout.secret_key_publishable(target.secret_hash))
        api.delete(layout.publishable_key_platform(publishable_key))
        platform.delete(layout.publishable_key_platform(publishable_key))
        newest = max(others, key=lambda info: info.created or 0).publishable_key if others else None
        _move_primary(store, platform_id, publishable_key, newest)
    return target


_DURATION = re.compile(r"^(\d+)\s*([smhd]?)$")


def parse_duration(text: str) -> int:
    """`90s`, `30m`, `24h`, `7d` or plain seconds."""
    found = _DURATION.match(text.strip().lower())
    if not found:
        raise UsageError(f"duration {text!r}: use a number with s, m, h or d (e.g. 24h)")
    return int(found.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[found.group(2)]
