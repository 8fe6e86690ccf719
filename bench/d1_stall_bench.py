"""Does D1's worst statement delay the API? `/api/data` latency (p50, p99, max) from 4 connections, first alone, then
while the worst D1 statement a caller can send runs over Cloudflare's REST API (a recursive CTE that D1 stops at its
30 s limit: it holds D1's lock all that while) and while another process holds D1's write lock outright.

Each busy run is paired with a run alone just before it (bench/paired.py), --pairs times (the worst statement
holds D1 until its 30 s limit: a pair takes about half a minute).

Run: .venv/bin/python bench/d1_stall_bench.py [--calls 400] [--pairs 5]
Goal: p99 while D1 is busy within 2x of p99 alone (before the fix, calls stalled 12-30 s: the dashboard's flush
waited for D1's lock on the event loop).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.paired import Pairs  # noqa: E402
from tests.processes import port_flags_free  # noqa: E402

DREAM = str(Path(sys.executable).with_name("dream"))
WORST = "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c) SELECT count(*) FROM c"  # endless until 30 s


def latencies(api: str, secret: str, calls: int, connections: int = 4) -> list[float]:
    """Milliseconds of `calls` POST /api/data over `connections` keep-alive connections at once."""
    found: list[float] = []
    lock = threading.Lock()

    def worker(index: int) -> None:
        with httpx.Client(timeout=120) as http:
            for n in range(index, calls, connections):
                started = time.perf_counter()
                answer = http.post(
                    f"{api}/api/data",
                    headers={"Authorization": f"Bearer {secret}", "X-User-Id": f"u{n}", "X-User-Plan": "enterprise"},
                )
                elapsed = (time.perf_counter() - started) * 1000
                if answer.status_code != 200:
                    raise SystemExit(f"/api/data answered {answer.status_code}: {answer.text[:200]}")
                with lock:
                    found.append(elapsed)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return found


def summary(label: str, found: list[float]) -> float:
    ordered = sorted(found)
    p99 = ordered[int(len(ordered) * 0.99) - 1]
    print(f"  {label:<44} p50 {statistics.median(ordered):7.2f} ms   p99 {p99:7.2f} ms   max {ordered[-1]:8.2f} ms")
    return p99


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--pairs", type=int, default=5)
    args = parser.parse_args()
    rest = Pairs("p99 while D1 runs its worst statement / p99 alone", "ms", "busy", "alone")
    held = Pairs("p99 while another process holds D1's lock / p99 alone", "ms", "busy", "alone")
    with tempfile.TemporaryDirectory(prefix="dream-d1-stall-") as tmp:
        folder = Path(tmp)
        flow = json.loads(
            subprocess.run([DREAM, "flow", "run", "--json"], cwd=folder, capture_output=True, text=True).stdout
        )
        server = subprocess.Popen(
            [DREAM, "emulator", "serve", *port_flags_free()],
            cwd=folder,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert server.stdout is not None
            urls = dict(server.stdout.readline().split() for _ in range(7))
            config = httpx.get(
                f"{urls['vendors']}/_emulator/config",
                headers={
                    "Authorization": f"Bearer {(folder / '.dream' / 'emulator.db.admin-token').read_text().strip()}"
                },
            ).json()["cloudflare"]
            api, secret = urls["api-multi"], flow["secretKey"]
            latencies(api, secret, 50)  # warm up
            query = f"{config['base_url']}/accounts/{config['account_id']}/d1/database/00000000-0000-4000-8000-00000000d1d1/query"
            d1_file = next((folder / ".dream" / "emulator.db.d1").glob("*.sqlite"))
            for number in range(args.pairs):
                print(f"pair {number + 1}")
                alone = summary("alone", latencies(api, secret, args.calls))
                worst = threading.Thread(
                    target=lambda: httpx.post(
                        query,
                        headers={"Authorization": f"Bearer {config['api_token']}"},
                        json={"sql": WORST},
                        timeout=120,
                    )
                )
                worst.start()
                time.sleep(0.5)  # it holds D1 now
                rest.add(summary("while D1 runs its worst statement (REST)", latencies(api, secret, args.calls)), alone)
                worst.join()
                alone = summary("alone", latencies(api, secret, args.calls))
                holder = subprocess.Popen(
                    [
                        sys.executable,
                        "-c",
                        "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
                        "c.execute('BEGIN IMMEDIATE'); print('locked', flush=True); sys.stdin.read()",
                        str(d1_file),
                    ],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
                assert holder.stdout is not None and holder.stdin is not None
                holder.stdout.readline()
                held.add(summary("while another process holds D1's lock", latencies(api, secret, args.calls)), alone)
                holder.stdin.close()
                holder.wait()
        finally:
            server.terminate()
            server.wait(timeout=60)
    rest.print()
    held.print()
    print(
        f"goal: p99 while D1 is busy <= 2x p99 alone, in the medians: {'met' if max(rest.median(), held.median()) <= 2 else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
