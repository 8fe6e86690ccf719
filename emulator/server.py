"""Serve an ASGI app on a loopback port in a background thread (tests, `dream emulator serve`)."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import threading
import time
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEADER_TIMEOUT_S = 10.0  # a request's line and headers must arrive within this: slow clients cannot hold sockets
MAX_HEADER_BYTES = 16 * 1024  # a request's line and headers, as Node's HTTP server caps them (its default 16 KiB)
_HEADERS_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b'content-length: 88\r\n\r\n{"error":"Request header fields too large","message":"request headers over 16384 bytes"}'
)


def _connection_cap() -> int:
    """Connections this process keeps open at once, every served port together: its descriptor limit less a reserve
    for the store's files, the webhooks' and the CLI's own descriptors."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, ValueError, OSError):
        soft = 1024
    return max(16, (soft if soft != -1 else 65536) - 128)


class _Open:
    """Every connection the process's servers hold, oldest first (asyncio callbacks of several loops: one lock)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.connections: dict[int, DeadlineProtocol] = {}
        self.cap = _connection_cap()

    def admit(self, protocol: DeadlineProtocol) -> DeadlineProtocol | None:
        """Register `protocol`; past the cap, the connection to close: the oldest still sending its headers (a
        slow client), else the newcomer. The well-behaved keep their place."""
        with self.lock:
            self.connections[id(protocol)] = protocol
            if len(self.connections) <= self.cap:
                return None
            victim = next(
                (c for c in self.connections.values() if c is not protocol and c._in_headers and c._header_bytes == 0),
                None,  # connected, sent nothing: the cheapest to turn away
            ) or next((c for c in self.connections.values() if c is not protocol and c._in_headers), protocol)
            # Out of the count now, not when its close is done on its loop: never more than the cap held.
            self.connections.pop(id(victim), None)
            return victim

    def leave(self, protocol: DeadlineProtocol) -> None:
        with self.lock:
            self.connections.pop(id(protocol), None)


OPEN = _Open()


class DeadlineProtocol(HttpToolsProtocol):
    """uvicorn's HTTP protocol, plus a deadline for each request's headers.

    uvicorn times out idle keep-alive connections only after a response; a client that connects and then
    sends nothing, or trickles its headers a byte at a time, would hold its socket forever (slowloris). The
    request body has its own deadlines in the edge (emulator.edge)."""

    header_timeout = HEADER_TIMEOUT_S
    _header_deadline: asyncio.TimerHandle | None = None
    _header_bytes = 0  # of the request whose headers are arriving
    _in_headers = True
    _tail = b""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()
        evicted = OPEN.admit(self)
        if evicted is not None:
            evicted._close_soon()

    def _close_soon(self) -> None:
        """Close from the connection's own loop (each server has its own)."""

        def close() -> None:
            if not self.transport.is_closing():
                self.transport.close()

        self.loop.call_soon_threadsafe(close)

    def data_received(self, data: bytes) -> None:
        # Counted before the parser sees them: a 64 MiB header is refused at its first 16 KiB, never buffered.
        if self._in_headers:
            # Up to the blank line that ends them (looked for across chunks: 3 bytes of the last one kept), not
            # the body that may follow in the same chunk.
            seen = self._tail + data
            end = seen.find(b"\r\n\r\n")
            self._header_bytes += len(data) if end < 0 else max(0, end + 4 - len(self._tail))
            self._tail = seen[-3:]
            if self._header_bytes > MAX_HEADER_BYTES:
                self._in_headers = False
                self._disarm_header_deadline()
                if not self.transport.is_closing():
                    self.transport.write(_HEADERS_TOO_LARGE)
                    self.transport.close()
                return
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers, self._header_bytes, self._tail = True, 0, b""
        self._arm_header_deadline()

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._disarm_header_deadline()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        OPEN.leave(self)
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        self._disarm_header_deadline()
        self._header_deadline = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm_header_deadline(self) -> None:
        handle = self._header_deadline
        if handle is not None:
            handle.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being answered: its headers did arrive
        if not self.transport.is_closing():
            self.transport.close()


log = logging.getLogger("dream.server")
GRACEFUL_SHUTDOWN_S = 5  # seconds


class ServerLoop(asyncio.SelectorEventLoop):
    """asyncio's loop, taking in at once every connection waiting to be accepted, but no more than the process has
    descriptors for: asyncio accepts up to the listen backlog (2,048) in one go, and a flood of half-sent requests ran
    the process out of descriptors before the connection cap could close the slow ones. Room is counted from the
    descriptors really open (accepted sockets not yet handed to a protocol, and evicted ones not yet closed, hold one
    too). If the process still runs out (another thread opened files meanwhile), asyncio pauses accepting for a second:
    that is said in one line, not a traceback."""

    def _accept_connection(
        self,
        protocol_factory: Any,
        sock: Any,
        sslcontext: Any = None,
        server: Any = None,
        backlog: int = 100,
        *rest: Any,
    ) -> None:
        super()._accept_connection(protocol_factory, sock, sslcontext, server, min(backlog, _room()), *rest)  # type: ignore[misc]

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        error = context.get("exception")
        if isinstance(error, OSError) and error.errno in (errno.EMFILE, errno.ENFILE):
            log.warning("out of descriptors (%s): accepting connections paused for a second", error.strerror)
            return
        super().call_exception_handler(context)


DESCRIPTOR_RESERVE = 64  # descriptors kept for the stores, the log, webhooks and the CLI's own work


def _room() -> int:
    """How many more connections the process can accept now (at least one: a newcomer evicts a slow client)."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        used = len(os.listdir("/proc/self/fd"))
    except (ImportError, OSError, ValueError):  # no /proc or no rlimit: the cap alone decides
        return max(1, OPEN.cap - len(OPEN.connections))
    if soft == -1:  # unlimited
        return max(1, OPEN.cap - len(OPEN.connections))
    return max(1, min(soft - DESCRIPTOR_RESERVE - used, OPEN.cap - len(OPEN.connections)))


class LoopbackServer:
    """uvicorn on 127.0.0.1; port 0 picks a free one. Use as a context manager: it always stops."""

    def __init__(
        self,
        app: Any,
        host: str = "127.0.0.1",
        port: int = 0,
        log_level: str = "warning",
        header_timeout: float = HEADER_TIMEOUT_S,
    ) -> None:
        protocol = type("DeadlineProtocol", (DeadlineProtocol,), {"header_timeout": header_timeout})
        # The app writes its own Date (the emulator's clock) through the edge.
        self.config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level=log_level,
            lifespan="off",
            # asyncio's own loop, not uvloop: libuv accepts one connection per loop iteration (libuv#3696), so 64
            # clients connecting at once waited up to 0.7 s behind the requests of those already in (the 64-connection
            # p99 of bench/api_bench.py); asyncio accepts every waiting connection at once, at the same throughput,
            # as far as the process has descriptors for them (ServerLoop).
            loop="emulator.server:ServerLoop",
            http=protocol,
            date_header=False,
            timeout_keep_alive=5,
            # A stop waits this long for requests in flight, then closes what is left: a client holding a
            # connection open cannot keep the process from stopping.
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        )
        self.server = uvicorn.Server(self.config)
        self.thread = threading.Thread(target=self.server.run, name="dream-loopback-server", daemon=True)

    def start(self, timeout: float = 10.0) -> str:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise OSError(f"could not listen on {self.config.host}:{self.config.port} (in use?)")
            time.sleep(0.01)
        return self.base_url

    @property
    def base_url(self) -> str:
        sockets = self.server.servers[0].sockets
        host, port = sockets[0].getsockname()[:2]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"  # an IPv6 address in brackets

    def signal_stop(self) -> None:
        """Ask it to stop (see `stop`); servers stopped together are asked first, then waited for."""
        self.server.should_exit = True

    def stop(self) -> None:
        self.signal_stop()
        self.thread.join(timeout=GRACEFUL_SHUTDOWN_S + 5)

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
