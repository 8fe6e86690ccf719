"""One emulator, reached two ways: in-process (no port) and over a real loopback socket."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from dreamcli.vendors.settings import Vendors, settings_from_emulator
from emulator.app import IN_PROCESS_BASE, Emulator
from emulator.server import LoopbackServer


@dataclass
class Reached:
    emulator: Emulator
    http: httpx.Client
    base_url: str
    vendors: Vendors
    mode: str


class Receiver:
    """A webhook receiver on a loopback port that records what it is sent. `answers` are the statuses it replies
    with, in turn (200 once they run out); `delay` seconds it waits before each reply (a receiver that hangs), or
    until `gate` is set."""

    def __init__(
        self, answers: list[int] | None = None, delay: float = 0.0, gate: threading.Event | None = None
    ) -> None:
        self.received: list[dict[str, Any]] = []
        self.answers = list(answers or [])
        self.delay = delay

        async def hook(request: Request) -> JSONResponse:
            import anyio

            self.received.append({"headers": dict(request.headers), "body": await request.body()})
            if self.delay:
                await anyio.sleep(self.delay)
            if gate is not None:
                await anyio.to_thread.run_sync(gate.wait)
            status = self.answers.pop(0) if self.answers else 200
            return JSONResponse({"received": status < 300}, status_code=status)

        self.app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    recorder = Receiver()
    with LoopbackServer(recorder.app) as base_url:
        yield recorder, f"{base_url}/hook"


@pytest.fixture(params=["in-process", pytest.param("socket", marks=pytest.mark.socket)])
def reached(request, tmp_path, clock) -> Iterator[Reached]:
    emulator = Emulator(tmp_path / "vendors.db", clock=clock)
    if request.param == "in-process":
        http = emulator.client()
        base_url = IN_PROCESS_BASE
        server = None
    else:
        server = LoopbackServer(emulator.app)
        base_url = server.start()
        http = httpx.Client(timeout=30.0)
    vendors = Vendors(settings_from_emulator(emulator.config(base_url)), http, clock=clock)
    try:
        yield Reached(emulator, http, base_url, vendors, request.param)
    finally:
        http.close()
        if server is not None:
            server.stop()
        emulator.close()
