"""The API at scale: `dream emulator serve`'s api-multi (POST /api/data, many end-users) over stores of 10,000, 100,000
and 1,000,000 seeded platforms, against the same server over a store of one platform seeded the same way, in turns,
pair after pair. What it shows: whether a call costs more as the store grows (each call reads three api-tokens keys
and updates two api-usage keys by their B-tree key, so it should not, but for the pages a bigger file keeps out of
the cache).

The seeded files are `replication_bench.py`'s (the same `synthetic.seed`, 10% drift); with --keep they are reused
from its folder. A key pair is made for one platform of each store (`keys.create_key`, as `dream keys create` does),
its end-users on the seeded `pro` tier.

Run: .venv/bin/python bench/api_scale_bench.py [--platforms 10000,100000,1000000] [--keep DIR] [--pairs 5]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.api_bench import (  # noqa: E402
    cpu_seconds,
    free_port,
    load,
    prepare,
    stop_group,
    wait_until_answering,
)
from bench.paired import Pairs  # noqa: E402
from dreamcli.platform import keys, synthetic  # noqa: E402
from emulator.serve import port_flags  # noqa: E402
from emulator.store import open_emulator_store  # noqa: E402


def seeded_store(folder: Path, platforms: int, keep: Path | None) -> Path:
    """A copy of a store seeded with `platforms` platforms (reused from `keep` when it holds one)."""
    path = folder / f"store-{platforms}.db"
    kept = keep / f"seeded-{platforms}-0.1.db" if keep else None
    if kept is not None and kept.exists():
        shutil.copyfile(kept, path)
    else:
        store = open_emulator_store(path)
        synthetic.seed(store, platforms, drift=0.1 if platforms > 1 else 0.0)
        store.close()
        if kept is not None:
            kept.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, kept)
    return path


def with_key(path: Path) -> str:
    """A new live key pair for the store's first healthy platform: its secret key."""
    store = open_emulator_store(path)
    try:
        for plt in synthetic.platform_ids(store):
            if store.kv("api-tokens").get(f"platform:{plt}:tierConfig") is not None:
                return keys.create_key(store, plt, "live", now=time.time()).pair.secret_key
        raise SystemExit(f"{path}: no platform with a tier config")
    finally:
        store.close()


def serve(path: Path, folder: Path) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    dream = str(Path(sys.executable).with_name("dream"))
    server = subprocess.Popen(
        [dream, "--store", f"emulator:{path}", "emulator", "serve", *port_flags({"api-multi": port})],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    wait_until_answering(f"{base}/api/whoami", 60)
    return server, base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--platforms", default="10000,100000,1000000", help="Store sizes, comma-separated.")
    parser.add_argument("--keep", type=Path, help="replication_bench.py's --keep folder: its seeded files are reused.")
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=5, help="Each wrk run's length.")
    parser.add_argument("--connections", default="1,64", help="wrk connections, comma-separated.")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install wrk): no load generator, no figures")
    sizes = [int(n) for n in args.platforms.split(",")]
    connections = [int(n) for n in args.connections.split(",")]
    folder = Path(tempfile.mkdtemp(prefix="dream-api-scale-"))
    scripts = prepare(folder)
    servers: list[subprocess.Popen[str]] = []
    try:
        sides: dict[int, tuple[str, str, Any]] = {}
        for size in [1, *sizes]:
            path = seeded_store(folder, size, args.keep if size > 1 else None)
            secret = with_key(path)
            server, base = serve(path, folder)
            servers.append(server)
            pid = server.pid
            sides[size] = (base, secret, lambda pid=pid: cpu_seconds(pid))
            print(f"serving {size:,} platforms ({path.stat().st_size / 2**20:,.0f} MiB)", file=sys.stderr)
        rates = {
            (size, c): Pairs(
                f"{size:,} platforms / one, {c} connections", "req/s", first="seeded", second="one platform"
            )
            for size in sizes
            for c in connections
        }
        tails: dict[tuple[int, int], list[tuple[float, float]]] = {}
        for number in range(args.pairs):
            for c in connections:
                for size in sizes:
                    order = [1, size] if number % 2 == 0 else [size, 1]
                    figures = {}
                    for side in order:
                        base, secret, cpu = sides[side]
                        figures[side] = load(base, secret, scripts, cpu, args.seconds, "data", c, plan="pro")
                        if figures[side]["ok"] != figures[side]["total"]:
                            sys.exit(
                                f"{side:,} platforms: {figures[side]['total'] - figures[side]['ok']:,.0f} calls refused"
                            )
                    rates[(size, c)].add(figures[size]["rps"], figures[1]["rps"])
                    tails.setdefault((size, c), []).append((figures[size]["p99"], figures[1]["p99"]))
            print(f"pair {number + 1} of {args.pairs} done", file=sys.stderr)
    finally:
        for server in servers:
            stop_group(server)
        shutil.rmtree(folder, ignore_errors=True)
    print(f"POST /api/data, {args.pairs} pairs of {args.seconds} s wrk runs, the one-platform store in turns with each")
    for size in sizes:
        for c in connections:
            rates[(size, c)].print()
            p99 = tails[(size, c)]
            print(
                f"  p99 ms, {size:,} platforms: {' '.join(f'{a:.1f}' for a, _ in p99)}; one platform: "
                f"{' '.join(f'{b:.1f}' for _, b in p99)}"
            )


if __name__ == "__main__":
    main()
