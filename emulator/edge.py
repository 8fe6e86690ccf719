"""The edge every served API shares: a request id, a body cap per route, deadlines for slow bodies, every
failure answered in that API's own envelope (never a traceback, never a bare 500), unexpected errors logged
on stderr with the request id the response carries, and the emulator's clock in `Date`.

One `Edge` wraps one ASGI app; `Surface`s say, per path prefix, whose envelope a failure is written in and
how large a body may be (Stripe, Clerk, Cloudflare and the platform's own guide JSON each have theirs).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any

from starlette.exceptions import HTTPException

log = logging.getLogger("dream.emulator")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

KIB, MIB = 1024, 1024 * 1024
JSON_BODY_LIMIT = 1 * MIB  # every JSON or form body: far above any real request of these APIs
KV_VALUE_BODY_LIMIT = 25 * MIB + 64 * KIB  # Cloudflare's 25 MiB value, plus multipart framing and metadata
KV_BULK_BODY_LIMIT = 100 * MIB  # Cloudflare's limit on a bulk write request

TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    408: "Request timeout",
    409: "Conflict",
    413: "Payload too large",
    422: "Unprocessable entity",
    429: "Too many requests",
    500: "Internal error",
}


def guide_body(status: int, message: str, request_id: str) -> dict[str, Any]:
    """The guide's JSON: `{"error": ..., "message": ...}`."""
    body: dict[str, Any] = {"error": TITLES.get(status, "Error"), "message": message}
    if status >= 500:
        body["requestId"] = request_id
    return body


def stripe_body(status: int, message: str, request_id: str) -> dict[str, Any]:
    kind = "api_error" if status >= 500 else "invalid_request_error"
    return {"error": {"type": kind, "message": message, "request_log_url": f"emulator://requests/{request_id}"}}


def clerk_body(status: int, message: str, request_id: str) -> dict[str, Any]:
    code = {
        400: "malformed_request_body",
        404: "resource_not_found",
        405: "method_not_allowed",
        413: "request_body_too_large",
        408: "request_timeout",
    }.get(status, "internal_clerk_error")
    return {
        "errors": [{"message": TITLES.get(status, "error").lower(), "long_message": message, "code": code, "meta": {}}],
        "clerk_trace_id": request_id,
    }


# Cloudflare's codes: 10001 (bad request), 10011 (value too large) and 7000/7003 (no route) as its API sends
# them; 10002 for an internal failure.
_CLOUDFLARE_CODES = {403: 10000, 404: 7000, 405: 7001, 413: 10011, 500: 10002}


def cloudflare_body(status: int, message: str, request_id: str) -> dict[str, Any]:
    return {
        "success": False,
        "errors": [{"code": _CLOUDFLARE_CODES.get(status, 10001), "message": message}],
        "messages": [],
        "result": None,
    }


def json_limit(method: str, path: str) -> int:
    return JSON_BODY_LIMIT


def cloudflare_limit(method: str, path: str) -> int:
    if method == "PUT" and "/values/" in path:
        return KV_VALUE_BODY_LIMIT
    if method == "PUT" and path.endswith("/bulk"):
        return KV_BULK_BODY_LIMIT
    return JSON_BODY_LIMIT


@dataclass(frozen=True)
class Surface:
    """One API behind the edge: where it is mounted, its error envelope, its body caps."""

    prefix: str
    body: Callable[[int, str, str], dict[str, Any]] = guide_body
    limit: Callable[[str, str], int] = json_limit
    request_id_header: str = "x-request-id"
    # Whether a request may send a body at all, asked from its headers before a byte of it is read: a surface whose
    # bodies may be large (Cloudflare's 100 MB bulk writes) refuses a stranger without reading 100 MB first.
    admits: Callable[[Scope], bool] | None = None


GUIDE = Surface("")


class Edge:
    """ASGI middleware at the outside of one served app (see the module docstring)."""

    def __init__(
        self,
        app: Any,
        surfaces: Sequence[Surface] = (GUIDE,),
        *,
        clock: Callable[[], float] = time.time,
        idle_timeout: float = 10.0,
        body_timeout: float = 60.0,
    ) -> None:
        self.app = app
        # Longest prefix first, so /cloudflare wins over the catch-all "".
        self.surfaces = sorted(surfaces, key=lambda s: len(s.prefix), reverse=True)
        self.clock = clock
        self.idle_timeout = idle_timeout
        self.body_timeout = body_timeout
        self._date_second, self._date_value = -1, b""

    def _date(self) -> bytes:
        """The HTTP Date of the emulator's clock, formatted once per second."""
        second = int(self.clock())
        if second != self._date_second:
            self._date_second, self._date_value = second, formatdate(second, usegmt=True).encode()
        return self._date_value

    def surface(self, path: str) -> Surface:
        for surface in self.surfaces:
            if path == surface.prefix or path.startswith(surface.prefix + "/") or not surface.prefix:
                return surface
        return GUIDE

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = scope.setdefault("dream.request_id", "req_" + secrets.token_hex(8))
        surface = self.surface(scope.get("path", ""))
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                if surface.request_id_header.encode() not in names:
                    headers.append((surface.request_id_header.encode(), request_id.encode()))
                if b"date" not in names:
                    headers.append((b"date", self._date()))
                message = {**message, "headers": headers}
            await send(message)

        async def fail(status: int, text: str, *, close: bool = False) -> None:
            body = json.dumps(surface.body(status, text, request_id)).encode()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            if close:
                headers.append((b"connection", b"close"))
            await send_with_headers({"type": "http.response.start", "status": status, "headers": headers})
            await send_with_headers({"type": "http.response.body", "body": body})

        method, path = scope.get("method", "GET"), scope.get("path", "")
        limit = surface.limit(method, path[len(surface.prefix) :])
        declared, chunked = _body_framing(scope)
        if declared == -1:
            await fail(400, "Content-Length is not a number", close=True)
            return
        if declared is not None and declared > limit:
            await fail(413, f"request body of {declared} bytes is over this route's limit of {limit} bytes", close=True)
            return
        if (declared or chunked) and surface.admits is not None and not surface.admits(scope):
            await fail(403, "Authentication error", close=True)
            return
        body = b""
        if declared or chunked:  # no Content-Length and no chunked encoding: HTTP/1.1 says there is no body
            try:
                body = await self._read_body(receive, limit)
            except _BodyTooLarge:
                await fail(413, f"request body is over this route's limit of {limit} bytes", close=True)
                return
            except _SlowBody:
                await fail(408, "the request body did not arrive in time", close=True)
                return
            except _Disconnected:
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        # The routers raise HTTPException for unknown paths and methods when an app is in the scope.
        scope.setdefault("app", self)
        try:
            await self.app(scope, replay, send_with_headers)
        except HTTPException as exc:
            if not started:
                text = f"{method} {path} is not a route here" if exc.status_code in (404, 405) else str(exc.detail)
                await fail(exc.status_code, text)
        except Exception:  # noqa: BLE001 - the one place an unexpected failure becomes an answer
            log.exception("%s %s %s failed", request_id, method, path)
            if not started:
                await fail(500, f"the emulator failed on this request; its log names request {request_id}")

    async def _read_body(self, receive: Receive, limit: int) -> bytes:
        chunks: list[bytes] = []
        size = 0
        deadline = time.monotonic() + self.body_timeout
        while True:
            remaining = min(self.idle_timeout, deadline - time.monotonic())
            if remaining <= 0:
                raise _SlowBody
            try:
                async with asyncio.timeout(remaining):  # no task per chunk, unlike wait_for
                    message = await receive()
            except TimeoutError:
                raise _SlowBody from None
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _BodyTooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


class _BodyTooLarge(Exception):
    pass


class _SlowBody(Exception):
    pass


class _Disconnected(Exception):
    pass


def _body_framing(scope: Scope) -> tuple[int | None, bool]:
    """The declared Content-Length (None when absent, -1 when not a number) and whether the body is chunked."""
    declared: int | None = None
    chunked = False
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            declared = int(text) if text.isdigit() and len(text) < 20 else -1
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
    return declared, chunked
