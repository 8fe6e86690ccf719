"""Both token namespaces as SQL tables, so SQLite does the joins verify needs and Python sees only the rows
that may hold a finding.

A snapshot is a few SQLite files in a private temporary folder (0700, removed when verify ends; their pages
spill to disk, so memory stays flat whatever the size of the namespaces). Where a store keeps a namespace in
SQLite with its values (the emulator) its file is attached read-only and read in place; otherwise (wrangler's
blob files, Cloudflare's API) the namespace's `scan` is copied into the folder first, in key order.

From the two namespaces it builds one table per entity of the guide's key schema, each keyed by its id:

- `usr`: one row per developer, the pivot of `user:{u}:*` (platform-tokens);
- `plat`: one row per platform, `platform:{plt}:userId|stripeToken` (platform-tokens) and its
  `platform:{plt}:tierConfig` (api-tokens), with the shapes of its values and its tiers' fast form;
- `pkm`, `skm`: the mirrored `publishablekey:` and `secretkey:` mappings, both namespaces side by side;
- `idx`, `keystate`: dream's key index (`platform:{plt}:key:{pk}`) and, per publishable key, whether its pair
  is revoked or in its grace.

Value checks that SQL decides exactly (id shapes, JSON shapes) are columns or expressions here; the checker
asks Python only about what SQL cannot say.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import sqlite3
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from dreamcli.errors import StoreError
from dreamcli.stores.ports import KVNamespace, SQLSource, Store
from dreamcli.topology import API_TOKENS, PLATFORM_TOKENS

SCAN_BATCH = 5000


def _no_nul(column: str) -> str:
    """SQLite's text functions (GLOB among them) stop at a NUL: a value holding one is judged as a whole here."""
    return f"instr(CAST({column} AS BLOB), x'00') = 0"


def valid_platform_id(column: str) -> str:
    """`plt_` followed by one or more ASCII letters and digits."""
    return f"({column} GLOB 'plt_?*' AND {column} NOT GLOB 'plt_*[^A-Za-z0-9]*' AND {_no_nul(column)})"


def valid_publishable_key(column: str) -> str:
    """`pk_` followed by one or more ASCII letters, digits and underscores."""
    return f"({column} GLOB 'pk_?*' AND {column} NOT GLOB 'pk_*[^A-Za-z0-9_]*' AND {_no_nul(column)})"


def valid_user_id(column: str) -> str:
    """Not empty, no ":", no whitespace and no NUL."""
    return f"({column} != '' AND {column} NOT GLOB '*[:' || char(32, 9, 10, 11, 12, 13) || ']*' AND {_no_nul(column)})"


def _token_ok(column: str) -> str:
    """A JSON object with string `stripeUserId` and `accessToken` (0 for anything else, never an error)."""
    return (
        f"(CASE WHEN {column} IS NULL OR NOT json_valid({column}) THEN 0 "
        f"ELSE json_type({column}, '$.stripeUserId') IS 'text' AND json_type({column}, '$.accessToken') IS 'text' END)"
    )


def tiers(column: str, path: str, name: str) -> str:
    """The [priceId, productId, name] triples of the array at `path`, sorted and joined: one text to compare.
    NULL when the value is absent or not an array of objects with a string name and, each, a string or null (or
    absent) priceId and productId: the guide's free tier without a Stripe product has `priceId: null`.

    One json_extract per element makes its triple as a JSON array; that the three are strings is then read off
    the array's text (six quotes, no escapes, `["…","…","…"]`), and asked of JSON again only when it has escapes.
    """
    ok = (
        "CASE WHEN t IS NULL THEN 0 "
        "WHEN instr(t, char(92)) = 0 AND length(t) - length(replace(t, '\"', '')) = 6 "
        'AND t GLOB \'[[]"*","*","*"]\' THEN 1 '
        "ELSE json_type(t, '$[0]') IN ('text', 'null') AND json_type(t, '$[1]') IN ('text', 'null') "
        "AND json_type(t, '$[2]') IS 'text' END"
    )
    triples = (
        f"SELECT CASE WHEN e.type = 'object' THEN json_extract(e.value, '$.priceId', '$.productId', '$.{name}') END "
        f"AS t FROM json_each({column}, '{path}') e"
    )
    return (
        f"(CASE WHEN {column} IS NULL OR NOT json_valid({column}) THEN NULL "
        f"WHEN json_type({column}, '{path}') IS NOT 'array' THEN NULL "
        f"ELSE (SELECT CASE WHEN min({ok}) IS NOT 0 THEN ifnull(group_concat(t, char(31)), '') END "
        f"FROM ({triples} ORDER BY t)) END)"
    )


FAST_TIERS = 8  # tier lists up to this long are compared in one json_extract; longer ones through `tiers`


def _count(text: str, part: str) -> str:
    """SQL: how many times `part` occurs in `text`."""
    return f"((length({text}) - length(replace({text}, '{part}', ''))) / {len(part)})"


def _fast_tiers(column: str, path: str, name: str) -> str:
    """The tiers at `path` as one JSON array [priceId, productId, name, ...] in the order written, made by one
    json_extract, when that says all there is to say: an array of n <= FAST_TIERS objects whose three fields
    are strings. The array's text proves it without parsing it again: with no escapes, every string has exactly
    two quotes, so 6n quotes are 3n strings, and 3n - 1 `","` chain them one after the other from the array's
    first slot: the 3n values (the slots after them are null, no element being there). NULL otherwise
    (absent, corrupt, longer, escaped): then `tiers` decides. Equal fast forms mean equal tiers."""
    paths = ", ".join(f"'{path}[{i}].{f}'" for i in range(FAST_TIERS) for f in ("priceId", "productId", name))
    valid = f"{column} IS NOT NULL AND json_valid({column})"
    return (
        f"(SELECT CASE WHEN n = 0 THEN '' "
        f"WHEN n <= {FAST_TIERS} AND substr(t, 1, 2) = '[\"' AND instr(t, char(92)) = 0 "
        f"AND {_count('t', chr(34))} = 6 * n AND {_count('t', chr(34) + ',' + chr(34))} = 3 * n - 1 THEN t END "
        f"FROM (SELECT CASE WHEN {valid} AND json_type({column}, '{path}') IS 'array' "
        f"THEN json_array_length({column}, '{path}') END AS n, "
        f"CASE WHEN {valid} THEN json_extract({column}, {paths}) END AS t))"
    )


def _range(view: str, prefix: str) -> str:
    """The keys of `view` starting with `prefix`: a range of its key order."""
    return f"{view}.key >= '{prefix}' AND {view}.key < '{prefix[:-1]}{chr(ord(prefix[-1]) + 1)}'"


def _field(key: str, prefix: str, suffix: str) -> str:
    """The field of `{prefix}{field}{suffix}` keys (callers check the shape with GLOB and that it has no ":")."""
    return f"substr({key}, {len(prefix) + 1}, length({key}) - {len(prefix) + len(suffix)})"


def probe(view: str, key: str) -> str:
    """The value of one key of `view` (a lookup in its primary key), as text, or NULL."""
    return f"(SELECT CAST(value AS TEXT) FROM {view} WHERE key = {key})"


def _ok(check: Callable[[str], str], column: str) -> str:
    """1 when `column` is absent or passes `check`."""
    return f"ifnull({check(column)}, 1)"


def _mirrored(table: str, id_name: str, prefix: str, suffix: str, check: Callable[[str], str]) -> tuple[str, ...]:
    """A mirrored family, platform-tokens' and api-tokens' values side by side with whether each has the shape
    `check` wants: platform-tokens' keys joined to their copies, then the copies without a source."""
    shape = f"instr({id_name}, ':') = 0"
    # OFFSET 0 keeps SQLite from flattening the subquery, which would read each value once per use.
    return (
        f"""CREATE TABLE {table} ({id_name} TEXT PRIMARY KEY, pt TEXT, api TEXT, pt_ok INT, api_ok INT)
            WITHOUT ROWID""",
        # A copy equal to its source has its source's shape: checked once.
        f"""INSERT INTO {table} SELECT {id_name}, pt, api, pt_ok, CASE WHEN api = pt THEN pt_ok ELSE {_ok(check, "api")} END
            FROM (SELECT {id_name}, pt, api, {_ok(check, "pt")} AS pt_ok
                  FROM (SELECT {_field("a.key", prefix, suffix)} AS {id_name}, CAST(a.value AS TEXT) AS pt,
                               CAST(b.value AS TEXT) AS api
                        FROM pt a LEFT JOIN api b ON b.key = a.key
                        WHERE {_range("a", prefix)} AND a.key GLOB '{prefix}?*{suffix}' LIMIT -1 OFFSET 0)
                  WHERE {shape} LIMIT -1 OFFSET 0)""",
        f"""INSERT INTO {table} SELECT {id_name}, NULL, api, 1, {_ok(check, "api")}
            FROM (SELECT {_field("b.key", prefix, suffix)} AS {id_name}, CAST(b.value AS TEXT) AS api
                  FROM api b WHERE {_range("b", prefix)} AND b.key GLOB '{prefix}?*{suffix}'
                  AND NOT EXISTS (SELECT 1 FROM pt a WHERE a.key = b.key) LIMIT -1 OFFSET 0)
            WHERE {shape}""",
    )


_USER_FIELDS = ("stripeToken", "products", "publishableKey", "secretKey")


def key_sql(prefix: str, field: str, suffix: str) -> str:
    """SQL for the key `{prefix}{field}{suffix}`, `field` a column."""
    return f"'{prefix}' || {field} || '{suffix}'"


_USER_PROBES = ", ".join(
    f"{probe('pt', key_sql('user:', 'u', ':' + field))} AS {column}"
    for field, column in zip(_USER_FIELDS, ("token", "products", "pk", "secret"), strict=True)
)
_USER_DERIVED = (
    f"plt, token, products IS NOT NULL, pk, secret, {_ok(valid_platform_id, 'plt')}, "
    f"{_fast_tiers('products', '$', 'tier')}"
)
_PLATFORM_PROBES = (
    f"{probe('pt', key_sql('platform:', 'plt', ':stripeToken'))} AS token, "
    f"{probe('api', key_sql('platform:', 'plt', ':tierConfig'))} AS config"
)
_PLATFORM_DERIVED = (
    f"user_id, token, config IS NOT NULL, ifnull({valid_user_id('user_id')}, 0), {_token_ok('token')}, "
    f"{_fast_tiers('config', '$.tiers', 'name')}"
)

# Developers without a platformId key take a second pass over the user: keys, and most stores have none. A count says
# whether one can exist, for a third of that pass: every key of the range is one of the five a developer found by its
# platformId has (that key, or one of the four its row probed), or some key is another's. (A key of a shape the second
# pass skips also makes the counts differ: then it runs, as before.) Uncorrelated subqueries: SQLite evaluates each
# once, before the scan it guards. Platforms without a userId have no such test that pays: the guide's bug leaves
# some, and their pass then costs the test on top (measured).
_USERS_MAY_BE_MISSING = f"""((SELECT count(*) FROM pt WHERE {_range("pt", "user:")})
    != (SELECT total(1 + (token IS NOT NULL) + has_products + (pk IS NOT NULL) + (secret IS NOT NULL)) FROM usr))"""

BUILD_A = (
    # platform-tokens' user:{u}:*: one row per developer, found by its platformId or, without one, by any
    # other of its keys. `fast`: its products' tiers (see _fast_tiers); the products themselves stay in the
    # store, read again for the few rows a check hands to Python.
    """CREATE TABLE usr (u TEXT PRIMARY KEY, plt TEXT, token TEXT, has_products INT, pk TEXT, secret TEXT,
                         plt_ok INT, fast TEXT) WITHOUT ROWID""",
    f"""INSERT INTO usr SELECT u, {_USER_DERIVED}
        FROM (SELECT u, plt, {_USER_PROBES}
              FROM (SELECT {_field("pt.key", "user:", ":platformId")} AS u, CAST(pt.value AS TEXT) AS plt FROM pt
                    WHERE {_range("pt", "user:")} AND pt.key GLOB 'user:?*:platformId')
              WHERE instr(u, ':') = 0 LIMIT -1 OFFSET 0)""",
    f"""INSERT INTO usr SELECT u, {_USER_DERIVED}
        FROM (SELECT u, NULL AS plt, {_USER_PROBES} FROM (
                SELECT DISTINCT u FROM (
                    SELECT substr(r, 1, instr(r, ':') - 1) AS u
                    FROM (SELECT substr(key, 6) AS r FROM pt
                          WHERE {_USERS_MAY_BE_MISSING} AND {_range("pt", "user:")} AND key NOT GLOB '*:platformId')
                    WHERE instr(r, ':') > 1) AS k
                WHERE NOT EXISTS (SELECT 1 FROM usr WHERE usr.u = k.u))
              LIMIT -1 OFFSET 0)""",
    "CREATE INDEX usr_plt ON usr (plt) WHERE plt_ok AND plt IS NOT NULL",
    # Digests are not checked for hex here: a key of another shape breaks no invariant until it is suspect,
    # and the checker skips those (its Python test is cheaper than SQL's GLOB on every row).
    *_mirrored("skm", "digest", "secretkey:", ":publishableKey", valid_publishable_key),
)

# Built at the same time as BUILD_A, by another connection into another file.
BUILD_B = (
    # platform:{plt}:userId and :stripeToken (platform-tokens) with :tierConfig (api-tokens): one row per
    # platform, found by its userId or, without one, by its token or its tier config.
    """CREATE TABLE plat (plt TEXT PRIMARY KEY, user_id TEXT, token TEXT, has_config INT, owner_ok INT,
                          token_ok INT, fast TEXT) WITHOUT ROWID""",
    f"""INSERT INTO plat SELECT plt, {_PLATFORM_DERIVED}
        FROM (SELECT plt, user_id, {_PLATFORM_PROBES}
              FROM (SELECT {_field("pt.key", "platform:", ":userId")} AS plt, CAST(pt.value AS TEXT) AS user_id FROM pt
                    WHERE {_range("pt", "platform:")} AND pt.key GLOB 'platform:?*:userId')
              WHERE instr(plt, ':') = 0 LIMIT -1 OFFSET 0)""",
    f"""INSERT INTO plat SELECT plt, {_PLATFORM_DERIVED}
        FROM (SELECT plt, NULL AS user_id, {_PLATFORM_PROBES}
              FROM (SELECT {_field("pt.key", "platform:", ":stripeToken")} AS plt FROM pt
                    WHERE {_range("pt", "platform:")} AND pt.key GLOB 'platform:?*:stripeToken'
                    UNION SELECT {_field("api.key", "platform:", ":tierConfig")} FROM api
                    WHERE {_range("api", "platform:")} AND api.key GLOB 'platform:?*:tierConfig') AS n
              WHERE instr(n.plt, ':') = 0 AND NOT EXISTS (SELECT 1 FROM plat WHERE plat.plt = n.plt) LIMIT -1 OFFSET 0)""",
    # dream's key index, platform:{plt}:key:{pk} (platform-tokens).
    "CREATE TABLE idx (key TEXT PRIMARY KEY, plt TEXT, pk TEXT, value TEXT, ok INT) WITHOUT ROWID",
    f"""INSERT INTO idx
        SELECT key, plt, substr(rest, 5), v, CASE WHEN json_valid(v) THEN json_type(v) = 'object' ELSE 0 END
        FROM (SELECT key, substr(r, 1, instr(r, ':') - 1) AS plt, substr(r, instr(r, ':') + 1) AS rest, v
              FROM (SELECT key, substr(key, 10) AS r, CAST(value AS TEXT) AS v FROM pt
                    WHERE {_range("pt", "platform:")} AND key GLOB 'platform:?*:key:?*'))
        WHERE plt != '' AND rest GLOB 'key:?*' AND instr(substr(rest, 5), ':') = 0""",
    "CREATE INDEX idx_plt ON idx (plt)",
    # Per publishable key: revoked (by which platform's index) or in its grace (until when). Revoked wins.
    "CREATE TABLE keystate (pk TEXT PRIMARY KEY, revoked_plt TEXT, expires INT) WITHOUT ROWID",
    """INSERT INTO keystate
        SELECT pk, max(CASE WHEN revoked THEN plt END),
               CASE WHEN max(revoked) THEN NULL
                    ELSE max(CASE WHEN json_type(value, '$.expiresAt') = 'integer'
                                  THEN json_extract(value, '$.expiresAt') END) END
        FROM (SELECT pk, plt, value, ifnull(json_type(value, '$.revokedAt'), 'null') != 'null' AS revoked
              FROM idx WHERE ok)
        GROUP BY pk
        HAVING max(revoked) OR max(json_type(value, '$.expiresAt') = 'integer')""",
    # The mirrored mappings.
    *_mirrored("pkm", "pk", "publishablekey:", ":platformId", valid_platform_id),
)


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


class Snapshot:
    """The entity tables of one verify (see the module's docstring)."""

    def __init__(self, conn: sqlite3.Connection, keys: int, parts: _Parts) -> None:
        self.conn = conn
        self.keys = keys
        self.parts = parts
        self.results = 0

    def rows(self, sql: str, params: tuple[object, ...] = ()) -> Iterator[sqlite3.Row]:
        cursor = self.conn.execute(sql, params)
        while batch := cursor.fetchmany(1000):
            yield from batch

    def one(self, sql: str, params: tuple[object, ...] = ()) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.conn.execute(sql, params).fetchone()
        return row

    def run_all(self, queries: Sequence[str]) -> list[Iterator[sqlite3.Row]]:
        """The rows of each query, the queries run two at a time (half of them by a forked process) into
        tables of their own, then read back in order. Meant for queries that return few rows."""
        self.results += 1
        files = [self.parts.folder / f"results{self.results}{side}.sqlite" for side in "ab"]
        statements = [f"CREATE TABLE result_{i} AS {query}" for i, query in enumerate(queries)]
        reads = ((ATTACHED_A, self.parts.folder / "a.sqlite"), (ATTACHED_B, self.parts.folder / "b.sqlite"))
        self.parts.at_once(
            (files[0], reads, tuple(statements[0::2])),
            (files[1], reads, tuple(statements[1::2])),
        )
        names = []
        for side, file in zip("ab", files, strict=True):
            name = f"results{self.results}{side}"
            self.conn.execute(f"ATTACH DATABASE ? AS {name}", (f"file:{file}?mode=ro",))
            names.append(name)
        return [self.rows(f"SELECT * FROM {names[i % 2]}.result_{i}") for i in range(len(queries))]


def _open(path: Path, sources: dict[str, SQLSource | None], spill: Path | None) -> sqlite3.Connection:
    """A connection to one part of the snapshot, with `pt` and `api` as TEMP VIEWs of (key, value) over the
    namespaces' live rows: the store's own file attached read-only where SQL reads it in place (`sources`),
    else the spill file their scans were copied into."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.text_factory = _decode  # values are whatever was written: never fail on bad UTF-8
    conn.execute("PRAGMA journal_mode = OFF")  # a scratch file: nothing to recover
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA cache_size = -16384")  # 16 MiB a part; past it pages go to the file
    conn.execute("PRAGMA temp_store = FILE")
    if spill is not None:
        conn.execute("ATTACH DATABASE ? AS spill", (f"file:{spill}?mode=ro",))
    for name, source in sources.items():
        if source is None:
            view = f"SELECT key, value FROM spill.{name}"
        else:
            conn.execute(f"ATTACH DATABASE ? AS src_{name}", (f"file:{source.path}?mode=ro",))
            view = source.select.format(schema=f"src_{name}")
        conn.execute(f"CREATE TEMP VIEW {name} AS {view}")
    return conn


def _spill(path: Path, namespaces: dict[str, KVNamespace], report: Callable[[int], None]) -> int:
    """Copy the namespaces' scans (in key order) into tables of their names in a new file; how many rows."""
    conn = sqlite3.connect(path, isolation_level=None)
    count = 0
    try:
        conn.execute("PRAGMA journal_mode = OFF")
        conn.execute("PRAGMA synchronous = OFF")
        for name, namespace in namespaces.items():
            conn.execute(f"CREATE TABLE {name} (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID")
            rows = iter(namespace.scan())
            while batch := [row for _, row in zip(range(SCAN_BATCH), rows, strict=False)]:
                conn.execute("BEGIN")
                conn.executemany(f"INSERT INTO {name} VALUES (?, ?)", batch)
                conn.execute("COMMIT")
                count += len(batch)
                report(len(batch))
    finally:
        conn.close()
    return count


TICK_STEPS = 1_000_000  # SQLite VM instructions between two ticks: a few milliseconds


def _run(
    path: Path,
    sources: dict[str, SQLSource | None],
    spill: Path | None,
    job: _Job,
    tick: Callable[[], None] | None = None,
) -> None:
    """Open `path` with the views, attach the files `job` reads, run its statements in one transaction; `tick()`
    every TICK_STEPS instructions of SQLite's while they run (a progress line: no thread, so forking stays safe)."""
    _, reads, statements = job
    conn = _open(path, sources, spill)
    if tick is not None:
        conn.set_progress_handler(lambda: tick() or 0, TICK_STEPS)  # 0: go on
    try:
        for alias, file in reads:
            conn.execute(f"ATTACH DATABASE ? AS {alias}", (f"file:{file}?mode=ro",))
        conn.execute("BEGIN")
        for statement in statements:
            conn.execute(statement)
        conn.execute("COMMIT")
    finally:
        conn.close()


def _stop_builders() -> None:
    """Kill this process's snapshot builders still running: those multiprocessing knows, and one forked in the
    instant before it was registered (an interrupt between the fork and the bookkeeping), found through /proc as a
    child running this very program (so a `wrangler dev` the verifier started is left alone)."""
    for child in multiprocessing.active_children():
        child.kill()
        child.join()
    try:
        me = Path("/proc/self/cmdline").read_bytes()
        tasks = list(Path("/proc/self/task").iterdir())
    except OSError:
        return  # no /proc: not Linux, where builders are not forked either (see _Parts.at_once)
    for task in tasks:
        try:
            pids = [int(pid) for pid in (task / "children").read_text().split()]
        except OSError:
            continue
        for pid in pids:
            try:
                if Path(f"/proc/{pid}/cmdline").read_bytes() != me:
                    continue
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (OSError, ChildProcessError):
                continue  # gone already, or reaped by multiprocessing


def keys_to_read(store: Store) -> int | None:
    """The keys verify will read (the two token namespaces), when the store can count them cheaply."""
    counts = [store.kv(name).count() for name in (PLATFORM_TOKENS, API_TOKENS)]
    return None if None in counts else sum(count or 0 for count in counts)


SNAPSHOT_PREFIX = "dream-verify-"  # + the pid of the process whose snapshot it is


def _clear_stale_snapshots() -> None:
    """Remove the snapshot folders (copies of the token namespaces) that runs killed past any cleanup (SIGKILL,
    a power cut) left in the temporary folder: those of this user whose process is gone."""
    for folder in Path(tempfile.gettempdir()).glob(f"{SNAPSHOT_PREFIX}*-*"):
        pid = folder.name.removeprefix(SNAPSHOT_PREFIX).partition("-")[0]
        try:
            if not pid.isdigit() or folder.stat().st_uid != os.getuid():
                continue
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except (PermissionError, FileNotFoundError):
            continue  # alive under another user, or just removed by its owner


def _forked(path: Path, sources: dict[str, SQLSource | None], spill: Path | None, job: _Job) -> None:
    """`_run` in a forked process: its failure is written beside its file for the parent to raise."""
    try:
        _run(path, sources, spill, job)
    except BaseException as exc:  # noqa: BLE001 - a forked child: any failure is handed to the parent, which raises it
        path.with_suffix(".error").write_text(f"{type(exc).__name__}: {exc}")
        os._exit(1)
    os._exit(0)


# (the file it writes, the files it reads as (alias, path), its statements)
_Job = tuple[Path, tuple[tuple[str, Path], ...], tuple[str, ...]]
ATTACHED_A, ATTACHED_B = "part_a", "part_b"


@dataclass(frozen=True)
class _Parts:
    """The snapshot's folder and where its views read from; runs SQL jobs two at a time."""

    folder: Path
    sources: dict[str, SQLSource | None]
    spill: Path | None
    tick: Callable[[], None] | None = None  # told while this process's own job runs

    def at_once(self, mine: _Job, theirs: _Job) -> None:
        """Both jobs at once where the system can fork (SQLite in two threads of one process contends for its
        allocator's lock and gains little; two processes run apart), else one after the other. Only a process
        with no other thread forks: a thread holding one of SQLite's locks at the fork would leave the child
        waiting on it forever."""
        if sys.platform != "linux" or threading.active_count() > 1:
            _run(mine[0], self.sources, self.spill, mine, self.tick)
            _run(theirs[0], self.sources, self.spill, theirs, self.tick)
            return
        child = multiprocessing.get_context("fork").Process(
            target=_forked, args=(theirs[0], self.sources, self.spill, theirs)
        )
        child.start()
        try:
            _run(mine[0], self.sources, self.spill, mine, self.tick)
        except BaseException:
            child.kill()  # interrupted (Ctrl-C, SIGTERM): its half of the snapshot is of no use, and its folder goes
            raise
        finally:
            child.join()
        if child.exitcode != 0:
            error = theirs[0].with_suffix(".error")
            why = error.read_text() if error.exists() else f"exit code {child.exitcode}"
            raise StoreError(f"verify could not build its snapshot: {why}")


@contextmanager
def snapshot(
    store: Store,
    now: int,
    on_progress: Callable[[int], None] | None = None,
    *,
    after_b: tuple[str, ...] = (),
    on_tick: Callable[[], None] | None = None,
) -> Iterator[Snapshot]:
    """The token namespaces of `store` as entity tables in a private folder (0700) deleted when the block
    ends, built in two parts at once (`_Parts.at_once`). `after_b`: more
    statements for part B's builder, over its tables only (plat, idx, keystate, pkm): part A takes longer.
    `on_progress(keys read)` as the keys are read; `on_tick()` every few milliseconds while SQL builds and checks."""
    done = 0

    def report(count: int) -> None:
        nonlocal done
        done += count
        if on_progress is not None:
            on_progress(done)

    namespaces = {"pt": store.kv(PLATFORM_TOKENS), "api": store.kv(API_TOKENS)}
    sources = {name: namespace.sql_source(now) for name, namespace in namespaces.items()}
    _clear_stale_snapshots()
    folder = Path(tempfile.mkdtemp(prefix=f"{SNAPSHOT_PREFIX}{os.getpid()}-"))
    try:
        spill, keys = None, 0
        scanned = {name: namespaces[name] for name, source in sources.items() if source is None}
        if scanned:
            spill = folder / "scan.sqlite"
            keys += _spill(spill, scanned, report)
        parts = _Parts(folder, sources, spill, on_tick)
        parts.at_once((folder / "a.sqlite", (), BUILD_A), (folder / "b.sqlite", (), BUILD_B + after_b))
        conn = _open(folder / "a.sqlite", sources, spill)
        try:
            conn.execute(f"ATTACH DATABASE ? AS {ATTACHED_B}", (f"file:{folder / 'b.sqlite'}?mode=ro",))
            for view, source in sources.items():
                if source is not None:
                    count: int = conn.execute(f"SELECT count(*) FROM {view}").fetchone()[0]
                    keys += count
                    report(count)
            yield Snapshot(conn, keys, parts)
        finally:
            conn.close()
    finally:
        # Interrupted (Ctrl-C, SIGTERM) while a builder process runs, at whatever point: it is stopped before the
        # folder goes, or it would write into it after. A folder that still cannot go is cleared by the next verify.
        _stop_builders()
        shutil.rmtree(folder, ignore_errors=True)
