"""The KV key schema: every key pattern of the guide, built and parsed in ONE place.

Nothing else in the code spells a key string. Builders make keys; `parse` turns
ANY key into its kind and fields (keys outside the schema are `UNKNOWN`, never
an exception). Ids (user ids, platform ids, publishable keys) never contain ":",
which is what makes the patterns unambiguous.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

from dreamcli.topology import API_TOKENS, API_USAGE, PLATFORM_TOKENS, PLATFORM_USAGE


class KeyKind(StrEnum):
    USER_PLATFORM_ID = "user-platform-id"
    PLATFORM_USER_ID = "platform-user-id"
    USER_STRIPE_TOKEN = "user-stripe-token"
    PLATFORM_STRIPE_TOKEN = "platform-stripe-token"
    USER_PUBLISHABLE_KEY = "user-publishable-key"
    USER_SECRET_KEY = "user-secret-key"
    USER_PRODUCTS = "user-products"
    PUBLISHABLE_KEY_PLATFORM = "publishable-key-platform"
    SECRET_KEY_PUBLISHABLE = "secret-key-publishable"
    TIER_CONFIG = "tier-config"
    PLATFORM_KEY_INDEX = "platform-key-index"
    OAUTH_STATE = "oauth-state"
    DEVELOPER_USAGE = "developer-usage"
    END_USER_USAGE = "end-user-usage"
    RATE_LIMIT = "rate-limit"
    PLATFORM_RATE_LIMIT = "platform-rate-limit"
    UNKNOWN = "unknown"


# What a field may look like; anything else makes the key UNKNOWN. Every field is non-empty and has no ":".
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


def _field_ok(name: str, text: str) -> bool:
    if not text or ":" in text:
        return False
    if name == "hash":
        return len(text) == 64 and _HEX64.fullmatch(text) is not None
    if name == "minute":
        return text.isdigit() and text.isascii()
    return True


def is_digest(text: str) -> bool:
    """Whether `text` can stand for the hash field of a key (64 hex digits)."""
    return _field_ok("hash", text)


def is_valid_id(text: str) -> bool:
    """Whether `text` can stand for an id field of a key (a user, platform or customer id)."""
    return _field_ok("id", text)


@dataclass(frozen=True, slots=True)
class KeySpec:
    """One key pattern of the guide: where it lives, what its value is, what the value points at."""

    kind: KeyKind
    pattern: str
    namespaces: tuple[str, ...]
    value: str
    json: bool = False
    secret: bool = False
    # Kinds whose single field is this key's value: the keys this one points at.
    points_to: tuple[KeyKind, ...] = ()
    note: str = ""
    fields: tuple[str, ...] = field(init=False, repr=False, compare=False)
    # The pattern split on ":": a literal, or (None, field name) for a field.
    segments: tuple[tuple[str | None, str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        segments = []
        for part in self.pattern.split(":"):
            found = re.fullmatch(r"\{(\w+)\}", part)
            segments.append((None, found.group(1)) if found else (part, part))
        object.__setattr__(self, "segments", tuple(segments))
        object.__setattr__(self, "fields", tuple(name for literal, name in segments if literal is None))

    def match(self, parts: list[str]) -> dict[str, str] | None:
        """The fields, if the key's ":"-separated parts fit this pattern."""
        if len(parts) != len(self.segments):
            return None
        found: dict[str, str] = {}
        for part, (literal, name) in zip(parts, self.segments, strict=True):
            if literal is not None:
                if part != literal:
                    return None
            elif not _field_ok(name, part):
                return None
            else:
                found[name] = part
        return found

    def build(self, **values: str | int) -> str:
        parts = []
        for literal, name in self.segments:
            if literal is not None:
                parts.append(literal)
                continue
            if name not in values:
                raise ValueError(f"{self.kind} needs {name}")
            text = str(values[name])
            if not _field_ok(name, text):
                raise ValueError(f"{name} {text!r} cannot be part of a {self.kind} key")
            parts.append(text)
        return ":".join(parts)

    @property
    def prefix(self) -> str:
        """The literal text every key of this kind starts with (for `list --prefix`)."""
        return self.pattern.split("{", 1)[0]

    def prefix_with(self, **known: str | int) -> str:
        """The text every key of this kind starts with once the leading fields in `known` are fixed: the
        segments up to the first field not given, each ended by its ":" so `u1` never matches `u10`."""
        parts = []
        for literal, name in self.segments:
            if literal is None and name not in known:
                break
            text = literal if literal is not None else str(known[name])
            if literal is None and not _field_ok(name, text):
                raise ValueError(f"{name} {text!r} cannot be part of a {self.kind} key")
            parts.append(text + ":")
        else:
            raise ValueError(f"every field of {self.kind} is given: that is a key, not a prefix")
        return "".join(parts)


SPECS: tuple[KeySpec, ...] = (
    KeySpec(
        KeyKind.USER_PLATFORM_ID,
        "user:{userId}:platformId",
        (PLATFORM_TOKENS,),
        "the developer's platform id (plt_...)",
        points_to=(KeyKind.PLATFORM_USER_ID,),
        note="written at signup (phase 1); the other half of platform:{platformId}:userId",
    ),
    KeySpec(
        KeyKind.PLATFORM_USER_ID,
        "platform:{platformId}:userId",
        (PLATFORM_TOKENS,),
        "the developer's Clerk user id (dream-api instance)",
        points_to=(KeyKind.USER_PLATFORM_ID,),
        note="written at signup (phase 1); the other half of user:{userId}:platformId",
    ),
    KeySpec(
        KeyKind.USER_STRIPE_TOKEN,
        "user:{userId}:stripeToken",
        (PLATFORM_TOKENS,),
        "JSON {accessToken, stripeUserId} of the connected Stripe account",
        json=True,
        secret=True,
        note="written by the OAuth callback (phase 3); must equal platform:{platformId}:stripeToken",
    ),
    KeySpec(
        KeyKind.PLATFORM_STRIPE_TOKEN,
        "platform:{platformId}:stripeToken",
        (PLATFORM_TOKENS,),
        "JSON {accessToken, stripeUserId} of the connected Stripe account",
        json=True,
        secret=True,
        note="written by the OAuth callback (phase 3); read by create-products",
    ),
    KeySpec(
        KeyKind.USER_PUBLISHABLE_KEY,
        "user:{userId}:publishableKey",
        (PLATFORM_TOKENS,),
        "the developer's publishable key (pk_live_...)",
        points_to=(KeyKind.PUBLISHABLE_KEY_PLATFORM,),
        note="written at tier config (phase 4e)",
    ),
    KeySpec(
        KeyKind.USER_SECRET_KEY,
        "user:{userId}:secretKey",
        (PLATFORM_TOKENS,),
        "the developer's secret key IN PLAINTEXT",
        secret=True,
        note="the guide writes it (phase 4e) although it promises a one-time show: insecure, dream never writes it "
        "unless asked to mimic the guide",
    ),
    KeySpec(
        KeyKind.USER_PRODUCTS,
        "user:{userId}:products",
        (PLATFORM_TOKENS,),
        "JSON [{tier, priceId, productId}] of the developer's Stripe products",
        json=True,
        note="written at tier config (phase 4e); must agree with platform:{platformId}:tierConfig",
    ),
    KeySpec(
        KeyKind.PUBLISHABLE_KEY_PLATFORM,
        "publishablekey:{publishableKey}:platformId",
        (PLATFORM_TOKENS, API_TOKENS),
        "the platform id this publishable key belongs to",
        points_to=(KeyKind.PLATFORM_USER_ID, KeyKind.TIER_CONFIG),
        note="written at tier config (phase 4e) and copied to api-tokens (4f); api-multi resolves it per request",
    ),
    KeySpec(
        KeyKind.SECRET_KEY_PUBLISHABLE,
        "secretkey:{hash}:publishableKey",
        (PLATFORM_TOKENS, API_TOKENS),
        "the publishable key whose secret key hashes (SHA-256, hex) to {hash}",
        points_to=(KeyKind.PUBLISHABLE_KEY_PLATFORM,),
        note="written at tier config (phase 4e) and copied to api-tokens (4f); the first lookup of "
        "`Authorization: Bearer sk_...`",
    ),
    KeySpec(
        KeyKind.TIER_CONFIG,
        "platform:{platformId}:tierConfig",
        (API_TOKENS,),
        "JSON {tiers: [{name, limit, priceId, productId, price, features}]}",
        json=True,
        note="copied to api-tokens at tier config (phase 4f); api-multi enforces limits from it",
    ),
    KeySpec(
        KeyKind.PLATFORM_KEY_INDEX,
        "platform:{platformId}:key:{publishableKey}",
        (PLATFORM_TOKENS,),
        "JSON {env, created, secretStart, secretHash, expiresAt, revokedAt} of one key pair of the platform",
        json=True,
        note="dream's extension of the guide's schema: the index `dream keys list` reads (one entry per pair, so "
        "concurrent rotations never overwrite each other); pairs made before it are found from their mappings",
    ),
    KeySpec(
        KeyKind.OAUTH_STATE,
        "oauth:state:{state}",
        (PLATFORM_TOKENS,),
        "the Clerk user id that started the Stripe Connect OAuth",
        points_to=(KeyKind.USER_PLATFORM_ID,),
        note="written by oauth-api /authorize (phase 3) with a 10-minute expiration; consumed by /callback",
    ),
    KeySpec(
        KeyKind.DEVELOPER_USAGE,
        "usage:{userId}",
        (PLATFORM_USAGE,),
        "JSON {usageCount, plan, lastUpdated, periodStart, periodEnd} of a developer",
        json=True,
    ),
    KeySpec(
        KeyKind.END_USER_USAGE,
        "usage:{owner}:{userId}",
        (API_USAGE,),
        "JSON {usageCount, plan, lastUpdated, periodStart, periodEnd} of an end-user of a developer",
        json=True,
        note="the guide's owner is the publishable key; dream writes the platform id there, so usage survives key "
        "rotations (a new publishable key must not reset anyone's count)",
    ),
    KeySpec(
        KeyKind.PLATFORM_RATE_LIMIT,
        "ratelimit:{platformId}:{userId}:{minute}",
        (API_USAGE,),
        "a request count for one end-user of one platform in one minute",
        note="dream's deviation: the guide's ratelimit:{userId}:{minute} is not scoped by developer, so two "
        "developers' users with the same id would share a bucket",
    ),
    KeySpec(
        KeyKind.RATE_LIMIT,
        "ratelimit:{userId}:{minute}",
        (PLATFORM_USAGE, API_USAGE),
        "a request count for one user in one minute",
    ),
)

SPEC_BY_KIND: dict[KeyKind, KeySpec] = {spec.kind: spec for spec in SPECS}
# Candidates by (first segment, number of segments, last segment when it is a literal, else None):
# parsing is a split, one or two dict lookups and a few comparisons.
_SPECS_BY_SHAPE: dict[tuple[str, int, str | None], tuple[KeySpec, ...]] = {}
for _spec in SPECS:
    _last = _spec.segments[-1][0]
    _shape = (_spec.segments[0][1], len(_spec.segments), _last)
    _SPECS_BY_SHAPE[_shape] = (*_SPECS_BY_SHAPE.get(_shape, ()), _spec)


def classify(key: str) -> tuple[KeyKind, dict[str, str] | None, KeySpec | None, int]:
    """(kind, fields, spec, number of matching specs): the fast core of `parse`."""
    parts = key.split(":")
    shape_n = len(parts)
    first: tuple[KeySpec, dict[str, str]] | None = None
    count = 0
    for candidates in (
        _SPECS_BY_SHAPE.get((parts[0], shape_n, parts[-1]), ()),
        _SPECS_BY_SHAPE.get((parts[0], shape_n, None), ()),
    ):
        for spec in candidates:
            fields = spec.match(parts)
            if fields is not None:
                count += 1
                if first is None:
                    first = (spec, fields)
    if first is None:
        return KeyKind.UNKNOWN, None, None, 0
    return first[0].kind, first[1], first[0], count


# Where each listable family of keys starts (for `list --prefix` and scans).
PUBLISHABLE_KEY_PREFIX = SPEC_BY_KIND[KeyKind.PUBLISHABLE_KEY_PLATFORM].prefix
SECRET_KEY_PREFIX = SPEC_BY_KIND[KeyKind.SECRET_KEY_PUBLISHABLE].prefix
PLATFORM_PREFIX = SPEC_BY_KIND[KeyKind.PLATFORM_USER_ID].prefix


@dataclass(frozen=True, slots=True)
class ParsedKey:
    """What a key is: its kind, its fields, and its spec (None for UNKNOWN)."""

    key: str
    kind: KeyKind
    fields: dict[str, str]
    spec: KeySpec | None

    @property
    def known(self) -> bool:
        return self.spec is not None

    def belongs_in(self, namespace: str) -> bool:
        return self.spec is not None and namespace in self.spec.namespaces


def parse(key: str, namespace: str | None = None) -> ParsedKey:
    """Classify any key. With a namespace, patterns the guide puts in that namespace win a tie."""
    if not isinstance(key, str):
        return ParsedKey(str(key), KeyKind.UNKNOWN, {}, None)
    kind, fields, spec, count = classify(key)
    if spec is None or fields is None:
        return ParsedKey(key, KeyKind.UNKNOWN, {}, None)
    if namespace is not None and count > 1 and namespace not in spec.namespaces:
        parts = key.split(":")
        for candidates in (
            _SPECS_BY_SHAPE.get((parts[0], len(parts), parts[-1]), ()),
            _SPECS_BY_SHAPE.get((parts[0], len(parts), None), ()),
        ):
            for other in candidates:
                other_fields = other.match(parts)
                if other_fields is not None and namespace in other.namespaces:
                    return ParsedKey(key, other.kind, other_fields, other)
    return ParsedKey(key, kind, fields, spec)


def build(kind: KeyKind, **values: str | int) -> str:
    return SPEC_BY_KIND[kind].build(**values)


def prefix(kind: KeyKind, **known: str | int) -> str:
    """Where the keys of `kind` with these leading fields start, e.g. one platform's usage records."""
    return SPEC_BY_KIND[kind].prefix_with(**known)


def related_keys(kind: KeyKind, value: str) -> list[tuple[str, str]]:
    """(namespace, key) pairs that a value of this kind points at."""
    spec = SPEC_BY_KIND.get(kind)
    if spec is None:
        return []
    related: list[tuple[str, str]] = []
    for target_kind in spec.points_to:
        target = SPEC_BY_KIND[target_kind]
        try:
            key = target.build(**{target.fields[0]: value})
        except ValueError:
            continue
        for namespace in target.namespaces:
            related.append((namespace, key))
    return related


# Builders: the only way the rest of the code makes a key.
def user_platform_id(user_id: str) -> str:
    return build(KeyKind.USER_PLATFORM_ID, userId=user_id)


def platform_user_id(platform_id: str) -> str:
    return build(KeyKind.PLATFORM_USER_ID, platformId=platform_id)


def user_stripe_token(user_id: str) -> str:
    return build(KeyKind.USER_STRIPE_TOKEN, userId=user_id)


def platform_stripe_token(platform_id: str) -> str:
    return build(KeyKind.PLATFORM_STRIPE_TOKEN, platformId=platform_id)


def user_publishable_key(user_id: str) -> str:
    return build(KeyKind.USER_PUBLISHABLE_KEY, userId=user_id)


def user_secret_key(user_id: str) -> str:
    return build(KeyKind.USER_SECRET_KEY, userId=user_id)


def user_products(user_id: str) -> str:
    return build(KeyKind.USER_PRODUCTS, userId=user_id)


def publishable_key_platform(publishable_key: str) -> str:
    return build(KeyKind.PUBLISHABLE_KEY_PLATFORM, publishableKey=publishable_key)


def secret_key_publishable(secret_hash: str) -> str:
    return build(KeyKind.SECRET_KEY_PUBLISHABLE, hash=secret_hash)


def tier_config(platform_id: str) -> str:
    return build(KeyKind.TIER_CONFIG, platformId=platform_id)


def platform_key_index(platform_id: str, publishable_key: str) -> str:
    return build(KeyKind.PLATFORM_KEY_INDEX, platformId=platform_id, publishableKey=publishable_key)


def platform_keys_prefix(platform_id: str) -> str:
    """Where every `platform:{platformId}:...` key of one platform starts (its user id, Stripe token, tier config,
    key index), in whichever namespace holds them."""
    return platform_user_id(platform_id).rsplit(":", 1)[0] + ":"


def platform_key_index_prefix(platform_id: str) -> str:
    """Where one platform's index entries start (for `list --prefix`)."""
    return prefix(KeyKind.PLATFORM_KEY_INDEX, platformId=platform_id)


def oauth_state(state: str) -> str:
    return build(KeyKind.OAUTH_STATE, state=state)


def developer_usage(user_id: str) -> str:
    return build(KeyKind.DEVELOPER_USAGE, userId=user_id)


def end_user_usage(owner: str, user_id: str) -> str:
    """`owner` is the platform id in what dream writes (the guide used the publishable key)."""
    return build(KeyKind.END_USER_USAGE, owner=owner, userId=user_id)


def platform_rate_limit(platform_id: str, user_id: str, minute: int) -> str:
    return build(KeyKind.PLATFORM_RATE_LIMIT, platformId=platform_id, userId=user_id, minute=minute)


def rate_limit(user_id: str, minute: int) -> str:
    return build(KeyKind.RATE_LIMIT, userId=user_id, minute=minute)


# What leaves a verifier Worker in place of a secret value (see dreamcli/stores/verifier.py): this, then the
# SHA-256 (hex) of the value, or of each field of a JSON object but the clear ones.
SEAL = "sealed:sha256:"
CLEAR_FIELDS = ("stripeUserId",)  # a Stripe token's account id is no secret (reports show it)


def sealing_rules() -> list[tuple[str, str, str]]:
    """(prefix, suffix, mode) of every kind the schema marks secret, for the verifier Worker: a key that starts
    with `prefix` and ends with `suffix` leaves it sealed, as one digest ("digest") or field by field ("fields",
    JSON values, so their shape and equality can still be checked)."""
    rules = []
    for spec in SPECS:
        if spec.secret:
            suffix = spec.pattern.rsplit("}", 1)[1]
            rules.append((spec.prefix, suffix, "fields" if spec.json else "digest"))
    return rules


def unsealed_digest(value: str) -> str | None:
    """The SHA-256 hex a "digest" seal carries, or None when `value` is no seal."""
    if value.startswith(SEAL) and is_digest(value[len(SEAL) :]):
        return value[len(SEAL) :]
    return None


# The ids under each family of keys, as the platform makes them: Clerk user ids (`user_` + 27 base62 characters of a
# KSUID, whose first character is the time: this decade's "2" and "3" are split one character further), platform
# ids and publishable keys (`plt_`, `pk_live_` + hex), secret key hashes (hex).
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_HEX = "0123456789abcdef"
_USERS = SPEC_BY_KIND[KeyKind.USER_PLATFORM_ID].prefix + "user_"
_SHARDED_FAMILIES = (
    (_USERS, [c for c in _BASE62 if c not in "23"] + [a + b for a in "23" for b in _BASE62]),
    (PLATFORM_PREFIX + "plt_", list(_HEX)),
    (PUBLISHABLE_KEY_PREFIX + "pk_live_", list(_HEX)),
    (SECRET_KEY_PREFIX, list(_HEX)),
)


def shard_prefixes(namespace: str) -> list[str]:
    """Prefixes that split the keys the platform writes into `namespace` into parts of similar size, none a prefix
    of another, in key order, so a scan can read them in parallel. The rest (other id shapes, unknown keys) is read
    by a scan of everything that skips these."""
    families = {spec.prefix for spec in SPECS if namespace in spec.namespaces}
    return sorted(
        family + part
        for family, parts in _SHARDED_FAMILIES
        if any(family.startswith(prefix) for prefix in families)
        for part in parts
    )
