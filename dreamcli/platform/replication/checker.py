"""The replication invariants between platform-tokens (front-auth-api) and api-tokens (api-multi),
checked in one streaming pass, and the plan that repairs what can be repaired.

The two namespaces are read as sorted (key, value) streams and merge-joined: mirrored keys meet
side by side, and the guide's prefixes sort so that each kind is seen before the kinds that point
at it (platform: < publishablekey: < secretkey: < user:). Memory grows with the number of platforms
(a few ids per platform), never with the number of keys or the size of values.

Sources of truth (what repair copies from):
- platform-tokens is the source of every mirrored key (publishablekey:, secretkey:) in api-tokens;
- `user:{u}:platformId` is the source of `platform:{plt}:userId`;
- `platform:{plt}:stripeToken` is the source of `user:{u}:stripeToken` (what create-products reads);
- Stripe (the connected account's products and prices) is the source of `platform:{plt}:tierConfig`;
- a plaintext `user:{u}:secretKey` is the source of its missing hash mapping.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

from dreamcli import layout
from dreamcli.layout import KeyKind
from dreamcli.platform.keys import KeyIndexEntry
from dreamcli.platform.replication.findings import Action, Finding, FindingClass, Fix, Need, Phase, VerifyResult, shown
from dreamcli.platform.secrets import hash_secret
from dreamcli.stores.ports import Store, scan_items
from dreamcli.topology import API_TOKENS, PLATFORM_TOKENS

_PLT = re.compile(r"^plt_[A-Za-z0-9]+$")
_PK = re.compile(r"^pk_[A-Za-z0-9_]+$")
_ID = re.compile(r"^[^:\s]+$")


def _merged(
    left: Iterator[tuple[str, bytes]], right: Iterator[tuple[str, bytes]]
) -> Iterator[tuple[str, bytes | None, bytes | None]]:
    """Merge two key-sorted streams: (key, left value or None, right value or None)."""
    a = next(left, None)
    b = next(right, None)
    while a is not None or b is not None:
        if b is None or (a is not None and a[0] < b[0]):
            yield a[0], a[1], None  # type: ignore[index]
            a = next(left, None)
        elif a is None or b[0] < a[0]:
            yield b[0], None, b[1]
            b = next(right, None)
        else:
            yield a[0], a[1], b[1]
            a, b = next(left, None), next(right, None)


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode("utf-8", errors="replace")


def _triples(tiers: Any, name_field: str) -> tuple[tuple[str, str, str], ...] | None:
    if not isinstance(tiers, list):
        return None
    out = []
    for tier in tiers:
        if not isinstance(tier, dict) or not all(
            isinstance(tier.get(f), str) for f in (name_field, "priceId", "productId")
        ):
            return None
        out.append((tier[name_field], tier["priceId"], tier["productId"]))
    return tuple(sorted(out))


# Within a platform:{plt}:* or user:{u}:* group the last segment names the kind (the layout's patterns).
_PLATFORM_SUFFIX = {
    spec.segments[-1][0]: spec.kind
    for spec in layout.SPECS
    if spec.segments[0][0] == "platform" and len(spec.segments) == 3 and spec.segments[-1][0]
}
_USER_SUFFIX = {
    spec.segments[-1][0]: spec.kind
    for spec in layout.SPECS
    if spec.segments[0][0] == "user" and len(spec.segments) == 3 and spec.segments[-1][0]
}


class _Checker:
    def __init__(self, store: Store, stripe_check: Callable[[str, str], list[Finding]] | None, now: float) -> None:
        self.store = store
        self.findings: list[Finding] = []
        self.stripe_check = stripe_check
        self.platform_user: dict[str, str] = {}  # platform:{plt}:userId values not yet matched by a user
        self.matched_platforms: set[int] = set()
        # Only hashes of values are kept; the rare value a fix needs is read again from the store.
        self.platform_token: dict[str, int] = {}  # plt -> hash of its token text
        self.tier_config: dict[
            str, int | None
        ] = {}  # plt -> hash of its (name, priceId, productId) triples; None = corrupt
        self.tier_config_pending_orphan: dict[str, None] = {}
        self.tier_config_reported: set[str] = set()
        self.pt_publishable: dict[int, str] = {}  # hash(pk) -> plt, from platform-tokens
        self.api_publishable: set[int] = set()
        self.pt_secret: set[int] = set()
        self.api_secret: set[int] = set()
        self.users_seen: set[int] = set()
        self.pending_dangling: dict[str, list[str]] = {}  # plt -> publishablekey: keys pointing at it
        self.revoked: dict[int, str] = {}  # hash(pk) -> plt, from the key index
        self.expiring: dict[int, int] = {}  # hash(pk) -> expiresAt, from the key index
        self.newest_live: dict[str, tuple[int, str]] = {}  # plt -> (created, pk) of its newest live indexed pair
        self.now = int(now)

    def add(
        self,
        cls: FindingClass,
        namespace: str,
        key: str,
        platform: str | None,
        message: str,
        *,
        expected: str | None = None,
        actual: str | None = None,
        fix: Fix | None = None,
    ) -> None:
        kind = layout.classify(key)[0]
        self.findings.append(
            Finding(cls, namespace, key, platform, message, shown(kind, expected), shown(kind, actual), fix)
        )

    # platform:{plt}:*

    def platform_group(self, plt: str, items: list[tuple[str, bytes | None, bytes | None]]) -> None:
        for key, pt_raw, api_raw in items:
            if key.count(":") == 3 and pt_raw is not None and key.split(":")[2] == "key":
                self._index_entry(key, key.rsplit(":", 1)[1], plt, _text(pt_raw))
                continue
            kind = _PLATFORM_SUFFIX.get(key.rsplit(":", 1)[1]) if key.count(":") == 2 else None
            pt, api = _text(pt_raw), _text(api_raw)
            if kind is KeyKind.PLATFORM_USER_ID and pt is not None:
                self._platform_user(key, plt, pt)
            elif kind is KeyKind.PLATFORM_STRIPE_TOKEN and pt is not None:
                if self._token_ok(key, pt, plt):
                    self.platform_token[plt] = hash(pt)
            elif kind is KeyKind.TIER_CONFIG and api is not None:
                self._tier_config(key, plt, api)

    def _platform_user(self, key: str, plt: str, user_id: str) -> None:
        """platform:{plt}:userId names a user (matched against user:{u}:platformId when that user's keys come)."""
        if not _ID.match(user_id):
            self.add(FindingClass.CORRUPT, PLATFORM_TOKENS, key, plt, "value is not a user id", actual=user_id)
        else:
            self.platform_user[plt] = user_id

    def _tier_config(self, key: str, plt: str, api: str) -> None:
        """api-tokens' platform:{plt}:tierConfig is {tiers: [{name, priceId, productId, ...}]} and has an owner."""
        try:
            triples = _triples(json.loads(api).get("tiers"), "name")
        except (json.JSONDecodeError, AttributeError):
            triples = None
        if triples is None:
            self.add(
                FindingClass.CORRUPT,
                API_TOKENS,
                key,
                plt,
                "value is not {tiers: [{name, priceId, productId, ...}]}",
                actual=api,
            )
        self.tier_config[plt] = None if triples is None else hash(triples)
        if plt not in self.platform_user:
            self.tier_config_pending_orphan[plt] = None

    def _index_entry(self, key: str, pk: str, plt: str, value: str | None) -> None:
        """dream's key index: a revoked pair must be gone, a pair in its grace must expire on time."""
        try:
            entry = KeyIndexEntry.from_json(value)
        except ValueError:
            self.add(FindingClass.CORRUPT, PLATFORM_TOKENS, key, plt, "value is not {env, created, ...}", actual=value)
            return
        revoked, expires = entry.revoked_at, entry.expires_at
        if revoked is not None:
            self.revoked[hash(pk)] = plt
            return
        if isinstance(expires, int):
            self.expiring[hash(pk)] = expires
            if expires <= self.now:
                return
        created = entry.created or 0
        if created >= self.newest_live.get(plt, (-1, ""))[0]:
            self.newest_live[plt] = (created, pk)

    def _revoked_mapping(self, key: str, pk: str, pt: str | None, api: str | None, phase: Phase) -> bool:
        """Mappings of a revoked pair are deleted (completing the revocation), never copied."""
        if hash(pk) not in self.revoked:
            return False
        plt = self.revoked[hash(pk)]
        for namespace, value in ((API_TOKENS, api), (PLATFORM_TOKENS, pt)):
            if value is not None:
                self.add(
                    FindingClass.STALE,
                    namespace,
                    key,
                    plt,
                    f"the pair of {pk} is revoked but this mapping remains",
                    actual=value,
                    fix=Fix(Action.DELETE, namespace, key, phase),
                )
        return True

    def _expiry(self, key: str, pk: str, plt: str | None, pt: str | None, api: str | None) -> bool:
        """A pair in its grace: both mappings carry the index's expiration (read back point by point; few)."""
        expires = self.expiring.get(hash(pk))
        if expires is None:
            return False
        if expires - self.now < 60:  # KV cannot set an expiration this close: it is about to vanish anyway
            return True
        source = pt if pt is not None else api
        for namespace, value in ((PLATFORM_TOKENS, pt), (API_TOKENS, api)):
            phase = (
                Phase.PLATFORM_TOKENS
                if namespace == PLATFORM_TOKENS
                else (Phase.API_SECRET if key.startswith(layout.SECRET_KEY_PREFIX) else Phase.API_PUBLISHABLE)
            )
            if value is None:
                self.add(
                    FindingClass.MISSING,
                    namespace,
                    key,
                    plt,
                    f"the pair of {pk} is in its grace until {expires}",
                    expected=source,
                    fix=Fix(Action.PUT, namespace, key, phase, source, expiration=expires),
                )
                continue
            found = self.store.kv(namespace).get_with_metadata(key)
            if found is not None and (found.expiration is None or found.expiration > expires):
                self.add(
                    FindingClass.STALE,
                    namespace,
                    key,
                    plt,
                    f"outlives its pair's grace (until {expires})",
                    expected=f"expiration {expires}",
                    actual=f"expiration {found.expiration}",
                    fix=Fix(Action.PUT, namespace, key, phase, value, expiration=expires),
                )
        return True

    def _token_ok(self, key: str, value: str, plt: str | None) -> bool:
        try:
            token = json.loads(value)
            ok = (
                isinstance(token, dict)
                and isinstance(token.get("stripeUserId"), str)
                and isinstance(token.get("accessToken"), str)
            )
        except json.JSONDecodeError:
            ok = False
        if not ok:
            self.add(FindingClass.CORRUPT, PLATFORM_TOKENS, key, plt, "value is not {accessToken, stripeUserId}")
        return ok

    def _need_tier_config(self, plt: str, user_id: str | None, why: str) -> None:
        if plt in self.tier_config or plt in self.tier_config_reported:
            return
        self.tier_config_reported.add(plt)
        key = layout.tier_config(plt)
        self.add(
            FindingClass.MISSING,
            API_TOKENS,
            key,
            plt,
            f"no tier config in api-tokens: {why}",
            fix=Fix(Action.REBUILD_TIER_CONFIG, API_TOKENS, key, Phase.TIER_CONFIG, user_id=user_id),
        )

    def _mirrored(
        self, key: str, platform: str | None, pt: str | None, api: str | None, put_phase: Phase, delete_phase: Phase
    ) -> bool:
        """A key platform-tokens owns and api-tokens copies: missing or stale copies are rewritten from the
        source, a copy without a source is an orphan. False for an orphan (nothing else to check)."""
        if pt is not None and api is None:
            self.add(
                FindingClass.MISSING,
                API_TOKENS,
                key,
                platform,
                "in platform-tokens but not in api-tokens",
                expected=pt,
                fix=Fix(Action.PUT, API_TOKENS, key, put_phase, pt),
            )
        elif pt is None and api is not None:
            self.add(
                FindingClass.ORPHANED,
                API_TOKENS,
                key,
                platform,
                "in api-tokens without its source in platform-tokens",
                actual=api,
                fix=Fix(Action.DELETE, API_TOKENS, key, delete_phase, needs=Need.PRUNE),
            )
            return False
        elif pt != api:
            self.add(
                FindingClass.STALE,
                API_TOKENS,
                key,
                platform,
                "api-tokens disagrees with platform-tokens",
                expected=pt,
                actual=api,
                fix=Fix(Action.PUT, API_TOKENS, key, put_phase, pt),
            )
        return True

    # publishablekey:{pk}:platformId

    def publishable(self, key: str, pk: str, pt: str | None, api: str | None) -> None:
        for namespace, value in ((PLATFORM_TOKENS, pt), (API_TOKENS, api)):
            if value is not None and not _PLT.match(value):
                self.add(FindingClass.CORRUPT, namespace, key, None, "value is not a platform id", actual=value)
                return
        if self._revoked_mapping(key, pk, pt, api, Phase.DELETE_OTHER):
            return
        if self._expiry(key, pk, pt or api, pt, api):
            self.pt_publishable[hash(pk)] = pt or api  # type: ignore[assignment]
            self.api_publishable.add(hash(pk))
            return
        plt = pt or api
        if pt is not None:
            self.pt_publishable[hash(pk)] = pt
            if pt not in self.platform_user:  # a user: key (later in key order) may still claim it
                self.pending_dangling.setdefault(pt, []).append(key)
        if not self._mirrored(key, pt or api, pt, api, Phase.API_PUBLISHABLE, Phase.DELETE_OTHER):
            return
        self.api_publishable.add(hash(pk))
        if plt is not None:
            self._need_tier_config(plt, self.platform_user.get(plt), f"publishable key {pk} points at {plt}")

    # secretkey:{hash}:publishableKey

    def secret(self, key: str, digest: str, pt: str | None, api: str | None) -> None:
        for namespace, value in ((PLATFORM_TOKENS, pt), (API_TOKENS, api)):
            if value is not None and not _PK.match(value):
                self.add(FindingClass.CORRUPT, namespace, key, None, "value is not a publishable key", actual=value)
                return
        if self._revoked_mapping(key, pt or api or "", pt, api, Phase.DELETE_SECRET):
            return
        if self._expiry(key, pt or api or "", self.pt_publishable.get(hash(pt or api)), pt, api):
            self.pt_secret.add(hash(digest))
            self.api_secret.add(hash(digest))
            return
        platform = self.pt_publishable.get(hash(pt or api or ""))
        if pt is not None:
            self.pt_secret.add(hash(digest))
            if hash(pt) not in self.pt_publishable:
                self.add(
                    FindingClass.DANGLING,
                    PLATFORM_TOKENS,
                    key,
                    None,
                    f"points at {pt}, which has no publishablekey:{pt}:platformId",
                )
        if not self._mirrored(key, platform, pt, api, Phase.API_SECRET, Phase.DELETE_SECRET):
            return
        self.api_secret.add(hash(digest))
        if hash(pt or api) not in self.api_publishable:
            self.add(
                FindingClass.DANGLING,
                API_TOKENS,
                key,
                platform,
                f"points at {pt or api}, which has no publishablekey:{pt or api}:platformId in api-tokens",
            )

    # user:{u}:*

    def user_group(self, user_id: str, items: list[tuple[str, bytes | None, bytes | None]]) -> None:
        values = {
            _USER_SUFFIX.get(key.rsplit(":", 1)[1]) if key.count(":") == 2 else None: _text(pt)
            for key, pt, _ in items
            if pt is not None
        }
        plt = self._user_platform(user_id, values.get(KeyKind.USER_PLATFORM_ID))
        self._user_token(user_id, plt, values.get(KeyKind.USER_STRIPE_TOKEN))
        self._user_products(user_id, plt, values.get(KeyKind.USER_PRODUCTS))
        pk = self._user_publishable_key(user_id, plt, values.get(KeyKind.USER_PUBLISHABLE_KEY))
        self._user_plaintext_secret(user_id, plt, pk, values.get(KeyKind.USER_SECRET_KEY))

    def _user_platform(self, user_id: str, plt: str | None) -> str | None:
        """user:{u}:platformId names a platform whose platform:{plt}:userId names the user back."""
        if plt is not None and not _PLT.match(plt):
            self.add(
                FindingClass.CORRUPT,
                PLATFORM_TOKENS,
                layout.user_platform_id(user_id),
                None,
                "value is not a platform id",
                actual=plt,
            )
            plt = None
        if plt is not None:
            self.users_seen.add(hash(user_id))  # users that name a platform
            owner = self.platform_user.pop(plt, None)
            self.matched_platforms.add(hash(plt))
            self.tier_config_pending_orphan.pop(plt, None)
            if owner != user_id:
                reverse = layout.platform_user_id(plt)
            if owner is None:
                self.add(
                    FindingClass.MISSING,
                    PLATFORM_TOKENS,
                    reverse,
                    plt,
                    f"user:{user_id}:platformId points here",
                    expected=user_id,
                    fix=Fix(Action.PUT, PLATFORM_TOKENS, reverse, Phase.PLATFORM_TOKENS, user_id),
                )
            elif owner != user_id:
                self.add(
                    FindingClass.STALE,
                    PLATFORM_TOKENS,
                    reverse,
                    plt,
                    f"user:{user_id}:platformId points here",
                    expected=user_id,
                    actual=owner,
                    fix=Fix(Action.PUT, PLATFORM_TOKENS, reverse, Phase.PLATFORM_TOKENS, user_id),
                )
        return plt

    def _user_products(self, user_id: str, plt: str | None, products_raw: str | None) -> None:
        """user:{u}:products agrees with the tiers (price and product ids) of the platform's tier config."""
        products = None
        if products_raw is not None:
            try:
                products = _triples(json.loads(products_raw), "tier")
            except json.JSONDecodeError:
                products = None
            if products is None:
                self.add(
                    FindingClass.CORRUPT,
                    PLATFORM_TOKENS,
                    layout.user_products(user_id),
                    plt,
                    "value is not [{tier, priceId, productId}]",
                    actual=products_raw,
                )
        if plt is not None and products is not None:
            config = self.tier_config.get(plt, "absent")
            if config == "absent":
                self._need_tier_config(plt, user_id, f"user:{user_id}:products lists {len(products)} tiers")
            elif config is not None and config != hash(products):
                key = layout.tier_config(plt)
                self.add(
                    FindingClass.STALE,
                    API_TOKENS,
                    key,
                    plt,
                    f"tiers (price and product ids) differ from user:{user_id}:products",
                    expected=json.dumps([list(t) for t in products]),
                    fix=Fix(Action.REBUILD_TIER_CONFIG, API_TOKENS, key, Phase.TIER_CONFIG, user_id=user_id),
                )
            if self.stripe_check is not None and plt in self.platform_token:
                self.findings += self.stripe_check(plt, user_id)

    def _user_publishable_key(self, user_id: str, plt: str | None, pk: str | None) -> str | None:
        """user:{u}:publishableKey names a live pair of this user's platform (after a revoke, the newest)."""
        if pk is not None and plt is not None and hash(pk) in self.revoked:
            key = layout.user_publishable_key(user_id)
            successor = self.newest_live.get(plt, (0, None))[1]
            fix = (
                Fix(Action.PUT, PLATFORM_TOKENS, key, Phase.PLATFORM_TOKENS, successor)
                if successor
                else Fix(Action.DELETE, PLATFORM_TOKENS, key, Phase.DELETE_OTHER)
            )
            self.add(
                FindingClass.STALE,
                PLATFORM_TOKENS,
                key,
                plt,
                f"names {pk}, whose pair is revoked",
                expected=successor,
                actual=pk,
                fix=fix,
            )
            pk = None
        if pk is not None and plt is not None:
            target = self.pt_publishable.get(hash(pk))
            if target is None:
                entry = layout.publishable_key_platform(pk)
                self.add(
                    FindingClass.MISSING,
                    PLATFORM_TOKENS,
                    entry,
                    plt,
                    f"user:{user_id}:publishableKey names it",
                    expected=plt,
                    fix=Fix(Action.PUT, PLATFORM_TOKENS, entry, Phase.PLATFORM_TOKENS, plt),
                )
                if hash(pk) not in self.api_publishable:
                    self.add(
                        FindingClass.MISSING,
                        API_TOKENS,
                        entry,
                        plt,
                        f"user:{user_id}:publishableKey names it",
                        expected=plt,
                        fix=Fix(Action.PUT, API_TOKENS, entry, Phase.API_PUBLISHABLE, plt),
                    )
                    self._need_tier_config(plt, user_id, f"user:{user_id}:publishableKey is {pk}")
            elif target != plt:
                self.add(
                    FindingClass.DANGLING,
                    PLATFORM_TOKENS,
                    layout.user_publishable_key(user_id),
                    plt,
                    f"{pk} belongs to {target}, not to this user's {plt}",
                    actual=pk,
                )
        return pk

    def _user_plaintext_secret(self, user_id: str, plt: str | None, pk: str | None, plaintext: str | None) -> None:
        """The guide's plaintext user:{u}:secretKey: insecure, and the source of its own missing hash mappings."""
        if plaintext is not None:
            key = layout.user_secret_key(user_id)
            self.add(
                FindingClass.INSECURE,
                PLATFORM_TOKENS,
                key,
                plt,
                "plaintext secret key (the guide's one-time show is not)",
                fix=Fix(Action.DELETE, PLATFORM_TOKENS, key, Phase.PLAINTEXT, needs=Need.REMOVE_PLAINTEXT_SECRETS),
            )
            digest = hash_secret(plaintext)
            if pk is not None:
                entry = layout.secret_key_publishable(digest)
                if hash(digest) not in self.pt_secret:
                    self.add(
                        FindingClass.MISSING,
                        PLATFORM_TOKENS,
                        entry,
                        plt,
                        f"the hash of user:{user_id}:secretKey",
                        expected=pk,
                        fix=Fix(Action.PUT, PLATFORM_TOKENS, entry, Phase.PLATFORM_TOKENS, pk),
                    )
                if hash(digest) not in self.api_secret:
                    self.add(
                        FindingClass.MISSING,
                        API_TOKENS,
                        entry,
                        plt,
                        f"the hash of user:{user_id}:secretKey",
                        expected=pk,
                        fix=Fix(Action.PUT, API_TOKENS, entry, Phase.API_SECRET, pk),
                    )

    def _user_token(self, user_id: str, plt: str | None, user_token: str | None) -> None:
        if plt is None:
            return
        token_hash = self.platform_token.get(plt)
        if user_token is not None and hash(user_token) == token_hash:
            return  # the same text as the platform's, which was checked already
        platform_token = None
        if token_hash is not None:
            raw = self.store.kv(PLATFORM_TOKENS).get(layout.platform_stripe_token(plt))
            platform_token = None if raw is None else raw.decode("utf-8", errors="replace")
        if user_token is not None and not self._token_ok(layout.user_stripe_token(user_id), user_token, plt):
            return
        user_key, platform_key = layout.user_stripe_token(user_id), layout.platform_stripe_token(plt)
        if user_token is not None and platform_token is None:
            self.add(
                FindingClass.MISSING,
                PLATFORM_TOKENS,
                platform_key,
                plt,
                f"user:{user_id}:stripeToken has it",
                expected=user_token,
                fix=Fix(Action.PUT, PLATFORM_TOKENS, platform_key, Phase.PLATFORM_TOKENS, user_token),
            )
        elif user_token is None and platform_token is not None:
            self.add(
                FindingClass.MISSING,
                PLATFORM_TOKENS,
                user_key,
                plt,
                f"platform:{plt}:stripeToken has it",
                expected=platform_token,
                fix=Fix(Action.PUT, PLATFORM_TOKENS, user_key, Phase.PLATFORM_TOKENS, platform_token),
            )
        elif (
            user_token is not None
            and platform_token is not None
            and json.loads(user_token) != json.loads(platform_token)
        ):
            self.add(
                FindingClass.STALE,
                PLATFORM_TOKENS,
                user_key,
                plt,
                f"disagrees with platform:{plt}:stripeToken",
                expected=platform_token,
                actual=user_token,
                fix=Fix(Action.PUT, PLATFORM_TOKENS, user_key, Phase.PLATFORM_TOKENS, platform_token),
            )

    def finish(self) -> None:
        for plt, keys in self.pending_dangling.items():
            if hash(plt) in self.matched_platforms or plt in self.platform_user:
                continue
            for key in keys:
                self.add(
                    FindingClass.DANGLING,
                    PLATFORM_TOKENS,
                    key,
                    plt,
                    f"points at {plt}, which no user or platform:{plt}:userId claims",
                )
        for plt, user_id in self.platform_user.items():
            key = layout.platform_user_id(plt)
            if hash(user_id) in self.users_seen:
                self.add(
                    FindingClass.ORPHANED,
                    PLATFORM_TOKENS,
                    key,
                    plt,
                    f"user:{user_id}:platformId points at another platform",
                    actual=user_id,
                    fix=Fix(Action.DELETE, PLATFORM_TOKENS, key, Phase.DELETE_OTHER, needs=Need.PRUNE),
                )
            else:
                user_key = layout.user_platform_id(user_id)
                self.add(
                    FindingClass.MISSING,
                    PLATFORM_TOKENS,
                    user_key,
                    plt,
                    f"platform:{plt}:userId names this user",
                    expected=plt,
                    fix=Fix(Action.PUT, PLATFORM_TOKENS, user_key, Phase.PLATFORM_TOKENS, plt),
                )
        for plt in self.tier_config_pending_orphan:
            if plt in self.platform_user:
                continue
            key = layout.tier_config(plt)
            self.add(
                FindingClass.ORPHANED,
                API_TOKENS,
                key,
                plt,
                f"no platform:{plt}:userId owns it",
                fix=Fix(Action.DELETE, API_TOKENS, key, Phase.DELETE_OTHER, needs=Need.PRUNE),
            )


def verify(
    store: Store,
    *,
    on_progress: Callable[[int], None] | None = None,
    stripe_check: Callable[[str, str], list[Finding]] | None = None,
    now: float | None = None,
) -> VerifyResult:
    """Every finding in the token namespaces, in one pass over both."""
    now = time.time() if now is None else now
    checker = _Checker(store, stripe_check, now)
    result = VerifyResult()
    stream = _merged(scan_items(store.kv(PLATFORM_TOKENS)), scan_items(store.kv(API_TOKENS)))
    # Keys of one platform (platform:{plt}:*) or one user (user:{u}:*) share a prefix, so they are
    # contiguous in key order: each such group is checked as a whole.
    group: list[tuple[str, bytes | None, bytes | None]] = []
    group_id: tuple[str, str] | None = None

    def flush() -> None:
        if not group or group_id is None:
            return
        head, ident = group_id
        if head == "platform":
            checker.platform_group(ident, group)
        elif head == "user":
            checker.user_group(ident, group)
        else:
            for key, pt, api in group:
                if key.startswith((layout.PUBLISHABLE_KEY_PREFIX, layout.SECRET_KEY_PREFIX)):
                    kind, fields, _, _ = layout.classify(key)
                    if kind is KeyKind.PUBLISHABLE_KEY_PLATFORM:
                        checker.publishable(key, fields["publishableKey"], _text(pt), _text(api))  # type: ignore[index]
                    elif kind is KeyKind.SECRET_KEY_PUBLISHABLE:
                        checker.secret(key, fields["hash"], _text(pt), _text(api))  # type: ignore[index]

    scanned = 0
    for key, pt, api in stream:
        scanned += (pt is not None) + (api is not None)
        if on_progress is not None and scanned % 10_000 < 2:
            on_progress(scanned)
        head, _, rest = key.partition(":")
        gid = (head, rest.split(":", 1)[0]) if head == "platform" or head == "user" else ("key", key)
        if gid != group_id:
            flush()
            group, group_id = [], gid
        group.append((key, pt, api))
    flush()
    checker.finish()
    result.keys_scanned = scanned
    if on_progress is not None:
        on_progress(scanned)
    result.findings = checker.findings
    return result
