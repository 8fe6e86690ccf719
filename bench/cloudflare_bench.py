"""verify over the cloudflare store against the emulator's REST API with injected latency: request count
against the lower bound (keys/1000 list calls + keys/100 bulk-get calls), and wall time in pairs (bench/paired.py)
against the floor measured beside it: a client making exactly the bound's requests (every list page, then every
bulk get of 100 keys, 8 at a time as verify runs them), through the same API at the same latency.

Run: .venv/bin/python bench/cloudflare_bench.py [--platforms 2000] [--latency-ms 50] [--pairs 5]
Goal (issue 7): within 1.2x of the bound on requests.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.paired import Pairs  # noqa: E402
from dreamcli.platform import replication, synthetic  # noqa: E402
from dreamcli.stores.cloudflare import open_cloudflare_store  # noqa: E402
from dreamcli.stores.ratelimit import Pacer  # noqa: E402
from emulator.app import Emulator  # noqa: E402
from emulator.server import LoopbackServer  # noqa: E402


def bound_requests(store: Any) -> float:
    """Seconds to read both token namespaces in the bound's requests: every list page (1,000 keys), then their values
    in bulk gets of 100 keys, 8 at a time."""
    started = time.perf_counter()
    for name in ("platform-tokens", "api-tokens"):
        namespace = store.kv(name)
        keys: list[str] = []
        cursor = None
        while True:
            page = namespace.list(cursor=cursor, limit=1000)
            keys += [listed.name for listed in page.keys]
            if page.list_complete:
                break
            cursor = page.cursor
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(namespace.bulk_get, [keys[i : i + 100] for i in range(0, len(keys), 100)]))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--platforms", type=int, default=2000)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--pairs", type=int, default=5)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="dream-cf-"))
    emulator = Emulator(folder / "cf.db")
    with LoopbackServer(emulator.app) as base:
        config = emulator.config(base)["cloudflare"]
        env = {
            "CLOUDFLARE_API_TOKEN": config["api_token"],
            "CLOUDFLARE_ACCOUNT_ID": config["account_id"],
            "CLOUDFLARE_BASE_URL": config["base_url"],
        }
        store = open_cloudflare_store(env)
        # The client's pacing (Cloudflare's 1,200 requests in 5 minutes) out of the way: pairs would otherwise be
        # measured around its waits. What the limit costs at production sizes is bench/verifier_bench.py's subject.
        store.kv("api-tokens").api.pacer = Pacer(quota=1_000_000_000)  # type: ignore[attr-defined]
        synthetic.seed(store, args.platforms, drift=0.1)
        emulator.cloudflare_knobs.latency_ms = args.latency_ms
        api = store.kv("api-tokens").api  # type: ignore[attr-defined]
        timing = Pairs("verify / the bound's requests alone, wall time", "s", "verify", "floor")
        for _ in range(args.pairs):
            before = api.requests
            started = time.perf_counter()
            result = replication.verify(store)
            wall = time.perf_counter() - started
            used = api.requests - before
            timing.add(wall, bound_requests(store))
        store.close()
    scanned = result.keys_scanned
    # the bound: per namespace, ceil(keys/1000) list calls + ceil(keys/100) bulk gets
    per_ns = {"platform-tokens": args.platforms * 8, "api-tokens": scanned - args.platforms * 8}
    bound = sum(-(-n // 1000) + -(-n // 100) for n in per_ns.values())
    print(
        f"platforms: {args.platforms:,}  keys checked: {scanned:,}  findings: {len(result.findings):,}  latency: {args.latency_ms:.0f} ms"
    )
    print(f"requests: {used:,}  lower bound: {bound:,}  ratio: {used / bound:.2f}x (goal <= 1.2x)")
    timing.print()
    print(f"verify {scanned / statistics.median(timing.dream):,.0f} keys/s (bulk gets run 8 at a time)")
    emulator.close()


if __name__ == "__main__":
    main()
