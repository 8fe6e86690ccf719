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
