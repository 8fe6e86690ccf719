"""The served ports' HTTP server: clients that connect at once are all taken in at once."""

from __future__ import annotations

import socket
import time

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from emulator import server as server_module
from emulator.server import LoopbackServer

pytestmark = pytest.mark.socket


@pytest.fixture
def slow_server(monkeypatch):
    """A server whose requests each hold the loop (as a request's SQLite work does): 20 ms for /, 300 ms for /hold.
    Yields (its base URL, when each connection was taken in, when each / was answered)."""
    made: list[float] = []
    answered: list[float] = []
    original = server_module.DeadlineProtocol.connection_made

    def connection_made(self, transport):  # type: ignore[no-untyped-def]
        made.append(time.monotonic())
        return original(self, transport)

    monkeypatch.setattr(server_module.DeadlineProtocol, "connection_made", connection_made)

    async def slow(request):  # type: ignore[no-untyped-def]
        time.sleep(0.02)
        answered.append(time.monotonic())
        return PlainTextResponse("ok")

    async def hold(request):  # type: ignore[no-untyped-def]
        time.sleep(0.3)
        return PlainTextResponse("held")

    with LoopbackServer(Starlette(routes=[Route("/", slow), Route("/hold", hold)])) as base:
        yield base, made, answered


def _connect(base: str, count: int) -> list[socket.socket]:
    host, port = base.removeprefix("http://").split(":")
    return [socket.create_connection((host, int(port))) for _ in range(count)]


def _send(clients: list[socket.socket], path: str = "/") -> None:
    for client in clients:
        client.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())


def _read(clients: list[socket.socket]) -> None:
    for client in clients:
        client.settimeout(30)
        assert client.recv(1024).startswith(b"HTTP/1.1 200")
        client.close()


def _answers_before_the_last_was_taken_in(made: list[float], answered: list[float]) -> int:
    return sum(answer < max(made) for answer in answered)


def test_clients_connecting_at_once_are_all_taken_in_before_the_first_answers(slow_server):
    """A load test's 64 connections open together. Under uvloop (libuv accepts one connection per loop iteration)
    the last was taken in only after the requests of all before it: up to 0.7 s, the p99 of every load test. Here
    20 clients connect and send while a request holds the loop (as a busy server's are), so all 20 wait together
    when it is free: they are taken in at once, the last before any of their 20 answers (under uvloop, after 19).
    (Connecting to an idle server instead raced the test's own thread for the GIL: a fresh clone's full run once saw
    the server take in half, then answer those, before it saw the rest.)"""
    base, made, answered = slow_server
    holder = _connect(base, 1)
    deadline = time.monotonic() + 5
    while not made and time.monotonic() < deadline:
        time.sleep(0.005)
    _send(holder, "/hold")
    time.sleep(0.05)  # the loop is inside /hold for 300 ms
    clients = _connect(base, 20)
    _send(clients)
    _read(holder + clients)
    assert len(made) == 21 and len(answered) == 20
    waited_for = _answers_before_the_last_was_taken_in(made, answered)
    assert waited_for == 0, f"the last connection was taken in after {waited_for} answers"
