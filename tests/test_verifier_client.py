"""The verifier Worker's client over transports that misbehave on purpose (no Worker needed): a cut invocation asked
again with its lines dropped, a refusal not retried and the secret never shown, a failing shard stopping the rest."""

from __future__ import annotations

import io
import json
import threading

import httpx
import pytest

from dreamcli.stores.verifier import VerifierClient, VerifierError, WorkerKVNamespace


def test_an_invocation_cut_short_is_asked_again_and_its_lines_dropped():
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        calls.append(body["cursor"])
        lines = [json.dumps(["a", "1"]), json.dumps(["b", "2"])]
        if body["cursor"] is None and calls.count(None) == 1:
            return httpx.Response(200, text="\n".join(lines) + "\n")  # no end line: the stream was cut
        if body["cursor"] is None:
            return httpx.Response(200, text="\n".join([*lines, json.dumps({"end": True, "cursor": "c2", "ops": 2})]))
        end = json.dumps({"end": True, "cursor": None, "ops": 1})
        return httpx.Response(200, text=json.dumps(["c", "3"]) + "\n" + end + "\n")

    client = VerifierClient("http://verifier", "t" * 43, http=httpx.Client(transport=httpx.MockTransport(handler)))
    client.sleep = lambda seconds: None
    out = io.StringIO()
    assert client.scan_shard("api-tokens", "", [], out) == 3
    assert [json.loads(line)[0] for line in out.getvalue().splitlines()] == ["a", "b", "c"]  # nothing twice
    assert calls == [None, None, "c2"]
    assert (client.counts.invocations, client.counts.retries, client.counts.ops, client.counts.max_ops) == (2, 1, 3, 2)


def test_a_refusal_is_not_retried_and_never_shows_the_secret():
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.headers["authorization"])
        return httpx.Response(401, json={"error": "unauthorized"})

    token = "s" * 43
    client = VerifierClient("http://verifier", token, http=httpx.Client(transport=httpx.MockTransport(handler)))
    with pytest.raises(VerifierError) as failed:
        client.scan_shard("api-tokens", "", [], io.StringIO())
    assert len(calls) == 1 and "refused this run's secret (401)" in str(failed.value)
    assert token not in str(failed.value) and token not in repr(client)


def test_a_failing_shard_stops_the_others_instead_of_finishing_the_scan():
    calls = []
    lock = threading.Lock()

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        with lock:
            calls.append(body["prefix"])
        if body["prefix"] == "":  # the rest shard, started first
            return httpx.Response(400, json={"error": "unknown namespace (known: api-tokens)"})
        return httpx.Response(200, text=json.dumps({"end": True, "cursor": None, "ops": 1}) + "\n")

    client = VerifierClient("http://verifier", "t" * 43, http=httpx.Client(transport=httpx.MockTransport(handler)))
    base = type("Base", (), {"id": "0" * 32})()
    namespace = WorkerKVNamespace(base, client, "platform-tokens", parallel=2)  # type: ignore[arg-type]
    with pytest.raises(VerifierError, match="unknown namespace"):
        list(namespace.scan())
    assert len(calls) < 10  # of 233 shards: the queued ones were dropped


def test_a_retry_asks_for_half_the_operations():
    """An invocation that breaks off may have hit its plan's CPU limit: the retry, and the rest of the shard, ask the
    Worker for half as many operations, down to one page and its reads."""
    budgets = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        budgets.append(body["budget"])
        if len(budgets) <= 2:
            return httpx.Response(503, json={"error": "exceeded CPU"})
        cursor = None if len(budgets) == 4 else "next"
        return httpx.Response(200, text=json.dumps({"end": True, "cursor": cursor, "ops": 1}) + "\n")

    client = VerifierClient("http://verifier", "t" * 43, http=httpx.Client(transport=httpx.MockTransport(handler)))
    client.sleep = lambda seconds: None
    client.scan_shard("api-tokens", "", [], io.StringIO())
    assert budgets == [950, 475, 237, 237]
