"""Cloudflare's REST API for Workers KV and D1 (the subset in shared/reference), served over the emulator's
store with Cloudflare's envelopes and error codes, an API token, and injectable latency and rate limits."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dreamcli.errors import D1Error, KVError
from dreamcli.stores.ports import KVWrite, Statement, Store


@dataclass
class CloudflareKnobs:
    """Test knobs: latency added to every request, and a fixed-window rate limit."""

    latency_ms: float = 0.0
    rate_limit: int | None = None  # requests per window
    window_s: float = 1.0
    requests: int = 0
    _window_start: float = field(default_factory=time.monotonic)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def admit(self) -> float | None:
        """None to serve, or the seconds to wait (429)."""
        with self._lock:
            self.requests += 1
            if self.rate_limit is None:
                return None
            now = time.monotonic()
            if now - self._window_start >= self.window_s:
                self._window_start, self._count = now, 0
            self._count = getattr(self, "_count", 0) + 1
            if self._count > self.rate_limit:
                return max(0.0, self.window_s - (now - self._window_start))
            return None


def envelope(result: Any, *, info: dict[str, Any] | None = None, status: int = 200) -> JSONResponse:
    body: dict[str, Any] = {"success": True, "errors": [], "messages": [], "result": result}
    if info is not None:
        body["result_info"] = info
    return JSONResponse(body, status_code=status)


def failure(status: int, code: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"success": False, "errors": [{"code": code, "message": message}], "messages": [], "result": None},
                        status_code=status, headers=headers)


_KV_CODES = {400: 10001, 413: 10011, 414: 10033}


def cloudflare_routes(store: Callable[[], Store], account_id: str, token: str, knobs: CloudflareKnobs) -> list[Route]:
    def guarded(handler: Callable[[Request, Store], Any]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            if knobs.latency_ms:
                await asyncio.sleep(knobs.latency_ms / 1000)
            wait = knobs.admit()
            if wait is not None:
                return failure(429, 971, "Please wait and consider throttling your request speed",
                               {"Retry-After": str(max(1, round(wait)))})
            header = request.headers.get("authorization", "")
            if header != f"Bearer {token}":
                return failure(403, 10000, "Authentication error")
            if request.path_params.get("account") != account_id:
                return failure(403, 10000, "Authentication error")
            try:
                return await handler(request, store())
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

    def in_namespace(handler: Callable[[Request, Store, Any], Awaitable[Response]]) -> Callable[[Request, Store], Awaitable[Response]]:
        """Resolve the `{ns}` of the path, or answer Cloudflare's 10013."""

        async def resolved(request: Request, s: Store) -> Response:
            ns = namespace(s, request)
            return missing_ns() if ns is None else await handler(request, s, ns)

        return resolved

    async def list_namespaces(request: Request, s: Store) -> Response:
        refs = [{"id": ref.id, "title": ref.name, "supports_url_encoding": True} for ref in s.topology.namespaces]
        page = max(1, int(request.query_params.get("page", "1")))
        per_page = min(1000, max(1, int(request.query_params.get("per_page", "20"))))
        shown = refs[(page - 1) * per_page : page * per_page]
        return envelope(shown, info={"page": page, "per_page": per_page, "count": len(shown), "total_count": len(refs),
                                     "total_pages": -(-len(refs) // per_page)})

    @in_namespace
    async def list_keys(request: Request, s: Store, ns: Any) -> Response:
        query = request.query_params
        page = await run_in_threadpool(ns.list, prefix=query.get("prefix", ""), cursor=query.get("cursor") or None,
                                       limit=int(query.get("limit", "1000")))
        keys = [{"name": k.name, **({"expiration": k.expiration} if k.expiration else {}),
                 **({"metadata": k.metadata} if k.metadata is not None else {})} for k in page.keys]
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
        expiration = int(query["expiration"]) if query.get("expiration") else None
        ttl = int(query["expiration_ttl"]) if query.get("expiration_ttl") else None
        metadata = None
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            form = await request.form()
            raw = form.get("value")
            value = await raw.read() if hasattr(raw, "read") else str(raw or "").encode()
            if form.get("metadata") not in (None, ""):
                metadata = json.loads(str(form.get("metadata")))
        else:
            value = await request.body()
        await run_in_threadpool(lambda: ns.put(request.path_params["key"], value, expiration=expiration,
                                               expiration_ttl=ttl, metadata=metadata))
        return envelope(None)

    @in_namespace
    async def delete_value(request: Request, s: Store, ns: Any) -> Response:
        await run_in_threadpool(ns.delete, request.path_params["key"])
        return envelope(None)

    @in_namespace
    async def bulk_put(request: Request, s: Store, ns: Any) -> Response:
        items = json.loads(await request.body())
        writes = [KVWrite(i["key"], base64.b64decode(i["value"]) if i.get("base64") else i["value"], i.get("expiration"),
                          i.get("expiration_ttl"), i.get("metadata")) for i in items]
        await run_in_threadpool(ns.bulk_put, writes)
        return envelope({"successful_key_count": len(writes), "unsuccessful_keys": []})

    @in_namespace
    async def bulk_delete(request: Request, s: Store, ns: Any) -> Response:
        keys = json.loads(await request.body())
        await run_in_threadpool(ns.bulk_delete, keys)
        return envelope({"successful_key_count": len(keys), "unsuccessful_keys": []})

    @in_namespace
    async def bulk_get(request: Request, s: Store, ns: Any) -> Response:
        body = json.loads(await request.body())
        found = await run_in_threadpool(ns.bulk_get, body.get("keys", []))
        as_json = body.get("type") == "json"
        values: dict[str, Any] = {}
        for key, entry in found.items():
            if entry is None:
                values[key] = None
                continue
            text = entry.value.decode("utf-8", errors="replace")
            value: Any = json.loads(text) if as_json else text
            values[key] = ({"value": value, "metadata": entry.metadata, **({"expiration": entry.expiration} if entry.expiration else {})}
                           if body.get("withMetadata") else value)
        return envelope({"values": values})

    async def d1_query(request: Request, s: Store) -> Response:
        if request.path_params["db"] != s.database.id:
            return failure(404, 7404, "The database could not be found")
        body = json.loads(await request.body())
        if "batch" in body:
            statements = [Statement(item["sql"], tuple(item.get("params") or ())) for item in body["batch"]]
        else:
            from dreamcli.stores.sql import split_statements

            params = tuple(body.get("params") or ())
            pieces = split_statements(body.get("sql", ""))
            statements = [Statement(sql, params if len(pieces) == 1 else ()) for sql in pieces]
        results = await run_in_threadpool(s.database.batch, statements)
        # D1's REST API returns BLOBs as arrays of byte values
        return envelope([{**r.as_dict(), "results": [{k: list(v) if isinstance(v, bytes) else v for k, v in row.items()}
                                                     for row in r.results]} for r in results])

    base = "/client/v4/accounts/{account}"
    kv = base + "/storage/kv/namespaces"
    return [
        Route(kv, guarded(list_namespaces), methods=["GET"]),
        Route(kv + "/{ns}/keys", guarded(list_keys), methods=["GET"]),
        Route(kv + "/{ns}/values/{key:path}", guarded(get_value), methods=["GET"]),
        Route(kv + "/{ns}/values/{key:path}", guarded(put_value), methods=["PUT"]),
        Route(kv + "/{ns}/values/{key:path}", guarded(delete_value), methods=["DELETE"]),
        Route(kv + "/{ns}/metadata/{key:path}", guarded(get_metadata), methods=["GET"]),
        Route(kv + "/{ns}/bulk", guarded(bulk_put), methods=["PUT"]),
        Route(kv + "/{ns}/bulk/delete", guarded(bulk_delete), methods=["POST"]),
        Route(kv + "/{ns}/bulk/get", guarded(bulk_get), methods=["POST"]),
        Route(base + "/d1/database/{db}/query", guarded(d1_query), methods=["POST"]),
    ]
