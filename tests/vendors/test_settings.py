"""Vendor settings: the emulator by default, real services only when the environment names them all."""

from __future__ import annotations

import pytest

from dreamcli.errors import UsageError
from dreamcli.vendors.settings import ENVIRONMENT, settings_from_env

REAL = {
    "STRIPE_SECRET_KEY": "sk_test_realrealrealreal",
    "STRIPE_CLIENT_ID": "ca_real",
    "CLERK_SECRET_KEY": "sk_test_clerkdev",
    "CLERK_ISSUER": "https://dev.clerk.accounts.dev/",
    "CLERK_END_USER_SECRET_KEY": "sk_test_clerkend",
    "CLERK_END_USER_ISSUER": "https://end.clerk.accounts.dev",
}


def test_no_environment_means_the_emulator():
    assert settings_from_env({}) is None


def test_partial_environment_is_refused_naming_what_is_missing():
    with pytest.raises(UsageError, match="real vendors need CLERK_SECRET_KEY, CLERK_ISSUER"):
        settings_from_env(
            {
                "STRIPE_SECRET_KEY": "sk_test_x",
                "STRIPE_CLIENT_ID": "ca_x",
                "CLERK_END_USER_SECRET_KEY": "k",
                "CLERK_END_USER_ISSUER": "https://e",
            }
        )


def test_full_environment_points_at_the_real_services_without_showing_keys():
    settings = settings_from_env(REAL)
    assert settings.source == "environment"
    assert (
        settings.stripe.api_base == "https://api.stripe.com"
        and settings.stripe.connect_base == "https://connect.stripe.com"
    )
    assert settings.clerk_api_url == "https://api.clerk.com"
    assert settings.clerk["dream-api"].jwks_url == "https://dev.clerk.accounts.dev/.well-known/jwks.json"
    assert settings.clerk["end-user-api"].issuer == "https://end.clerk.accounts.dev"
    shown = repr(settings)
    for secret in ("sk_test_realrealrealreal", "sk_test_clerkdev", "sk_test_clerkend"):
        assert secret not in shown
    assert set(ENVIRONMENT) == set(REAL)


def test_bases_can_point_at_a_served_emulator():
    settings = settings_from_env(
        {**REAL, "STRIPE_API_BASE": "http://127.0.0.1:9/stripe", "CLERK_API_URL": "http://127.0.0.1:9/clerk"}
    )
    assert (
        settings.stripe.api_base == "http://127.0.0.1:9/stripe" and settings.clerk_api_url == "http://127.0.0.1:9/clerk"
    )
