"""Verify at production scale: dream's verifier Worker (dreamcli/data/verifier/index.js) reads the token namespaces
through their bindings, inside Cloudflare, shard by shard in parallel, and streams them back as NDJSON. Through
the REST API the same read is one request per 1,000 keys listed and per 100 values, under 1,200 requests per 5
minutes; a Worker invocation makes up to 950 such operations.

- `Verifier`: one run's Worker. Its project (a wrangler.json binding the namespaces, vars from the key schema), its
  one-time secret (a Worker secret, sent as a bearer token), and where it runs: deployed to the account with
  `wrangler deploy` and deleted after (`cloudflare` store), or under `wrangler dev` over the very state folder of a
  `wrangler` store and stopped after (how it is tested, and a local rehearsal of the production run).
- `VerifierClient`: the Worker's routes, with retries, counting invocations and KV operations.
- `through_worker(store, client)`: the store with its token namespaces scanning, and bulk writing, through the
  Worker; everything else unchanged. Values the schema marks secret arrive sealed (`layout.SEAL`): verify compares
  their digests, repair copies them inside the Worker.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import itertools
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

import httpx

from dreamcli import layout
from dreamcli.errors import RemoteError, UsageError
from dreamcli.plural import plural
from dreamcli.private_files import write_private
from dreamcli.stores import kv_rules
from dreamcli.stores.ports import KVNamespace, KVValue, KVWrite, ListPage, PutAsBulkPut, ScanObserver, Store
from dreamcli.stores.wrangler_cli import Reaper, dev_command, find_wrangler, reap_group, signal_group, wrangler_env
from dreamcli.topology import API_TOKENS, PLATFORM_TOKENS

WORKER_SOURCE = Path(__file__).resolve().parents[1] / "data" / "verifier" / "index.js"
COMPATIBILITY_DATE = "2025-12-01"
SCANNED = (PLATFORM_TOKENS, API_TOKENS)  # the namespaces verify reads: the Worker binds these only
BUDGET = 950  # KV operations an invocation may make (Workers allow 1,000)
LIST, BULK = 1000, 100  # keys a list returns, values a bulk get reads
WRITES_PER_CALL = 900  # puts and deletes a /write carries (a copy counts two)
ATTEMPTS = 4
READY_TIMEOUT = 90.0


class VerifierError(RemoteError):
    """The verifier Worker could not be deployed, reached or read."""


@dataclass
class Counts:
    """What one run cost: Worker invocations, the KV operations they made, retries, keys streamed."""

    invocations: int = 0
    ops: int = 0
    max_ops: int = 0
    retries: int = 0
    keys: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, *, ops: int = 0, keys: int = 0, retry: bool = False) -> None:
        with self._lock:
            if retry:
                self.retries += 1
                return
            self.invocations += 1
            self.ops += ops
            self.max_ops = max(self.max_ops, ops)
            self.keys += keys


class VerifierClient:
    """The verifier Worker's routes over HTTP. Scans write each invocation's lines to a file and drop them again
    when the invocation does not end (a dropped connection, a 5xx): then it is asked again from the same cursor."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        http: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
        budget: int = BUDGET,
    ) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self.http = http or httpx.Client(timeout=httpx.Timeout(120.0, connect=10.0))
        self.sleep = sleep
        self.budget = budget
        self.counts = Counts()

    def __repr__(self) -> str:  # never the token
        return f"VerifierClient(url={self.url!r})"

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}

    def _refused(self, response: httpx.Response, what: str) -> VerifierError:
        try:
            why = response.json().get("error") or f"HTTP {response.status_code}"
        except (ValueError, AttributeError):
            why = f"HTTP {response.status_code}"
        if response.status_code == 401:
            why = "it refused this run's secret (401)"
        return VerifierError(f"verifier worker: {what}: {why}")

    def info(self) -> dict[str, Any]:
        response = self.http.get(self.url + "/", headers=self._headers())
        if not response.is_success:
            raise self._refused(response, "GET /")
        info: dict[str, Any] = response.json()
        return info

    def _retrying(self, what: str, attempt: Callable[[], Any]) -> Any:
        """`attempt()` until it succeeds: a transport error, a 5xx or an incomplete stream is tried again (up to
        ATTEMPTS times, backing off); a refusal (4xx) is not."""
        for tries in itertools.count(1):
            try:
                return attempt()
            except (httpx.TransportError, _Incomplete) as exc:
                if tries >= ATTEMPTS:
                    raise VerifierError(f"verifier worker: {what}: {exc} ({tries} attempts)") from None
                self.counts.add(retry=True)
                self.sleep(min(8.0, 0.5 * 2 ** (tries - 1)))
        raise AssertionError("unreachable")

    def scan_shard(
        self, namespace: str, prefix: str, skip: Sequence[str], out: IO[str], stop: threading.Event | None = None
    ) -> int:
        """Every (key, value) under `prefix` (but under `skip`), in key order, as JSON lines into `out`; the
        number of keys. One invocation after another, each from where the last ended, until `stop` is set."""
        cursor: str | None = None
        keys = 0
        budget = self.budget
        while True:
            if stop is not None and stop.is_set():
                raise VerifierError(f"verifier worker: scan of {namespace} under {prefix!r} stopped")
            start = out.tell()
            tries = 0

            def attempt(start: int = start, cursor: str | None = cursor) -> tuple[int, dict[str, Any]]:
                # An invocation that broke off may have run out of CPU time (a plan's limit): each retry, and the
                # rest of the shard, asks for half as many operations (at least one page and its reads).
                nonlocal budget, tries
                if tries:
                    budget = max(1 + LIST // BULK, budget // 2)
                tries += 1
                out.seek(start)
                out.truncate()
                request = {"namespace": namespace, "prefix": prefix, "skip": list(skip), "cursor": cursor}
                return self._scan_once({**request, "budget": budget}, out)

            count, end = self._retrying(f"scan of {namespace} under {prefix!r}", attempt)
            keys += count
            self.counts.add(ops=int(end.get("ops", 0)), keys=count)
            cursor = end.get("cursor") or None
            if cursor is None:
                return keys

    def _scan_once(self, request: dict[str, Any], out: IO[str]) -> tuple[int, dict[str, Any]]:
        count = 0
        with self.http.stream("POST", self.url + "/scan", json=request, headers=self._headers()) as response:
            if response.status_code >= 500:
                raise _Incomplete(f"HTTP {response.status_code}")
            if not response.is_success:
                response.read()
                raise self._refused(response, "scan")
            try:
                for line in response.iter_lines():
                    if not line:
                        continue
                    item = json.loads(line)
                    if isinstance(item, dict) and item.get("end") is True:
                        return count, item
                    if not (isinstance(item, list) and len(item) == 2 and all(isinstance(v, str) for v in item)):
                        raise VerifierError(f"verifier worker: scan: unexpected line {line[:80]!r}")
                    out.write(line + "\n")
                    count += 1
            except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
                raise _Incomplete(f"the stream broke ({type(exc).__name__})") from None
            except json.JSONDecodeError:
                raise _Incomplete("a line was cut") from None
        raise _Incomplete("the stream ended before its end line")

    def write(
        self,
        namespace: str,
        *,
        puts: Sequence[dict[str, Any]] = (),
        copies: Sequence[dict[str, str]] = (),
        deletes: Sequence[str] = (),
    ) -> dict[str, Any]:
        """One /write (its operations under WRITES_PER_CALL). Retried as a whole: every operation is idempotent."""
        body = {"namespace": namespace, "puts": list(puts), "copies": list(copies), "deletes": list(deletes)}

        def attempt() -> dict[str, Any]:
            response = self.http.post(self.url + "/write", json=body, headers=self._headers())
            if response.status_code >= 500:
                raise _Incomplete(f"HTTP {response.status_code}")
            if not response.is_success:
                raise self._refused(response, "write")
            result: dict[str, Any] = response.json()
            return result

        result: dict[str, Any] = self._retrying(f"write to {namespace}", attempt)
        self.counts.add(ops=len(puts) + 2 * len(copies) + len(deletes))
        return result

    def close(self) -> None:
        self.http.close()


class _Incomplete(Exception):
    """An invocation that did not finish: asked again."""


def _lines(path: Path) -> Iterator[tuple[str, str]]:
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            key, value = json.loads(line)
            yield key, value


class WorkerKVNamespace(PutAsBulkPut):
    """A token namespace read (`scan`) and bulk written through the verifier Worker; every other operation goes to
    the store's own adapter, `base`."""

    def __init__(self, base: KVNamespace, client: VerifierClient, name: str, *, parallel: int = 8) -> None:
        self.base = base
        self.client = client
        self.name = name
        self.id = base.id
        self.parallel = parallel
        self.scan_observer: ScanObserver | None = None  # told as shards finish

    def scan(self, *, prefix: str = "") -> Iterator[tuple[str, bytes]]:
        """(key, value) in key order: the shards under `prefix` read `parallel` at a time into files of their own,
        and the rest (keys under no shard) by one scan that skips them; then merged."""
        shards = [p for p in layout.shard_prefixes(self.name) if p.startswith(prefix)]
        with tempfile.TemporaryDirectory(prefix="dream-worker-scan-") as folder:
            jobs: list[tuple[Path, str, tuple[str, ...]]] = [
                (Path(folder) / f"shard{i}.ndjson", p, ()) for i, p in enumerate(shards)
            ]
            rest = Path(folder) / "rest.ndjson"
            jobs.insert(0, (rest, prefix, tuple(shards)))  # the longest: started first
            done, keys, lock, stop = 0, 0, threading.Lock(), threading.Event()

            def run(job: tuple[Path, str, tuple[str, ...]]) -> None:
                nonlocal done, keys
                path, shard, skip = job
                try:
                    with path.open("w+", encoding="utf-8") as out:
                        count = self.client.scan_shard(self.name, shard, skip, out, stop)
                except BaseException:
                    stop.set()  # at once, from here: the other shards stop before their next call, however busy
                    raise  # the machine (the caller sees the failure only when map reaches it)
                with lock:
                    done, keys = done + 1, keys + count
                    if self.scan_observer is not None:
                        self.scan_observer.shards(done, len(jobs), keys)

            pool = ThreadPoolExecutor(max_workers=self.parallel)
            try:
                list(pool.map(run, jobs))
            except BaseException:
                # A failed shard or Ctrl-C: the queued shards are dropped and the running ones end after their
                # current invocation, not after the whole scan.
                stop.set()
                pool.shutdown(wait=True, cancel_futures=True)
                raise
            pool.shutdown()
            # Shards are disjoint ranges in key order; the rest falls between them.
            ordered = itertools.chain.from_iterable(_lines(path) for path, _, _ in jobs[1:])
            for key, value in heapq.merge(_lines(rest), ordered):
                yield key, value.encode("utf-8")

    def bulk_put(self, items: Sequence[KVWrite]) -> None:
        checked = kv_rules.check_writes(items, time.time())
        puts = []
        for item, (key, data, _, _) in zip(items, checked, strict=True):
            entry: dict[str, Any] = {"key": key}
            try:
                entry["value"] = data.decode("utf-8")
            except UnicodeDecodeError:
                entry["value"], entry["base64"] = base64.b64encode(data).decode(), True
            if item.expiration_ttl is not None:
                entry["expiration_ttl"] = int(item.expiration_ttl)
            elif item.expiration is not None:
                entry["expiration"] = int(item.expiration)
            if item.metadata is not None:
                entry["metadata"] = item.metadata
            puts.append(entry)
        for start in range(0, len(puts), WRITES_PER_CALL):
            self._refusals(self.client.write(self.name, puts=puts[start : start + WRITES_PER_CALL]))

    def bulk_delete(self, keys: Sequence[str]) -> None:
        kv_rules.check_keys(keys, kv_rules.MAX_BULK_DELETE, "Bulk delete")
        for start in range(0, len(keys), WRITES_PER_CALL):
            self._refusals(self.client.write(self.name, deletes=keys[start : start + WRITES_PER_CALL]))

    def copy_sealed(self, copies: Sequence[tuple[str, str, str]]) -> list[tuple[str, str]]:
        """Put each `source`'s value into `key` inside the Worker, if it still seals to `seal` (what verify saw):
        a secret is copied without leaving Cloudflare. Returns (key, why) for each copy refused."""
        refused: list[tuple[str, str]] = []
        step = WRITES_PER_CALL // 2
        for start in range(0, len(copies), step):
            batch = [{"key": key, "from": source, "seal": seal} for key, source, seal in copies[start : start + step]]
            result = self.client.write(self.name, copies=batch)
            refused += [(entry["key"], entry["why"]) for entry in result.get("refused") or []]
        return refused

    @staticmethod
    def _refusals(result: dict[str, Any]) -> None:
        refused = result.get("refused") or []
        if refused:
            first = refused[0]
            raise VerifierError(
                f"verifier worker: {len(refused)} write(s) refused (first: {first['key']!r}: {first['why']})"
            )

    # Everything else as the store does it.

    def get(self, key: str) -> bytes | None:
        return self.base.get(key)

    def get_with_metadata(self, key: str) -> KVValue | None:
        return self.base.get_with_metadata(key)

    def delete(self, key: str) -> None:
        self.bulk_delete([key])

    def list(self, *, prefix: str = "", cursor: str | None = None, limit: int = 1000) -> ListPage:
        return self.base.list(prefix=prefix, cursor=cursor, limit=limit)

    def bulk_get(self, keys: Sequence[str]) -> dict[str, KVValue | None]:
        return self.base.bulk_get(keys)

    def update(self, key: str, change: Callable[[bytes | None], bytes], *, expiration_ttl: int | None = None) -> bytes:
        return self.base.update(key, change, expiration_ttl=expiration_ttl)

    def sql_source(self, now: int) -> None:
        return None  # read through the Worker

    def count(self) -> int | None:
        return self.base.count()


def through_worker(store: Store, client: VerifierClient, *, parallel: int = 8) -> Store:
    """`store` with its token namespaces read and bulk written through the verifier Worker, values the schema marks
    secret arriving sealed."""
    namespaces = {
        name: WorkerKVNamespace(namespace, client, name, parallel=parallel) if name in SCANNED else namespace
        for name, namespace in store.namespaces.items()
    }
    return replace(store, location=f"{store.location} (through {client.url})", namespaces=namespaces, sealed=True)


# The Worker's project and its runs.


def worker_config(name: str, namespace_ids: Mapping[str, str]) -> dict[str, Any]:
    """The wrangler.json of one run's Worker: a binding per namespace verify reads, and the vars it may not take
    from a request (which bindings a request may name, which values it seals and how)."""
    bindings = {ns: ns.upper().replace("-", "_") for ns in namespace_ids}
    return {
        "name": name,
        "main": "index.js",
        "compatibility_date": COMPATIBILITY_DATE,
        "workers_dev": True,
        "kv_namespaces": [{"binding": bindings[ns], "id": ns_id} for ns, ns_id in namespace_ids.items()],
        "vars": {
            "DREAM_NAMESPACES": json.dumps(bindings),
            "DREAM_SEALED": json.dumps(layout.sealing_rules()),
            "DREAM_CLEAR": json.dumps(layout.CLEAR_FIELDS),
        },
    }


def _private_file(path: Path, text: str) -> None:
    write_private(path, text)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


WORKERS_DEV_URL = re.compile(r"https://[A-Za-z0-9.-]+\.workers\.dev")


@dataclass
class Verifier:
    """One run's verifier Worker: written into a private folder (0700) with its secret (0600), run by `start` and
    removed by `stop`. `state`: run it under `wrangler dev` over this local state folder (a wrangler store's);
    None: deploy it to the account in `environ` (CLOUDFLARE_API_TOKEN, CLOUDFLARE_ACCOUNT_ID)."""

    namespace_ids: Mapping[str, str]
    state: Path | None = None
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ), repr=False)  # holds the API token
    keep: bool = False
    wrangler: Path | None = None
    ready_timeout: float = READY_TIMEOUT
    log: Callable[[str], None] = lambda line: None
    name: str = field(default_factory=lambda: f"dream-verify-{secrets.token_hex(4)}")
    url: str = ""
    _token: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
    _folder: Path | None = field(default=None, repr=False)
    _process: subprocess.Popen[str] | None = field(default=None, repr=False)
    _reaper: Reaper | None = field(default=None, repr=False)
    _output: list[str] = field(default_factory=list, repr=False)
    _deployed: bool = field(default=False, repr=False)
    # Where a kept verifier's name, address and secret wait for the next run (0600); None: nothing is kept.
    kept: Path | None = None

    @property
    def deployed(self) -> bool:
        """Deployed to the account, as opposed to run under `wrangler dev` over local state."""
        return self.state is None

    @property
    def parallel(self) -> int:
        """Shards read at once by default: deployed, 8; locally one workerd serves them in turn, and more only queue."""
        return 8 if self.deployed else 2

    def start(self) -> VerifierClient:
        """Write the project, run it, and wait until it answers with this run's secret. Stops what it started if
        anything fails."""
        try:
            return self._start()
        except BaseException:
            self.stop(keep=False)  # a verifier that never served is no use to keep
            raise

    def write_project(self) -> Path:
        """The Worker's project in a private folder (0700): its source and its wrangler.json."""
        if self._folder is None:
            self._folder = Path(tempfile.mkdtemp(prefix="dream-verifier-"))
            shutil.copyfile(WORKER_SOURCE, self._folder / "index.js")
            config = worker_config(self.name, self.namespace_ids)
            (self._folder / "wrangler.json").write_text(json.dumps(config, indent=2))
        return self._folder

    def _start(self) -> VerifierClient:
        if self.state is None and self.kept is not None:
            reused = self._reuse()
            if reused is not None:
                return reused
        self.write_project()
        assert self._folder is not None
        wrangler = self.wrangler or find_wrangler(Path.cwd())
        if self.state is None:
            secrets_file = self._folder / "secrets.json"
            _private_file(secrets_file, json.dumps({"DREAM_VERIFY_TOKEN": self._token}))
            self.url = self._deploy(wrangler, secrets_file)
        else:
            env_file = self._folder / ".dev.vars"
            _private_file(env_file, f"DREAM_VERIFY_TOKEN={self._token}\n")
            port = _free_port()
            self.url = f"http://127.0.0.1:{port}"
            # No inspector: it would hand the run's one-time secret to any local process.
            command = dev_command(
                wrangler, "wrangler.json", port, persist_to=str(self.state.resolve()), env_file=env_file
            )
            self._reaper = Reaper()  # the Worker under wrangler dev and its secret die with dream, whatever kills it
            self._reaper.folder(self._folder)
            self._process = subprocess.Popen(
                command,
                cwd=self._folder,
                env=wrangler_env(self.environ),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,  # wrangler and its workerd in one group: stopped together
            )
            self._reaper.group(self._process)
            threading.Thread(target=self._collect, daemon=True).start()
        client = VerifierClient(self.url, self._token)
        self._wait(client)
        return client

    def _delete(self) -> None:
        """`wrangler delete` of this run's Worker (by name, from an empty folder of dream's: no config of the user's
        is read); said, with the command to run, when it cannot be done."""
        wrangler = self.wrangler or find_wrangler(Path.cwd())
        try:
            with tempfile.TemporaryDirectory(prefix="dream-verifier-") as aside:
                deleted = (
                    subprocess.run(
                        [str(wrangler), "delete", "--name", self.name, "--force"],
                        cwd=aside,
                        env=wrangler_env(self.environ),
                        stdin=subprocess.DEVNULL,
                        capture_output=True,
                        text=True,
                        timeout=120,
                    ).returncode
                    == 0
                )
        except subprocess.TimeoutExpired:
            deleted = False
        if not deleted:
            self.log(f"could not delete {self.name}: run `wrangler delete --name {self.name}`")
        if self.kept is not None:
            self.kept.unlink(missing_ok=True)  # it named this one, now gone (or to be deleted by hand)
        self._deployed = False

    def _identity(self) -> dict[str, Any]:
        """What a kept verifier must match to serve this run: the account, the namespaces, the Worker's source."""
        return {
            "account": self.environ.get("CLOUDFLARE_ACCOUNT_ID", ""),
            "namespaces": dict(self.namespace_ids),
            "source": hashlib.sha256(WORKER_SOURCE.read_bytes()).hexdigest(),
        }

    def _reuse(self) -> VerifierClient | None:
        """The verifier a `--keep-worker` run left, if it is this run's kind and still answers its secret; else
        None, and the one left (if any) is deleted."""
        assert self.kept is not None
        try:
            record = json.loads(self.kept.read_text())
            name, url, token = record["name"], record["url"], record["token"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        self.name, self._deployed = name, True  # from here on it is this run's to keep or delete
        if record.get("identity") == self._identity():
            client = VerifierClient(url, token)
            try:
                client.info()
            except (httpx.HTTPError, VerifierError):
                client.close()
            else:
                self.url, self._token = url, token
                self.log(f"reusing the kept verifier {name}")
                return client
        self.log(f"the kept verifier {name} cannot serve this run: deleting it and deploying another")
        self._delete()
        self.name = f"dream-verify-{secrets.token_hex(4)}"
        return None

    def _keep(self) -> None:
        """Write down the kept verifier for the next run (0600, replacing what was there)."""
        assert self.kept is not None
        self.kept.parent.mkdir(parents=True, exist_ok=True)
        record = {"name": self.name, "url": self.url, "token": self._token, "identity": self._identity()}
        partial = self.kept.with_name(self.kept.name + ".tmp")
        partial.unlink(missing_ok=True)
        _private_file(partial, json.dumps(record))
        partial.replace(self.kept)

    def _collect(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            self._output.append(line.rstrip())
            del self._output[:-2000]

    def _deploy(self, wrangler: Path, secrets_file: Path) -> str:
        """`wrangler deploy` with the secret uploaded in the same deployment; the workers.dev URL it prints."""
        assert self._folder is not None
        try:
            done = subprocess.run(
                [str(wrangler), "deploy", "--config", "wrangler.json", "--secrets-file", str(secrets_file)],
                cwd=self._folder,
                env=wrangler_env(self.environ),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=300,
            )
        except subprocess.TimeoutExpired:
            self._deployed = True  # it may have got as far as the upload: deleted to be sure
            raise VerifierError("wrangler deploy of the verifier took over 5 minutes") from None
        output = done.stdout + done.stderr
        if done.returncode != 0:
            tail = " | ".join(line for line in output.splitlines()[-6:] if line.strip())
            raise VerifierError(f"wrangler deploy of the verifier failed ({done.returncode}): {tail}")
        self._deployed = True
        found = WORKERS_DEV_URL.search(output)
        if found is None:
            raise VerifierError(
                "the verifier was deployed but wrangler printed no workers.dev URL: enable the account's workers.dev "
                f"subdomain (dashboard: Workers & Pages), then run again ({self.name} is deleted)"
            )
        return found.group(0)

    def _wait(self, client: VerifierClient) -> None:
        """Until the Worker answers this run's secret (a new deployment takes seconds to reach every edge)."""
        deadline = time.monotonic() + self.ready_timeout
        while True:
            if self._process is not None and self._process.poll() is not None:
                tail = " | ".join(line for line in self._output[-6:] if line.strip())
                raise VerifierError(f"wrangler dev of the verifier exited ({self._process.returncode}): {tail}")
            try:
                client.info()
                return
            except (httpx.TransportError, VerifierError) as exc:
                if time.monotonic() > deadline:
                    raise VerifierError(f"the verifier did not answer within {self.ready_timeout:g} s: {exc}") from None
            time.sleep(0.2)

    def stop(self, *, keep: bool | None = None) -> None:
        """Stop the local run, or delete the deployed Worker unless `keep` (else the verifier's own); remove the
        private folder."""
        if self._process is not None:
            signal_group(self._process)
            reap_group(self._process)
            if self._reaper is not None:
                self._reaper.forget_group(self._process)
            self._process = None
        elif self._deployed and (self.keep if keep is None else keep):
            if self.kept is not None and self.url:
                self._keep()
        elif self._deployed:
            self._delete()
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            if self._reaper is not None:
                self._reaper.forget_folder(self._folder)
            self._folder = None
        if self._reaper is not None:
            self._reaper.close()
            self._reaper = None


def verifier_for(store: Store, *, kept_in: Path | None = None, **options: Any) -> Verifier:
    """The verifier Worker for `store`: deployed for the cloudflare store (a kept one recorded in `kept_in`, per
    account); under `wrangler dev` over the state folder of a wrangler store whose token namespaces' live copies
    share one (where nothing outlives the run: `keep` is refused)."""
    ids = {name: store.kv(name).id for name in SCANNED}
    if store.kind == "cloudflare":
        environ = dict(options.pop("environ", os.environ))
        if environ.get("CLOUDFLARE_BASE_URL"):  # dream's API base (as the official SDK names it), wrangler's name
            environ.setdefault("CLOUDFLARE_API_BASE_URL", environ["CLOUDFLARE_BASE_URL"])
        if kept_in is not None:
            account = re.sub(r"[^A-Za-z0-9_-]", "_", environ.get("CLOUDFLARE_ACCOUNT_ID", ""))
            options["kept"] = kept_in / f"verifier-{account}.json"
        return Verifier(ids, None, environ, **options)
    if options.get("keep"):
        raise UsageError("--keep-worker keeps a deployed verifier; on local state its wrangler dev stops with the run")
    if store.kind == "wrangler" and store.project is not None:
        if options.get("wrangler") is None:
            options["wrangler"] = find_wrangler(store.project.root)
        copies = {name: store.project.live(name) for name in SCANNED}
        roots = {copy.state_root.resolve() for copy in copies.values()}
        if len(roots) > 1:
            where = ", ".join(f"{name} in {copy.state_root}" for name, copy in copies.items())
            raise UsageError(
                f"--via-worker runs one worker over one state folder, and the live copies are apart ({where}): "
                "`dream kv repair --merge-into DIR` shares one, or verify without --via-worker"
            )
        return Verifier({name: copy.id for name, copy in copies.items()}, roots.pop(), **options)
    raise UsageError(
        f"--via-worker reads production (--store cloudflare) or wrangler's local state (--store wrangler:...); "
        f"the {store.kind} store is read in place"
    )


@contextmanager
def read_through_worker(
    store: Store,
    *,
    environ: Mapping[str, str],
    keep: bool,
    parallel: int | None,
    kept_in: Path | None,
    log: Callable[[str], None],
) -> Iterator[Store]:
    """`store` read through the verifier Worker for as long as the block runs: deployed or started first, stopped,
    deleted or kept afterwards whatever ends the block (an error, Ctrl-C), and what the run cost told to `log`."""
    verifier = verifier_for(store, environ=environ, keep=keep, log=log, kept_in=kept_in)
    log(f"{'deploying' if verifier.deployed else 'starting (wrangler dev)'} the verifier worker {verifier.name}")
    client = verifier.start()
    try:
        yield through_worker(store, client, parallel=parallel or verifier.parallel)
    finally:
        verifier.stop()
        counts = client.counts
        kept = (
            f"; {verifier.name} kept for the next --via-worker run (`wrangler delete --name {verifier.name}` removes it)"
            if keep
            else ""
        )
        log(
            f"verifier worker: {plural(counts.invocations, 'invocation')}, {counts.ops:,} KV operations (at most "
            f"{counts.max_ops} in one), {plural(counts.retries, 'retry', 'retries')}{kept}"
        )
