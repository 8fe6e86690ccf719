"""The onboarding phases over the store and vendor ports: the KV keys each phase writes, as the guide lists them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from dreamcli import layout
from dreamcli.errors import NotFound
from dreamcli.platform import developers, onboarding
from dreamcli.platform.runtime import InvalidApiKey, authenticate
from dreamcli.platform.secrets import hash_secret
from dreamcli.platform.tiers import parse_tiers
from dreamcli.stores.ports import iter_keys
from dreamcli.vendors.errors import OAuthGrantError, VendorError

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "tiers"
PLT = re.compile(r"^plt_[0-9a-f]{32}$")
PK = re.compile(r"^pk_live_[0-9a-f]{32}$")
SK = re.compile(r"^sk_live_[0-9a-f]{64}$")
USER = re.compile(r"^user_\w+$")


def snapshot(store):
    """{(namespace, key): value} of everything in the four namespaces."""
    found = {}
    for name in ("platform-tokens", "platform-usage", "api-tokens", "api-usage"):
        ns = store.kv(name)
        for entry in iter_keys(ns):
            found[(name, entry.name)] = ns.get(entry.name).decode()
    return found


def test_each_phase_writes_exactly_the_guides_keys(platform):
    """Table-driven: phase -> the keys it adds (namespace, key) and the shape of each value."""
    store, vendors = platform.store, platform.vendors
    before = snapshot(store)
    signed = onboarding.signup(store, vendors, email="dev@example.com")
    u, plt = signed.user_id, signed.platform_id
    after_signup = snapshot(store)
    assert set(after_signup) - set(before) == {
        ("platform-tokens", f"user:{u}:platformId"),
        ("platform-tokens", f"platform:{plt}:userId"),
    }
    assert PLT.match(after_signup[("platform-tokens", f"user:{u}:platformId")])
    assert after_signup[("platform-tokens", f"platform:{plt}:userId")] == u and USER.match(u)

    onboarding.pay_in_emulator(vendors, onboarding.start_payment(store, vendors, u))
    assert snapshot(store) == after_signup  # payment lives in Clerk, not KV
    assert vendors.clerk["dream-api"].get_user(u)["public_metadata"]["plan"] == "paid"

    url, state = onboarding.connect_start(store, vendors, u)
    assert set(snapshot(store)) - set(after_signup) == {("platform-tokens", f"oauth:state:{state}")}
    answer = onboarding.consent_in_emulator(vendors, url)
    onboarding.connect_callback(store, vendors, code=answer["code"], state=answer["state"])
    after_connect = snapshot(store)
    assert set(after_connect) - set(after_signup) == {
        ("platform-tokens", f"user:{u}:stripeToken"),
        ("platform-tokens", f"platform:{plt}:stripeToken"),
    }  # the state was consumed
    token = json.loads(after_connect[("platform-tokens", f"user:{u}:stripeToken")])
    assert set(token) == {"accessToken", "stripeUserId"} and token["stripeUserId"].startswith("acct_")
    assert (
        after_connect[("platform-tokens", f"platform:{plt}:stripeToken")]
        == after_connect[("platform-tokens", f"user:{u}:stripeToken")]
    )

    result = onboarding.configure_tiers(store, vendors, u, parse_tiers(FIXTURES / "guide.toml"))
    pk, sk = result.publishable_key, result.secret_key
    assert PK.match(pk) and SK.match(sk)
    digest = hash_secret(sk)
    after_tiers = snapshot(store)
    assert set(after_tiers) - set(after_connect) == {
        # (e) front-auth-api TOKENS_KV, without the plaintext secret
        ("platform-tokens", f"user:{u}:publishableKey"),
        ("platform-tokens", f"user:{u}:products"),
        ("platform-tokens", f"publishablekey:{pk}:platformId"),
        ("platform-tokens", f"secretkey:{digest}:publishableKey"),
        # dream's extension: the platform's key index (dream keys list)
        ("platform-tokens", f"platform:{plt}:key:{pk}"),
        # (f) api-multi TOKENS_KV
        ("api-tokens", f"platform:{plt}:tierConfig"),
        ("api-tokens", f"publishablekey:{pk}:platformId"),
        ("api-tokens", f"secretkey:{digest}:publishableKey"),
    }
    assert all(sk not in value for value in after_tiers.values())  # the secret is stored only as its hash
    products = json.loads(after_tiers[("platform-tokens", f"user:{u}:products")])
    assert [set(p) for p in products] == [{"tier", "priceId", "productId"}] * 3
    config = json.loads(after_tiers[("api-tokens", f"platform:{plt}:tierConfig")])
    assert [(t["name"], t["limit"], t["price"]) for t in config["tiers"]] == [
        ("free", 100, 0),
        ("pro", 10000, 29),
        ("enterprise", None, 99),
    ]
    assert {p["priceId"] for p in products} == {t["priceId"] for t in config["tiers"]}
    for ns in ("platform-tokens", "api-tokens"):
        assert after_tiers[(ns, f"publishablekey:{pk}:platformId")] == plt
        assert after_tiers[(ns, f"secretkey:{digest}:publishableKey")] == pk
    # (g) Clerk metadata, and Stripe's product/price metadata on the connected account
    assert vendors.clerk["dream-api"].get_user(u)["public_metadata"] == {"plan": "paid", "publishableKey": pk}
    account = token["stripeUserId"]
    pro = next(p for p in products if p["tier"] == "pro")
    expected = {"platformId": plt, "tierName": "pro", "limit": "10000"}
    assert vendors.stripe.retrieve_product(account, pro["productId"]).metadata.to_dict() == expected
    price = vendors.stripe.retrieve_price(account, pro["priceId"])
    assert price.metadata.to_dict() == expected and (price.unit_amount, price.recurring.interval) == (2900, "month")
    assert authenticate(store, sk).platform_id == plt
    index = json.loads(after_tiers[("platform-tokens", f"platform:{plt}:key:{pk}")])
    assert index["env"] == "production" and index["secretHash"] == digest and index["secretStart"] == sk[:12] + "..."
    every_key_known = [layout.parse(key, ns) for ns, key in after_tiers]
    assert all(parsed.known for parsed in every_key_known)


def test_signup_is_idempotent(platform):
    first = onboarding.signup(platform.store, platform.vendors, email="a@example.com")
    again = onboarding.signup(platform.store, platform.vendors, email="a@example.com")
    by_id = onboarding.signup(platform.store, platform.vendors, user_id=first.user_id)
    assert first.platform_id == again.platform_id == by_id.platform_id and not again.new_platform and again.writes == []


def test_steps_out_of_order_are_refused(platform):
    store, vendors = platform.store, platform.vendors
    with pytest.raises(developers.UnknownDeveloper, match="run `dream flow signup` first"):
        onboarding.start_payment(store, vendors, "user_nobody")
    signed = onboarding.signup(store, vendors, email="b@example.com")
    with pytest.raises(onboarding.OutOfOrder, match="is on plan 'free': pay first"):
        onboarding.connect_start(store, vendors, signed.user_id)
    with pytest.raises(onboarding.OutOfOrder, match="has not connected Stripe"):
        onboarding.configure_tiers(store, vendors, signed.user_id, parse_tiers(FIXTURES / "guide.toml"))
    with pytest.raises(onboarding.OutOfOrder, match="run `dream flow tiers` first"):
        onboarding.credentials(store, signed.user_id)
    with pytest.raises(NotFound):
        onboarding.signup(store, vendors, user_id="user_not_in_clerk")


def test_oauth_state_is_single_use_and_expires(platform, clock):
    store, vendors = platform.store, platform.vendors
    signed = onboarding.signup(store, vendors, email="c@example.com")
    onboarding.pay_in_emulator(vendors, onboarding.start_payment(store, vendors, signed.user_id))
    with pytest.raises(onboarding.OAuthStateError, match="unknown, used already or expired"):
        onboarding.connect_callback(store, vendors, code="ac_x", state="forged")
    with pytest.raises(onboarding.OAuthStateError, match="without a state"):
        onboarding.connect_callback(store, vendors, code="ac_x", state=None)
    url, _ = onboarding.connect_start(store, vendors, signed.user_id)
    answer = onboarding.consent_in_emulator(vendors, url)
    onboarding.connect_callback(store, vendors, code=answer["code"], state=answer["state"])
    with pytest.raises(onboarding.OAuthStateError, match="unknown, used already or expired"):
        onboarding.connect_callback(store, vendors, code=answer["code"], state=answer["state"])
    url, _ = onboarding.connect_start(store, vendors, signed.user_id)
    answer = onboarding.consent_in_emulator(vendors, url)
    clock.advance(600)
    with pytest.raises(onboarding.OAuthStateError):
        onboarding.connect_callback(store, vendors, code=answer["code"], state=answer["state"])


def test_consent_denied_and_bad_code(platform):
    store, vendors = platform.store, platform.vendors
    signed = onboarding.signup(store, vendors, email="d@example.com")
    onboarding.pay_in_emulator(vendors, onboarding.start_payment(store, vendors, signed.user_id))
    url, _ = onboarding.connect_start(store, vendors, signed.user_id)
    answer = onboarding.consent_in_emulator(vendors, url, deny=True)
    with pytest.raises(onboarding.FlowFailed, match="Stripe Connect refused: access_denied"):
        onboarding.connect_callback(store, vendors, code=None, state=answer["state"], error=answer["error"])
    url, state = onboarding.connect_start(store, vendors, signed.user_id)
    with pytest.raises(OAuthGrantError, match="Authorization code does not exist"):
        onboarding.connect_callback(store, vendors, code="ac_forged", state=state)
    assert store.kv("platform-tokens").get(f"user:{signed.user_id}:stripeToken") is None


def test_rerun_with_a_changed_file_updates_and_keeps_keys(platform, connected):
    store, vendors = platform.store, platform.vendors
    signed = connected()
    first = onboarding.configure_tiers(store, vendors, signed.user_id, parse_tiers(FIXTURES / "guide.toml"))
    second = onboarding.configure_tiers(store, vendors, signed.user_id, parse_tiers(FIXTURES / "pro-raise.toml"))
    assert second.secret_key is None and second.publishable_key == first.publishable_key
    before = {p["tier"]: p for p in first.products}
    after = {p["tier"]: p for p in second.products}
    assert (
        after["pro"]["productId"] == before["pro"]["productId"] and after["pro"]["priceId"] != before["pro"]["priceId"]
    )
    assert after["free"] == before["free"] and after["enterprise"] == before["enterprise"]
    caller = authenticate(store, first.secret_key)  # the old secret still works, with the new config
    assert caller.tier("pro")["limit"] == 20000 and caller.tier("pro")["priceId"] == after["pro"]["priceId"]
    account = json.loads(store.kv("platform-tokens").get(f"user:{signed.user_id}:stripeToken"))["stripeUserId"]
    assert vendors.stripe.retrieve_price(account, before["pro"]["priceId"]).active is False
    assert vendors.stripe.retrieve_product(account, after["pro"]["productId"]).metadata["limit"] == "20000"


def test_removed_tier_with_customers_needs_force(platform, tmp_path, connected):
    store, vendors = platform.store, platform.vendors
    signed = connected()
    onboarding.configure_tiers(store, vendors, signed.user_id, parse_tiers(FIXTURES / "guide.toml"))
    from dreamcli.stores.d1_migrations import apply_migrations, default_migrations_dir

    apply_migrations(store.database, default_migrations_dir())
    store.database.execute(
        "INSERT INTO customers (id, platform_id, publishable_key, plan) VALUES ('c1', ?, 'pk', 'enterprise')",
        [signed.platform_id],
    )
    two = tmp_path / "two.toml"
    two.write_text(
        '[[tiers]]\nname = "free"\nprice = 0\nlimit = 100\n\n[[tiers]]\nname = "pro"\nprice = 29\nlimit = 10000\n'
    )
    with pytest.raises(onboarding.TierInUse, match="tier 'enterprise' is removed but 1 customer"):
        onboarding.configure_tiers(store, vendors, signed.user_id, parse_tiers(two))
    result = onboarding.configure_tiers(store, vendors, signed.user_id, parse_tiers(two), force=True)
    assert result.archived == ["enterprise"] and [p["tier"] for p in result.products] == ["free", "pro"]


def test_a_locked_d1_is_an_unknown_count_never_zero_customers(platform, tmp_path, connected):
    """A tier in use must not be retired because a long statement held D1 when it was counted."""
    import sqlite3

    store, vendors = platform.store, platform.vendors
    signed = connected()
    onboarding.configure_tiers(store, vendors, signed.user_id, parse_tiers(FIXTURES / "guide.toml"))
    two = tmp_path / "two.toml"
    two.write_text('[[tiers]]\nname = "free"\nprice = 0\nlimit = 100\n')
    store.database.file.conn.execute("PRAGMA busy_timeout = 50")  # wait 50 ms for the lock, not 5 s
    holder = sqlite3.connect(store.database.file.path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        assert onboarding.customers_on_tier(store, signed.platform_id, "pro") is None
        planned = onboarding.plan_tiers(store, vendors, signed.user_id, parse_tiers(two))
        assert {step["tier"]: step.get("customers", "-") for step in planned if step["action"] == "retire"} == {
            "pro": None,
            "enterprise": None,
        }
        with pytest.raises(onboarding.TierInUse, match="D1 cannot say now whether customers are on it"):
            onboarding.configure_tiers(store, vendors, signed.user_id, parse_tiers(two))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert onboarding.customers_on_tier(store, signed.platform_id, "pro") == 0  # D1 without its tables yet: 0


def test_stripe_error_from_the_connected_account(platform, connected):
    store, vendors = platform.store, platform.vendors
    signed = connected()
    token = json.loads(store.kv("platform-tokens").get(f"platform:{signed.platform_id}:stripeToken"))
    vendors.stripe.deauthorize(token["stripeUserId"])
    # The emulator keeps the account reachable through Stripe-Account; a forged account id is what fails.
    store.kv("platform-tokens").put(
        f"platform:{signed.platform_id}:stripeToken", json.dumps({"accessToken": "x", "stripeUserId": "acct_gone"})
    )
    with pytest.raises(VendorError, match="does not have access to account 'acct_gone'"):
        onboarding.configure_tiers(store, vendors, signed.user_id, parse_tiers(FIXTURES / "guide.toml"))
    assert store.kv("api-tokens").list(limit=10).keys == []  # nothing written before Stripe succeeded


class Crash(Exception):
    pass


def test_a_crash_after_any_write_leaves_no_secret_without_its_tier_config(platform, connected):
    """Inject a failure after each KV write of phase 4; then every secret in api-tokens authenticates fully."""
    store, vendors = platform.store, platform.vendors
    tiers = parse_tiers(FIXTURES / "guide.toml")
    probe = connected("probe@example.com")
    total = len(onboarding.configure_tiers(store, vendors, probe.user_id, tiers).writes)
    assert total == 8
    for crash_after in range(1, total + 1):
        signed = connected(f"crash{crash_after}@example.com")
        count = 0

        def after_write(namespace, key, crash_after=crash_after):
            nonlocal count
            count += 1
            if count == crash_after:
                raise Crash(f"{namespace}: {key}")

        with pytest.raises(Crash):
            onboarding.configure_tiers(store, vendors, signed.user_id, tiers, after_write=after_write)
        api = store.kv("api-tokens")
        for entry in iter_keys(api, prefix="secretkey:"):
            pk = api.get(entry.name).decode()
            plt = api.get(f"publishablekey:{pk}:platformId")
            assert plt is not None, f"crash after write {crash_after}: {entry.name} leads nowhere"
            assert api.get(f"platform:{plt.decode()}:tierConfig") is not None
    # and a crashed developer recovers by re-running (keys made before the crash are kept)
    result = onboarding.configure_tiers(store, vendors, signed.user_id, tiers)
    assert result.publishable_key == store.kv("platform-tokens").get(f"user:{signed.user_id}:publishableKey").decode()


def test_skip_api_replication_reproduces_the_guides_bug(platform, connected):
    store, vendors = platform.store, platform.vendors
    signed = connected()
    result = onboarding.configure_tiers(
        store, vendors, signed.user_id, parse_tiers(FIXTURES / "guide.toml"), skip_api_replication=True
    )
    with pytest.raises(InvalidApiKey) as caught:
        authenticate(store, result.secret_key)
    assert caught.value.body() == {"error": "Invalid API key", "message": "API key not found or expired"}
    assert caught.value.missing == f"api-tokens has no secretkey:{hash_secret(result.secret_key)}:publishableKey"
    assert store.kv("platform-tokens").get(f"secretkey:{hash_secret(result.secret_key)}:publishableKey") is not None


def test_status_shows_each_developers_phase(platform, connected):
    store, vendors = platform.store, platform.vendors
    fresh = onboarding.signup(store, vendors, email="fresh@example.com")
    done = connected("done@example.com")
    onboarding.configure_tiers(store, vendors, done.user_id, parse_tiers(FIXTURES / "guide.toml"))
    rows = {row["userId"]: row for row in onboarding.status(store, vendors)}
    assert rows[fresh.user_id]["next"] == "paid" and rows[fresh.user_id]["phases"]["signup"] is True
    assert rows[done.user_id]["next"] is None and all(rows[done.user_id]["phases"].values())


def test_only_a_paid_checkout_makes_a_developer_paid(platform):
    """A checkout completed without payment (a card saved in setup mode) names the developer but pays nothing."""
    store, vendors, emulator = platform.store, platform.vendors, platform.emulator
    signed = onboarding.signup(store, vendors, email="setup@example.com")
    account = emulator.stripe.config()["account"]
    session = emulator.stripe.create_checkout_session(
        account,
        {"mode": "setup", "currency": "usd", "success_url": "http://x/ok", "client_reference_id": signed.user_id},
        "http://x",
    )
    emulator.stripe.complete_checkout_session(account, session["id"])
    assert vendors.clerk["dream-api"].get_user(signed.user_id)["public_metadata"].get("plan") != "paid"
    onboarding.pay_in_emulator(vendors, onboarding.start_payment(store, vendors, signed.user_id))
    assert vendors.clerk["dream-api"].get_user(signed.user_id)["public_metadata"]["plan"] == "paid"
