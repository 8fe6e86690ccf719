"""api-multi under load on loopback: POST /api/data (secret key, usage counted) and the read-only
GET /api/whoami, at 1, 16 and 64 connections (and one hot end-user from 64), with the server's CPU per
request, with wrk (Debian's `wrk`, installed if missing and possible).

The anchor runs in the same run: the same two routes as a Worker (fixtures/workers/api-multi/src/index.js, the same keys and
logic as dream's api-multi) under `wrangler dev` 4.86 over the KV state `dream flow run` wrote on the wrangler
store, loaded exactly like dream's server.

Run: .venv/bin/python bench/api_bench.py [--seconds 10] [--no-anchor]
Goals: >= 2x the anchor's req/s at 16 connections, p99 < 50 ms at 16 and <= 3x p50 at 64, zero lost increments.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dreamcli.stores.ports import scan_items  # noqa: E402
from dreamcli.stores.wrangler import open_wrangler_store  # noqa: E402
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


def suite(base: str, secret_key: str, folder: Path, cpu: Any, seconds: int) -> dict[Any, dict[str, float]]:
    """The same load on a server: /api/data and /api/whoami at 1, 16 and 64 connections, one hot end-user."""
    script = folder / "users.lua"
    script.write_text(LUA)
    auth = {"Authorization": f"Bearer {secret_key}", "X-User-Plan": "enterprise"}
    warm = {**auth, "X-User-Id": "warm"}
    subprocess.run(
        ["curl", "-s", "-X", "POST", f"{base}/api/data", *sum([["-H", f"{k}: {v}"] for k, v in warm.items()], [])],
        capture_output=True,
    )
    results: dict[Any, dict[str, float]] = {}
    data_script = folder / "data.lua"
    data_script.write_text('wrk.method = "POST"\n' + LUA)
    for connections in (1, 16, 64):
        results[("data", connections)] = measured(
            cpu, run_wrk, f"{base}/api/data", "POST", connections, seconds, auth, data_script
        )
        if connections < 64:
            whoami = {"Authorization": auth["Authorization"]}
            results[("whoami", connections)] = measured(
                cpu, run_wrk, f"{base}/api/whoami", "GET", connections, seconds, whoami, script
            )
    # Contention: one hot end-user from 64 connections, every call a read-modify-write of the same keys.
    hot_script = folder / "hot.lua"
    hot_script.write_text('wrk.method = "POST"\n')
    results["hot"] = measured(
        cpu, run_wrk, f"{base}/api/data", "POST", 64, seconds, {**auth, "X-User-Id": "hot"}, hot_script
    )
    return results


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


def anchor_suite(folder: Path, dream: str, seconds: int) -> tuple[dict[Any, dict[str, float]], tuple[int, int]] | str:
    """The same load on fixtures/workers/api-multi/src/index.js under `wrangler dev`, over KV state `dream flow run` wrote into
    the guide's project on the wrangler store. A reason string when wrangler is not installed."""
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
        [str(wrangler), "dev", "--ip", "127.0.0.1", "--port", str(port), "--log-level", "error"],
        cwd=project / "api-multi",
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # wrangler and its workerd in one session: measured and stopped together
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_answering(f"{base}/api/whoami", 60)
        results = suite(base, run["secretKey"], folder, lambda: tree_cpu_seconds(server.pid), seconds)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    store = open_wrangler_store(str(project))
    try:
        return results, counted_usage(store, run["platformId"])
    finally:
        store.close()


def report(name: str, results: dict[Any, dict[str, float]], usage: tuple[int, int], anchor: Any) -> None:
    print(f"{name}:")
    for key, figures in sorted((k, v) for k, v in results.items() if k != "hot"):
        route, connections = key
        label = "POST /api/data " if route == "data" else "GET /api/whoami"
        versus = ""
        if isinstance(anchor, dict) and key in anchor:
            versus = f"({figures['rps'] / anchor[key]['rps']:.2f}x the anchor)"
        print(
            f"  {label} c={connections:<2}  {figures['rps']:8.0f} req/s {versus:20} p50 {figures['p50']:6.1f} ms  "
            f"p99 {figures['p99']:6.1f} ms (p99/p50 {figures['p99'] / figures['p50']:.1f})  "
            f"{figures['ok']:,}/{figures['total']:,} ok  server CPU {figures['cpu_ms']:.3f} ms/request"
        )
    counted, hot_counted = usage
    hot = results["hot"]
    print(
        f"  one hot end-user, c=64: {hot['total']:,} calls, {hot['ok']:,} answered 200 (the rest 429: 60 a minute), "
        f"usage counted {hot_counted:,}: {abs(hot['ok'] - hot_counted):,} lost or extra"
    )
    served = sum(results[("data", c)]["ok"] for c in (1, 16, 64))
    print(
        f"  usage counted {counted:,} for {served:,} successful /api/data calls wrk saw: "
        f"{max(0, served - counted):,} lost (counted may exceed what wrk saw by the calls in flight when it stopped)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--no-anchor", action="store_true", help="Skip the wrangler dev anchor.")
    args = parser.parse_args()
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
    dream = str(Path(sys.executable).with_name("dream"))
    run = json.loads(
        subprocess.run([dream, "flow", "run", "--json"], cwd=folder, capture_output=True, text=True, check=True).stdout
    )
    port = free_port()
    ports = port_flags({"api-multi": port})
    server = subprocess.Popen(
        [dream, "emulator", "serve", *ports], cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        server.stdout.readline()  # the first port line: it is listening
        time.sleep(0.5)
        results = suite(
            f"http://127.0.0.1:{port}", run["secretKey"], folder, lambda: cpu_seconds(server.pid), args.seconds
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
    store = open_emulator_store(folder / ".dream" / "emulator.db")
    usage = counted_usage(store, run["platformId"])
    store.close()
    # The anchor after dream's server: what wrangler and workerd leave behind as they stop (writeback, exiting
    # processes) lengthened dream's tail when the anchor ran first.
    anchor = "skipped (--no-anchor)" if args.no_anchor else anchor_suite(folder, dream, args.seconds)
    if isinstance(anchor, str):
        print(f"anchor: none ({anchor})")
    else:
        report(
            "anchor: fixtures/workers/api-multi/src/index.js under wrangler dev 4.86, same state, same load",
            *anchor,
            None,
        )
    report("dream emulator serve", results, usage, anchor[0] if not isinstance(anchor, str) else None)
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
