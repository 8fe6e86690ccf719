"""Many processes on one store at once, as operators really run dream, with writers killed at random: then nothing
acknowledged is lost, nothing is corrupt, no WAL or shared-memory file was deleted under a process using it, no
request got a 500, a revoked key is refused and a rotated one accepted by the running server as soon as the CLI
that did it has exited.

Two stores:
- `emulator`: `dream emulator serve` under load (hot end-users' increments over many connections) while CLI
  processes write (`kv put`, `kv bulk-put`, `keys rotate --grace`, `keys revoke`), `kv verify` and `kv repair` run
  in a loop, `dream stripe trigger` + `dream stripe listen` + `dream events resend` work the vendors' state;
- `wrangler`: `dream dev` (the reference workers under real `wrangler dev`, workerd reading and writing the state
  folder) with the same CLI writers on the wrangler store and `dream flow run --workers` repeated.

`bench/torture.py` runs it and prints the figures; `tests/test_many_processes.py` runs a bounded version.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from emulator.server import LoopbackServer
from tests.processes import deleted_while_open, port_flags_free

DREAM = str(Path(sys.executable).with_name("dream"))
USAGE_NS = "platform-usage"  # what the writers write: a namespace verify and repair leave alone
# what the reference workers answer when a workerd KV write (a put, or the delete of a used OAuth state) fails
WORKERD_BUSY = re.compile(r"KV (PUT|DELETE) failed: 500")


@dataclass
class Figures:
    """What a run did and what it found."""

    store: str = ""
    seconds: float = 0.0
    requests: Counter[int] = field(default_factory=Counter)  # status -> how many
    transport_errors: int = 0
    usage: dict[str, int] = field(default_factory=dict)  # end-user -> 200s answered
    usage_stored: dict[str, int] = field(default_factory=dict)  # end-user -> usageCount in the store
    commands: Counter[str] = field(default_factory=Counter)  # "kv put ok", "kv put killed", ...
    failures: list[str] = field(default_factory=list)  # a command's unexpected exit, with its stderr
    acknowledged: set[str] = field(default_factory=set)  # keys whose writer exited 0
    bulk_batches: dict[str, list[str]] = field(default_factory=dict)  # batch -> its keys (acknowledged or killed)
    bulk_acknowledged: set[str] = field(default_factory=set)
    triggered: list[str] = field(default_factory=list)  # customer ids `stripe trigger` said it made
    forwarded: int = 0  # events `stripe listen` delivered to our receiver
    rotations: int = 0
    rotated_refused: list[str] = field(default_factory=list)  # a new key refused right after rotate exited
    revoked_accepted: list[str] = field(default_factory=list)  # an old key accepted right after revoke exited
    deleted_samples: int = 0  # /proc scans made
    deleted_seen: set[str] = field(default_factory=set)
    integrity: dict[str, str] = field(default_factory=dict)  # file -> integrity_check's answer
    lost: list[str] = field(default_factory=list)
    half_written: list[str] = field(default_factory=list)
    server_errors: list[str] = field(default_factory=list)  # 5xx lines in the server's log

    @property
    def corrupt(self) -> list[str]:
        return [name for name, answer in self.integrity.items() if answer != "ok"]

    def problems(self) -> list[str]:
        """Every way the run fell short, one line each (empty: it held)."""
        out = [f"lost: {key}" for key in self.lost[:20]]
        out += [f"half-written bulk-put: {batch}" for batch in self.half_written]
        out += [f"corrupt: {name}: {self.integrity[name]}" for name in self.corrupt]
        out += [f"deleted while open: {name}" for name in sorted(self.deleted_seen)]
        out += [f"5xx: {line}" for line in self.server_errors[:20]]
        out += [f"HTTP {status} x{count}" for status, count in self.requests.items() if status >= 500]
        out += [
            f"usage of {user}: {self.usage_stored.get(user)} stored, {n} answered 200"
            for user, n in self.usage.items()
            if self.usage_stored.get(user) != n
        ]
        out += [f"rotated key refused: {key}" for key in self.rotated_refused]
        out += [f"revoked key accepted: {key}" for key in self.revoked_accepted]
        out += self.failures[:20]
        return out

    def summary(self) -> list[str]:
        ok = self.requests.get(200, 0)
        return [
            f"store {self.store}: {self.seconds:.1f} s, {sum(self.requests.values())} API requests "
            f"({ok} x 200, {self.requests.get(429, 0)} x 429, {self.requests.get(401, 0)} x 401, "
            f"{sum(n for s, n in self.requests.items() if s >= 500)} x 5xx, {self.transport_errors} transport errors)",
            f"usage counters: {len(self.usage)} end-users, {sum(self.usage_stored.values())} counted in the store for "
            f"{sum(self.usage.values())} answered 200 ({sum(self.usage_stored.get(u) == n for u, n in self.usage.items())}"
            " exact)",
            "commands: " + ", ".join(f"{name} {n}" for name, n in sorted(self.commands.items())),
            f"writes acknowledged: {len(self.acknowledged)} kv put keys, {len(self.bulk_acknowledged)} bulk-put "
            f"batches of {len(self.bulk_batches)}; rotations {self.rotations}; stripe triggers {len(self.triggered)}, "
            f"listen forwarded {self.forwarded}",
            f"/proc scans {self.deleted_samples}; files checked {len(self.integrity)}",
            f"{len(self.lost)} lost, {len(self.corrupt)} corrupt, {len(self.deleted_seen)} deleted-while-open, "
            f"{len(self.server_errors)} server 5xx, {len(self.half_written)} half-written",
        ]


class Run:
    """The processes of one run: each started through `dream`, so the /proc watch sees it while it lives."""

    def __init__(self, folder: Path, env: dict[str, str], figures: Figures, deadline: float, seed: int) -> None:
        self.folder = folder
        self.env = env
        self.figures = figures
        self.deadline = deadline
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.live: set[int] = set()
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []

    def dream(self, *args: str, kill_after: float | None = None, timeout: float = 120) -> tuple[int, str, str]:
        """Run `dream ARGS` to its end, or SIGKILL it after `kill_after` seconds: (exit code, stdout, stderr); a
        killed process's code is -9 (or what it exited with, if it was quicker than the kill)."""
        process = subprocess.Popen(
            [DREAM, *args], cwd=self.folder, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        with self.lock:
            self.live.add(process.pid)
        try:
            out, err = process.communicate(timeout=kill_after if kill_after is not None else timeout)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL if kill_after is not None else signal.SIGTERM)
            out, err = process.communicate()
        finally:
            with self.lock:
                self.live.discard(process.pid)
        return process.returncode, out, err

    def expect(self, name: str, code: int, err: str, allowed: tuple[int, ...] = (0,)) -> bool:
        """Count a command's outcome; a code it should never exit with is a failure (killed ones are not)."""
        if code == -signal.SIGKILL:
            self.figures.commands[f"{name} killed"] += 1
            return False
        self.figures.commands[f"{name} exit {code}"] += 1
        if code not in allowed:
            self.figures.failures.append(f"{name} exited {code}: {err.strip().splitlines()[-1:] or ''}")
        return code == 0

    def kill_maybe(self, n: int, chance: float, longest: float) -> float | None:
        """A random moment to SIGKILL writer number `n`, or None to let it finish: the first always finishes and the
        second is always killed (each loop acknowledges a write and loses a writer, however slow the machine)."""
        if n == 0:
            return None
        return self.random.uniform(0.05, longest) if n == 1 or self.random.random() < chance else None

    def loop(self, name: str, body: Callable[[int], None]) -> None:
        """Run `body(n)` for n = 0, 1, ... until the deadline, in a thread of its own: at least once, however slow
        the machine (so what the run claims to have survived, it did)."""

        def run() -> None:
            n = 0
            while n == 0 or (time.monotonic() < self.deadline and not self.stopping.is_set()):
                try:
                    body(n)
                except Exception as exc:  # noqa: BLE001 - the harness reports what broke and carries on with the others
                    self.figures.failures.append(f"{name}: {type(exc).__name__}: {exc}")
                n += 1

        thread = threading.Thread(target=run, name=name, daemon=True)
        thread.start()
        self.threads.append(thread)

    def watch(self, pids: Callable[[], list[int]]) -> None:
        """Scan every process of the run through /proc for a store file deleted while it is open, and still held
        by the same process one scan (20 ms) later. Held once only is SQLite closing its own last connection:
        holding the database's exclusive lock it unlinks the WAL and shared-memory files, then closes them
        (microseconds); no other process can open them between. A process holding a WAL or shared-memory file
        deleted under it keeps it for as long as its connection lives, so two scans see it."""

        def run() -> None:
            before: set[tuple[int, str]] = set()
            while not self.stopping.is_set():
                with self.lock:
                    live = list(self.live)
                now = {(pid, name) for pid in [*pids(), *live] for name in deleted_while_open(pid, self.folder)}
                self.figures.deleted_seen.update(name for _, name in now & before)
                before = now
                self.figures.deleted_samples += 1
                time.sleep(0.02)

        thread = threading.Thread(target=run, name="proc-watch", daemon=True)
        thread.start()
        self.threads.append(thread)

    def join(self) -> None:
        """Wait for the workers (each stops at the deadline, after its current command), then the watch."""
        watch = [thread for thread in self.threads if thread.name == "proc-watch"]
        for thread in [thread for thread in self.threads if thread.name != "proc-watch"]:
            thread.join(timeout=max(1.0, self.deadline + 120 - time.monotonic()))
            if thread.is_alive():
                self.figures.failures.append(f"{thread.name} still running 120 s after the deadline")
        self.stopping.set()
        for thread in watch:
            thread.join(timeout=10)


def _load(run: Run, api: str, secret: str, users: list[str], connections: int) -> None:
    """Hot end-users' increments from many connections; each answer counted by status (and each 200 by user)."""

    def connection(index: int) -> None:
        with httpx.Client(timeout=60) as http:
            n = index
            while time.monotonic() < run.deadline:
                user = users[n % len(users)]
                n += connections
                try:
                    answer = http.post(
                        f"{api}/api/data",
                        headers={"Authorization": f"Bearer {secret}", "X-User-Id": user, "X-User-Plan": "enterprise"},
                    )
                except httpx.HTTPError:
                    with run.lock:
                        run.figures.transport_errors += 1
                    continue
                with run.lock:
                    run.figures.requests[answer.status_code] += 1
                    if answer.status_code == 200:
                        run.figures.usage[user] = run.figures.usage.get(user, 0) + 1

    for index in range(connections):
        thread = threading.Thread(target=connection, args=(index,), name=f"load-{index}", daemon=True)
        thread.start()
        run.threads.append(thread)


def _writers(run: Run, store: list[str], kill_chance: float) -> None:
    """`kv put` and `kv bulk-put` processes, some killed mid-write."""

    def put(index: int, n: int) -> None:
        key = f"torture:put:{index}"
        code, _, err = run.dream(
            *store, "kv", "put", key, f"v{index}", "--ns", USAGE_NS, kill_after=run.kill_maybe(n, kill_chance, 0.6)
        )
        if run.expect("kv put", code, err):
            run.figures.acknowledged.add(key)

    def bulk(n: int) -> None:
        batch = f"torture:bulk:{n}"
        keys = [f"{batch}:{i:03d}" for i in range(200)]
        source = run.folder / f"bulk-{n}.json"
        source.write_text(json.dumps([{"key": key, "value": key} for key in keys]))
        run.figures.bulk_batches[batch] = keys
        code, _, err = run.dream(
            *store, "kv", "bulk-put", str(source), "--ns", USAGE_NS, kill_after=run.kill_maybe(n, kill_chance, 0.8)
        )
        if run.expect("kv bulk-put", code, err):
            run.figures.bulk_acknowledged.add(batch)

    for worker in range(2):
        run.loop(f"kv-put-{worker}", lambda n, w=worker: put(n * 2 + w, n))
    run.loop("kv-bulk-put", bulk)


def _keys(run: Run, store: list[str], platform: str, api: str) -> None:
    """A pair of its own (env "torture", so the load's pair is never touched) rotated with a grace period, then the
    old one revoked; right after each CLI exits, one request to the running server: the new secret must pass, the
    revoked one must not."""
    code, out, err = run.dream(*store, "keys", "create", "-p", platform, "--env", "torture", "--json")
    assert code == 0, err
    first = json.loads(out)
    current = {"pk": first["publishableKey"], "sk": first["secretKey"]}

    def call(secret: str) -> int:
        return httpx.post(
            f"{api}/api/data",
            headers={"Authorization": f"Bearer {secret}", "X-User-Id": "rotation-probe", "X-User-Plan": "enterprise"},
            timeout=60,
        ).status_code

    def rotate_and_revoke(_: int) -> None:
        code, out, err = run.dream(
            *store, "keys", "rotate", "-p", platform, "--env", "torture", "--grace", "1h", "--json"
        )
        if not run.expect("keys rotate", code, err):
            return
        made = json.loads(out)
        run.figures.rotations += 1
        if (status := call(made["secretKey"])) not in (200, 429):
            run.figures.rotated_refused.append(f"{made['publishableKey']} answered {status}")
        code, _, err = run.dream(*store, "keys", "revoke", "-p", platform, "-k", current["pk"], "--yes")
        if run.expect("keys revoke", code, err) and (status := call(current["sk"])) != 401:
            run.figures.revoked_accepted.append(f"{current['pk']} answered {status}")
        current.update(pk=made["publishableKey"], sk=made["secretKey"])

    run.loop("keys", rotate_and_revoke)


def _checks(run: Run, store: list[str]) -> None:
    """`kv verify` and `kv repair --yes` in a loop (findings are exit 1; anything else is a failure)."""

    def verify(_: int) -> None:
        code, _, err = run.dream(*store, "kv", "verify", "--json")
        run.expect("kv verify", code, err, allowed=(0, 1))

    def repair(_: int) -> None:
        code, _, err = run.dream(*store, "kv", "repair", "--yes")
        run.expect("kv repair", code, err, allowed=(0, 1))

    run.loop("kv-verify", verify)
    run.loop("kv-repair", repair)


def _stripe(run: Run) -> LoopbackServer:
    """`dream stripe listen` forwarding to a receiver here, `dream stripe trigger customer.created` in a loop (the
    customers it made must all exist at the end), `dream events resend` of what was sent."""
    received: list[str] = []

    async def hook(request: Request) -> JSONResponse:
        received.append((await request.json()).get("type", ""))
        return JSONResponse({"received": True})

    receiver = LoopbackServer(Starlette(routes=[Route("/hook", hook, methods=["POST"])]))
    url = receiver.start() + "/hook"
    seconds = max(1.0, run.deadline - time.monotonic())
    listener = subprocess.Popen(
        [DREAM, "stripe", "listen", "--forward-to", url, "--timeout", f"{seconds:.1f}"],
        cwd=run.folder,
        env=run.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    with run.lock:
        run.live.add(listener.pid)

    def trigger(_: int) -> None:
        code, out, err = run.dream("stripe", "trigger", "customer.created", "--json")
        if run.expect("stripe trigger", code, err):
            made = json.loads(out)
            run.figures.triggered += [c["id"] for c in made["calls"] if str(c.get("id")).startswith("cus_")]

    def resend(_: int) -> None:
        code, out, err = run.dream("events", "list", "--json")
        if not run.expect("events list", code, err):
            return
        events = json.loads(out).get("events", [])
        if events:
            code, _, err = run.dream("events", "resend", events[0]["id"])
            # exit 1: a receiver did not take it (it is retried): the command worked, the receiver said no
            run.expect("events resend", code, err, allowed=(0, 1))
        time.sleep(0.2)

    def listened() -> None:
        _, err = listener.communicate()
        with run.lock:
            run.live.discard(listener.pid)
        run.figures.forwarded = len(received)
        if listener.returncode != 0:
            run.figures.failures.append(f"stripe listen exited {listener.returncode}: {err.strip()[-300:]}")

    run.loop("stripe-trigger", trigger)
    run.loop("events-resend", resend)
    thread = threading.Thread(target=listened, name="stripe-listen", daemon=True)
    thread.start()
    run.threads.append(thread)
    return receiver


def _integrity(figures: Figures, folder: Path) -> None:
    """PRAGMA integrity_check on every SQLite file of the run (store, D1, vendor state, wrangler's state)."""
    for path in sorted([*folder.rglob("*.db"), *folder.rglob("*.sqlite")]):
        if path.name.startswith("bulk-"):
            continue
        try:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                answer = "; ".join(row[0] for row in conn.execute("PRAGMA integrity_check").fetchall())
            finally:
                conn.close()
        except sqlite3.Error as exc:
            answer = str(exc)
        figures.integrity[str(path.relative_to(folder))] = answer


def _read_back(figures: Figures, store: Any, platform: str, stripe: Callable[[str], bool]) -> None:
    """Every acknowledged write present; each bulk-put batch all or nothing; usage counters as answered."""
    from dreamcli import layout

    usage = store.kv(USAGE_NS)
    for key in sorted(figures.acknowledged):
        if usage.get(key) is None:
            figures.lost.append(key)
    for batch, keys in figures.bulk_batches.items():
        present = sum(usage.get(key) is not None for key in keys)
        if batch in figures.bulk_acknowledged and present != len(keys):
            figures.lost.append(f"{batch} ({present} of {len(keys)})")
        elif present not in (0, len(keys)):
            figures.half_written.append(f"{batch} ({present} of {len(keys)})")
    for user in figures.usage:
        raw = store.kv("api-usage").get(layout.end_user_usage(platform, user))
        figures.usage_stored[user] = json.loads(raw)["usageCount"] if raw else 0
    for customer in figures.triggered:
        if not stripe(customer):
            figures.lost.append(customer)


def _serve(folder: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], dict[str, str]]:
    server = subprocess.Popen(
        [DREAM, "emulator", "serve", *port_flags_free()],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    urls = dict(server.stdout.readline().split() for _ in range(6))
    return server, urls


def _exercise(
    run: Run, store: list[str], api: str, flow: dict[str, Any], users: int, connections: int, kill_chance: float
) -> LoopbackServer:
    """Every concurrent user of the store at once, until the run's deadline."""
    _load(run, api, flow["secretKey"], [f"hot-{i}" for i in range(users)], connections)
    _writers(run, store, kill_chance)
    _keys(run, store, flow["platformId"], api)
    _checks(run, store)
    return _stripe(run)


def _read_back_all(figures: Figures, folder: Path, open_store: Callable[[], Any], platform: str) -> None:
    """After every process stopped: the files' integrity, then every acknowledged write (the vendors' state in
    folder/.dream/emulator.db holds the triggered customers). A store that no longer opens has lost everything."""
    from dreamcli.errors import StoreError
    from emulator.app import Emulator

    _integrity(figures, folder)
    try:
        store = open_store()
        emulator = Emulator(folder / ".dream" / "emulator.db")
    except StoreError as exc:
        figures.lost.append(f"the whole store: {exc}")
        return
    try:
        account = emulator.stripe._platform["id"]

        def exists(customer: str) -> bool:
            from emulator.stripe_backend import StripeAPIError

            try:
                emulator.stripe.get(account, "customer", customer)
            except StripeAPIError:
                return False
            return True

        _read_back(figures, store, platform, exists)
    finally:
        emulator.close()
        store.close()


def _environment() -> dict[str, str]:
    """The run's environment: none of the caller's DREAM_* settings, and a 30 s wait for a SQLite lock (the
    documented DREAM_BUSY_TIMEOUT; 5 s by default). With twenty processes on two cores a `kv put` once in about
    twenty runs waited past 5 s and refused, having written nothing, as documented. The run holds what is written
    to be kept and whole; how long a write may wait under it is not its question."""
    environment = {name: value for name, value in os.environ.items() if not name.startswith("DREAM_")}
    return {**environment, "DREAM_BUSY_TIMEOUT": "30"}


def torture_emulator(
    folder: Path, seconds: float, *, connections: int = 16, users: int = 32, kill_chance: float = 0.3, seed: int = 1
) -> Figures:
    """The emulator store: `dream emulator serve` and every other command at once (see the module docstring)."""
    from emulator.store import open_emulator_store

    folder.mkdir(parents=True, exist_ok=True)
    env = _environment()
    figures = Figures(store="emulator")
    made = subprocess.run([DREAM, "flow", "run", "--json"], cwd=folder, env=env, capture_output=True, text=True)
    assert made.returncode == 0, made.stdout + made.stderr
    flow = json.loads(made.stdout)
    server, urls = _serve(folder, env)
    log: list[str] = []
    drain = threading.Thread(target=lambda: log.extend(server.stderr), daemon=True)  # type: ignore[arg-type]
    drain.start()
    started = time.monotonic()
    run = Run(folder, env, figures, started + seconds, seed)
    receiver = None
    try:
        run.watch(lambda: [server.pid])
        receiver = _exercise(run, [], urls["api-multi"], flow, users, connections, kill_chance)
        run.join()
    finally:
        run.stopping.set()
        server.send_signal(signal.SIGINT)
        server.wait(timeout=180)  # a guard only
        drain.join(timeout=10)
        if receiver is not None:
            receiver.stop()
    figures.seconds = time.monotonic() - started
    figures.server_errors = [line.strip() for line in log if _is_5xx(line)]
    if server.returncode != 0:
        figures.failures.append(f"dream emulator serve exited {server.returncode}: {''.join(log[-3:])}")
    _read_back_all(figures, folder, lambda: open_emulator_store(folder / ".dream" / "emulator.db"), flow["platformId"])
    return figures


def torture_wrangler(
    folder: Path,
    seconds: float,
    *,
    connections: int = 6,
    users: int | None = None,
    kill_chance: float = 0.3,
    seed: int = 1,
) -> Figures:
    """The wrangler store: `dream dev` (workerd reading and writing the state folder) with the same CLI writers on
    it and `dream flow run --workers` repeated. Each end-user's calls go over one connection, one at a time: the
    guide's worker counts with a KV get and put, which loses increments under concurrent calls by design (Workers
    KV has no atomic update), so only sequential calls can be held to an exact count."""
    from dreamcli.stores.wrangler import open_wrangler_store
    from tests.conftest import copy_workers

    folder.mkdir(parents=True, exist_ok=True)
    env = _environment()
    figures = Figures(store="wrangler")
    project = copy_workers(folder / "workers")
    dev = subprocess.Popen(
        [DREAM, "dev", str(project), "--state", "shared", "--timeout", "300", *port_flags_free()],
        cwd=folder,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert dev.stderr is not None
    log: list[str] = []
    while not (line := dev.stderr.readline()).startswith("next: "):
        log.append(line)
        if not line:
            dev.wait(timeout=60)
            raise AssertionError("dream dev exited before it was ready:\n" + "".join(log[-30:]))
    spec, urls = line.split("--store ")[1].split()[0], line.split("--urls ")[1].split()[0]
    drain = threading.Thread(target=lambda: log.extend(dev.stderr), daemon=True)  # type: ignore[arg-type]
    drain.start()
    store_args = ["--store", spec]
    api = urls.split("api-multi=")[1].split(",")[0]

    def flow_run() -> tuple[int, str, str]:
        done = subprocess.run(
            [DREAM, "flow", "run", "--workers", "--urls", urls, *store_args, "--json"],
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        return done.returncode, done.stdout, done.stderr

    code, out, err = flow_run()
    assert code == 0, out + err
    flow = json.loads(out)
    started = time.monotonic()
    run = Run(folder, env, figures, started + seconds, seed)
    receiver = None
    try:
        run.watch(lambda: [dev.pid, *_children(dev.pid)])
        receiver = _exercise(run, store_args, api, flow, users or connections, connections, kill_chance)

        def flows(_: int) -> None:
            code, out, err = flow_run()
            if code != 0 and WORKERD_BUSY.search(err):
                # Miniflare's storage takes no lock wait: a write of workerd's that meets a dream write holding the
                # state's lock fails at once (500), and the flow names that request. Counted and shown, not hidden;
                # it is workerd's behaviour, and nothing is lost or corrupt (checked below).
                run.figures.commands["flow run --workers: a workerd KV write met dream's lock"] += 1
                return
            run.expect("flow run --workers", code, out[-400:] + err[-400:])

        run.loop("flow-workers", flows)
        run.join()
    finally:
        run.stopping.set()
        dev.send_signal(signal.SIGTERM)
        dev.wait(timeout=60)
        drain.join(timeout=10)
        if receiver is not None:
            receiver.stop()
    figures.seconds = time.monotonic() - started
    if dev.returncode != 0:
        figures.failures.append(f"dream dev exited {dev.returncode}: {''.join(log[-3:])}")
    _read_back_all(figures, folder, lambda: open_wrangler_store(spec.partition(":")[2]), flow["platformId"])
    return figures


def _children(pid: int) -> list[int]:
    """Every descendant of `pid` (wrangler and the workerd it starts)."""
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except FileNotFoundError:
            continue
        for task in tasks:
            try:
                kids = Path(f"/proc/{parent}/task/{task}/children").read_text().split()
            except FileNotFoundError:
                continue
            for kid in map(int, kids):
                found.append(kid)
                frontier.append(kid)
    return found


def _is_5xx(line: str) -> bool:
    """A request line of the server's log (`api-multi       POST   /api/data 500 ...`) with a 5xx status."""
    parts = line.split()
    return len(parts) >= 4 and parts[3].isdigit() and parts[3].startswith("5")
