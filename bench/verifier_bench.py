"""verify through the verifier Worker against verify through Cloudflare's REST API, at production sizes.

For each size in --model (100,000 and 1,000,000 platforms by default), from the keys `dream seed` writes:
- REST: the requests a scan needs (a list per 1,000 keys, a bulk get per 100 values; the store is measured at 1.00x
  of this in bench/cloudflare_bench.py) and how long they take at Cloudflare's documented 1,200 per 5 minutes;
- Worker: the invocations and KV operations the verifier's shards make (its own loop, replayed over the key names),
  and the most in one invocation (Workers allow 1,000).
Then, measured at --platforms (100,000 by default): the state seeded into wrangler's local files, the verifier under
`wrangler dev` over them, `dream kv verify --via-worker` timed, its invocations checked against the model, its findings
against verify reading the files itself (the anchor, timed in the same run).

The measured runs go in pairs (bench/paired.py): the anchor, then the Worker, --pairs times, one verifier started
for them all (its start-up printed apart).

Run: .venv/bin/python bench/verifier_bench.py [--platforms 100000] [--model 100000,1000000] [--parallel 2] [--pairs 5]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.paired import Pairs  # noqa: E402
from dreamcli import layout  # noqa: E402
from dreamcli.platform import replication, synthetic  # noqa: E402
from dreamcli.stores.ratelimit import Pacer  # noqa: E402
from dreamcli.stores.verifier import BUDGET, SCANNED, through_worker, verifier_for  # noqa: E402
from dreamcli.stores.wrangler import open_wrangler_store  # noqa: E402

LIST, BULK = 1000, 100


class _Names:
    """A stand-in store that keeps only the key names `synthetic.seed` writes."""

    def __init__(self) -> None:
        self.names: dict[str, list[str]] = defaultdict(list)

    def kv(self, name: str) -> _Names._Namespace:
        return _Names._Namespace(self.names[name])

    class _Namespace:
        def __init__(self, names: list[str]) -> None:
            self.names = names

        def bulk_put(self, items: Sequence[object]) -> None:
            self.names.extend(item.key for item in items)  # type: ignore[attr-defined]


def seeded_names(platforms: int) -> dict[str, list[str]]:
    capture = _Names()
    synthetic.seed(capture, platforms, drift=0.01)  # type: ignore[arg-type]
    return {name: sorted(capture.names[name]) for name in SCANNED}


def rest_requests(names: dict[str, list[str]]) -> int:
    return sum(-(-len(keys) // LIST) + -(-len(keys) // BULK) for keys in names.values())


def _invocations(page_reads: list[int], budget: int) -> tuple[int, int, int]:
    """(invocations, operations, most in one) of one shard, as the Worker's loop runs it: a list, then the bulk gets
    of its page, while there is room for one more page."""
    if not page_reads:
        return 1, 1, 1  # one list, empty
    invocations = ops_total = most = 0
    i = 0
    while i < len(page_reads):
        invocations += 1
        ops = 0
        while i < len(page_reads) and ops + 1 + LIST // BULK <= budget:
            ops += 1 + page_reads[i]
            i += 1
        ops_total += ops
        most = max(most, ops)
    return invocations, ops_total, most


def worker_plan(names: dict[str, list[str]], budget: int = BUDGET) -> tuple[int, int, int]:
    """(invocations, operations, most in one invocation) of a scan of every namespace through the verifier."""
    invocations = ops = most = 0
    for namespace, keys in names.items():
        shards = layout.shard_prefixes(namespace)
        lengths = sorted({len(p) for p in shards})
        known = set(shards)
        per_shard: dict[str, int] = defaultdict(int)
        rest_pages: list[int] = []
        unsharded_in_page = 0
        for index, key in enumerate(keys):
            shard = next((key[:n] for n in lengths if key[:n] in known), None)
            if shard is None:
                unsharded_in_page += 1
            else:
                per_shard[shard] += 1
            if index % LIST == LIST - 1 or index == len(keys) - 1:
                rest_pages.append(-(-unsharded_in_page // BULK))
                unsharded_in_page = 0
        plans = [_invocations(rest_pages, budget)]
        for shard in shards:
            count = per_shard.get(shard, 0)
            pages = [-(-min(LIST, count - start) // BULK) for start in range(0, count, LIST)]
            plans.append(_invocations(pages, budget))
        invocations += sum(p[0] for p in plans)
        ops += sum(p[1] for p in plans)
        most = max([most, *(p[2] for p in plans)])
    return invocations, ops, most


def minutes(seconds: float) -> str:
    if seconds >= 7200:
        return f"{seconds / 3600:,.1f} h"
    return f"{seconds / 60:,.0f} min" if seconds >= 120 else f"{seconds:,.0f} s"


def model(sizes: list[int]) -> None:
    pacer = Pacer()
    for platforms in sizes:
        started = time.perf_counter()
        names = seeded_names(platforms)
        keys = sum(len(v) for v in names.values())
        requests = rest_requests(names)
        invocations, ops, most = worker_plan(names)
        print(
            f"{platforms:>9,} platforms: {keys:,} keys in the token namespaces (modelled in {time.perf_counter() - started:.0f} s)"
        )
        print(f"  REST:   {requests:,} requests, {minutes(pacer.seconds_for(requests))} at 1,200 / 5 min")
        print(
            f"  Worker: {invocations:,} invocations, {ops:,} KV operations, at most {most} in one (limit 1,000), "
            f"{ops / invocations:,.0f} on average"
        )


def measured(platforms: int, parallel: int, expected_plan: tuple[int, int, int] | None, pairs: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="dream-verifier-bench-"))
    try:
        project = folder / "workers"
        shutil.copytree(
            ROOT / "fixtures" / "workers", project, ignore=shutil.ignore_patterns("node_modules", ".wrangler*")
        )
        (project / ".state").mkdir()
        store = open_wrangler_store(f"{project},persist-to=.state")
        started = time.perf_counter()
        seeded = synthetic.seed(store, platforms, drift=0.01)
        print(
            f"measured at {platforms:,} platforms: seeded {seeded.keys:,} keys into wrangler's state in "
            f"{time.perf_counter() - started:.0f} s"
        )
        verifier = verifier_for(store)
        started = time.perf_counter()
        client = verifier.start()
        start_s = time.perf_counter() - started
        timing = Pairs("verify through the Worker / verify reading the files itself", "s", "Worker", "anchor")
        try:
            for _ in range(pairs):  # in turns: the anchor, then the same keys through the Worker
                started = time.perf_counter()
                anchor = replication.verify(store)
                anchor_s = time.perf_counter() - started
                started = time.perf_counter()
                through = replication.verify(through_worker(store, client, parallel=parallel))
                worker_s = time.perf_counter() - started
                timing.add(worker_s, anchor_s)
        finally:
            verifier.stop()
        print(f"  anchor: verify reading the files itself, {len(anchor.findings):,} findings")
        counts = client.counts
        same = json.dumps(through.as_json()) == json.dumps(anchor.as_json())
        print(
            f"  Worker (wrangler dev, {parallel} at once): {start_s:.1f} s to start, then "
            f"{through.keys_scanned / statistics.median(timing.dream):,.0f} keys/s; findings identical: {same}"
        )
        timing.print()
        print(
            f"  measured, a run: {counts.invocations // pairs:,} invocations, {counts.ops // pairs:,} KV operations, at "
            f"most {counts.max_ops} in one, {counts.retries} retries in {pairs} runs"
        )
        if expected_plan is not None:
            print(
                f"  model for the same keys: {expected_plan[0]:,} invocations, {expected_plan[1]:,} operations, "
                f"at most {expected_plan[2]} in one"
            )
        if not same:
            raise SystemExit("the findings through the Worker differ from the anchor's")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--platforms", type=int, default=100_000, help="measured locally (0: model only)")
    parser.add_argument("--model", default="100000,1000000", help="sizes modelled, comma-separated")
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=5, help="Pairs of (anchor, through the Worker) measured in turns.")
    args = parser.parse_args()
    sizes = [int(size) for size in args.model.split(",") if size]
    model(sizes)
    if args.platforms:
        measured(args.platforms, args.parallel, worker_plan(seeded_names(args.platforms)), args.pairs)


if __name__ == "__main__":
    main()
