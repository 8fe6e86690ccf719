"""verify over the cloudflare store against the emulator's REST API with injected latency: request count
against the lower bound (keys/1000 list calls + keys/100 bulk-get calls) and wall time.

Run: .venv/bin/python bench/cloudflare_bench.py [--platforms 2000] [--latency-ms 50]
Goal (issue 7): within 1.2x of the bound on requests.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dreamcli.platform import replication, synthetic  # noqa: E402
from dreamcli.stores.cloudflare import open_cloudflare_store  # noqa: E402
from emulator.app import Emulator  # noqa: E402
from emulator.server import LoopbackServer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--platforms", type=int, default=2000)
    parser.add_argument("--latency-ms", type=float, default=50.0)
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
        synthetic.seed(store, args.platforms, drift=0.1)
        emulator.cloudflare_knobs.latency_ms = args.latency_ms
        api = store.kv("api-tokens").api  # type: ignore[attr-defined]
        before = api.requests
        started = time.perf_counter()
        result = replication.verify(store)
        wall = time.perf_counter() - started
        used = api.requests - before
        store.close()
    scanned = result.keys_scanned
    # the bound: per namespace, ceil(keys/1000) list calls + ceil(keys/100) bulk gets
    per_ns = {"platform-tokens": args.platforms * 8, "api-tokens": scanned - args.platforms * 8}
    bound = sum(-(-n // 1000) + -(-n // 100) for n in per_ns.values())
    print(
        f"platforms: {args.platforms:,}  keys checked: {scanned:,}  findings: {len(result.findings):,}  latency: {args.latency_ms:.0f} ms"
    )
    print(f"requests: {used:,}  lower bound: {bound:,}  ratio: {used / bound:.2f}x (goal <= 1.2x)")
    print(f"wall time: {wall:.2f} s  ({scanned / wall:,.0f} keys/s; bulk gets run 8 at a time)")
    emulator.close()


if __name__ == "__main__":
    main()
