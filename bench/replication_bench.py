"""Replication benchmark: seed N platforms in the guide's layout with a fraction of drift, then time
`verify` against two floors measured in the same run on the same file, measure its peak memory, and time
`repair` against plain SQLite upserts of the same keys.

Floors:
- raw scan: sqlite3 reading every (key, value) of both token namespaces;
- SQL-join floor: the joins verify cannot do without, one SELECT each, counting: every developer's
  user:{u}:platformId joined to its other keys, its platform's userId and its publishable key's mapping (with
  its products and token parsed as JSON), every platform's userId to its token and tier config (parsed), and
  both mirrored families joined across the namespaces both ways. No output, nothing materialized.
- every relation verify checks (EVERY_RELATION): that floor plus the relations verify's invariants add to it, each
  read once the same bare way: how much of verify's time is reading what it must compare.

Run: .venv/bin/python bench/replication_bench.py [--platforms 100000] [--drift 0.10]
Goals (issue 12): verify <= 2x the SQL-join floor, peak RSS < 200 MB at 1,000,000 platforms;
repair >= 0.8x plain upserts of the same keys.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.paired import Pairs, descendants  # noqa: E402
from dreamcli.platform import replication, synthetic  # noqa: E402
from dreamcli.stores.ports import iter_keys  # noqa: E402
from emulator.store import open_emulator_store  # noqa: E402

VERIFY_CHILD = """
import os, sys, time, tracemalloc
def hwm_kb():  # this process's peak RSS (VmHWM starts afresh at exec, unlike ru_maxrss)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
import dataclasses
from dreamcli.platform import replication
from emulator.store import open_emulator_store
store = open_emulator_store(sys.argv[1])
class ScanOnly:  # as the wrangler and Cloudflare stores are read: through scan, copied into the snapshot
    def __init__(self, inner):
        self.inner = inner
    def __getattr__(self, name):
        return getattr(self.inner, name)
    def sql_source(self, now):
        return None
if sys.argv[2:] == ["scan"]:
    store = dataclasses.replace(store, namespaces={k: ScanOnly(v) for k, v in store.namespaces.items()})
def cpu():  # this process and the snapshot helper it forks and waits for
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system
base = hwm_kb()
started, cpu_started = time.perf_counter(), cpu()
result = replication.verify(store)
untraced = time.perf_counter() - started
cpu_used = cpu() - cpu_started
peak = hwm_kb()
heap = 0
if sys.argv[2:] == ["heap"]:  # a second run, alone: tracemalloc's own bookkeeping would inflate the first
    tracemalloc.start()
    replication.verify(store)
    heap = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
print(untraced, result.keys_scanned, len(result.findings), base, peak, heap // 1024, cpu_used)
"""


def _probe(view: str, key: str) -> str:
    return f"(SELECT value FROM {view} WHERE key = {key})"


FLOOR = (
    f"""SELECT count(*), sum(json_array_length(pr)), sum(json_valid(tok)), sum(up = u), sum(mp = plt) FROM (
        SELECT u, plt, {_probe("pt", "'user:' || u || ':products'")} AS pr, {_probe("pt", "'user:' || u || ':stripeToken'")} AS tok,
               CAST({_probe("pt", "'platform:' || plt || ':userId'")} AS TEXT) AS up,
               CAST({_probe("pt", "'publishablekey:' || CAST(" + _probe("pt", "'user:' || u || ':publishableKey'") + " AS TEXT) || ':platformId'")} AS TEXT) AS mp
        FROM (SELECT substr(key, 6, length(key) - 16) AS u, CAST(value AS TEXT) AS plt FROM pt
              WHERE key >= 'user:' AND key < 'user;' AND key GLOB 'user:?*:platformId'))""",
    f"""SELECT count(*), sum(json_valid(tok)), sum(json_array_length(cfg, '$.tiers')) FROM (
        SELECT {_probe("pt", "'platform:' || plt || ':stripeToken'")} AS tok, {_probe("api", "'platform:' || plt || ':tierConfig'")} AS cfg
        FROM (SELECT substr(key, 10, length(key) - 16) AS plt FROM pt
              WHERE key >= 'platform:' AND key < 'platform;' AND key GLOB 'platform:?*:userId'))""",
    *(
        sql
        for family, end in (("publishablekey:", "publishablekey;"), ("secretkey:", "secretkey;"))
        for sql in (
            f"SELECT count(*), sum(a.value = b.value) FROM pt a LEFT JOIN api b ON b.key = a.key "
            f"WHERE a.key >= '{family}' AND a.key < '{end}'",
            f"SELECT count(*) FROM api b WHERE b.key >= '{family}' AND b.key < '{end}' "
            f"AND NOT EXISTS (SELECT 1 FROM pt a WHERE a.key = b.key)",
        )
    ),
)


def _user_probe(field: str) -> str:
    return _probe("pt", f"'user:' || u || ':{field}'")


def _platform_probe(view: str, column: str, field: str) -> str:
    return _probe(view, f"'platform:' || {column} || ':{field}'")


def _mapping_probe(view: str, family: str, column: str, field: str) -> str:
    return _probe(view, f"'{family}:' || CAST({column} AS TEXT) || ':{field}'")


# Every relation verify checks, read bare as the floor reads its own: the floor's joins and those its invariants
# add (a platform's owner claiming it back, a developer's token against its platform's, its tiers against the tier
# config's, its plaintext secret slot; a publishable mapping's platform, owned and configured; a secret mapping's
# publishable mapping in both namespaces; developers without a platformId, platforms without a userId). Each value
# is read once: a platform's token and tier config where its developer is visited (their shapes too), again only
# for a platform no developer claims. No id or tier shape is checked, nothing is written: what is left between
# verify and this is verify's own work, not its reading.
EVERY_RELATION = (
    f"""SELECT count(*), sum(json_array_length(pr) = json_array_length(cfg, '$.tiers')), sum(tok = ptok),
               sum(json_valid(tok)), sum(json_valid(ptok)), sum(up = u), sum(mp = plt), sum(ma = plt),
               sum(sec IS NULL) FROM (
        SELECT u, plt, {_user_probe("products")} AS pr, {_user_probe("stripeToken")} AS tok,
               {_user_probe("secretKey")} AS sec, CAST({_platform_probe("pt", "plt", "userId")} AS TEXT) AS up,
               {_platform_probe("pt", "plt", "stripeToken")} AS ptok, {_platform_probe("api", "plt", "tierConfig")} AS cfg,
               CAST({_mapping_probe("pt", "publishablekey", "pk", "platformId")} AS TEXT) AS mp,
               CAST({_mapping_probe("api", "publishablekey", "pk", "platformId")} AS TEXT) AS ma
        FROM (SELECT u, plt, {_user_probe("publishableKey")} AS pk
              FROM (SELECT substr(key, 6, length(key) - 16) AS u, CAST(value AS TEXT) AS plt FROM pt
                    WHERE key >= 'user:' AND key < 'user;' AND key GLOB 'user:?*:platformId') LIMIT -1 OFFSET 0))""",
    f"""SELECT count(*), sum(claim = plt), sum(CASE WHEN claim IS NOT plt THEN json_valid(tok) END),
               sum(CASE WHEN claim IS NOT plt THEN json_array_length(cfg, '$.tiers') END) FROM (
        SELECT plt, claim, {_platform_probe("pt", "plt", "stripeToken")} AS tok,
               {_platform_probe("api", "plt", "tierConfig")} AS cfg
        FROM (SELECT plt, CAST({_probe("pt", "'user:' || uid || ':platformId'")} AS TEXT) AS claim
              FROM (SELECT substr(key, 10, length(key) - 16) AS plt, CAST(value AS TEXT) AS uid FROM pt
                    WHERE key >= 'platform:' AND key < 'platform;' AND key GLOB 'platform:?*:userId')
              LIMIT -1 OFFSET 0))""",
    f"""SELECT count(*), sum(a.value = b.value), count({_platform_probe("pt", "CAST(a.value AS TEXT)", "userId")}),
               count({_platform_probe("api", "CAST(a.value AS TEXT)", "tierConfig")})
        FROM pt a LEFT JOIN api b ON b.key = a.key WHERE a.key >= 'publishablekey:' AND a.key < 'publishablekey;'""",
    f"""SELECT count(*), sum(a.value = b.value), count({_mapping_probe("pt", "publishablekey", "a.value", "platformId")}),
               count({_mapping_probe("api", "publishablekey", "a.value", "platformId")})
        FROM pt a LEFT JOIN api b ON b.key = a.key WHERE a.key >= 'secretkey:' AND a.key < 'secretkey;'""",
    *FLOOR[3::2],  # the copies in api-tokens without a source, both families
    # Developers with keys but no platformId; platforms with a token or a tier config but no userId.
    """SELECT count(DISTINCT u) FROM (SELECT substr(r, 1, instr(r, ':') - 1) AS u FROM (
            SELECT substr(key, 6) AS r FROM pt WHERE key >= 'user:' AND key < 'user;' AND key NOT GLOB '*:platformId'))
        WHERE NOT EXISTS (SELECT 1 FROM pt WHERE key = 'user:' || u || ':platformId')""",
    f"""SELECT count(*) FROM (SELECT substr(key, 10, length(key) - 21) AS plt FROM pt
            WHERE key >= 'platform:' AND key < 'platform;' AND key GLOB 'platform:?*:stripeToken'
            UNION SELECT substr(key, 10, length(key) - 20) FROM api
            WHERE key >= 'platform:' AND key < 'platform;' AND key GLOB 'platform:?*:tierConfig')
        WHERE {_platform_probe("pt", "plt", "userId")} IS NULL""",
)


def sql_join_floor(path: Path, ids: tuple[int, int], queries: tuple[str, ...] = FLOOR) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of the floor's joins: one thread, so the two agree but for waits."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    for name, seq in zip(("pt", "api"), ids, strict=True):
        conn.execute(f"CREATE TEMP VIEW {name} AS SELECT key, value FROM _dream_kv WHERE ns = {seq}")
    started, cpu_started = time.perf_counter(), time.process_time()
    for sql in queries:
        conn.execute(sql).fetchall()
    elapsed, cpu_used = time.perf_counter() - started, time.process_time() - cpu_started
    conn.close()
    return elapsed, cpu_used


def upsert_floor(path: Path, seq_of: dict[str, int], puts: list[tuple[str, str, str]]) -> float:
    """Plain sqlite3 upserts of the same (namespace, key, value) rows, in key order and one transaction, into a
    copy of the store file as repair found it, with the store's own settings (WAL, synchronous NORMAL). Timed until
    the rows are in the database file (its WAL checkpointed), as repair is: repair's own checkpoints run as its WAL
    grows, and a floor that left its rows in the WAL would not have done the writing."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA cache_size = -32768")
    rows = sorted((seq_of[namespace], key, value.encode()) for namespace, key, value in puts)
    started = time.perf_counter()
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(
        "INSERT INTO _dream_kv (ns, key, expiration, metadata, value) VALUES (?, ?, NULL, NULL, ?) "
        "ON CONFLICT (ns, key) DO UPDATE SET value = excluded.value, expiration = NULL, metadata = NULL",
        rows,
    )
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


def _kb(path: Path, fields: tuple[str, ...]) -> int:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return 0  # the process ended meanwhile
    return sum(int(line.split()[1]) for line in lines if line.split(":")[0] in fields)


def run_sampled(
    command: list[str], cwd: Path, *, keep_output: bool = True, ok: tuple[int, ...] = (0,)
) -> tuple[str, int]:
    """Run `command`, sampling every 20 ms the memory it and the processes it forks hold: its RSS plus their
    private pages (a forked child shares its parent's pages, which its own RSS would count again).
    Returns (stdout, or "" without `keep_output`; the peak in KB)."""
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE if keep_output else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
    )
    peak = 0
    while process.poll() is None:
        total = _kb(Path(f"/proc/{process.pid}/status"), ("VmRSS",))
        for child in descendants(process.pid):
            total += _kb(Path(f"/proc/{child}/smaps_rollup"), ("Private_Clean", "Private_Dirty"))
        peak = max(peak, total)
        time.sleep(0.02)
    out, err = process.communicate()
    if process.returncode not in ok:
        raise SystemExit(f"{' '.join(command[:4])} failed ({process.returncode}):\n{err}")
    return out or "", peak


STABLE_FLOOR_S = 1.0  # a pair repeats its (repair, upserts) runs until the upserts have taken this long in all


def repair_pair(seeded: Path, folder: Path) -> tuple[float, float, int, int]:
    """repair's throughput and the upsert floor's, each on a fresh copy of the seeded file (same pages, same
    drift), run in turns until the floor has written for STABLE_FLOOR_S (at 100,000 platforms one run writes ~10,000
    keys in ~0.2 s: one such sample moves with anything else the machine does): (repair keys/s, floor keys/s,
    actions applied a run, findings left after the last)."""
    repair_keys = floor_keys = done = left = 0
    repair_s = upsert_s = 0.0
    while upsert_s < STABLE_FLOOR_S:
        work, floor_copy = folder / "repair.db", folder / "floor.db"
        for copy in (work, floor_copy):
            for leftover in copy.parent.glob(copy.name + "*"):
                shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
            shutil.copyfile(seeded, copy)
        store = open_emulator_store(work)
        result = replication.verify(store)
        plan = replication.plan_repair(result)
        puts = [(fix.namespace, fix.key, fix.value) for fix, _ in plan.fixes if fix.value is not None]
        started = time.perf_counter()
        done, _ = replication.apply_plan(store, plan)
        store.kv("api-tokens").file.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # type: ignore[attr-defined]
        repair_s += time.perf_counter() - started
        repair_keys += done
        left = len(replication.verify(store).findings)
        seq_of = {name: store.kv(name).seq for name in ("platform-tokens", "api-tokens")}  # type: ignore[attr-defined]
        store.close()
        upsert_s += upsert_floor(floor_copy, seq_of, puts)
        floor_keys += len(puts)
    return repair_keys / repair_s, floor_keys / upsert_s, done, left


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--platforms", type=int, default=100_000)
    parser.add_argument("--drift", type=float, default=0.10)
    parser.add_argument("--pairs", type=int, default=5, help="Pairs of (dream, floor) measured in turns.")
    parser.add_argument("--keep", type=Path, help="Keep the seeded file in this folder and reuse it next time.")
    parser.add_argument(
        "--parts",
        default="verify,memory,repair,list",
        help="Which parts to measure (verify, memory, repair, list; all by default).",
    )
    args = parser.parse_args()
    parts = set(args.parts.split(","))

    folder = Path(tempfile.mkdtemp(prefix="dream-repl-"))
    path = folder / "bench.db"
    kept = args.keep / f"seeded-{args.platforms}-{args.drift}.db" if args.keep else None
    started = time.perf_counter()
    if kept is not None and kept.exists():
        shutil.copyfile(kept, path)
        store = open_emulator_store(path)
        seeded = synthetic.Seeded(args.platforms, -1, -1)
    else:
        store = open_emulator_store(path)
        seeded = synthetic.seed(store, args.platforms, drift=args.drift)
    seed_s = time.perf_counter() - started
    ids = (store.kv("platform-tokens").seq, store.kv("api-tokens").seq)  # type: ignore[attr-defined]
    store.close()
    if kept is not None and not kept.exists():
        kept.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, kept)
    if seeded.keys < 0:
        print(f"platforms: {args.platforms:,}  (the file seeded before, from {kept})")
    else:
        print(
            f"platforms: {args.platforms:,}  keys seeded: {seeded.keys:,}  drifted platforms: {seeded.drifted:,} "
            f"(seeded in {seed_s:.1f} s)"
        )

    raw = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    started = time.perf_counter()
    raw_rows = sum(1 for _ in raw.execute("SELECT key, value FROM _dream_kv WHERE ns IN (?, ?) ORDER BY ns, key", ids))
    raw_s = time.perf_counter() - started
    raw.close()
    print(
        f"raw scan: {raw_s:.2f} s, {raw_rows / raw_s:,.0f} rows/s (sqlite3 SELECT key, value of both token namespaces)"
    )

    # verify in a child process (its memory its own), the floor in this one, in turns.
    root = Path(__file__).resolve().parent.parent
    wall, cpu = Pairs("verify / SQL-join floor, wall time"), Pairs("verify / SQL-join floor, CPU time")
    every = Pairs("verify / every relation it checks, read bare, CPU time", second="relations")
    for _ in range(args.pairs if "verify" in parts else 0):
        floor_wall, floor_cpu = sql_join_floor(path, ids)
        out, _ = run_sampled([sys.executable, "-c", VERIFY_CHILD, str(path)], root)
        verify_s, scanned, findings, base_kb, peak_kb, _, verify_cpu = out.split()
        wall.add(float(verify_s), floor_wall)
        cpu.add(float(verify_cpu), floor_cpu)
        every.add(float(verify_cpu), sql_join_floor(path, ids, EVERY_RELATION)[1])
    if "verify" in parts:
        print(
            f"verify: {int(scanned):,} keys, {int(findings):,} findings; it uses two processes at once, so CPU time too:"
        )
        wall.print()
        cpu.print()
        print("  (goal: <= 2x in CPU time)")
        every.print()
        print("  (what the SQL-join floor leaves out: see EVERY_RELATION)")

    # list --all of platform-tokens (the store port's 1,000-key pages) against a raw sqlite3 scan of its keys, in turns.
    listing = Pairs("list --all platform-tokens / raw sqlite3 scan of its keys")
    for _ in range(args.pairs if "list" in parts else 0):
        store = open_emulator_store(path)
        started = time.perf_counter()
        listed = sum(1 for _ in iter_keys(store.kv("platform-tokens")))
        list_s = time.perf_counter() - started
        store.close()
        raw = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        started = time.perf_counter()
        scanned = sum(1 for _ in raw.execute("SELECT key FROM _dream_kv WHERE ns = ? ORDER BY key", (ids[0],)))
        listing.add(list_s, time.perf_counter() - started)
        raw.close()
        assert listed == scanned, (listed, scanned)
    if "list" in parts:
        print(f"list: {listed:,} keys, {listed / statistics.median(listing.dream):,.0f} keys/s")
        listing.print()

    if "memory" in parts:
        # Memory, from outside: the whole `dream kv verify` process tree, as an operator runs it.
        dream = str(Path(sys.executable).with_name("dream"))
        for label, extra in (("--json", ["--json"]), ("the table", ["--format", "table"])):
            _, tree_kb = run_sampled(
                [dream, "--store", f"emulator:{path}", "kv", "verify", *extra], root, keep_output=False, ok=(0, 1)
            )
            print(
                f"peak memory, dream kv verify {label}: {tree_kb / 1024:.0f} MB (process tree, sampled every 20 ms; goal < 200 MB)"
            )
        _, _, _, base_kb, peak_kb, heap_kb, _ = run_sampled(
            [sys.executable, "-c", VERIFY_CHILD, str(path), "heap"], root
        )[0].split()
        print(
            f"  verify's Python heap peak {int(heap_kb) / 1024:.0f} MB; the verify process alone {int(peak_kb) / 1024:.0f} MB, {int(base_kb) / 1024:.0f} MB before verify"
        )
        scan_out, scan_total_kb = run_sampled([sys.executable, "-c", VERIFY_CHILD, str(path), "scan"], root)
        print(
            f"verify via scan (the wrangler and Cloudflare stores' path): {float(scan_out.split()[0]):.2f} s, peak "
            f"{scan_total_kb / 1024:.0f} MB"
        )

    repair = Pairs("repair / plain upserts of the same keys, throughput", "keys/s")
    for _ in range(args.pairs if "repair" in parts else 0):
        dream_rate, floor_rate, done, left = repair_pair(path, folder)
        repair.add(dream_rate, floor_rate)
    if "repair" in parts:
        print(f"repair: {done:,} actions a run, verify after: {left} findings")
        repair.print()
        print(f"  (goal: >= 0.8x in every pair: {'held' if min(repair.ratios) >= 0.8 else 'NOT held'})")
    shutil.rmtree(folder)  # the store, its WAL and its D1 folder


if __name__ == "__main__":
    main()
