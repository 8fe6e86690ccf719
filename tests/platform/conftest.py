"""Platform behaviour on a store and vendor clients that reach the emulator in-process."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from dreamcli.stores.ports import Store
from dreamcli.vendors.settings import Vendors, settings_from_emulator
from emulator.app import Emulator
from emulator.store import open_emulator_store


@dataclass
class Platform:
    store: Store
    vendors: Vendors
    emulator: Emulator


@pytest.fixture
def platform(tmp_path, clock) -> Iterator[Platform]:
    path = tmp_path / "platform.db"
    emulator = Emulator(path, clock=clock)
    store = open_emulator_store(path, clock=clock)
    vendors = Vendors(settings_from_emulator(emulator.config()), emulator.client(), clock=clock)
    yield Platform(store, vendors, emulator)
    vendors.http.close()
    store.close()
    emulator.close()


@pytest.fixture
def connected(platform):
    """A developer through signup, payment and Stripe Connect: call it with an email, get the SignupResult."""
    from dreamcli.platform import onboarding

    def connect(email: str = "dev@example.com"):
        store, vendors = platform.store, platform.vendors
        signed = onboarding.signup(store, vendors, email=email)
        onboarding.pay_in_emulator(vendors, onboarding.start_payment(store, vendors, signed.user_id))
        url, _ = onboarding.connect_start(store, vendors, signed.user_id)
        answer = onboarding.consent_in_emulator(vendors, url)
        onboarding.connect_callback(store, vendors, code=answer["code"], state=answer["state"])
        return signed

    return connect
