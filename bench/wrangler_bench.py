"""wrangler-state benchmarks: (a) `dream kv get` vs `wrangler kv key get --local` on the same key of the same
state, whole process, median of several runs (goal: dream >= 5x faster); (b) verify over 10,000 platforms on
wrangler state.

Run: .venv/bin/python bench/wrangler_bench.py [--runs 7] [--platforms 10000]
Needs wrangler in .cache/wrangler (`.ci/run` installs it) for (a).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.paired import Pairs  # noqa: E402
from dreamcli.platform import replication, synthetic  # noqa: E402
from dreamcli.stores.wrangler import open_wrangler_store  # noqa: E402

WRANGLER = ROOT / ".cache" / "wrangler" / "node_modules" / ".bin" / "wrangler"


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--platforms", type=int, default=10_000)
    args = parser.parse_args()
    # Byte-compile first: with PYTHONDONTWRITEBYTECODE set (as on this machine) every start would
    # otherwise compile dream's modules again, which is not what an installed dream does.
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(ROOT / "dreamcli"), str(ROOT / "emulator")],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    folder = Path(tempfile.mkdtemp(prefix="dream-wrangler-"))
    project = folder / "workers"
    shutil.copytree(ROOT / "fixtures" / "workers", project, ignore=shutil.ignore_patterns("node_modules", ".wrangler*"))

    store = open_wrangler_store(str(project))
    store.kv("platform-tokens").put("user:user_bench:platformId", "plt_bench")
    store.close()
    env = {**os.environ, "WRANGLER_SEND_METRICS": "false", "DREAM_STORE": f"wrangler:{project}"}
    dream = Path(sys.executable).with_name("dream")
    dream_cmd = [str(dream), "kv", "get", "user:user_bench:platformId", "--ns", "platform-tokens"]
    if WRANGLER.exists() and shutil.which("node"):
        wrangler_cmd = [
            str(WRANGLER),
            "kv",
            "key",
            "get",
            "--local",
            "--binding",
            "TOKENS_KV",
            "user:user_bench:platformId",
        ]
        # In turns: dream, then wrangler, pair after pair (the ratio is wrangler's time over dream's).
        pairs = Pairs("(a) wrangler kv key get --local / dream kv get, whole processes", "s", "wrangler", "dream")
        timed(dream_cmd, folder, env), timed(wrangler_cmd, project / "front-auth-api", env)  # warm the page cache
        for _ in range(args.runs):
            mine = timed(dream_cmd, folder, env)
            pairs.add(timed(wrangler_cmd, project / "front-auth-api", env), mine)
        pairs.print()
        print(f"    dream is {pairs.median():.1f}x faster (goal >= 5x)")
    else:
        dream_times = [timed(dream_cmd, folder, env) for _ in range(args.runs)]
        print(f"(a) dream kv get median {statistics.median(dream_times) * 1000:.0f} ms over {args.runs} runs")
        print(
            "    wrangler not installed: no comparison (run .ci/run once, or npm install --prefix .cache/wrangler wrangler@4.86.0)"
        )

    store = open_wrangler_store(str(project))
    started = time.perf_counter()
    seeded = synthetic.seed(store, args.platforms, drift=0.1)
    seed_s = time.perf_counter() - started
    started = time.perf_counter()
    result = replication.verify(store)
    verify_s = time.perf_counter() - started
    store.close()
    print(
        f"(b) verify on wrangler state: {args.platforms:,} platforms, {result.keys_scanned:,} keys in {verify_s:.2f} s "
        f"({result.keys_scanned / verify_s:,.0f} keys/s, {len(result.findings):,} findings; seeded {seeded.keys:,} keys in {seed_s:.1f} s)"
    )
    shutil.rmtree(folder)


if __name__ == "__main__":
    main()
