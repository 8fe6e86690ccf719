"""Who is who: a developer (a user of Clerk's dream-api app) by e-mail or id, the developer's platform, and a
platform's owner. The one place these lookups are made, with one error for each way they fail."""

from __future__ import annotations

from dreamcli import layout
from dreamcli.errors import NotFound
from dreamcli.stores.ports import Store
from dreamcli.topology import PLATFORM_TOKENS
from dreamcli.vendors.settings import DREAM_API, Vendors


class UnknownDeveloper(NotFound):
    """No developer with that e-mail, or a developer without a platform id in the store."""


class UnknownPlatform(NotFound):
    """A platform id with no owner in the store (no platform:{plt}:userId)."""


def user_id_of(vendors: Vendors, user: str) -> str:
    """A developer's Clerk user id, given the id itself or their e-mail."""
    if "@" not in user:
        return user
    found = vendors.clerk[DREAM_API].list_users(email=user, limit=1)
    if not found:
        raise UnknownDeveloper(f"no developer with email {user}: run `dream flow signup --email {user}`")
    return str(found[0]["id"])


def platform_of(store: Store, user_id: str) -> str:
    """The developer's platform id (`user:{u}:platformId`)."""
    raw = store.kv(PLATFORM_TOKENS).get(layout.user_platform_id(user_id))
    if raw is None:
        raise UnknownDeveloper(f"developer {user_id} has no platform id: run `dream flow signup` first")
    return raw.decode("utf-8", errors="replace")


def owner_of(store: Store, platform_id: str) -> str:
    """The developer who owns the platform (`platform:{plt}:userId`)."""
    raw = store.kv(PLATFORM_TOKENS).get(layout.platform_user_id(platform_id))
    if raw is None:
        raise UnknownPlatform(f"platform {platform_id} is unknown (no platform:{platform_id}:userId)")
    return raw.decode("utf-8", errors="replace")


def require_platform(store: Store, platform_id: str) -> str:
    """`platform_id` if any key of either token namespace belongs to it (a half-broken platform still counts, so
    verify can say what is wrong with it); NotFound otherwise: a typo is never answered as an empty, clean platform."""
    from dreamcli.topology import API_TOKENS

    if layout.is_valid_id(platform_id):
        for namespace in (PLATFORM_TOKENS, API_TOKENS):
            if store.kv(namespace).list(prefix=layout.platform_keys_prefix(platform_id), limit=10).keys:
                return platform_id
    raise NotFound(f"no platform {platform_id} in {store.kind} store {store.location}")
