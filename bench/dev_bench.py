"""`dream dev` and the flow over the workers: (a) the time from `dream dev` to every service ready, against the
floor of the same run: three bare `wrangler dev` starts of api-multi one after another (dream dev starts the
workers one at a time, as it must); (b) `dream flow run --workers` end to end (a whole CLI process: signup to
the guide's curl through the workers' routes, then verify), against `dream flow run` on dream's own model.

Run: .venv/bin/python bench/dev_bench.py [--runs 3]
Needs wrangler in .cache/wrangler and `npm ci` in fixtures/workers (`.ci/run` does both).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
WRANGLER = ROOT / ".cache" / "wrangler" / "node_modules" / ".bin" / "wrangler"
DREAM = str(Path(sys.executable).with_name("dream"))
ENV = {name: value for name, value in os.environ.items() if name != "DREAM_STORE"}


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for probe in sockets:
        probe.bind(("127.0.0.1", 0))
    ports = [probe.getsockname()[1] for probe in sockets]
    for probe in sockets:
        probe.close()
    return ports


def project_in(folder: Path) -> Path:
    project = folder / "workers"
    shutil.copytree(ROOT / "fixtures" / "workers", project, ignore=shutil.ignore_patterns("node_modules", ".wrangler*"))
    (project / "node_modules").symlink_to(ROOT / "fixtures" / "workers" / "node_modules", target_is_directory=True)
    return project


def bare_wrangler_start(folder: Path) -> float:
    """One `wrangler dev` of api-multi, from start to its first answer."""
    project = project_in(folder)
    (port,) = free_ports(1)
    started = time.perf_counter()
    server = subprocess.Popen(
        [str(WRANGLER), "dev", "--ip", "127.0.0.1", "--port", str(port), "--inspector-port", "0"],
        cwd=project / "api-multi",
        env={**ENV, "WRANGLER_SEND_METRICS": "false", "CI": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
                return time.perf_counter() - started
            except httpx.TransportError:
                time.sleep(0.05)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def dream_dev_round(folder: Path) -> tuple[float, float]:
    """`dream dev` to all ready, then one `dream flow run --workers`: (seconds to ready, seconds of the flow)."""
    project = project_in(folder)
    names = ("api", "front", "oauth", "vendor", "stripe", "clerk")
    flags = [part for name, port in zip(names, free_ports(6), strict=True) for part in (f"--{name}-port", str(port))]
    started = time.perf_counter()
    dev = subprocess.Popen(
        [DREAM, "dev", str(project), "--timeout", "300", *flags],
        cwd=folder,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert dev.stderr is not None
        while not (line := dev.stderr.readline()).startswith("next: "):
            if not line:
                raise SystemExit("dream dev exited before it was ready")
        ready = time.perf_counter() - started
        store = line.split("--store ")[1].split()[0]
        urls = line.split("--urls ")[1].split()[0]
        begun = time.perf_counter()
        subprocess.run(
            [DREAM, "flow", "run", "--workers", "--urls", urls, "--store", store],
            cwd=folder,
            env=ENV,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return ready, time.perf_counter() - begun
    finally:
        dev.send_signal(signal.SIGTERM)
        dev.wait(timeout=60)


def model_flow(folder: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        [DREAM, "--store", f"emulator:{folder / 'model.db'}", "flow", "run"],
        cwd=folder,
        env=ENV,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if not WRANGLER.exists() or not (ROOT / "fixtures" / "workers" / "node_modules" / "stripe").is_dir():
        raise SystemExit(
            "needs wrangler in .cache/wrangler and `npm ci --prefix fixtures/workers` (.venv/bin/python -m tests.peers installs both)"
        )
    bare, ready, flows, models = [], [], [], []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="dream-dev-bench-") as tmp:
            folder = Path(tmp)
            bare.append(bare_wrangler_start(folder / "bare"))
            (folder / "dev").mkdir()
            up, flow = dream_dev_round(folder / "dev")
            ready.append(up)
            flows.append(flow)
            models.append(model_flow(folder))
        print(
            f"run {run + 1}: bare wrangler dev {bare[-1]:.2f} s, dream dev ready {up:.2f} s, flow --workers {flow:.2f} s"
        )
    floor = 3 * statistics.median(bare)
    print(
        f"(a) dream dev to all ready      median {statistics.median(ready):6.2f} s   floor (3 bare wrangler dev starts) "
        f"{floor:.2f} s   ratio {statistics.median(ready) / floor:.2f}x"
    )
    print(
        f"(b) dream flow run --workers    median {statistics.median(flows):6.2f} s   dream flow run (model) "
        f"{statistics.median(models):.2f} s   ratio {statistics.median(flows) / statistics.median(models):.2f}x"
    )


if __name__ == "__main__":
    main()
