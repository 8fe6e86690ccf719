"""The JSON and id checks verify leaves to SQLite agree with the same checks in Python, on hostile values."""

from __future__ import annotations

import json
import re
import sqlite3

from hypothesis import given, settings
from hypothesis import strategies as st

from dreamcli.platform.replication.checker import _triples
from dreamcli.platform.replication.snapshot import (
    _USERS_MAY_BE_MISSING,
    BUILD_A,
    _fast_tiers,
    tiers,
    valid_platform_id,
    valid_publishable_key,
    valid_user_id,
)

DB = sqlite3.connect(":memory:")
text = st.text(alphabet=st.sampled_from('ab,"\\:{}[] \t\n\u00e9'), max_size=6)
scalar = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), text)
field = st.one_of(scalar, st.lists(scalar, max_size=2), st.dictionaries(text, scalar, max_size=2))
tier = st.one_of(
    field,
    st.fixed_dictionaries({"name": field, "priceId": field, "productId": field}, optional={"limit": field}),
    st.fixed_dictionaries({"name": text, "priceId": text, "productId": text}),
)
config = st.one_of(st.lists(tier, max_size=10).map(lambda ts: {"tiers": ts}), field)


def sql(expression: str, value: str) -> object:
    return DB.execute(f"SELECT {expression}", (value,)).fetchone()[0]


@settings(max_examples=400, deadline=None)
@given(config)
def test_tier_triples_in_sql_agree_with_python(value):
    raw = json.dumps(value)
    python = _triples(value.get("tiers") if isinstance(value, dict) else None, "name")
    canonical = sql(tiers("?1", "$.tiers", "name"), raw)
    fast = sql(_fast_tiers("?1", "$.tiers", "name"), raw)
    assert (canonical is None) == (python is None), raw
    if fast is not None:  # the fast form is only ever given for valid tiers, and says them in order
        assert python is not None, raw
        values = json.loads(fast) if fast else []
        ordered = [tuple(values[i : i + 3]) for i in range(0, len(values), 3) if values[i] is not None]
        assert sorted((n, p, q) for p, q, n in ordered) == python, raw


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=12) | st.from_regex(r"(plt|pk)_[A-Za-z0-9_]{0,6}", fullmatch=True))
def test_id_shapes_in_sql_agree_with_python(value):
    assert bool(sql(valid_platform_id("?1"), value)) == bool(re.fullmatch(r"plt_[A-Za-z0-9]+", value))
    assert bool(sql(valid_publishable_key("?1"), value)) == bool(re.fullmatch(r"pk_[A-Za-z0-9_]+", value))
    expected_id = value != "" and not re.search(r"[:\x20\t\n\x0b\x0c\r\x00]", value)
    assert bool(sql(valid_user_id("?1"), value)) == expected_id


user_id = st.sampled_from(["u1", "u2", "u3", "a:b", ""])
user_field = st.sampled_from(["platformId", "products", "publishableKey", "secretKey", "stripeToken", "email", ""])


@settings(max_examples=300, deadline=None)
@given(st.sets(st.tuples(user_id, user_field), max_size=12), st.sets(st.sampled_from(["user:", "user:u1", "users"])))
def test_the_count_that_skips_the_second_pass_over_developers_never_skips_one(keys, odd):
    """The developers without a platformId found with the count's shortcut are those found without it."""
    built = []
    for gated in (True, False):
        db = sqlite3.connect(":memory:")
        db.execute("CREATE TABLE pt (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID")
        rows = [(f"user:{u}:{f}", b"plt_x" if f == "platformId" else b"[]") for u, f in keys]
        db.executemany("INSERT INTO pt VALUES (?, ?)", rows + [(key, b"v") for key in odd])
        create, first, second = BUILD_A[:3]
        assert _USERS_MAY_BE_MISSING in second
        for statement in (create, first, second if gated else second.replace(_USERS_MAY_BE_MISSING, "1")):
            db.execute(statement)
        built.append(db.execute("SELECT * FROM usr ORDER BY u").fetchall())
    assert built[0] == built[1]
