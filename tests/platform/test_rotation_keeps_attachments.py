"""Across a rotation: customers, their end-user tokens and their usage counts keep working (issue 6, item 5)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dreamcli.platform import keys, onboarding
from dreamcli.platform.runtime import InvalidToken, authenticate, authenticate_end_user, record_usage
from dreamcli.platform.tiers import parse_tiers

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "tiers"


def test_rotation_keeps_customers_tokens_and_usage(platform, connected, clock):
    store, vendors = platform.store, platform.vendors
    signed = connected()
    tiers = onboarding.configure_tiers(
        store, vendors, signed.user_id, parse_tiers(FIXTURES / "guide.toml"), store_now=clock
    )
    old_pk, old_secret = tiers.publishable_key, tiers.secret_key

    # a customer of the developer, created under the old publishable key (as api-multi /customers does)
    customer = vendors.clerk["end-user-api"].create_user(
        "c@example.com", public_metadata={"publishableKey": old_pk, "plan": "free"}
    )
    mint = lambda: platform.emulator.clerk.mint_token("end-user-api", customer["id"], expires_in=86_400)  # noqa: E731
    token = mint()
    verifier = vendors.verifiers["end-user-api"]
    end_user = authenticate_end_user(store, verifier, token)
    assert end_user.caller.platform_id == signed.platform_id and end_user.user_id == customer["id"]
    for _ in range(3):
        record_usage(store, end_user.caller, customer["id"], "free", now=clock())

    rotated = keys.rotate_key(store, signed.platform_id, env="production", grace_seconds=3600, now=clock())
    new_caller = authenticate(store, rotated.new.pair.secret_key)
    assert new_caller.platform_id == signed.platform_id and new_caller.publishable_key != old_pk
    # during the grace: the old token and the old secret still work, and usage continues, not reset
    assert authenticate_end_user(store, verifier, token).caller.platform_id == signed.platform_id
    assert authenticate(store, old_secret).platform_id == signed.platform_id
    assert record_usage(store, new_caller, customer["id"], "free", now=clock())["usageCount"] == 4
    assert record_usage(store, authenticate(store, old_secret), customer["id"], "free", now=clock())["usageCount"] == 5

    # after the grace the old publishable key is gone with its pair: tokens still carrying it are refused
    clock.advance(3600)
    with pytest.raises(InvalidToken, match=f"publishable key {old_pk} is not live"):
        authenticate_end_user(store, verifier, mint())
    # moving the customer to the new key (one metadata update) brings them back, usage intact
    vendors.clerk["end-user-api"].update_metadata(
        customer["id"], public={"publishableKey": rotated.new.pair.publishable_key}
    )
    again = authenticate_end_user(store, verifier, mint())
    assert record_usage(store, again.caller, customer["id"], "free", now=clock())["usageCount"] == 6
