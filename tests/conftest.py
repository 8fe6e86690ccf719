"""Shared fixtures: every test gets its own store file and working directory."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from dreamcli.cli.app import app
from dreamcli.stores.ports import Store
from dreamcli.stores.wrangler import open_wrangler_store
from dreamcli.vendors.settings import Vendors, settings_from_emulator
from emulator.app import Emulator
from emulator.server import LoopbackServer
from emulator.store import open_emulator_store


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "peer(name): needs an interop peer of tests/peers.py (installed by the run)")


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Install the peers the selected tests need (cached): the README's test command brings what CI brings."""
    from tests import peers

    needed = {name for item in items for mark in item.iter_markers("peer") for name in mark.args}
    if not needed or all(peers.PEERS[name].present for name in needed):
        return
    reporter = config.pluginmanager.get_plugin("terminalreporter")

    def say(line: str) -> None:
        if reporter is not None:
            reporter.write_line(line)

    failed = peers.install_missing(say)
    if failed and peers.in_ci():
        pytest.exit("CI cannot run the interop tests:\n" + "\n".join(failed), returncode=1)
    for line in failed:
        say(f"warning: {line}; the tests that need it will be skipped")


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test whose peer is missing is skipped, saying why; under CI=true it fails instead."""
    from tests import peers

    for mark in item.iter_markers("peer"):
        for name in mark.args:
            peer = peers.PEERS[name]
            if not peer.present:
                if peers.in_ci():
                    pytest.fail(f"CI must run this test, but {peer.why_missing()}", pytrace=False)
                pytest.skip(peer.why_missing())


class FakeClock:
    """A clock tests move by hand (Unix seconds)."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point every DREAM_* path at tmp_path and run from there."""
    for name in ("DREAM_STORE", "DREAM_NOW", "DREAM_DEBUG", "DREAM_BUSY_TIMEOUT", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DREAM_STORE", str(tmp_path / "store.db"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


WORKERS = Path(__file__).resolve().parent.parent / "fixtures" / "workers"


def copy_workers(target: Path) -> Path:
    """A copy of the reference workers' project, without local state; their npm dependencies (when installed,
    `npm install` in fixtures/workers) linked, not copied."""
    shutil.copytree(WORKERS, target, ignore=shutil.ignore_patterns("node_modules", ".wrangler", ".wrangler-shared"))
    if (WORKERS / "node_modules").is_dir():
        (target / "node_modules").symlink_to(WORKERS / "node_modules", target_is_directory=True)
    return target


@pytest.fixture(params=["emulator", "wrangler", pytest.param("cloudflare", marks=pytest.mark.socket)])
def store(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Iterator[Store]:
    """The same suite runs on every store adapter (cloudflare: over real HTTP to the emulator's REST API)."""
    if request.param == "cloudflare":
        from dreamcli.stores.cloudflare import open_cloudflare_store

        with served_cloudflare(tmp_path / "cloudflare.db", clock) as (_, env):
            opened = open_cloudflare_store(env, sleep=lambda seconds: None)
            yield opened
            opened.close()
        return
    if request.param == "wrangler":
        project = tmp_path / "workers"
        copy_workers(project)
        opened = open_wrangler_store(str(project), clock=clock)
    else:
        opened = open_emulator_store(tmp_path / f"{request.param}.db", clock=clock)
    yield opened
    opened.close()


class Dream:
    """Runs the real `dream` app in-process and returns exit code, stdout, stderr."""

    def __init__(self) -> None:
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | bytes | None = None, env: dict[str, str] | None = None):
        return self.runner.invoke(app, list(args), input=input, env=env, catch_exceptions=False)

    def json(self, *args: str, **kwargs):
        result = self(*args, **kwargs)
        assert result.exit_code == 0, result.stderr
        return json.loads(result.stdout)


@pytest.fixture
def dream() -> Dream:
    return Dream()


@contextmanager
def served_cloudflare(path: Path, clock: Any = None) -> Iterator[tuple[Emulator, dict[str, str]]]:
    """An emulator serving its Cloudflare REST API on loopback, and the environment that points the cloudflare
    store (or the CLI) at it."""
    emulator = Emulator(path, clock=clock) if clock is not None else Emulator(path)
    server = LoopbackServer(emulator.app)
    base = server.start()
    try:
        config = emulator.config(base)["cloudflare"]
        yield (
            emulator,
            {
                "CLOUDFLARE_API_TOKEN": config["api_token"],
                "CLOUDFLARE_ACCOUNT_ID": config["account_id"],
                "CLOUDFLARE_BASE_URL": config["base_url"],
            },
        )
    finally:
        server.stop()
        emulator.close()


@pytest.fixture
def empty_store(tmp_path: Path) -> Path:
    """The CLI's store (DREAM_STORE), made and empty: reading a store that does not exist is "not found"."""
    path = tmp_path / "store.db"
    open_emulator_store(path).close()
    return path


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


GUIDE_WORKERS = Path(__file__).resolve().parent / "guide_workers"


def copy_guide_workers(target: Path) -> Path:
    """A copy of the guide-written worker set (tests/guide_workers), without local state; each worker's own npm
    install (wrangler included) linked, not copied, so each worker still runs its own wrangler."""
    shutil.copytree(GUIDE_WORKERS, target, ignore=shutil.ignore_patterns("node_modules", ".wrangler", ".wrangler-*"))
    for folder in GUIDE_WORKERS.iterdir():
        if (folder / "node_modules").is_dir():
            (target / folder.name / "node_modules").symlink_to(folder / "node_modules", target_is_directory=True)
    return target
