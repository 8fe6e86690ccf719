"""A synchronous httpx transport into an ASGI app: the emulator reached in-process, with no port.

httpx's own ASGITransport is async only. This one runs the app on a private event
loop in a daemon thread and blocks the caller until the response is complete.
The emulator's handlers run their backend work in a thread pool, so a handler
may itself call back into the app through this transport (a webhook delivered
in-process) without deadlocking the loop.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx


class ASGIBridgeTransport(httpx.BaseTransport):
    def __init__(self, app: Any, *, timeout: float = 60.0) -> None:
        # An exception in a handler becomes a 500, as a real server answers, not an exception in the caller.
        self._inner = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        self._timeout = timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="dream-asgi-bridge", daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        loop = self._ensure_loop()
        body = request.read()

        async def call() -> httpx.Response:
            inner_request = httpx.Request(request.method, request.url, headers=request.headers, content=body)
            response = await self._inner.handle_async_request(inner_request)
            content = await response.aread()
            return httpx.Response(response.status_code, headers=response.headers, content=content)

        future = asyncio.run_coroutine_threadsafe(call(), loop)
        try:
            return future.result(self._timeout)
        except TimeoutError:
            future.cancel()
            raise httpx.ReadTimeout("in-process emulator did not answer in time", request=request) from None

    def close(self) -> None:
        with self._lock:
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._loop.stop)
                if self._thread is not None:
                    self._thread.join(timeout=5)
                self._loop.close()
                self._loop = self._thread = None


class SharedTransport(httpx.BaseTransport):
    """A handle on a bridge that clients may close freely: the bridge's loop belongs to its owner."""

    def __init__(self, bridge: ASGIBridgeTransport) -> None:
        self._bridge = bridge

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._bridge.handle_request(request)

    def close(self) -> None:
        pass
