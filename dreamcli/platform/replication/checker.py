"""The replication invariants between platform-tokens (front-auth-api) and api-tokens (api-multi), one check
per invariant over a `snapshot` of both namespaces.

SQLite joins the namespaces (the snapshot's entity tables) and each check's query returns only the rows that may
break its invariant; Python turns those into findings. Healthy rows never reach Python, so memory holds the
findings and nothing that grows with the number of platforms.

Sources of truth (what repair copies from):
- platform-tokens is the source of every mirrored key (publishablekey:, secretkey:) in api-tokens;
- `user:{u}:platformId` is the source of `platform:{plt}:userId`;
- `platform:{plt}:stripeToken` is the source of `user:{u}:stripeToken` (what create-products reads);
- Stripe (the connected account's products and prices) is the source of `platform:{plt}:tierConfig`;
- a plaintext `user:{u}:secretKey` is the source of its missing hash mapping.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from typing import Any

from dreamcli import layout
from dreamcli.platform.replication import copies
from dreamcli.platform.replication.findings import Action, Finding, FindingClass, Fix, Need, Phase, VerifyResult, shown
from dreamcli.platform.replication.snapshot import Snapshot, key_sql, probe, snapshot, tiers
from dreamcli.platform.secrets import hash_secret
from dreamcli.stores.ports import Store
from dreamcli.topology import API_TOKENS, API_USAGE, PLATFORM_TOKENS

StripeCheck = Callable[[str, str], list[Finding]]


def _claimed(plt: str) -> str:
    """Some developer's user:{u}:platformId names `plt`."""
    return f"EXISTS (SELECT 1 FROM usr c WHERE c.plt = {plt} AND c.plt_ok AND c.plt IS NOT NULL)"


# Raw values the snapshot leaves in the store, read again only for the rows handed to Python.
_CONFIG = probe("api", key_sql("platform:", "p.plt", ":tierConfig"))
_PRODUCTS = probe("pt", key_sql("user:", "u.u", ":products"))
_CONFIG_CORRUPT = f"(p.has_config AND p.fast IS NULL AND {tiers(_CONFIG, '$.tiers', 'name')} IS NULL)"

# Each query returns every row that may break its invariant (and, for speed, few others): `NOT ifnull(healthy, 0)`,
# as a NULL anywhere in `healthy` must send the row to Python, not drop it. The shapes of values are columns the
# snapshot computed once (`*_ok`); tier lists compare by their fast form, else by `tiers`.
INDEX_ENTRIES = "SELECT key, plt, value FROM idx WHERE NOT ok ORDER BY key"

PLATFORMS = f"""
    SELECT p.plt, p.user_id, p.token, p.has_config, {_CONFIG} AS config, p.token_ok, p.owner_ok,
           {_CONFIG_CORRUPT} AS config_corrupt,
           {_claimed("p.plt")} AS claimed,
           EXISTS (SELECT 1 FROM usr o WHERE o.u = p.user_id AND o.plt_ok AND o.plt IS NOT NULL) AS owner_has_platform
    FROM plat p
    WHERE NOT ifnull(p.owner_ok AND p.token_ok AND (NOT p.has_config OR p.fast IS NOT NULL)
                     AND EXISTS (SELECT 1 FROM usr o WHERE o.u = p.user_id AND o.plt = p.plt AND o.plt_ok), 0)
    ORDER BY p.plt"""

# What a publishable key's mapping says: `m_*` its platform-tokens and api-tokens values and their shapes,
# `revoked_plt` and `expires` its pair's state in the key index.
_PAIR = "m.pt AS m_pt, m.api AS m_api, ifnull(m.pt_ok, 1) AS m_pt_ok, ifnull(m.api_ok, 1) AS m_api_ok, ks.revoked_plt, ks.expires"

# Which mappings may break their invariant: decided by part B's builder, over its own tables, while part A is
# still being built (see snapshot); PUBLISHABLE then reads just those.
PUBLISHABLE_SUSPECTS = """
    CREATE TABLE publishable_suspects AS SELECT m.pk
    FROM pkm m LEFT JOIN keystate ks ON ks.pk = m.pk LEFT JOIN plat p ON p.plt = m.pt
    WHERE NOT ifnull(m.pt = m.api AND m.pt_ok AND m.api_ok AND ks.pk IS NULL AND p.has_config AND p.owner_ok, 0)"""

PUBLISHABLE = f"""
    SELECT m.pk, {_PAIR}, p.user_id AS owner, ifnull(p.owner_ok, 0) AS owner_ok,
           p.has_config, {_claimed("m.pt")} AS claimed
    FROM publishable_suspects s JOIN pkm m ON m.pk = s.pk LEFT JOIN keystate ks ON ks.pk = m.pk
         LEFT JOIN plat p ON p.plt = m.pt
    ORDER BY m.pk"""

SECRET = f"""
    SELECT s.digest, s.pt, s.api, s.pt_ok, s.api_ok, {_PAIR}
    FROM skm s LEFT JOIN keystate ks ON ks.pk = coalesce(s.pt, s.api) LEFT JOIN pkm m ON m.pk = coalesce(s.pt, s.api)
    WHERE NOT ifnull(s.pt = s.api AND s.pt_ok AND s.api_ok AND ks.pk IS NULL AND m.pt IS NOT NULL AND m.pt_ok
                     AND m.api_ok, 0)
    ORDER BY s.digest"""

_USERS = f"""
    SELECT u.u, u.plt, u.token, CASE WHEN u.has_products THEN {_PRODUCTS} END AS products, u.pk, u.secret, u.plt_ok,
           p.user_id AS owner, ifnull(p.owner_ok, 0) AS owner_ok, p.token AS platform_token,
           p.token_ok AS platform_token_ok, ifnull(p.has_config, 0) AS has_config,
           CASE WHEN p.fast IS NOT NULL AND u.fast IS NOT NULL AND p.fast = u.fast THEN 1
                WHEN NOT p.has_config OR NOT u.has_products THEN NULL
                ELSE {tiers(_CONFIG, "$.tiers", "name")} IS {tiers(_PRODUCTS, "$", "tier")} END AS tiers_agree,
           u.has_products AND u.fast IS NULL AND {tiers(_PRODUCTS, "$", "tier")} IS NULL AS products_corrupt,
           {_CONFIG_CORRUPT} AS config_corrupt,
           {_PAIR}
    FROM usr u LEFT JOIN plat p ON p.plt = u.plt LEFT JOIN pkm m ON m.pk = u.pk LEFT JOIN keystate ks ON ks.pk = u.pk"""
USERS = f"""{_USERS}
    WHERE NOT ifnull(u.plt_ok AND p.user_id = u.u AND p.owner_ok AND u.token = p.token AND p.token_ok
                     AND (NOT u.has_products OR u.fast = p.fast)
                     AND (u.pk IS NULL OR (ks.pk IS NULL AND m.pt = u.plt AND m.api_ok))
                     AND u.secret IS NULL, 0)
    ORDER BY u.u"""
USERS_ALL = f"{_USERS} ORDER BY u.u"  # with a Stripe check, which asks Stripe about every developer

SECRET_KNOWN = """
    SELECT s.pt, s.api, s.pt_ok, s.api_ok, ks.revoked_plt, ks.expires
    FROM skm s LEFT JOIN keystate ks ON ks.pk = coalesce(s.pt, s.api) WHERE s.digest = ?"""

# The newest live pair of a platform, by its index (ties: the last in key order).
NEWEST_LIVE = """
    SELECT pk FROM idx
    WHERE plt = ? AND ok AND ifnull(json_type(value, '$.revokedAt'), 'null') = 'null'
      AND NOT (json_type(value, '$.expiresAt') = 'integer' AND json_extract(value, '$.expiresAt') <= ?)
    ORDER BY CASE WHEN json_type(value, '$.created') IN ('integer', 'real') THEN json_extract(value, '$.created')
             ELSE 0 END DESC, key DESC
    LIMIT 1"""


def _triples(tiers: Any, name_field: str) -> list[tuple[str, str | None, str | None]] | None:
    """(name, priceId, productId) of each tier, sorted; None unless every tier has a string name and a string or
    null (or absent) priceId and productId (the guide's free tier without a Stripe product: `priceId: null`)."""
    if not isinstance(tiers, list):
        return None
    out = []
    for tier in tiers:
        if not isinstance(tier, dict) or not isinstance(tier.get(name_field), str):
            return None
        if not all(isinstance(tier.get(f), str | None) for f in ("priceId", "productId")):
            return None
        out.append((tier[name_field], tier.get("priceId"), tier.get("productId")))
    return sorted(out, key=lambda t: tuple("" if v is None else "\x00" + v for v in t))


def _token_ok(value: str) -> bool:
    try:
        token = json.loads(value)
    except json.JSONDecodeError:
        return False
    return isinstance(token, dict) and all(isinstance(token.get(f), str) for f in ("stripeUserId", "accessToken"))


def _pair(row: sqlite3.Row) -> tuple[str | None, bool]:
    """(the platform its platform-tokens mapping names, whether api-tokens authenticates it) for a publishable
    key, as its mapping check leaves them: a corrupt or revoked mapping names nothing."""
    if (row["m_pt"] is None and row["m_api"] is None) or not (row["m_pt_ok"] and row["m_api_ok"]):
        return None, False
    if row["revoked_plt"] is not None:
        return None, False
    if row["expires"] is not None:
        return row["m_pt"] or row["m_api"], True
    return row["m_pt"], row["m_pt"] is not None


class _Checker:
    def __init__(self, store: Store, snap: Snapshot, stripe_check: StripeCheck | None, now: float) -> None:
        self.store = store
        self.snap = snap
        self.stripe_check = stripe_check
        self.now = int(now)
        self.findings: list[Finding] = []
        self.tier_config_reported: set[str] = set()  # platforms whose missing tier config is reported (few)

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

    def run(self) -> None:
        """Every check; SQLite runs two queries at a time while Python handles what they hand it."""
        users = USERS if self.stripe_check is None else USERS_ALL
        # Two at a time, alternately: the developers (the most work) with INDEX_ENTRIES and PUBLISHABLE (little,
        # part B's builder found its suspects), PLATFORMS with SECRET. PUBLISHABLE is handled before the
        # developers: a missing tier config is reported by the first key that needs it.
        index_entries, platforms, publishable, secrets, developers = self.snap.run_all(
            [INDEX_ENTRIES, PLATFORMS, PUBLISHABLE, SECRET, users]
        )
        self.index_entries(index_entries)
        self.platforms(platforms)
        self.publishable_mappings(publishable)
        self.secret_mappings(secrets)
        self.developers(developers)

    def put(
        self,
        cls: FindingClass,
        namespace: str,
        key: str,
        platform: str | None,
        message: str,
        value: str | None,
        phase: Phase,
        *,
        expected: str | None = None,
        actual: str | None = None,
        expiration: int | None = None,
        source: str | None = None,
    ) -> None:
        """A finding repair puts right by writing `value` at `key` (what the finding expects, unless it says), the
        value of `source` when it is copied from that key."""
        fix = Fix(Action.PUT, namespace, key, phase, value, expiration=expiration, source=source)
        shown_expected = value if expected is None else expected
        self.add(cls, namespace, key, platform, message, expected=shown_expected, actual=actual, fix=fix)

    # dream's key index

    def index_entries(self, rows: Iterator[sqlite3.Row]) -> None:
        """platform:{plt}:key:{pk} is {env, created, ...}."""
        for row in rows:
            message = "value is not {env, created, ...}"
            self.add(FindingClass.CORRUPT, PLATFORM_TOKENS, row["key"], row["plt"], message, actual=row["value"])

    # platform:{plt}:*

    def platforms(self, rows: Iterator[sqlite3.Row]) -> None:
        for row in rows:
            plt = row["plt"]
            if row["user_id"] is not None and not row["owner_ok"]:
                key = layout.platform_user_id(plt)
                self.add(
                    FindingClass.CORRUPT, PLATFORM_TOKENS, key, plt, "value is not a user id", actual=row["user_id"]
                )
            if row["token"] is not None and not row["token_ok"]:
                key = layout.platform_stripe_token(plt)
                self.add(FindingClass.CORRUPT, PLATFORM_TOKENS, key, plt, "value is not {accessToken, stripeUserId}")
            if row["config_corrupt"]:
                self.add(
                    FindingClass.CORRUPT,
                    API_TOKENS,
                    layout.tier_config(plt),
                    plt,
                    "value is not {tiers: [{name, priceId, productId, ...}]}",
                    actual=row["config"],
                )
            if not row["claimed"]:
                self._unclaimed(plt, row)

    def _unclaimed(self, plt: str, row: sqlite3.Row) -> None:
        """A platform no developer's user:{u}:platformId names: its owner gets the missing half back (or, when
        that owner names another platform, this userId is an orphan); an ownerless tier config is an orphan."""
        if row["owner_ok"]:
            key, user_id = layout.platform_user_id(plt), row["user_id"]
            if row["owner_has_platform"]:
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
                self.put(
                    FindingClass.MISSING,
                    PLATFORM_TOKENS,
                    user_key,
                    plt,
                    f"platform:{plt}:userId names this user",
                    plt,
                    Phase.PLATFORM_TOKENS,
                )
        elif row["config"] is not None:
            key = layout.tier_config(plt)
            self.add(
                FindingClass.ORPHANED,
                API_TOKENS,
                key,
                plt,
                f"no platform:{plt}:userId owns it",
                fix=Fix(Action.DELETE, API_TOKENS, key, Phase.DELETE_OTHER, needs=Need.PRUNE),
            )

    def _need_tier_config(self, plt: str, user_id: str | None, why: str) -> None:
        if plt in self.tier_config_reported:
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

    # The mirrored mappings

    def _corrupt(self, key: str, values: tuple[tuple[str, str | None, int], ...], what: str) -> bool:
        for namespace, value, ok in values:
            if value is not None and not ok:
                self.add(FindingClass.CORRUPT, namespace, key, None, f"value is not {what}", actual=value)
                return True
        return False

    def _revoked(self, key: str, pk: str, plt: str, pt: str | None, api: str | None, phase: Phase) -> None:
        """Mappings of a revoked pair are deleted (completing the revocation), never copied."""
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

    def _expiry(self, key: str, pk: str, plt: str | None, pt: str | None, api: str | None, expires: int) -> None:
        """A pair in its grace: both mappings carry the index's expiration (read back point by point; few)."""
        if expires - self.now < 60:  # KV cannot set an expiration this close: it is about to vanish anyway
            return
        source = pt if pt is not None else api
        for namespace, value in ((PLATFORM_TOKENS, pt), (API_TOKENS, api)):
            phase = (
                Phase.PLATFORM_TOKENS
                if namespace == PLATFORM_TOKENS
                else (Phase.API_SECRET if key.startswith(layout.SECRET_KEY_PREFIX) else Phase.API_PUBLISHABLE)
            )
            if value is None:
                self.put(
                    FindingClass.MISSING,
                    namespace,
                    key,
                    plt,
                    f"the pair of {pk} is in its grace until {expires}",
                    source,
                    phase,
                    expiration=expires,
                )
                continue
            found = self.store.kv(namespace).get_with_metadata(key)
            if found is not None and (found.expiration is None or found.expiration > expires):
                self.put(
                    FindingClass.STALE,
                    namespace,
                    key,
                    plt,
                    f"outlives its pair's grace (until {expires})",
                    value,
                    phase,
                    expected=f"expiration {expires}",
                    actual=f"expiration {found.expiration}",
                    expiration=expires,
                )

    def _mirrored(
        self, key: str, platform: str | None, pt: str | None, api: str | None, put_phase: Phase, delete_phase: Phase
    ) -> bool:
        """A key platform-tokens owns and api-tokens copies: missing or stale copies are rewritten from the
        source, a copy without a source is an orphan. False for an orphan (nothing else to check)."""
        if pt is not None and api is None:
            self.put(
                FindingClass.MISSING,
                API_TOKENS,
                key,
                platform,
                "in platform-tokens but not in api-tokens",
                pt,
                put_phase,
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
            self.put(
                FindingClass.STALE,
                API_TOKENS,
                key,
                platform,
                "api-tokens disagrees with platform-tokens",
                pt,
                put_phase,
                actual=api,
            )
        return True

    def publishable_mappings(self, rows: Iterator[sqlite3.Row]) -> None:
        """publishablekey:{pk}:platformId: in both namespaces, equal, naming a claimed platform with a tier config."""
        for row in rows:
            pk, pt, api = row["pk"], row["m_pt"], row["m_api"]
            key = layout.publishable_key_platform(pk)
            values = ((PLATFORM_TOKENS, pt, row["m_pt_ok"]), (API_TOKENS, api, row["m_api_ok"]))
            if self._corrupt(key, values, "a platform id"):
                continue
            if row["revoked_plt"] is not None:
                self._revoked(key, pk, row["revoked_plt"], pt, api, Phase.DELETE_OTHER)
                continue
            if row["expires"] is not None:
                self._expiry(key, pk, pt or api, pt, api, row["expires"])
                continue
            if pt is not None and not row["owner_ok"] and not row["claimed"]:
                message = f"points at {pt}, which no user or platform:{pt}:userId claims"
                self.add(FindingClass.DANGLING, PLATFORM_TOKENS, key, pt, message)
            if not self._mirrored(key, pt or api, pt, api, Phase.API_PUBLISHABLE, Phase.DELETE_OTHER):
                continue
            if pt is not None and not row["has_config"]:
                owner = row["owner"] if row["owner_ok"] else None
                self._need_tier_config(pt, owner, f"publishable key {pk} points at {pt}")

    def secret_mappings(self, rows: Iterator[sqlite3.Row]) -> None:
        """secretkey:{hash}:publishableKey: in both namespaces, equal, naming a publishable key that resolves."""
        for row in rows:
            if not layout.is_digest(row["digest"]):
                continue  # not a key of the schema (the snapshot leaves this test to the few suspect rows)
            pt, api = row["pt"], row["api"]
            key = layout.secret_key_publishable(row["digest"])
            values = ((PLATFORM_TOKENS, pt, row["pt_ok"]), (API_TOKENS, api, row["api_ok"]))
            if self._corrupt(key, values, "a publishable key"):
                continue
            pk = pt or api
            if row["revoked_plt"] is not None:
                self._revoked(key, pk, row["revoked_plt"], pt, api, Phase.DELETE_SECRET)
                continue
            platform, authenticates = _pair(row)
            if row["expires"] is not None:
                self._expiry(key, pk, platform, pt, api, row["expires"])
                continue
            if pt is not None and platform is None:
                message = f"points at {pt}, which has no publishablekey:{pt}:platformId"
                self.add(FindingClass.DANGLING, PLATFORM_TOKENS, key, None, message)
            if not self._mirrored(key, platform, pt, api, Phase.API_SECRET, Phase.DELETE_SECRET):
                continue
            if not authenticates:
                message = f"points at {pk}, which has no publishablekey:{pk}:platformId in api-tokens"
                self.add(FindingClass.DANGLING, API_TOKENS, key, platform, message)

    # user:{u}:*

    def developers(self, rows: Iterator[sqlite3.Row]) -> None:
        for row in rows:
            user_id = row["u"]
            plt = self._user_platform(user_id, row)
            self._user_token(user_id, plt, row["token"], row["platform_token"] if row["platform_token_ok"] else None)
            self._user_products(user_id, plt, row)
            pk = self._user_publishable_key(user_id, plt, row)
            if row["secret"] is not None:
                self._user_plaintext_secret(user_id, plt, pk, row["secret"])

    def _user_platform(self, user_id: str, row: sqlite3.Row) -> str | None:
        """user:{u}:platformId names a platform whose platform:{plt}:userId names the user back."""
        plt = row["plt"]
        if plt is None:
            return None
        if not row["plt_ok"]:
            key = layout.user_platform_id(user_id)
            self.add(FindingClass.CORRUPT, PLATFORM_TOKENS, key, None, "value is not a platform id", actual=plt)
            return None
        owner = row["owner"] if row["owner_ok"] else None
        if owner != user_id:
            reverse = layout.platform_user_id(plt)
            self.put(
                FindingClass.MISSING if owner is None else FindingClass.STALE,
                PLATFORM_TOKENS,
                reverse,
                plt,
                f"user:{user_id}:platformId points here",
                user_id,
                Phase.PLATFORM_TOKENS,
                actual=owner,
            )
        return plt

    def _user_token(self, user_id: str, plt: str | None, user_token: str | None, platform_token: str | None) -> None:
        """user:{u}:stripeToken equals its platform's platform:{plt}:stripeToken."""
        if plt is None or (user_token is not None and user_token == platform_token):
            return
        user_key, platform_key = layout.user_stripe_token(user_id), layout.platform_stripe_token(plt)
        if user_token is not None and not _token_ok(user_token):
            self.add(FindingClass.CORRUPT, PLATFORM_TOKENS, user_key, plt, "value is not {accessToken, stripeUserId}")
            return
        if user_token is not None and platform_token is None:
            self.put(
                FindingClass.MISSING,
                PLATFORM_TOKENS,
                platform_key,
                plt,
                f"user:{user_id}:stripeToken has it",
                user_token,
                Phase.PLATFORM_TOKENS,
                source=user_key,
            )
        elif user_token is None and platform_token is not None:
            self.put(
                FindingClass.MISSING,
                PLATFORM_TOKENS,
                user_key,
                plt,
                f"platform:{plt}:stripeToken has it",
                platform_token,
                Phase.PLATFORM_TOKENS,
                source=platform_key,
            )
        elif (
            user_token is not None
            and platform_token is not None
            and json.loads(user_token) != json.loads(platform_token)
        ):
            self.put(
                FindingClass.STALE,
                PLATFORM_TOKENS,
                user_key,
                plt,
                f"disagrees with platform:{plt}:stripeToken",
                platform_token,
                Phase.PLATFORM_TOKENS,
                actual=user_token,
                source=platform_key,
            )

    def _user_products(self, user_id: str, plt: str | None, row: sqlite3.Row) -> None:
        """user:{u}:products agrees with the tiers (price and product ids) of the platform's tier config."""
        raw = row["products"]
        if raw is None:
            return
        if row["products_corrupt"]:
            key = layout.user_products(user_id)
            message = "value is not [{tier, priceId, productId}]"
            self.add(FindingClass.CORRUPT, PLATFORM_TOKENS, key, plt, message, actual=raw)
            return
        if plt is None:
            return
        products = _triples(json.loads(raw), "tier") or []
        if not row["has_config"]:
            self._need_tier_config(plt, user_id, f"user:{user_id}:products lists {len(products)} tiers")
        elif not row["config_corrupt"] and not row["tiers_agree"]:
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
        if self.stripe_check is not None and row["platform_token_ok"]:
            self.findings += self.stripe_check(plt, user_id)

    def _user_publishable_key(self, user_id: str, plt: str | None, row: sqlite3.Row) -> str | None:
        """user:{u}:publishableKey names a live pair of this user's platform (after a revoke, the newest)."""
        pk = row["pk"]
        if pk is None or plt is None:
            return pk
        if row["revoked_plt"] is not None:
            key = layout.user_publishable_key(user_id)
            newest = self.snap.one(NEWEST_LIVE, (plt, self.now))
            successor = None if newest is None else newest["pk"]
            fix = (
                Fix(Action.PUT, PLATFORM_TOKENS, key, Phase.PLATFORM_TOKENS, successor)
                if successor
                else Fix(Action.DELETE, PLATFORM_TOKENS, key, Phase.DELETE_OTHER)
            )
            message = f"names {pk}, whose pair is revoked"
            self.add(FindingClass.STALE, PLATFORM_TOKENS, key, plt, message, expected=successor, actual=pk, fix=fix)
            return None
        target, authenticates = _pair(row)
        if target is None:
            entry = layout.publishable_key_platform(pk)
            self.put(
                FindingClass.MISSING,
                PLATFORM_TOKENS,
                entry,
                plt,
                f"user:{user_id}:publishableKey names it",
                plt,
                Phase.PLATFORM_TOKENS,
            )
            if not authenticates:
                self.put(
                    FindingClass.MISSING,
                    API_TOKENS,
                    entry,
                    plt,
                    f"user:{user_id}:publishableKey names it",
                    plt,
                    Phase.API_PUBLISHABLE,
                )
                self._need_tier_config(plt, user_id, f"user:{user_id}:publishableKey is {pk}")
        elif target != plt:
            key = layout.user_publishable_key(user_id)
            message = f"{pk} belongs to {target}, not to this user's {plt}"
            self.add(FindingClass.DANGLING, PLATFORM_TOKENS, key, plt, message, actual=pk)
        return pk

    def _user_plaintext_secret(self, user_id: str, plt: str | None, pk: str | None, plaintext: str) -> None:
        """The guide's plaintext user:{u}:secretKey: insecure, and the source of its own missing hash mappings."""
        key = layout.user_secret_key(user_id)
        self.add(
            FindingClass.INSECURE,
            PLATFORM_TOKENS,
            key,
            plt,
            "plaintext secret key (the guide's one-time show is not)",
            fix=Fix(Action.DELETE, PLATFORM_TOKENS, key, Phase.PLAINTEXT, needs=Need.REMOVE_PLAINTEXT_SECRETS),
        )
        if pk is None:
            return
        # Through the verifier Worker the plaintext never arrives, its SHA-256 does: the very hash wanted here.
        digest = (layout.unsealed_digest(plaintext) if self.store.sealed else None) or hash_secret(plaintext)
        found = self.snap.one(SECRET_KNOWN, (digest,))
        known = (
            found is not None
            and bool(found["pt_ok"] and found["api_ok"])
            and found["revoked_plt"] is None
            and (found["pt"] is not None or found["expires"] is not None)
        )
        if known:
            return
        entry = layout.secret_key_publishable(digest)
        for namespace, phase in ((PLATFORM_TOKENS, Phase.PLATFORM_TOKENS), (API_TOKENS, Phase.API_SECRET)):
            self.put(
                FindingClass.MISSING,
                namespace,
                entry,
                plt,
                f"the hash of user:{user_id}:secretKey",
                pk,
                phase,
            )


def verify(
    store: Store,
    *,
    on_progress: Callable[[int], None] | None = None,
    stripe_check: StripeCheck | None = None,
    now: float | None = None,
    usage: bool | None = None,
    on_tick: Callable[[], None] | None = None,
) -> VerifyResult:
    """Every finding in the token namespaces, in key order; first, on wrangler's local state, the keys stranded in
    a writer's own copy (`copies.stranded`): repair copies those before anything is derived from them. With `usage`
    (default: where api-usage is local, not read through Cloudflare's paced REST API), also
    the counts api-multi reads in api-usage (`usage_check`)."""
    now = time.time() if now is None else now
    # Shared: other verifies read at once; a change of several keys (a rotation, a repair) is read whole or not.
    with store.locked(shared=True):
        stranded, copied_keys = copies.stranded(store)
        with snapshot(store, int(now), on_progress, after_b=(PUBLISHABLE_SUSPECTS,), on_tick=on_tick) as snap:
            checker = _Checker(store, snap, stripe_check, now)
            checker.run()
            keys = snap.keys
    # By default where the namespace is local (it can count its keys without reading them), not through a paced API.
    check_usage = store.kv(API_USAGE).count() is not None if usage is None else usage
    if check_usage:
        from dreamcli.platform.replication.usage_check import usage_findings

        corrupt, usage_keys = usage_findings(store, on_tick)
        checker.findings += corrupt
        keys += usage_keys
    checker.findings.sort(key=lambda f: (f.key, f.namespace))
    return VerifyResult(stranded + checker.findings, keys + copied_keys)
