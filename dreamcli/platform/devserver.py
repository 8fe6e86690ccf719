"""`dream dev`: the whole platform locally. dream's emulated Stripe and Clerk, then `wrangler dev` for each of the
project's three workers on the guide's ports, their vendor settings handed over in a private env file (never on a
command line), Stripe's webhooks pointed at the workers' own webhook routes, every worker waited for, their logs
streamed a line at a time with the worker's name, and everything stopped together (each worker's whole process
group, so no workerd is left behind)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from dreamcli.errors import DreamError, UsageError
from dreamcli.platform.contract import Route, contract
from dreamcli.plural import plural
from dreamcli.private_files import write_private
from dreamcli.stores.discovery import GUIDE_WORKERS, Project, open_project
from dreamcli.stores.vendor_shim import write_entry
from dreamcli.stores.wrangler_cli import (
    Reaper,
    RunRecord,
    dev_command,
    find_wrangler,
    reap_group,
    signal_group,
    wrangler_env,
    wrangler_version,
)
from dreamcli.workers_config import GUIDE_PORTS, WorkersConfig, load_workers_config

WORKER_PORTS = GUIDE_PORTS
SHARED_STATE = ".wrangler-shared"
PLATFORM_STATE = ".wrangler-platform"
# How the workers keep their local state: one folder for all; each its own (as `npm run dev` in each folder);
# or front-auth-api and oauth-api sharing one while api-multi keeps its own, where the guide's flow gets all the
# way to its last call and that call answers "Invalid API key".
LAYOUTS = {
    "shared": {role: SHARED_STATE for role in WORKER_PORTS},
    "separate": {},
    "api-multi-apart": {"front-auth-api": PLATFORM_STATE, "oauth-api": PLATFORM_STATE},
}
READY_TIMEOUT = 90.0
FRONTEND_URL = "http://localhost:5173"


class DevError(DreamError):
    """The platform could not be brought up."""


@dataclass
class Worker:
    role: str
    folder: Path
    port: int
    process: subprocess.Popen[str] | None = None
    ready: bool = False
    log_thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class DevPlatform:
    """The vendors and the workers of one project, started and stopped together."""

    root: Path
    vendor_store: Path
    layout: str = "shared"
    ports: dict[str, int] = field(default_factory=lambda: dict(WORKER_PORTS))
    vendor_ports: dict[str, int] = field(default_factory=lambda: {"vendors": 8790, "stripe": 8791, "clerk": 8792})
    log: Callable[[str], None] = print
    wrangler: Path | None = None
    inspect: bool = False  # DevTools inspectors on (wrangler dev's own), reachable by any local process
    config: WorkersConfig | None = None  # dream.toml's [workers] (default: the nearest from the project up)
    workers: dict[str, Worker] = field(default_factory=dict)
    project: Project | None = None
    _serving: object | None = None
    _private: Path | None = None
    _reaper: Reaper | None = None  # stops the workers and removes the env files if dream dies without stop()
    _record: RunRecord | None = None  # what this run started, for the next run if both dream and its reaper die

    @property
    def emulator(self) -> object:
        """The emulated vendors, once started."""
        return getattr(self._serving, "emulator", None)

    def store_spec(self) -> str:
        """The `--store` that reads the state the workers use."""
        folders = LAYOUTS[self.layout]
        if self.layout == "shared":
            return f"wrangler:{self.root},persist-to={SHARED_STATE}"
        return f"wrangler:{self.root}" + "".join(f",{role}.persist-to={folder}" for role, folder in folders.items())

    def start(self) -> dict[str, str]:
        """Vendors first, then the workers; returns every service's URL once all answer. Stops what it started if
        anything fails."""
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> dict[str, str]:
        from emulator.serve import Serving

        if self.layout not in LAYOUTS:
            raise UsageError(f"unknown state layout {self.layout!r} (known: {', '.join(LAYOUTS)})")
        self._clear_leftovers()
        folders = LAYOUTS[self.layout]
        for folder in set(folders.values()):
            (self.root / folder).mkdir(exist_ok=True)
        config = self.config if self.config is not None else load_workers_config(self.root)
        routes = contract(config)
        self.project = open_project(
            self.root, worker_persist_to={role: Path(f) for role, f in folders.items()}, config=config
        )
        missing = [role for role in GUIDE_WORKERS if role not in self.project.roles]
        if missing:
            raise UsageError(
                f"{self.root} lacks {', '.join(missing)}: `dream dev` runs the guide's three workers (name their "
                "folders in dream.toml's [workers.ROLE] folder if they are called otherwise)"
            )
        wranglers = {
            role: self.wrangler or find_wrangler(self.root, self.project.roles[role][0].folder)
            for role in GUIDE_WORKERS
        }
        for path in sorted(set(wranglers.values())):
            users = ", ".join(role for role in GUIDE_WORKERS if wranglers[role] == path)
            self.log(f"{'wrangler':<15} {wrangler_version(path) or '(version unknown)'} at {path} ({users})")
        self._migrate()
        serving = Serving(self.vendor_store, ports=self.vendor_ports, platform=False, log=lambda line: None)
        self._serving = serving
        urls = serving.start()
        env = self._worker_env(serving, urls, routes)
        self._reaper = Reaper()
        self._private = Path(tempfile.mkdtemp(prefix="dream-dev-"))  # 0700: the env files hold test keys
        self._reaper.folder(self._private)
        assert self._record is not None
        self._record.folder(self._private)
        for role in ("api-multi", "front-auth-api", "oauth-api"):
            found = self.project.roles[role][0]
            worker_folder = found.folder
            env_file = self._private / f"{role}.env"
            write_private(env_file, "".join(f"{name}={value}\n" for name, value in env[role].items()))
            worker = Worker(role, worker_folder, self.ports[role])
            persist = os.path.relpath(self.root / folders[role], worker_folder) if role in folders else None
            # The worker's code unchanged, behind dream's entry that sends its vendor calls to the emulated ones.
            entry = write_entry(self._private, role, found.main, urls) if found.main else None
            command = dev_command(
                wranglers[role],
                str(found.config),
                worker.port,
                persist_to=persist,
                env_file=env_file,
                entry=entry,
                inspect=self.inspect,
            )
            worker.process = subprocess.Popen(
                command,
                cwd=worker_folder,
                env=wrangler_env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,  # wrangler and its workerd in one group: stopped together
            )
            self._reaper.group(worker.process)
            self._record.group(worker.process.pid)
            worker.log_thread = threading.Thread(target=self._relay, args=(worker,), daemon=True)
            worker.log_thread.start()
            self.workers[role] = worker
            # One at a time: workerds starting together over one --persist-to folder fail on SQLITE_BUSY.
            self._wait_ready()
        return {**{role: w.url for role, w in self.workers.items()}, **urls}

    def _clear_leftovers(self) -> None:
        """Refuse to run beside another `dream dev` of this project (they would share its state and ports), and stop
        what an earlier one left if it was killed with its reaper."""
        record = RunRecord(self.root / ".dream" / "dev.json", self.root)
        running = record.running()
        if running is not None:
            raise UsageError(
                f"another dream dev (process {running}) runs {self.root}: stop it first (two would share its state)"
            )
        stopped, removed = record.clear_leftovers()
        if stopped or removed:
            self.log(
                f"{'dream dev':<15} stopped {plural(stopped, 'process', 'processes')} and removed "
                f"{plural(removed, 'private folder')} an earlier dream dev left (it was killed with its reaper)"
            )
        self._record = record

    def _migrate(self) -> None:
        """The D1 schema api-multi writes into (its binding's migrations_dir, else dream's own migrations), applied
        to the database api-multi will use, as `wrangler d1 migrations apply --local` would."""
        from dreamcli.stores.d1_migrations import apply_migrations, default_migrations_dir
        from dreamcli.stores.wrangler import open_wrangler_store

        assert self.project is not None
        worker = self.project.roles["api-multi"][0]
        folder = (worker.folder / worker.database[0].migrations_dir) if worker.database else None
        if folder is None or not folder.is_dir():
            folder = default_migrations_dir()
        store = open_wrangler_store(self.store_spec().partition(":")[2])
        try:
            applied = apply_migrations(store.database, folder)
        finally:
            store.close()
        if applied:
            self.log(f"{'d1':<15} applied {', '.join(m.name for m in applied)} from {folder}")

    def _worker_env(self, serving: object, urls: dict[str, str], routes: dict[str, Route]) -> dict[str, dict[str, str]]:
        """Each worker's vars: the emulated vendors' base URLs and test keys; Stripe's webhooks to the workers' route
        for them, and the Connect application's redirect URI to oauth-api's callback route (as the contract, with
        dream.toml's [workers.routes], names them)."""
        from dreamcli.platform.onboarding import platform_price_id
        from dreamcli.vendors.settings import Vendors, settings_from_emulator

        emulator = serving.emulator  # type: ignore[attr-defined]
        config = emulator.config()
        vendors = Vendors(settings_from_emulator(config), emulator.client())
        try:
            price_id = platform_price_id(vendors)
        finally:
            vendors.http.close()
        stripe = emulator.stripe
        front, multi = self.ports["front-auth-api"], self.ports["api-multi"]
        stripe.set_connect_redirect_uri(f"http://127.0.0.1:{self.ports['oauth-api']}{routes['callback'].path}")
        platform_secret = stripe.ensure_webhook_endpoint(
            f"http://127.0.0.1:{front}{routes['webhook'].path}",
            ["checkout.session.completed", "customer.subscription.updated", "customer.subscription.deleted"],
        )
        connect_secret = stripe.ensure_webhook_endpoint(
            f"http://127.0.0.1:{multi}/webhook/stripe",
            [
                "checkout.session.completed",
                "customer.subscription.created",
                "customer.subscription.updated",
                "customer.subscription.deleted",
            ],
            connect=True,
        )
        clerk = config["clerk"]["instances"]
        stripe_keys = config["stripe"]
        common = {"STRIPE_API_BASE": urls["stripe"], "CLERK_API_URL": urls["clerk"], "FRONTEND_URL": FRONTEND_URL}
        return {
            "front-auth-api": {
                **common,
                "CLERK_SECRET_KEY": clerk["dream-api"]["secret_key"],
                "CLERK_PUBLISHABLE_KEY": clerk["dream-api"]["publishable_key"],
                "STRIPE_SECRET_KEY": stripe_keys["secret_key"],
                "STRIPE_PRICE_ID": price_id,
                "STRIPE_WEBHOOK_SECRET": platform_secret,
            },
            "oauth-api": {
                **common,
                "STRIPE_CLIENT_ID": stripe_keys["client_id"],
                "STRIPE_CLIENT_SECRET": stripe_keys["secret_key"],
                "STRIPE_CONNECT_BASE": urls["stripe"],
                "CLERK_SECRET_KEY": clerk["dream-api"]["secret_key"],
                "CLERK_PUBLISHABLE_KEY": clerk["dream-api"]["publishable_key"],
            },
            "api-multi": {
                **common,
                "CLERK_SECRET_KEY": clerk["end-user-api"]["secret_key"],
                "CLERK_PUBLISHABLE_KEY": clerk["end-user-api"]["publishable_key"],
                "STRIPE_SECRET_KEY": stripe_keys["secret_key"],
                "STRIPE_WEBHOOK_SECRET": connect_secret,
            },
        }

    def _relay(self, worker: Worker) -> None:
        assert worker.process is not None and worker.process.stdout is not None
        for line in worker.process.stdout:
            line = line.rstrip()
            if line:
                self.log(f"{worker.role:<15} {line}")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        with httpx.Client(timeout=2.0) as http:
            while not all(worker.ready for worker in self.workers.values()):
                for worker in self.workers.values():
                    if worker.ready:
                        continue
                    assert worker.process is not None
                    if worker.process.poll() is not None:
                        raise DevError(
                            f"{worker.role}'s wrangler dev exited ({worker.process.returncode}); its log is above"
                        )
                    try:
                        http.get(worker.url + "/")
                        worker.ready = True
                    except httpx.TransportError:
                        pass
                if time.monotonic() > deadline:
                    waiting = ", ".join(w.role for w in self.workers.values() if not w.ready)
                    raise DevError(f"{waiting} did not answer within {READY_TIMEOUT:.0f} s")
                time.sleep(0.2)

    def stop(self) -> None:
        for worker in self.workers.values():
            if worker.process is not None:
                signal_group(worker.process)
        for worker in self.workers.values():
            if worker.process is None:
                continue
            reap_group(worker.process)
            if self._reaper is not None:
                self._reaper.forget_group(worker.process)
            if worker.log_thread is not None:
                worker.log_thread.join(timeout=5)
        if self._serving is not None:
            self._serving.stop()  # type: ignore[attr-defined]
            self._serving = None
        if self._private is not None:
            shutil.rmtree(self._private, ignore_errors=True)
            if self._reaper is not None:
                self._reaper.forget_folder(self._private)
            self._private = None
        if self._reaper is not None:
            self._reaper.close()
            self._reaper = None
        if self._record is not None:
            self._record.done()
            self._record = None
