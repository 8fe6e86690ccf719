"""The key schema: builders and the one parser agree, and no key makes the parser crash."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dreamcli import layout
from dreamcli.layout import KeyKind

HASH = hashlib.sha256(b"sk_live_x").hexdigest()

GUIDE_KEYS = [
    ("user:user_1:platformId", KeyKind.USER_PLATFORM_ID, {"userId": "user_1"}, "platform-tokens"),
    ("platform:plt_1:userId", KeyKind.PLATFORM_USER_ID, {"platformId": "plt_1"}, "platform-tokens"),
    ("user:user_1:stripeToken", KeyKind.USER_STRIPE_TOKEN, {"userId": "user_1"}, "platform-tokens"),
    ("platform:plt_1:stripeToken", KeyKind.PLATFORM_STRIPE_TOKEN, {"platformId": "plt_1"}, "platform-tokens"),
    ("user:user_1:publishableKey", KeyKind.USER_PUBLISHABLE_KEY, {"userId": "user_1"}, "platform-tokens"),
    ("user:user_1:secretKey", KeyKind.USER_SECRET_KEY, {"userId": "user_1"}, "platform-tokens"),
    ("user:user_1:products", KeyKind.USER_PRODUCTS, {"userId": "user_1"}, "platform-tokens"),
    (
        "publishablekey:pk_live_a:platformId",
        KeyKind.PUBLISHABLE_KEY_PLATFORM,
        {"publishableKey": "pk_live_a"},
        "api-tokens",
    ),
    (f"secretkey:{HASH}:publishableKey", KeyKind.SECRET_KEY_PUBLISHABLE, {"hash": HASH}, "api-tokens"),
    ("platform:plt_1:tierConfig", KeyKind.TIER_CONFIG, {"platformId": "plt_1"}, "api-tokens"),
    ("oauth:state:abc", KeyKind.OAUTH_STATE, {"state": "abc"}, "platform-tokens"),
    ("usage:user_1", KeyKind.DEVELOPER_USAGE, {"userId": "user_1"}, "platform-usage"),
    ("usage:pk_live_a:user_9", KeyKind.END_USER_USAGE, {"owner": "pk_live_a", "userId": "user_9"}, "api-usage"),
    ("ratelimit:user_9:29000000", KeyKind.RATE_LIMIT, {"userId": "user_9", "minute": "29000000"}, "api-usage"),
]


@pytest.mark.parametrize(("key", "kind", "fields", "namespace"), GUIDE_KEYS)
def test_every_guide_key_parses_and_rebuilds(key, kind, fields, namespace):
    parsed = layout.parse(key, namespace)
    assert (parsed.kind, parsed.fields) == (kind, fields)
    assert parsed.belongs_in(namespace)
    assert layout.build(kind, **fields) == key


def test_builders_spell_the_guide_keys():
    assert layout.user_platform_id("u") == "user:u:platformId"
    assert layout.secret_key_publishable(HASH) == f"secretkey:{HASH}:publishableKey"
    assert layout.end_user_usage("pk", "u") == "usage:pk:u"
    assert layout.rate_limit("u", 7) == "ratelimit:u:7"
    assert layout.oauth_state("s") == "oauth:state:s"


@pytest.mark.parametrize(
    "key",
    [
        "",
        "user:",
        "user::platformId",
        "user:a:b:platformId",
        "secretkey:nothex:publishableKey",
        "ratelimit:u:soon",
        "x",
    ],
)
def test_unknown_keys_are_unknown(key):
    parsed = layout.parse(key)
    assert parsed.kind is KeyKind.UNKNOWN and not parsed.known


def test_builders_refuse_fields_that_would_break_the_schema():
    with pytest.raises(ValueError, match="cannot be part of"):
        layout.user_platform_id("a:b")
    with pytest.raises(ValueError, match="cannot be part of"):
        layout.secret_key_publishable("not-a-hash")


def test_usage_keys_are_told_apart_by_shape_and_namespace():
    assert layout.parse("usage:u1", "platform-usage").kind is KeyKind.DEVELOPER_USAGE
    assert layout.parse("usage:pk:u1").kind is KeyKind.END_USER_USAGE
    assert not layout.parse("usage:u1").belongs_in("api-usage")


def test_related_keys_follow_values():
    assert layout.related_keys(KeyKind.SECRET_KEY_PUBLISHABLE, "pk_1") == [
        ("platform-tokens", "publishablekey:pk_1:platformId"),
        ("api-tokens", "publishablekey:pk_1:platformId"),
    ]
    assert layout.related_keys(KeyKind.USER_SECRET_KEY, "sk") == []


@given(st.text(max_size=80))
def test_parse_never_crashes(key):
    parsed = layout.parse(key)
    if parsed.known:
        assert layout.build(parsed.kind, **parsed.fields) == key


@given(
    st.sampled_from(layout.SPECS), st.text(alphabet=st.characters(blacklist_characters=":"), min_size=1, max_size=20)
)
def test_build_then_parse_round_trips(spec, text):
    values = {name: (HASH if name == "hash" else "42" if name == "minute" else text) for name in spec.fields}
    key = spec.build(**values)
    parsed = layout.parse(key, spec.namespaces[0])
    assert parsed.fields == values


def test_prefix_stops_at_the_first_unknown_field_and_ends_with_its_colon():
    from dreamcli.layout import KeyKind, prefix

    assert prefix(KeyKind.END_USER_USAGE, owner="plt_1") == "usage:plt_1:"
    assert prefix(KeyKind.PLATFORM_KEY_INDEX, platformId="plt_1") == "platform:plt_1:key:"
    assert prefix(KeyKind.TIER_CONFIG) == "platform:"
    with pytest.raises(ValueError, match="cannot be part"):
        prefix(KeyKind.END_USER_USAGE, owner="a:b")
    with pytest.raises(ValueError, match="that is a key"):
        prefix(KeyKind.TIER_CONFIG, platformId="plt_1")
