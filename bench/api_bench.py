"""api-multi under load on loopback: POST /api/data (secret key, usage counted) and the read-only
GET /api/whoami, at 1, 16 and 64 connections, and one hot end-user from 64 and from 256, with the server's CPU per
request, with wrk (Debian's `wrk`, installed if missing and possible).

The anchor: the same routes as a Worker (fixtures/workers/api-multi/src/index.js, the same keys and logic as dream's
api-multi) under wrangler 4.86's startWorker API (what `wrangler dev` runs, its inspector off) over the KV state
`dream flow run` wrote on the wrangler store. Both servers run for the whole bench on free ports and are measured in
turns, load after load, pair after pair (the order swapped each pair), so drift falls on both alike; each pair's
figures are printed, then the medians and spreads.

Run: .venv/bin/python bench/api_bench.py [--seconds 5] [--pairs 5] [--no-anchor]
Goals: >= 2x the anchor's req/s at 16 connections, p99 < 50 ms at 16, p99 <= 3x p50 at 64 in 8 of 10 pairs,
p99 <= 10x p50 at 256 connections on one hot end-user, zero lost increments.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dreamcli.stores.ports import scan_items  # noqa: E402
from emulator.serve import port_flags  # noqa: E402
from emulator.store import open_emulator_store  # noqa: E402

LUA = """
math.randomseed(os.time())
request = function()
  wrk.headers["X-User-Id"] = "bench_user_" .. math.random(1, 20000)
  return wrk.format(nil)
end
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ms(text: str) -> float:
    found = re.match(r"([\d.]+)(us|ms|s|m)$", text)
    if found is None:
        raise SystemExit(f"cannot read wrk's latency {text!r}")
    number, unit = found.groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def run_wrk(
    url: str, method: str, connections: int, seconds: int, headers: dict[str, str], script: Path
) -> dict[str, float]:
    # One wrk thread: on this 2-core machine the server's event loop needs the other core; with two wrk
    # threads the load generator itself preempts the server and the measured tail is wrk's, not the server's.
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script)]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    env = {**os.environ, "WRK_METHOD": method}
    out = subprocess.run(command + [url], capture_output=True, text=True, env=env, check=True).stdout
    if "Requests/sec" not in out:
        raise SystemExit(f"wrk gave no figures:\n{out}")
    total = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1)),
        "p99": ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)),
        "total": total,
        "ok": total - non2xx,
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(session: int) -> float:
    """CPU time of every live process in a session (wrangler and the workerd it starts)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[3]) == session:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def measured(cpu: Any, run: Any, *args: Any) -> dict[str, float]:
    """One wrk run, with the server's CPU time per request it answered."""
    before = cpu()
    figures = run(*args)
    figures["cpu_ms"] = (cpu() - before) * 1000 / max(1, figures["total"])
    return figures


LOADS: list[tuple[str, int]] = [
    ("data", 1),
    ("whoami", 1),
    ("data", 16),
    ("whoami", 16),
    ("data", 64),
    ("hot", 64),
    ("hot", 256),
]


def prepare(folder: Path) -> dict[str, Path]:
    """wrk's scripts: many end-users (POST and GET), and one hot end-user."""
    scripts = {"whoami": folder / "users.lua", "data": folder / "data.lua", "hot": folder / "hot.lua"}
    scripts["whoami"].write_text(LUA)
    scripts["data"].write_text('wrk.method = "POST"\n' + LUA)
    scripts["hot"].write_text('wrk.method = "POST"\n')
    return scripts


def load(
    base: str,
    secret_key: str,
    scripts: dict[str, Path],
    cpu: Any,
    seconds: int,
    route: str,
    connections: int,
    plan: str = "enterprise",
) -> dict[str, float]:
    """One wrk run of one load on one server, its end-users on `plan`."""
    auth = {"Authorization": f"Bearer {secret_key}", "X-User-Plan": plan}
    if route == "whoami":
        return measured(
            cpu,
            run_wrk,
            f"{base}/api/whoami",
            "GET",
            connections,
            seconds,
            {"Authorization": auth["Authorization"]},
            scripts["whoami"],
        )
    headers = {**auth, "X-User-Id": "hot"} if route == "hot" else auth
    return measured(cpu, run_wrk, f"{base}/api/data", "POST", connections, seconds, headers, scripts[route])


def counted_usage(store: Any, platform_id: str) -> tuple[int, int]:
    """(usage counted for the load's end-users, usage counted for the hot one) in the store's api-usage."""
    counted = sum(
        json.loads(raw)["usageCount"]
        for key, raw in scan_items(store.kv("api-usage"), prefix=f"usage:{platform_id}:")
        if key not in (f"usage:{platform_id}:warm", f"usage:{platform_id}:hot")
    )
    hot_raw = store.kv("api-usage").get(f"usage:{platform_id}:hot")
    return counted, json.loads(hot_raw)["usageCount"] if hot_raw else 0


def wait_until_answering(url: str, deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        probe = subprocess.run(
            ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", url], capture_output=True, text=True
        )
        if probe.stdout not in ("", "000"):
            return
        time.sleep(0.5)
    raise SystemExit(f"{url} did not answer within {deadline_s:.0f} s")


def start_anchor(folder: Path, dream: str) -> tuple[subprocess.Popen[bytes], str, dict[str, Any], Path] | str:
    """fixtures/workers/api-multi/src/index.js under wrangler's startWorker API (no inspector) on a free port, over
    the KV state `dream flow run` wrote into the guide's project on the wrangler store: (process, base URL, the
    flow's report, the project). A reason string when wrangler or the workers' dependencies are not installed."""
    from dreamcli.stores.wrangler_cli import dev_command

    wrangler = ROOT / ".cache" / "wrangler" / "node_modules" / ".bin" / "wrangler"
    if not wrangler.exists():
        return "wrangler is not installed in .cache/wrangler (.venv/bin/python -m tests.peers installs it)"
    project = folder / "workers"
    shutil.copytree(ROOT / "fixtures" / "workers", project, ignore=shutil.ignore_patterns("node_modules", ".wrangler*"))
    modules = ROOT / "fixtures" / "workers" / "node_modules"
    if not modules.is_dir():
        return "the reference workers' npm dependencies are not installed (npm ci --prefix fixtures/workers)"
    (project / "node_modules").symlink_to(modules, target_is_directory=True)
    run = json.loads(
        subprocess.run(
            [dream, "--store", f"wrangler:{project}", "flow", "run", "--json"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    port = free_port()
    env = {**os.environ, "WRANGLER_SEND_METRICS": "false", "CI": "1", "NO_COLOR": "1"}
    server = subprocess.Popen(
        dev_command(wrangler, str(project / "api-multi" / "wrangler.toml"), port),
        cwd=project / "api-multi",
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # wrangler and its workerd in one session: measured and stopped together
    )
    base = f"http://127.0.0.1:{port}"
    wait_until_answering(f"{base}/api/whoami", 90)
    return server, base, run, project


def stop_group(server: subprocess.Popen[Any]) -> None:
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def main() -> None:
    from bench.paired import Pairs

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=5, help="Each wrk run's length.")
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--no-anchor", action="store_true", help="Skip the wrangler anchor.")
    parser.add_argument(
        "--loads",
        help="Only these loads, e.g. data:64,hot:256 (route:connections; routes data, whoami, hot).",
    )
    args = parser.parse_args()
    loads = LOADS
    if args.loads:
        loads = [
            (route, int(connections)) for route, _, connections in (p.partition(":") for p in args.loads.split(","))
        ]
    if shutil.which("wrk") is None:
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], capture_output=True)
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install wrk): no load generator, no figures")
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(ROOT / "dreamcli"), str(ROOT / "emulator")],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    folder = Path(tempfile.mkdtemp(prefix="dream-api-"))
    scripts = prepare(folder)
    dream = str(Path(sys.executable).with_name("dream"))
    run = json.loads(
        subprocess.run([dream, "flow", "run", "--json"], cwd=folder, capture_output=True, text=True, check=True).stdout
    )
    port = free_port()
    server = subprocess.Popen(
        [dream, "emulator", "serve", *port_flags({"api-multi": port})],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    anchor: Any = "skipped (--no-anchor)"
    results: dict[str, list[dict[str, float]]] = {}
    try:
        server.stdout.readline()  # the first port line: it is listening
        base = f"http://127.0.0.1:{port}"
        wait_until_answering(f"{base}/api/whoami", 30)
        if not args.no_anchor:
            anchor = start_anchor(folder, dream)
        sides: dict[str, tuple[str, str, Any]] = {"dream": (base, run["secretKey"], lambda: cpu_seconds(server.pid))}
        if not isinstance(anchor, str):
            anchor_server, anchor_base, anchor_run, _ = anchor
            sides["anchor"] = (anchor_base, anchor_run["secretKey"], lambda: tree_cpu_seconds(anchor_server.pid))
        for number in range(args.pairs):
            order = list(sides) if number % 2 == 0 else list(reversed(sides))
            for route, connections in loads:
                for side in order:
                    side_base, key, cpu = sides[side]
                    figures = load(side_base, key, scripts, cpu, args.seconds, route, connections)
                    results.setdefault(f"{side} {route} {connections}", []).append(figures)
            print(f"pair {number + 1} of {args.pairs} done", file=sys.stderr)
    finally:
        stop_group(server)
        if not isinstance(anchor, str):
            stop_group(anchor[0])
    if isinstance(anchor, str):
        print(f"anchor: none ({anchor})")
    print(
        f"{args.pairs} pairs of {args.seconds} s wrk runs, one wrk thread, loopback, this machine's {os.cpu_count()} cores"
    )
    for route, connections in loads:
        mine = results[f"dream {route} {connections}"]
        label = {"data": "POST /api/data", "whoami": "GET /api/whoami", "hot": "POST /api/data, one hot end-user"}[
            route
        ]
        print(f"{label}, {connections} connections:")
        print(
            "  dream p50/p99 ms: "
            + " ".join(f"{f['p50']:.1f}/{f['p99']:.1f}" for f in mine)
            + f"; server CPU {statistics.median(f['cpu_ms'] for f in mine):.3f} ms a request"
        )
        tail = [f["p99"] / f["p50"] for f in mine]
        print(f"  dream p99/p50: {' '.join(f'{t:.1f}' for t in tail)} (median {statistics.median(tail):.1f})")
        if f"anchor {route} {connections}" in results:
            theirs = results[f"anchor {route} {connections}"]
            rps = Pairs("  req/s, dream / anchor", "req/s", second="anchor")
            for a, b in zip(mine, theirs, strict=True):
                rps.add(a["rps"], b["rps"])
            rps.print()
            print(
                "  anchor p50/p99 ms: "
                + " ".join(f"{f['p50']:.1f}/{f['p99']:.1f}" for f in theirs)
                + f"; its CPU {statistics.median(f['cpu_ms'] for f in theirs):.3f} ms a request"
            )
        else:
            print("  dream req/s: " + " ".join(f"{f['rps']:.0f}" for f in mine))
    at64 = [f["p99"] / f["p50"] for f in results["dream data 64"]]
    at256 = [f["p99"] / f["p50"] for f in results["dream hot 256"]]
    print(f"goal p99 <= 3x p50 at 64 connections: held in {sum(t <= 3 for t in at64)} of {len(at64)} pairs")
    print(
        f"goal p99 <= 10x p50 at 256 connections, one hot end-user: held in {sum(t <= 10 for t in at256)} of {len(at256)}"
    )
    store = open_emulator_store(folder / ".dream" / "emulator.db")
    counted, hot_counted = counted_usage(store, run["platformId"])
    store.close()
    served = sum(f["ok"] for key, runs in results.items() if key.startswith("dream data") for f in runs)
    hot_ok = sum(f["ok"] for key, runs in results.items() if key.startswith("dream hot") for f in runs)
    print(
        f"usage: {counted:,} counted for {served:,} successful /api/data calls wrk saw ({max(0, served - counted):,} "
        f"lost); one hot end-user: {hot_counted:,} counted for {hot_ok:,} answered 200 (the rest 429: 60 a minute)"
    )
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
