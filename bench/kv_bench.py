"""KV benchmark on the emulator store: bulk put, list --all, random gets, against a raw sqlite3 scan.

Run: .venv/bin/python bench/kv_bench.py [--keys 1000000] [--gets 100000]
Prints keys/s for each phase and the ratio of `list --all` to the raw scan (the floor).
Goals (issue 2): list within 3x of the floor; bulk put >= 200,000 keys/s.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.paired import Pairs  # noqa: E402
from dreamcli.stores.bulk import check_all, write_in_batches  # noqa: E402
from dreamcli.stores.ports import KVWrite, iter_keys  # noqa: E402
from emulator.store import open_emulator_store  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--gets", type=int, default=100_000)
    parser.add_argument("--value-bytes", type=int, default=64)
    parser.add_argument("--pairs", type=int, default=5, help="Pairs of (list --all, raw scan) measured in turns.")
    parser.add_argument("--cli", action=argparse.BooleanOptionalAction, default=True, help="also time the CLI process")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="dream-bench-"))
    path = folder / "bench.db"
    store = open_emulator_store(path)
    ns = store.kv("api-tokens")
    value = b"v" * args.value_bytes
    rng = random.Random(7)
    # Guide-shaped keys in random order, as a real seeding would write them.
    keys = [f"secretkey:{rng.getrandbits(256):064x}:publishableKey" for _ in range(args.keys)]

    items = [KVWrite(key, value) for key in keys]

    # The store port: 10,000-pair bulk_put transactions (Cloudflare's request size), keys in order, into a fresh file;
    # the floor: plain sqlite3 executemany of the same rows, same batches, same schema and settings, fresh file. In
    # turns, pair after pair; the last pair's store file is the one the rest of the bench reads.
    ordered = sorted(items, key=lambda item: item.key)
    rows = [(item.key, value) for item in ordered]
    putting = Pairs("bulk put / plain sqlite3 executemany, keys/s", "keys/s")
    for number in range(args.pairs):
        store.close()
        for leftover in folder.glob("*"):
            shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
        store = open_emulator_store(path)
        ns = store.kv("api-tokens")
        started = time.perf_counter()
        for start in range(0, len(ordered), 10_000):
            ns.bulk_put(ordered[start : start + 10_000])
        put_s = time.perf_counter() - started
        floor_path = folder / f"floor{number}.db"
        open_emulator_store(floor_path).close()  # the same schema, made by the same migrations
        plain = sqlite3.connect(floor_path, isolation_level=None)
        for pragma in ("journal_mode = WAL", "synchronous = NORMAL", "cache_size = -32768", "temp_store = MEMORY"):
            plain.execute(f"PRAGMA {pragma}")
        started = time.perf_counter()
        for start in range(0, len(rows), 10_000):
            plain.execute("BEGIN IMMEDIATE")
            plain.executemany(
                f"INSERT OR REPLACE INTO _dream_kv (ns, key, value) VALUES ({ns.seq:d}, ?, ?)",
                rows[start : start + 10_000],
            )
            plain.execute("COMMIT")
        floor_put_s = time.perf_counter() - started
        plain.close()
        putting.add(args.keys / put_s, args.keys / floor_put_s)
    del rows

    # The same pairs in arrival order (overwrites): every batch touches B-tree pages all over the file.
    started = time.perf_counter()
    for start in range(0, len(items), 10_000):
        ns.bulk_put(items[start : start + 10_000])
    random_put_s = time.perf_counter() - started

    # What `dream kv bulk-put FILE` does after parsing: check every pair, sort, write in batches.
    started = time.perf_counter()
    check_all(items, now=time.time())
    write_in_batches(ns, items)
    cli_put_s = time.perf_counter() - started

    # list --all against the raw scan, in turns, pair after pair.
    listing = Pairs("list --all / raw sqlite3 scan of the same keys", "s")
    raw = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    for _ in range(args.pairs):
        started = time.perf_counter()
        listed = sum(1 for _ in iter_keys(ns))
        list_s = time.perf_counter() - started
        started = time.perf_counter()
        floor_rows = sum(1 for _ in raw.execute("SELECT key FROM _dream_kv WHERE ns = ?", (ns.seq,)))
        floor_s = time.perf_counter() - started
        listing.add(list_s, floor_s)
    raw.close()
    assert listed == len(set(keys)) == floor_rows, (listed, len(set(keys)), floor_rows)

    sample = [rng.choice(keys) for _ in range(args.gets)]
    started = time.perf_counter()
    for key in sample:
        assert ns.get(key) is not None
    get_s = time.perf_counter() - started
    store.close()

    print(f"keys: {args.keys:,}  value: {args.value_bytes} B  store: {path} ({path.stat().st_size / 2**20:.0f} MiB)")
    putting.print()
    print(f"  bulk put {args.keys / put_s:,.0f} keys/s in its last pair (10k batches in key order; goal >= 200,000)")
    print(
        f"  unsorted    {random_put_s:8.2f} s  {args.keys / random_put_s:12,.0f} keys/s   (10k batches in arrival order)"
    )
    print(
        f"  check+sort  {cli_put_s:8.2f} s  {args.keys / cli_put_s:12,.0f} keys/s   (kv bulk-put's path after parsing JSON)"
    )
    listing.print()
    print(f"  list --all {listed / list_s:,.0f} keys/s (store port, 1000-key pages); goal <= 3x the raw scan")
    print(f"random get    {get_s:8.2f} s  {args.gets / get_s:12,.0f} gets/s")
    if args.cli:
        dream = Path(sys.executable).with_name("dream")
        env = {**os.environ, "DREAM_STORE": str(path)}
        started = time.perf_counter()
        with open(os.devnull, "wb") as sink:
            subprocess.run([str(dream), "kv", "list", "--ns", "api-tokens", "--all"], stdout=sink, env=env, check=True)
        cli_s = time.perf_counter() - started
        print(
            f"dream kv list --all (process, to /dev/null) {cli_s:6.2f} s  {listed / cli_s:10,.0f} keys/s  "
            f"{cli_s / floor_s:.2f}x the floor"
        )
    shutil.rmtree(folder)  # the store, its WAL and its D1 folder


if __name__ == "__main__":
    main()
