"""The suite brings its interop peers itself; CI never goes green with one missing."""

from __future__ import annotations

import pytest

from tests import conftest, peers

MISSING = peers.Peer("a peer", (peers.ROOT / ".cache" / "no-such-peer" / "bin",), (("false",),))


class Item:
    """Just enough of a pytest item: its `peer` markers."""

    def __init__(self, *names: str) -> None:
        self.marks = [pytest.mark.peer(*names).mark]

    def iter_markers(self, name: str):
        return iter(self.marks if name == "peer" else [])


@pytest.fixture
def missing(monkeypatch):
    monkeypatch.setitem(peers.PEERS, "absent", MISSING)
    return "absent"


def test_a_missing_peer_skips_the_test_saying_why(missing, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"a peer is not installed \(.cache/no-such-peer/bin missing"):
        conftest.pytest_runtest_setup(Item(missing))


def test_under_ci_a_missing_peer_fails_the_test(missing, monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must run this test, but a peer is not installed"):
        conftest.pytest_runtest_setup(Item(missing))


def test_an_install_that_fails_is_reported_and_fails_ci(missing, monkeypatch):
    monkeypatch.setattr(peers, "PEERS", {missing: MISSING})
    assert peers.install_missing(lambda line: None) == ["a peer: false failed: "]

    class Config:
        class pluginmanager:  # noqa: N801 - pytest's attribute name
            @staticmethod
            def get_plugin(name):
                return None

    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.exit.Exception, match="CI cannot run the interop tests:\na peer: false failed"):
        conftest.pytest_collection_modifyitems(None, Config(), [Item(missing)])
    monkeypatch.delenv("CI")
    conftest.pytest_collection_modifyitems(None, Config(), [Item(missing)])  # locally: a warning, then skips


@pytest.mark.peer(*peers.PEERS)
def test_every_interop_peer_is_present_after_the_session_started():
    """The run installed them (this very session, since this test needs them): nothing CI runs is skipped."""
    assert {name: peer.present for name, peer in peers.PEERS.items()} == dict.fromkeys(peers.PEERS, True)
