"""Key rotation and revocation under crashes and concurrency."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import pytest

from dreamcli.errors import DreamError
from dreamcli.platform import keys, replication, synthetic
from dreamcli.platform.runtime import authenticate
from dreamcli.stores.ports import Store


class Crash(Exception):
    pass


@dataclass
class CrashingNamespace:
    inner: Any
    counter: Counter

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name in ("put", "bulk_put", "delete", "bulk_delete"):

            def write(*args: Any, **kwargs: Any) -> Any:
                self.counter.tick()
                return attr(*args, **kwargs)

            return write
        return attr


class Counter:
    def __init__(self, crash_at: int) -> None:
        self.crash_at = crash_at
        self.count = 0

    def tick(self) -> None:
        self.count += 1
        if self.count == self.crash_at:
            raise Crash(f"killed before write {self.count}")


def crashing(store: Store, crash_at: int) -> Store:
    """The same store, dying just before its `crash_at`-th write (a SIGKILL at that point)."""
    counter = Counter(crash_at)
    proxy = Store(
        store.kind,
        store.location,
        store.topology,
        {name: CrashingNamespace(ns, counter) for name, ns in store.namespaces.items()},
        store.database,
    )
    return proxy


def setup_platform(store, clock):
    """A synthetic platform with one indexed production pair whose secret we know."""
    synthetic.seed(store, 1)
    plt = next(synthetic.platform_ids(store))
    created = keys.create_key(store, plt, "production", now=clock())
    for info in keys.list_keys(store, plt):
        if info.publishable_key != created.pair.publishable_key:
            keys.revoke_key(store, plt, info.publishable_key, now=clock())
    assert replication.verify(store, now=clock()).clean
    return plt, created.pair


def authenticates(store, secret):
    try:
        authenticate(store, secret)
        return True
    except DreamError:
        return False


def write_count(action) -> int:
    counter = {"n": 0}
    return counter


@pytest.mark.parametrize("crash_at", range(1, 9))
def test_rotation_killed_at_any_write(store, clock, crash_at):
    plt, old = setup_platform(store, clock)
    with pytest.raises(Crash) if crash_at <= 7 else _nothing():
        keys.rotate_key(crashing(store, crash_at), plt, env="production", grace_seconds=3600, now=clock())
    assert authenticates(store, old.secret_key), "the old pair must keep working through a rotation"
    result = replication.verify(store, now=clock())
    assert all(f.fix is not None for f in result.findings), [f.message for f in result.findings]
    replication.apply_plan(store, replication.plan_repair(result, prune=True))
    assert replication.verify(store, now=clock()).clean
    clock.advance(3600)
    statuses = {i.publishable_key: i.status(clock()) for i in keys.list_keys(store, plt)}
    if statuses.get(old.publishable_key) == "expired":
        assert not authenticates(store, old.secret_key), "the grace ended: the old secret must stop"


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("crash_at", range(1, 8))
def test_revocation_killed_at_any_write(store, clock, crash_at):
    plt, old = setup_platform(store, clock)
    other = keys.create_key(store, plt, "staging", now=clock())
    with pytest.raises(Crash) if crash_at <= 6 else _nothing():
        keys.revoke_key(crashing(store, crash_at), plt, old.publishable_key, now=clock())
    if crash_at > 2:  # once the revocation is recorded and the api secret is gone, it never works again
        assert not authenticates(store, old.secret_key)
    result = replication.verify(store, now=clock())
    assert all(f.fix is not None for f in result.findings), [f.message for f in result.findings]
    replication.apply_plan(store, replication.plan_repair(result, prune=True))
    assert replication.verify(store, now=clock()).clean
    if crash_at > 1:  # the index said revoked: repair finished the job, it did not copy the pair back
        assert not authenticates(store, old.secret_key)
    assert authenticates(store, other.pair.secret_key)


def test_two_rotations_at_once_lose_no_key(store, clock):
    plt, old = setup_platform(store, clock)
    results: list[Any] = []
    errors: list[BaseException] = []

    def rotate() -> None:
        try:
            results.append(
                keys.rotate_key(store, plt, publishable_key=old.publishable_key, grace_seconds=600, now=clock())
            )
        except BaseException as exc:  # noqa: BLE001 - a thread's failure is reported below, not lost with the thread
            errors.append(exc)

    threads = [threading.Thread(target=rotate) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(results) == 2
    listed = {i.publishable_key: i for i in keys.list_keys(store, plt)}
    for rotated in results:
        assert rotated.new.pair.publishable_key in listed  # each rotation's pair is indexed...
        assert authenticates(store, rotated.new.pair.secret_key)  # ...and works
    assert authenticates(store, old.secret_key)
    assert replication.verify(store, now=clock()).clean
