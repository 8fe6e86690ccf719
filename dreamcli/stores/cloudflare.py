"""Production Workers KV and D1 through Cloudflare's REST API (httpx), with wrangler's variables
`CLOUDFLARE_API_TOKEN` and `CLOUDFLARE_ACCOUNT_ID` (and `CLOUDFLARE_BASE_URL`, as the official SDK).

Cursor pagination (empty pages included), bulk get in 100-key requests, bulk writes in batches, retries on
429 and 5xx honouring `Retry-After`, Cloudflare's error codes turned into dream's errors. The token is
never put in a message.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import httpx

from dreamcli.errors import D1Error, KVError, NotFound, RemoteError, UnknownNamespace, UsageError
from dreamcli.stores import kv_rules
from dreamcli.stores.ports import (
    D1Meta,
    D1Result,
    KVValue,
    KVWrite,
    ListedKey,
    ListPage,
    ReadModifyWrite,
    ScanObserver,
    Statement,
    Store,
)
from dreamcli.stores.ratelimit import Pacer
from dreamcli.topology import GUIDE_TOPOLOGY, Topology

DEFAULT_BASE = "https://api.cloudflare.com/client/v4"
MAX_ATTEMPTS = 5


class CloudflareAPI:
    def __init__(
        self,
        token: str,
        account_id: str,
        base_url: str = DEFAULT_BASE,
        *,
        http: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
        pacer: Pacer | None = None,
    ) -> None:
        self._token = token
        self.account_id = account_id
        self.base = base_url.rstrip("/") + f"/accounts/{account_id}"
        self.http = http or httpx.Client(timeout=30.0)
        self.sleep = sleep
        # Below Cloudflare's 1,200 requests / 5 minutes, corrected by its Ratelimit headers (see ratelimit.py).
        self.pacer = pacer or Pacer(sleep=sleep)
        self.requests = 0
        self._offset: float | None = None  # Cloudflare's clock minus ours, from the Date of its answers

    def __repr__(self) -> str:  # never the token
        return f"CloudflareAPI(account={self.account_id!r}, base={self.base!r})"

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self._token}", **kwargs.pop("headers", {})}
        for attempt in range(MAX_ATTEMPTS):
            self.requests += 1
            self.pacer.before()
            try:
                response = self.http.request(method, self.base + path, headers=headers, **kwargs)
            except httpx.HTTPError as exc:
                if attempt + 1 == MAX_ATTEMPTS:
                    raise RemoteError(f"cloudflare: could not reach {self.base}: {type(exc).__name__}") from None
                self.sleep(min(8.0, 0.5 * 2**attempt))
                continue
            self._note_date(response)
            self.pacer.after(response.headers)
            if response.status_code == 429 or response.status_code >= 500:
                if attempt + 1 < MAX_ATTEMPTS:
                    retry_after = response.headers.get("retry-after")
                    self.sleep(float(retry_after) if retry_after else min(8.0, 0.5 * 2**attempt))
                    continue
            return response
        return response

    def _note_date(self, response: httpx.Response) -> None:
        date = response.headers.get("date")
        if not date:
            return
        try:
            served = parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError):
            return
        self._offset = served - time.time()  # Date is whole seconds: never ahead of Cloudflare's clock

    def server_time(self) -> float:
        """Cloudflare's clock (an expiration is valid or not by it), learned from the Date of its answers: at
        most a second behind it."""
        if self._offset is None:
            self.request("GET", "/storage/kv/namespaces", params={"per_page": 5})
        return time.time() + (self._offset or 0.0)

    def now(self) -> float:
        """The store's clock for expirations dream computes: a second ahead of `server_time`, so never behind
        Cloudflare's, and a computed expiration is never refused as "too soon"."""
        return self.server_time() + 1

    @staticmethod
    def errors(response: httpx.Response) -> list[dict[str, Any]]:
        try:
            return response.json().get("errors") or []
        except (ValueError, AttributeError):
            return []

    def fail(self, response: httpx.Response, what: str) -> Exception:
        errors = self.errors(response)
        code = errors[0].get("code") if errors else None
        message = errors[0].get("message") if errors else f"HTTP {response.status_code}"
        if code == 10013:
            return UnknownNamespace(f"cloudflare: {what}: namespace not found (10013)")
        if code == 7404:
            return NotFound(f"cloudflare: {what}: D1 database not found (7404)")
        if code in (10000, 6003, 6111) or response.status_code in (401, 403):
            return RemoteError(
                f"cloudflare: {what}: authentication failed ({code}): check CLOUDFLARE_API_TOKEN and CLOUDFLARE_ACCOUNT_ID"
            )
        if code == 7500:
            return D1Error(message)
        if response.status_code == 429:
            return RemoteError(f"cloudflare: {what}: rate limited (971) after {MAX_ATTEMPTS} attempts")
        if response.status_code in (400, 413, 414):
            return KVError(response.status_code, str(message))
        return RemoteError(f"cloudflare: {what}: {message} ({code or response.status_code})")

    def result(self, response: httpx.Response, what: str) -> Any:
        if not response.is_success:
            raise self.fail(response, what)
        return response.json()


class CloudflareKVNamespace(ReadModifyWrite):
    def __init__(self, api: CloudflareAPI, namespace_id: str) -> None:
        self.api = api
        self.id = namespace_id
        self.path = f"/storage/kv/namespaces/{namespace_id}"
        # scan: told (keys, requests still to make, seconds they take at the rate limit) before its long part
        self.scan_observer: ScanObserver | None = None

    def _value(self, key: str) -> httpx.Response | None:
        """The raw value response, or None for Cloudflare's 10009 "key not found"."""
        kv_rules.validate_key(key)
        response = self.api.request("GET", f"{self.path}/values/{quote(key, safe='')}")
        if response.status_code == 404 and any(e.get("code") == 10009 for e in self.api.errors(response)):
            return None
        if not response.is_success:
            raise self.api.fail(response, f"get {key!r}")
        return response

    def get(self, key: str) -> bytes | None:
        response = self._value(key)
        return None if response is None else response.content

    def get_with_metadata(self, key: str) -> KVValue | None:
        response = self._value(key)
        if response is None:
            return None
        expiration = response.headers.get("expiration")
        meta = self.api.request("GET", f"{self.path}/metadata/{quote(key, safe='')}")
        metadata = meta.json().get("result") if meta.is_success else None
        return KVValue(response.content, metadata, int(expiration) if expiration else None)

    def bulk_get(self, keys: Sequence[str]) -> dict[str, KVValue | None]:
        """Text values, as Cloudflare's bulk get returns them (UTF-8 encoded here)."""
        kv_rules.check_keys(keys, kv_rules.MAX_BULK_GET, "Bulk get")
        if not keys:
            return {}
        response = self.api.request(
            "POST", f"{self.path}/bulk/get", json={"keys": list(keys), "type": "text", "withMetadata": True}
        )
        values = self.api.result(response, "bulk get")["result"]["values"]
        found: dict[str, KVValue | None] = {}
        for key in keys:
            entry = values.get(key)
            found[key] = (
                None
                if entry is None
                else KVValue(str(entry.get("value", "")).encode(), entry.get("metadata"), entry.get("expiration"))
            )
        return found

    def list(self, *, prefix: str = "", cursor: str | None = None, limit: int = 1000) -> ListPage:
        kv_rules.validate_list_limit(limit)
        params: dict[str, Any] = {"limit": limit}
        if prefix:
            params["prefix"] = prefix  # sent again with every cursor, as the API requires
        if cursor:
            params["cursor"] = cursor
        body = self.api.result(self.api.request("GET", f"{self.path}/keys", params=params), "list keys")
        keys = [ListedKey(k["name"], k.get("expiration"), k.get("metadata")) for k in body["result"]]
        next_cursor = (body.get("result_info") or {}).get("cursor") or ""
        return ListPage(keys, not next_cursor, next_cursor)

    def sql_source(self, now: int) -> None:
        return None  # values live outside SQL: verify copies them with `scan`

    def count(self) -> None:
        return None  # only a listing counts them: 1 request a 1,000 keys, under the rate limit

    def scan(self, *, prefix: str = "", workers: int = 8) -> Iterator[tuple[str, bytes]]:
        """(key, value) in key order. The names come first, 1,000 a list request, spilled to a temporary file (memory
        stays flat), so the scan knows its size before its long part and tells `scan_observer.listed`; the
        values, 100 keys a bulk get, up to `workers` at once. The same requests as reading page by page."""
        import json
        import tempfile
        from concurrent.futures import ThreadPoolExecutor

        with tempfile.TemporaryFile("w+", encoding="utf-8") as spill:
            listed = 0
            cursor: str | None = None
            while True:
                page = self.list(prefix=prefix, cursor=cursor, limit=1000)
                spill.writelines(json.dumps(entry.name) + "\n" for entry in page.keys)  # a key may hold a newline
                listed += len(page.keys)
                if page.list_complete or not page.cursor:
                    break
                cursor = page.cursor
            if self.scan_observer is not None:
                reads = -(-listed // 100)
                self.scan_observer.listed(listed, reads, self.api.pacer.seconds_for(reads))
            spill.seek(0)
            with ThreadPoolExecutor(max_workers=workers) as pool:
                while names := [json.loads(line) for _, line in zip(range(100 * workers), spill, strict=False)]:
                    chunks = [names[i : i + 100] for i in range(0, len(names), 100)]
                    for chunk, values in zip(chunks, pool.map(self.bulk_get, chunks), strict=True):
                        for name in chunk:
                            found = values.get(name)
                            if found is not None:
                                yield name, found.value

    def _now_for(self, items: Sequence[KVWrite]) -> float:
        """The clock the rules check `items` against: Cloudflare's only when an absolute expiration is to be
        judged (a ttl is sent as a ttl, and its own check needs no clock)."""
        if any(item.expiration is not None and item.expiration_ttl is None for item in items):
            return self.api.server_time()
        return time.time()

    def put(
        self,
        key: str,
        value: bytes | str,
        *,
        expiration: int | None = None,
        expiration_ttl: int | None = None,
        metadata: Any = None,
    ) -> None:
        item = KVWrite(key, value, expiration, expiration_ttl, metadata)
        ((_, data, _, encoded_metadata),) = kv_rules.check_writes([item], self._now_for([item]), limit=1)
        url = f"{self.path}/values/{quote(key, safe='')}"
        params = _expiration_params(item)
        if encoded_metadata is not None:
            files = {"value": ("value", data), "metadata": (None, encoded_metadata)}
            response = self.api.request("PUT", url, params=params, files=files)
        else:
            response = self.api.request("PUT", url, params=params, content=data)
        self.api.result(response, f"put {key!r}")

    def bulk_put(self, items: Sequence[KVWrite]) -> None:
        # Checked here against Cloudflare's own clock, then sent as given: a ttl stays a ttl.
        checked = kv_rules.check_writes(items, self._now_for(items))
        payload = []
        for item, (key, data, _, _) in zip(items, checked, strict=True):
            entry: dict[str, Any] = {"key": key, **_expiration_params(item)}
            try:
                entry["value"] = data.decode("utf-8")
            except UnicodeDecodeError:
                entry["value"], entry["base64"] = base64.b64encode(data).decode(), True
            if item.metadata is not None:
                entry["metadata"] = item.metadata
            payload.append(entry)
        if payload:
            body = self.api.result(self.api.request("PUT", f"{self.path}/bulk", json=payload), "bulk put")
            unsuccessful = (body.get("result") or {}).get("unsuccessful_keys") or []
            if unsuccessful:
                raise RemoteError(
                    f"cloudflare: bulk put left {len(unsuccessful)} key(s) unwritten (first: {unsuccessful[0]!r})"
                )

    def delete(self, key: str) -> None:
        kv_rules.check_keys([key], 1, "Delete")
        self.api.result(self.api.request("DELETE", f"{self.path}/values/{quote(key, safe='')}"), f"delete {key!r}")

    def bulk_delete(self, keys: Sequence[str]) -> None:
        kv_rules.check_keys(keys, kv_rules.MAX_BULK_DELETE, "Bulk delete")
        if keys:
            self.api.result(self.api.request("POST", f"{self.path}/bulk/delete", json=list(keys)), "bulk delete")


def _expiration_params(item: KVWrite) -> dict[str, int]:
    """What Cloudflare takes: the ttl when one is given (it wins, as in the REST API), else the expiration."""
    if item.expiration_ttl is not None:
        return {"expiration_ttl": int(item.expiration_ttl)}
    if item.expiration is not None:
        return {"expiration": int(item.expiration)}
    return {}


class CloudflareD1:
    def __init__(self, api: CloudflareAPI, database_id: str) -> None:
        self.api = api
        self.id = database_id

    def execute(self, sql: str, params: Sequence[Any] = ()) -> D1Result:
        from dreamcli.stores.sql import split_statements

        if len(split_statements(sql)) != 1:
            raise D1Error(f"expected one SQL statement, got {len(split_statements(sql))}: use a batch for several")
        return self.batch([Statement(sql, tuple(params))])[0]

    def batch(self, statements: Sequence[Statement]) -> list[D1Result]:
        if not statements:
            return []
        for statement in statements:
            if any(isinstance(p, (bytes, bytearray, memoryview)) for p in statement.params):
                raise D1Error("BLOB parameters cannot be sent through D1's REST API (JSON): use X'..' literals")
        body = {"batch": [{"sql": s.sql, "params": list(s.params)} for s in statements]}
        result = self.api.result(self.api.request("POST", f"/d1/database/{self.id}/query", json=body), "D1 query")[
            "result"
        ]
        return [
            D1Result(
                entry.get("results") or [],
                bool(entry.get("success", True)),
                D1Meta(**{k: v for k, v in (entry.get("meta") or {}).items() if k in D1Meta.__slots__}),
            )
            for entry in result
        ]


def open_cloudflare_store(
    env: Mapping[str, str],
    *,
    topology: Topology = GUIDE_TOPOLOGY,
    http: httpx.Client | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Store:
    token, account = env.get("CLOUDFLARE_API_TOKEN"), env.get("CLOUDFLARE_ACCOUNT_ID")
    if not token or not account:
        raise UsageError("the cloudflare store needs CLOUDFLARE_API_TOKEN and CLOUDFLARE_ACCOUNT_ID")
    api = CloudflareAPI(token, account, env.get("CLOUDFLARE_BASE_URL") or DEFAULT_BASE, http=http, sleep=sleep)
    namespaces = {ref.name: CloudflareKVNamespace(api, ref.id) for ref in topology.namespaces}
    return Store(
        "cloudflare", api.base, topology, namespaces, CloudflareD1(api, topology.database.id), api.http.close, api.now
    )
