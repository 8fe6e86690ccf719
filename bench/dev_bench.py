"""`dream dev` and the flow over the workers, in pairs (bench/paired.py): (a) the time from `dream dev` to every
service ready, against the floor measured beside it: three bare starts of api-multi one after another, each through
wrangler's startWorker API with no inspector, as dream dev starts its workers (it starts them one at a time, as it
must); (b) `dream flow run --workers` end to end (a whole CLI process: signup to the guide's curl through the
workers' routes, then verify), against `dream flow run` on dream's own model. Every port is chosen free; no
DevTools inspector is opened.

Run: .venv/bin/python bench/dev_bench.py [--pairs 5]
Needs wrangler in .cache/wrangler and `npm ci` in fixtures/workers (`.ci/run` does both).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
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
    """One start of api-multi as dream dev starts a worker (wrangler's startWorker API, no inspector), from start to
    its first answer."""
    from dreamcli.stores.wrangler_cli import dev_command

    project = project_in(folder)
    (port,) = free_ports(1)
    started = time.perf_counter()
    server = subprocess.Popen(
        dev_command(WRANGLER, str(project / "api-multi" / "wrangler.toml"), port),
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
    names = ("api", "front", "oauth", "vendor", "stripe", "clerk", "console")
    flags = [part for name, port in zip(names, free_ports(7), strict=True) for part in (f"--{name}-port", str(port))]
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
    sys.path.insert(0, str(ROOT))
    from bench.paired import Pairs

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=5)
    args = parser.parse_args()
    if not WRANGLER.exists() or not (ROOT / "fixtures" / "workers" / "node_modules" / "stripe").is_dir():
        raise SystemExit(
            "needs wrangler in .cache/wrangler and `npm ci --prefix fixtures/workers` (.venv/bin/python -m tests.peers installs both)"
        )
    starting = Pairs("(a) dream dev to all ready / 3 bare worker starts", "s", "dream dev", "3 bare starts")
    flowing = Pairs("(b) dream flow run --workers / dream flow run on the model", "s", "--workers", "model")
    for number in range(args.pairs):
        with tempfile.TemporaryDirectory(prefix="dream-dev-bench-") as tmp:
            folder = Path(tmp)
            bare = sum(bare_wrangler_start(folder / f"bare{i}") for i in range(3))
            (folder / "dev").mkdir()
            up, flow = dream_dev_round(folder / "dev")
            model = model_flow(folder)
        starting.add(up, bare)
        flowing.add(flow, model)
        print(
            f"pair {number + 1}: 3 bare starts {bare:.2f} s, dream dev ready {up:.2f} s, flow --workers {flow:.2f} s, model {model:.2f} s"
        )
    starting.print()
    flowing.print()


if __name__ == "__main__":
    main()
