"""Replication benchmark: seed N platforms in the guide's layout with a fraction of drift, then time
`verify` against a raw sqlite3 scan of the same rows, measure its peak memory, and time `repair`.

Run: .venv/bin/python bench/replication_bench.py [--platforms 100000] [--drift 0.10]
Goals (issue 5): verify of 100,000 platforms <= 4x the raw scan, peak memory < 200 MB;
repair of 10% drift >= 50,000 keys/s.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dreamcli.platform import replication, synthetic  # noqa: E402
from emulator.store import open_emulator_store  # noqa: E402

VERIFY_CHILD = """
import sys, time, tracemalloc
def hwm_kb():  # this process's peak RSS (VmHWM starts afresh at exec, unlike ru_maxrss)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
from dreamcli.platform import replication
from emulator.store import open_emulator_store
store = open_emulator_store(sys.argv[1])
base = hwm_kb()
started = time.perf_counter()
result = replication.verify(store)
untraced = time.perf_counter() - started
peak = hwm_kb()  # before tracemalloc, whose own bookkeeping would inflate it
tracemalloc.start()
replication.verify(store)
heap = tracemalloc.get_traced_memory()[1]
tracemalloc.stop()
print(untraced, result.keys_scanned, len(result.findings), base, peak, heap // 1024)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--platforms", type=int, default=100_000)
    parser.add_argument("--drift", type=float, default=0.10)
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="dream-repl-"))
    path = folder / "bench.db"
    store = open_emulator_store(path)
    started = time.perf_counter()
    seeded = synthetic.seed(store, args.platforms, drift=args.drift)
    seed_s = time.perf_counter() - started
    ids = (store.kv("platform-tokens").seq, store.kv("api-tokens").seq)  # type: ignore[attr-defined]
    store.close()

    raw = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    started = time.perf_counter()
    raw_rows = sum(1 for _ in raw.execute("SELECT key, value FROM _dream_kv WHERE ns IN (?, ?) ORDER BY ns, key", ids))
    raw_s = time.perf_counter() - started
    raw.close()

    # verify in a child process, so its peak RSS is its own
    out = subprocess.run(
        [sys.executable, "-c", VERIFY_CHILD, str(path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    verify_s, scanned, findings, base_kb, peak_kb, heap_kb = out.stdout.split()
    verify_s = float(verify_s)

    store = open_emulator_store(path)
    result = replication.verify(store)
    plan = replication.plan_repair(result)
    started = time.perf_counter()
    done, failed = replication.apply_plan(store, plan)
    repair_s = time.perf_counter() - started
    after = replication.verify(store)
    store.close()

    print(
        f"platforms: {args.platforms:,}  keys seeded: {seeded.keys:,}  drifted platforms: {seeded.drifted:,} "
        f"(seeded in {seed_s:.1f} s)"
    )
    print(
        f"raw scan        {raw_s:8.2f} s  {raw_rows / raw_s:12,.0f} rows/s   (sqlite3 SELECT key, value of both token namespaces)"
    )
    print(f"verify          {verify_s:8.2f} s  {int(scanned) / verify_s:12,.0f} keys/s   {int(findings):,} findings")
    print(f"verify/raw      {verify_s / raw_s:8.2f} x                          (goal <= 4x)")
    print(
        f"peak memory     {int(peak_kb) / 1024:8.0f} MB process RSS ({int(base_kb) / 1024:.0f} MB before verify; "
        f"SQLite's page cache and mapped file pages count here); Python heap peak {int(heap_kb) / 1024:.0f} MB   (goal < 200 MB)"
    )
    print(
        f"repair          {repair_s:8.2f} s  {done / repair_s if repair_s else 0:12,.0f} keys/s   "
        f"{done:,} actions, {len(failed)} failed; verify after: {len(after.findings)} findings   (goal >= 50,000 keys/s)"
    )
    shutil.rmtree(folder)  # the store, its WAL and its D1 folder


if __name__ == "__main__":
    main()
