"""Cloudflare's REST API for Workers KV and D1 (the subset in shared/reference), served over the emulator's
store with Cloudflare's envelopes and error codes, an API token, and injectable latency and rate limits."""

from __future__ import annotations

import asyncio
import hmac
import json
import math
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dreamcli.errors import D1Error, KVError
from dreamcli.stores.ports import Statement, Store


@dataclass
class CloudflareKnobs:
    """Test knobs: latency added to every request, and Cloudflare's API rate limit as Cloudflare applies it:
    `rate_limit` requests in any `window_s` seconds (Cloudflare's: 1,200 per 300 s per token); past it every request
    is refused (429, code 971) until a whole window has passed ("blocked for the next five minutes")."""

    latency_ms: float = 0.0
    rate_limit: int | None = None  # requests per window; None: no limit
    window_s: float = 1.0
    clock: Callable[[], float] = time.monotonic
    requests: int = 0
    rejected: int = 0  # answered 429
    _sent: deque[float] = field(default_factory=deque)  # admitted requests within the window
    _blocked_until: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _expire(self, now: float) -> None:
        while self._sent and self._sent[0] <= now - self.window_s:
            self._sent.popleft()

    def admit(self) -> float | None:
        """None to serve, or the seconds to wait (429)."""
        with self._lock:
            self.requests += 1
            if self.rate_limit is None:
                return None
            now = self.clock()
            if now < self._blocked_until:
                self.rejected += 1
                return self._blocked_until - now
            self._expire(now)
            if len(self._sent) >= self.rate_limit:
                self._blocked_until = now + self.window_s
                self.rejected += 1
                return self.window_s
            self._sent.append(now)
            return None

    def headers(self) -> dict[str, str]:
        """Cloudflare's rate-limit headers (IETF draft): the remaining quota and the seconds until it grows again
        (or the block ends), and the policy (quota per window), on every answer while a limit is set."""
        if self.rate_limit is None:
            return {}
        with self._lock:
            now = self.clock()
            self._expire(now)
            remaining = 0 if now < self._blocked_until else max(0, self.rate_limit - len(self._sent))
            if now < self._blocked_until:
                reset = self._blocked_until - now
            else:
                reset = self._sent[0] + self.window_s - now if self._sent else 0.0
        return {
            "Ratelimit": f'"default";r={remaining};t={max(0, math.ceil(reset))}',
            "Ratelimit-Policy": f'"default";q={self.rate_limit};w={math.ceil(self.window_s)}',
        }


def envelope(result: Any, *, info: dict[str, Any] | None = None, status: int = 200) -> JSONResponse:
    body: dict[str, Any] = {"success": True, "errors": [], "messages": [], "result": result}
    if info is not None:
        body["result_info"] = info
    return JSONResponse(body, status_code=status)


def failure(status: int, code: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        {"success": False, "errors": [{"code": code, "message": message}], "messages": [], "result": None},
        status_code=status,
        headers=headers,
    )


_KV_CODES = {400: 10001, 413: 10011, 414: 10033}
_SQL_INT_RANGE = (-(2**63), 2**63 - 1)


class BadRequest(Exception):
    """A request Cloudflare's API would refuse with 400 (code 10001 unless said otherwise)."""

    def __init__(self, message: str, code: int = 10001) -> None:
        super().__init__(message)
        self.code = code


async def json_body(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise BadRequest("request body is not valid JSON") from None


def query_int(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) < 10):
        raise BadRequest(f"{name} must be a positive integer, got {raw!r}")
    return int(raw)


def _sql_param(value: Any) -> Any:
    """D1 binds strings, numbers, booleans and null; anything else is the caller's error."""
    if value is None or isinstance(value, (str, float)):
        return value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int) and _SQL_INT_RANGE[0] <= value <= _SQL_INT_RANGE[1]:
        return value
    raise BadRequest(f"D1 parameters must be strings, numbers, booleans or null, not {value!r:.60}", code=7400)


def _statement(item: Any) -> Statement:
    """One {sql, params?} of a query or batch, checked."""
    if not isinstance(item, dict):
        raise BadRequest("each query is an object {sql, params?}", code=7400)
    sql, params = item.get("sql"), item.get("params") or ()
    if not isinstance(sql, str) or not sql.strip():
        raise BadRequest("each query needs sql: a non-empty string", code=7400)
    if not isinstance(params, (list, tuple)):
        raise BadRequest("params must be a list", code=7400)
    return Statement(sql, tuple(_sql_param(value) for value in params))


@dataclass(frozen=True)
class CloudflareService:
    """What every route needs: the store it serves, the account and token it accepts, the test knobs."""

    store: Callable[[], Store]
    account_id: str
    token: str = field(repr=False)
    knobs: CloudflareKnobs


def guarded(
    service: CloudflareService, handler: Callable[[Request, Store], Any]
) -> Callable[[Request], Awaitable[Response]]:
    """Latency and rate-limit knobs, the token and account checked (in constant time), errors in Cloudflare's envelope."""
    knobs, token, account_id = service.knobs, service.token, service.account_id

    async def endpoint(request: Request) -> Response:
        if knobs.latency_ms:
            await asyncio.sleep(knobs.latency_ms / 1000)
        response = await answer(request)
        response.headers.update(knobs.headers())
        return response

    async def answer(request: Request) -> Response:
        wait = knobs.admit()
        if wait is not None:
            return failure(
                429,
                971,
                "Please wait and consider throttling your request speed",
                {"Retry-After": str(max(1, math.ceil(wait)))},
            )
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), token.encode()):
            return failure(403, 10000, "Authentication error")
        if not hmac.compare_digest(str(request.path_params.get("account", "")).encode(), account_id.encode()):
            return failure(403, 10000, "Authentication error")
        try:
            return await handler(request, service.store())
        except BadRequest as exc:
            return failure(400, exc.code, str(exc))
        except KVError as exc:
            return failure(exc.status, _KV_CODES.get(exc.status, 10001), str(exc))
        except D1Error as exc:
            return failure(400, 7500, str(exc))

    return endpoint


def namespace(s: Store, request: Request) -> Any:
    ns_id = request.path_params["ns"]
    ref = s.topology.namespace(ns_id)
    return None if ref is None or ref.id != ns_id else s.kv(ns_id)


def missing_ns() -> JSONResponse:
    return failure(404, 10013, "list keys: 'namespace not found'")


def in_namespace(
    handler: Callable[[Request, Store, Any], Awaitable[Response]],
) -> Callable[[Request, Store], Awaitable[Response]]:
    """Resolve the `{ns}` of the path, or answer Cloudflare's 10013."""

    async def resolved(request: Request, s: Store) -> Response:
        ns = namespace(s, request)
        return missing_ns() if ns is None else await handler(request, s, ns)

    return resolved


async def list_namespaces(request: Request, s: Store) -> Response:
    refs = [{"id": ref.id, "title": ref.name, "supports_url_encoding": True} for ref in s.topology.namespaces]
    page = max(1, query_int(request, "page", 1))
    per_page = min(1000, max(1, query_int(request, "per_page", 20)))
    shown = refs[(page - 1) * per_page : page * per_page]
    return envelope(
        shown,
        info={
            "page": page,
            "per_page": per_page,
            "count": len(shown),
            "total_count": len(refs),
            "total_pages": -(-len(refs) // per_page),
        },
    )


@in_namespace
async def list_keys(request: Request, s: Store, ns: Any) -> Response:
    query = request.query_params
    page = await run_in_threadpool(
        ns.list,
        prefix=query.get("prefix", ""),
        cursor=query.get("cursor") or None,
        limit=query_int(request, "limit", 1000),
    )
    keys = [
        {
            "name": k.name,
            **({"expiration": k.expiration} if k.expiration else {}),
            **({"metadata": k.metadata} if k.metadata is not None else {}),
        }
        for k in page.keys
    ]
    return envelope(keys, info={"count": len(keys), "cursor": page.cursor})


@in_namespace
async def get_value(request: Request, s: Store, ns: Any) -> Response:
    found = await run_in_threadpool(ns.get_with_metadata, request.path_params["key"])
    if found is None:
        return failure(404, 10009, "get: 'key not found'")
    headers = {"expiration": str(found.expiration)} if found.expiration else {}
    return Response(found.value, media_type="application/octet-stream", headers=headers)


@in_namespace
async def get_metadata(request: Request, s: Store, ns: Any) -> Response:
    found = await run_in_threadpool(ns.get_with_metadata, request.path_params["key"])
    if found is None:
        return failure(404, 10009, "get: 'key not found'")
    return envelope(found.metadata)


@in_namespace
async def put_value(request: Request, s: Store, ns: Any) -> Response:
    query = request.query_params
    # The store checks these as Cloudflare does (integers, >= 60 s ahead) with Cloudflare's wording.
    expiration = query.get("expiration") or None
    ttl = query.get("expiration_ttl") or None
    metadata = None
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        try:
            form = await request.form()
        except Exception:  # noqa: BLE001 - python-multipart raises several kinds for a malformed body
            raise BadRequest("the multipart body could not be parsed") from None
        raw = form.get("value")
        if raw is None:
            raise BadRequest("a multipart write needs a 'value' part")
        value = await raw.read() if hasattr(raw, "read") else str(raw).encode("utf-8", "surrogatepass")
        if form.get("metadata") not in (None, ""):
            try:
                metadata = json.loads(str(form.get("metadata")))
            except (ValueError, RecursionError):
                raise BadRequest("metadata must be valid JSON") from None
    else:
        value = await request.body()
    await run_in_threadpool(
        lambda: ns.put(request.path_params["key"], value, expiration=expiration, expiration_ttl=ttl, metadata=metadata)
    )
    return envelope(None)


@in_namespace
async def delete_value(request: Request, s: Store, ns: Any) -> Response:
    await run_in_threadpool(ns.delete, request.path_params["key"])
    return envelope(None)


@in_namespace
async def bulk_put(request: Request, s: Store, ns: Any) -> Response:
    from dreamcli.stores.bulk import parse_bulk_items

    writes = parse_bulk_items(await json_body(request))
    await run_in_threadpool(ns.bulk_put, writes)
    return envelope({"successful_key_count": len(writes), "unsuccessful_keys": []})


@in_namespace
async def bulk_delete(request: Request, s: Store, ns: Any) -> Response:
    keys = await json_body(request)
    if not isinstance(keys, list) or not all(isinstance(key, str) for key in keys):
        raise BadRequest("a bulk delete takes a JSON array of key names")
    await run_in_threadpool(ns.bulk_delete, keys)
    return envelope({"successful_key_count": len(keys), "unsuccessful_keys": []})


@in_namespace
async def bulk_get(request: Request, s: Store, ns: Any) -> Response:
    body = await json_body(request)
    keys = body.get("keys") if isinstance(body, dict) else None
    if not isinstance(keys, list) or not all(isinstance(key, str) for key in keys):
        raise BadRequest('a bulk get takes {"keys": [key names], "type"?, "withMetadata"?}')
    found = await run_in_threadpool(ns.bulk_get, keys)
    as_json = body.get("type") == "json"
    values: dict[str, Any] = {}
    for key, entry in found.items():
        if entry is None:
            values[key] = None
            continue
        text = entry.value.decode("utf-8", errors="replace")
        try:
            value: Any = json.loads(text) if as_json else text
        except ValueError:
            raise BadRequest(f'the value of {key!r} is not JSON: ask for "type": "text"') from None
        values[key] = (
            {
                "value": value,
                "metadata": entry.metadata,
                **({"expiration": entry.expiration} if entry.expiration else {}),
            }
            if body.get("withMetadata")
            else value
        )
    return envelope({"values": values})


async def d1_query(request: Request, s: Store) -> Response:
    if request.path_params["db"] != s.database.id:
        return failure(404, 7404, "The database could not be found")
    body = await json_body(request)
    if not isinstance(body, dict):
        raise BadRequest('a query takes {"sql", "params"?} or {"batch": [...]}', code=7400)
    if "batch" in body:
        if not isinstance(body["batch"], list) or not body["batch"]:
            raise BadRequest("batch must be a non-empty list of {sql, params?}", code=7400)
        statements = [_statement(item) for item in body["batch"]]
    else:
        from dreamcli.stores.sql import split_statements

        if not isinstance(body.get("sql"), str):
            raise BadRequest("sql must be a string", code=7400)
        pieces = split_statements(body["sql"])
        if not pieces:
            raise BadRequest("no SQL statement to run", code=7400)
        params = body.get("params") or ()
        statements = [_statement({"sql": sql, "params": params if len(pieces) == 1 else ()}) for sql in pieces]
    results = await run_in_threadpool(s.database.batch, statements)
    # D1's REST API returns BLOBs as arrays of byte values
    return envelope(
        [
            {
                **r.as_dict(),
                "results": [{k: list(v) if isinstance(v, bytes) else v for k, v in row.items()} for row in r.results],
            }
            for r in results
        ]
    )


ACCOUNT = "/client/v4/accounts/{account}"
KV = ACCOUNT + "/storage/kv/namespaces"
ROUTES: list[tuple[str, str, Callable[[Request, Store], Any]]] = [
    ("GET", KV, list_namespaces),
    ("GET", KV + "/{ns}/keys", list_keys),
    ("GET", KV + "/{ns}/values/{key:path}", get_value),
    ("PUT", KV + "/{ns}/values/{key:path}", put_value),
    ("DELETE", KV + "/{ns}/values/{key:path}", delete_value),
    ("GET", KV + "/{ns}/metadata/{key:path}", get_metadata),
    ("PUT", KV + "/{ns}/bulk", bulk_put),
    ("POST", KV + "/{ns}/bulk/delete", bulk_delete),
    ("POST", KV + "/{ns}/bulk/get", bulk_get),
    ("POST", ACCOUNT + "/d1/database/{db}/query", d1_query),
]


def cloudflare_routes(store: Callable[[], Store], account_id: str, token: str, knobs: CloudflareKnobs) -> list[Route]:
    service = CloudflareService(store, account_id, token, knobs)
    return [Route(path, guarded(service, handler), methods=[method]) for method, path, handler in ROUTES]
