"""The whole platform on real code: `dream dev` brings the reference workers up under `wrangler dev` over dream's
vendors, `dream flow run --workers` drives the guide's onboarding through their routes, the guide's bug is
reproduced with api-multi on its own state and repaired, and nothing is left running afterwards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.conftest import copy_workers
from tests.interop.test_wrangler import WRANGLER
from tests.processes import PORT_NAMES, deleted_while_open, free_ports, listening_ports

pytestmark = [
    pytest.mark.socket,
    pytest.mark.peer("wrangler", "workers"),
]

DREAM = str(Path(sys.executable).with_name("dream"))
# As a user runs them: no DREAM_STORE, so `dream dev` and `dream flow run --store wrangler:...` share the vendors'
# default state file, .dream/emulator.db in the folder they run from.
ENV = {name: value for name, value in os.environ.items() if name != "DREAM_STORE"}


def processes_under(folder: Path) -> list[int]:
    """Processes whose working directory is inside `folder` (wrangler and the workerd it starts)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if cwd.startswith(str(folder)):
            found.append(int(entry.name))
    return found


class Dev:
    """`dream dev` as a user runs it, in its own process."""

    def __init__(
        self,
        tmp_path: Path,
        state: str,
        env: dict[str, str] | None = None,
        extra: tuple[str, ...] = (),
        copy: Callable[[Path], Path] = copy_workers,
    ) -> None:
        self.project = copy(tmp_path / "workers")
        self.ports = dict(zip(PORT_NAMES, free_ports(len(PORT_NAMES)), strict=True))
        self.ports["console"] = 0  # any: it binds last, after the workers took ports of their own (a race otherwise)
        flags = [part for name, port in self.ports.items() for part in (f"--{name}-port", str(port))]
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [DREAM, "dev", str(self.project), "--state", state, "--timeout", "300", *flags, *extra],
            cwd=tmp_path,
            env=env or ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        while True:
            line = self.process.stderr.readline()
            assert line, "dream dev exited before it was ready:\n" + "".join(self.lines[-40:])
            self.lines.append(line)
            if line.startswith("next: "):
                self.next = line
                console = self.process.stderr.readline()  # the web console's line follows
                self.lines.append(console)
                assert console.startswith("web console: http://127.0.0.1:"), console
                self.console = console.split()[2]
                break
            assert time.monotonic() - self.started < 120, "".join(self.lines[-40:])
        self.store = line.split("--store ")[1].split()[0]
        self.urls = line.split("--urls ")[1].split()[0]

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)  # as Ctrl-C would
        self.process.wait(timeout=60)


def dream(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DREAM, *args], capture_output=True, text=True, cwd=tmp_path, env=ENV)


def repair_then_call(dev: Dev, tmp_path: Path, secret_key: str) -> None:
    """`kv repair` with the store dream dev printed, then the guide's curl on the same running api-multi: 200."""
    repaired = dream(tmp_path, "--store", dev.store, "kv", "repair", "--yes")
    # the three stranded keys copied; what is left is the guide's plaintext secret (--remove-plaintext-secrets)
    assert "applied 3 actions; verify now finds 1" in repaired.stderr, repaired.stderr
    api = dev.urls.split("api-multi=")[1]
    call = httpx.post(
        f"{api}/api/data",
        headers={"Authorization": f"Bearer {secret_key}", "X-User-Id": "u1", "X-User-Plan": "free"},
    )
    assert call.status_code == 200, call.text  # the same running api-multi, its code untouched


def flow(dev: Dev, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DREAM, "flow", "run", "--workers", "--urls", dev.urls, "--store", dev.store, "--json"],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_dream_dev_then_the_flow_over_the_workers_routes(tmp_path):
    dev = Dev(tmp_path, "shared")
    try:
        ready = [line for line in dev.lines if line.startswith("all ready in ")]
        assert ready and "persist-to=.wrangler-shared" in dev.store
        run = flow(dev, tmp_path)
        assert run.returncode == 0, run.stdout + run.stderr
        report = json.loads(run.stdout)
        assert [s["phase"] for s in report["steps"]] == [
            "signup",
            "pay",
            "connect",
            "tiers",
            "credentials",
            "api call",
            "customer",
            "verify",
        ]
        assert all(step["ok"] for step in report["steps"]), report
        # verify meets the guide's real data: the plaintext secret oauth-api stores, and nothing else
        assert report["steps"][-1]["detail"].endswith("1 insecure")
        api = dev.urls.split("api-multi=")[1]
        call = httpx.post(
            f"{api}/api/data",
            headers={"Authorization": f"Bearer {report['secretKey']}", "X-User-Id": "u1", "X-User-Plan": "free"},
        )
        assert call.status_code == 200 and call.json()["usage"]["usageCount"] >= 1
        # The web console dream dev serves reads the workers' own state: the flow's platform, its pair, its key.
        console = httpx.Client(timeout=30.0)
        assert console.get(dev.console).status_code == 303
        base = dev.console.split("/signin")[0]
        platform = console.get(f"{base}/platforms/{report['platformId']}")
        assert platform.status_code == 200 and report["publishableKey"] in platform.text
        assert "wrangler: " in platform.text  # the store it reads, in its header
        kv = console.get(f"{base}/kv", params={"ns": "platform-tokens", "prefix": "user:"})
        assert kv.status_code == 200 and f"user:{report['userId']}:platformId" in kv.text
    finally:
        dev.stop()
    assert dev.process.returncode == 0
    assert processes_under(dev.project) == []  # no wrangler, no workerd left


def test_three_flows_over_one_dream_dev_two_at_once_and_every_file_intact(tmp_path):
    """The vendors' store is shared by `dream dev` (serving the workers' Stripe and Clerk calls) and each `dream flow
    run` process: the second and third flows used to fail at pay once the first had corrupted it. Each flow's verify
    judges the keys it wrote: another platform's drift, or another flow's workers mid-write, is shown, not failed on."""
    import sqlite3
    from concurrent.futures import ThreadPoolExecutor

    dev = Dev(tmp_path, "shared")
    try:
        first = flow(dev, tmp_path)
        assert first.returncode == 0, first.stdout + first.stderr
        drifted = json.loads(first.stdout)["platformId"]
        gone = dream(
            tmp_path, "--store", dev.store, "kv", "delete", f"platform:{drifted}:tierConfig", "--ns", "api-tokens"
        )
        assert gone.returncode == 0, gone.stderr
        with ThreadPoolExecutor(2) as pool:
            runs = list(pool.map(lambda _: flow(dev, tmp_path), range(2)))
        for run in runs:
            assert run.returncode == 0, run.stdout + run.stderr
            report = json.loads(run.stdout)
            assert all(step["ok"] for step in report["steps"])
            assert "on other platforms" in report["steps"][-1]["detail"]  # the first platform's drift, shown
        assert dream(tmp_path, "--store", dev.store, "kv", "verify").returncode == 1  # and still there to repair
        files = [*tmp_path.glob(".dream/**/*.db"), *tmp_path.rglob("*.sqlite")]
        assert len(files) >= 4  # the vendors' store, its D1 file, wrangler's KV and D1 files
        for file in files:
            conn = sqlite3.connect(f"file:{file}?mode=ro", uri=True)
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",), file
            conn.close()
        assert deleted_while_open(dev.process.pid, tmp_path) == []
    finally:
        dev.stop()
    assert dev.process.returncode == 0


@pytest.mark.parametrize("asked", [False, True])
def test_no_devtools_inspector_is_open_unless_asked(tmp_path, asked):
    """An open inspector lets any local process read the workers' secrets (`/json/list`, then a breakpoint in
    fetch(request, env)): none of the ports dream dev's processes listen on is one, unless --inspect asks."""
    dev = Dev(tmp_path, "shared", extra=("--inspect",) if asked else ())
    try:
        ports = listening_ports(processes_under(dev.project))
        assert len(ports) >= 3  # the three workers at least
        inspectors = []
        for port in ports:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=5)
            except httpx.HTTPError:
                continue
            if answer.status_code == 200 and "webSocketDebuggerUrl" in answer.text:
                inspectors.append(port)
        assert (len(inspectors) >= 3) if asked else (inspectors == [])  # wrangler dev opens two a worker
        assert ("warning: --inspect" in "".join(dev.lines)) is asked
    finally:
        dev.stop()


@pytest.mark.parametrize("sig", ["SIGHUP", "SIGKILL"])
def test_nothing_outlives_dream_dev_whatever_ends_it(tmp_path, sig):
    """The terminal closed (SIGHUP) or dream killed outright (SIGKILL): no wrangler, no workerd left serving, and
    the folder of the workers' test keys removed (checked through /proc and the temporary folder)."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    dev = Dev(tmp_path, "shared", env={**ENV, "TMPDIR": str(temp)})
    assert processes_under(dev.project)  # the workers run
    assert list(temp.glob("dream-dev-*"))  # their env files are there
    dev.process.send_signal(getattr(signal, sig))
    dev.process.wait(timeout=60)
    deadline = time.monotonic() + 30  # the reaper's grace for each group, then SIGKILL; a guard only
    while (processes_under(dev.project) or list(temp.glob("dream-dev-*"))) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_under(dev.project) == []
    assert list(temp.glob("dream-dev-*")) == []


def test_the_guides_bug_on_real_workers_found_and_repaired(tmp_path):
    dev = Dev(tmp_path, "api-multi-apart")
    try:
        run = flow(dev, tmp_path)
        assert run.returncode == 1
        report = json.loads(run.stdout)
        steps = {s["phase"]: s for s in report["steps"]}
        assert all(steps[p]["ok"] for p in ("signup", "pay", "connect", "tiers", "credentials"))
        assert not steps["api call"]["ok"] and "Invalid API key" in steps["api call"]["detail"]
        assert not steps["verify"]["ok"] and "3 stranded" in steps["verify"]["detail"]
        doctor = subprocess.run(
            [DREAM, "doctor", str(dev.project), "--json"], capture_output=True, text=True, cwd=tmp_path, env=ENV
        )
        assert any(d["check"] == "separate local state" for d in json.loads(doctor.stdout)["findings"])
        repair_then_call(dev, tmp_path, report["secretKey"])
    finally:
        dev.stop()
    assert processes_under(dev.project) == []


@pytest.mark.parametrize("worker", ["front-auth-api", "oauth-api", "api-multi"])
def test_wrangler_deploy_dry_run_accepts_the_reference_workers(tmp_path, worker):
    project = copy_workers(tmp_path / "workers")
    built = subprocess.run(
        [str(WRANGLER), "deploy", "--dry-run", "--outdir", str(tmp_path / "out")],
        cwd=project / worker,
        capture_output=True,
        text=True,
        timeout=120,
        env={**ENV, "WRANGLER_SEND_METRICS": "false", "CI": "1"},
    )
    assert built.returncode == 0, built.stderr[-2000:]
    assert "--dry-run: exiting now." in built.stdout


def test_the_next_dream_dev_stops_what_a_killed_one_and_its_reaper_left(tmp_path):
    """Both dream and its reaper killed (every process of the user, an out-of-memory kill): the workers keep serving,
    and the next `dream dev` of the project finds them through .dream/dev.json and stops them before it starts."""
    first = Dev(tmp_path, "shared")
    reaper = [
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and b"forget-group" in _read(entry / "cmdline") and _parent(entry) == first.process.pid
    ]
    assert len(reaper) == 1
    os.kill(reaper[0], signal.SIGKILL)
    first.process.kill()
    first.process.wait(timeout=30)
    left = processes_under(first.project)
    assert left  # orphans: nothing stopped them
    second = Dev(tmp_path, "shared", copy=lambda target: first.project)
    try:
        assert any("an earlier dream dev left" in line for line in second.lines), "".join(second.lines)
        assert not [pid for pid in left if Path(f"/proc/{pid}").exists()]
    finally:
        second.stop()
    assert processes_under(first.project) == []
    assert not (first.project / ".dream" / "dev.json").exists()


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:  # the process ended while we looked
        return b""


def _parent(entry: Path) -> int | None:
    fields = _read(entry / "stat").decode().rpartition(")")[2].split()
    return int(fields[1]) if len(fields) > 1 else None
