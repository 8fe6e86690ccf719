"""The web console over HTTP, on a real loopback server: signing in, every page, the actions (each checked in the
store afterwards), and what it refuses (no session, no CSRF token, another origin, another Host, hostile input)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from dreamcli import layout
from dreamcli.cli.context import AppContext
from dreamcli.console import security
from dreamcli.console.pages import Console
from dreamcli.console.serve import ConsoleServer
from dreamcli.platform import keys, replication
from dreamcli.topology import API_TOKENS, PLATFORM_TOKENS
from tests.security.corpus import CONSOLE_CASES, CONSOLE_ROUTES

pytestmark = pytest.mark.socket
DREAM = str(Path(sys.executable).with_name("dream"))


def stop_process(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(timeout=30)


@dataclass
class Served:
    url: str
    server: ConsoleServer
    run: AppContext
    flow: dict[str, Any]

    @property
    def store(self) -> Any:
        return self.server.console.store

    def client(self, signed_in: bool = True) -> httpx.Client:
        client = httpx.Client(base_url=self.url, timeout=30.0)
        if signed_in:
            answer = client.get(f"/signin?token={self.server.console.sessions.token}")
            assert answer.status_code == 303, answer.text
        return client


def _served(path: Path, flow: dict[str, Any], *, read_only: bool = False) -> Iterator[Served]:
    run = AppContext(store_spec=str(path))
    vendors = run.vendors()
    server = ConsoleServer(Console(run.store(), vendors, run.emulated(), read_only=read_only), port=0)
    url = server.start()
    try:
        yield Served(url, server, run, flow)
    finally:
        server.stop()
        run.close()


@pytest.fixture
def flowed(dream, tmp_path) -> tuple[Path, dict[str, Any]]:
    flow = dream.json("flow", "run", "--json")
    return tmp_path / "store.db", flow


@pytest.fixture
def served(flowed) -> Iterator[Served]:
    yield from _served(*flowed)


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "no CSRF token on the page"
    return found.group(1)


def post(client: httpx.Client, path: str, fields: dict[str, str], page: str = "/") -> httpx.Response:
    token = csrf_of(client.get(page).text)
    return client.post(path, data={"csrf": token, **fields})


def _fill(path: str, served: Served) -> str:
    return path.replace("{plt}", served.flow["platformId"]).replace("{pk}", served.flow["publishableKey"])


# -- signing in ------------------------------------------------------------------------------------------------


def test_the_sign_in_address_works_once_and_sets_a_strict_httponly_cookie(served):
    client = httpx.Client(base_url=served.url)
    assert client.get("/signin?token=wrong").status_code == 403
    answer = client.get(f"/signin?token={served.server.console.sessions.token}")
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{security.COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert client.get("/").status_code == 200
    again = httpx.get(f"{served.url}/signin?token={served.server.console.sessions.token}")
    assert again.status_code == 403 and "used already" in again.text


def test_every_route_needs_a_session(served):
    forged = {"cookie": f"{security.COOKIE}=forged"}
    for method, path in CONSOLE_ROUTES:
        for headers in ({}, forged):
            answer = httpx.request(method, served.url + _fill(path, served), headers=headers)
            assert answer.status_code == 401, (method, path, headers)
            assert "dream console" in answer.text


def test_every_post_needs_the_sessions_csrf_token_and_this_origin(served):
    client = served.client()
    token = csrf_of(client.get("/").text)
    plt, pk = served.flow["platformId"], served.flow["publishableKey"]
    for method, path in CONSOLE_ROUTES:
        if method != "POST":
            continue
        target = _fill(path, served)
        assert client.post(target, data={}).status_code == 403, path
        assert client.post(target, data={"csrf": "guess"}).status_code == 403, path
        other_origin = client.post(target, data={"csrf": token}, headers={"origin": "http://evil.example"})
        assert other_origin.status_code == 403, path
        cross_site = client.post(target, data={"csrf": token}, headers={"sec-fetch-site": "cross-site"})
        assert cross_site.status_code == 403, path
    # Nothing was done: the pair is still active, no new pair, no job ran.
    pairs = keys.list_keys(served.store, plt)
    assert [(p.publishable_key, p.status(served.store.clock())) for p in pairs] == [(pk, "active")]
    assert served.server.console.jobs.current is None


def test_another_host_is_refused(served):
    answer = httpx.get(served.url + "/", headers={"host": "attacker.example"})
    assert answer.status_code == 421


def test_every_answer_carries_the_security_headers(served):
    client = served.client()
    for path in ("/", "/platforms", "/kv", "/webhooks", "/vendors", "/replication", "/nowhere", "/static/console.css"):
        answer = client.get(path)
        csp = answer.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "default-src 'none'" in csp
        assert answer.headers["x-frame-options"] == "DENY" and answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["cache-control"] == "no-store" and answer.headers["referrer-policy"] == "same-origin"
        assert answer.headers["server-timing"].startswith("app;dur=")


def test_no_page_has_inline_script_or_an_external_reference(served):
    client = served.client()
    plt = served.flow["platformId"]
    for path in ("/", "/platforms", f"/platforms/{plt}", "/kv", "/webhooks", "/vendors", "/replication"):
        page = client.get(path).text
        assert re.findall(r"<script[^>]*>", page) == ['<script src="/static/console.js" defer>'], path
        assert not re.search(r"\son[a-z]+=", page), path  # no inline event handlers
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", page), path


# -- pages -----------------------------------------------------------------------------------------------------


def test_every_page_shows_the_flows_platform(served):
    client = served.client()
    plt, pk = served.flow["platformId"], served.flow["publishableKey"]
    overview = client.get("/").text
    assert "Developers" in overview and "15.00 USD" in overview  # one paying developer at $15/month
    assert f'href="/platforms/{plt}"' in overview  # a new user's platform, one click away
    assert plt in client.get("/platforms").text
    assert client.get(f"/platforms?q={plt}").headers["location"] == f"/platforms/{plt}"
    platform = client.get(f"/platforms/{plt}").text
    assert pk in platform and "Rotate" in platform and "Revoke" in platform
    assert served.flow["secretKey"] not in platform  # shown once by the flow, never again
    kv = client.get("/kv", params={"ns": "api-tokens", "prefix": "publishablekey:"}).text
    assert layout.publishable_key_platform(pk) in kv
    value = client.get(
        "/kv/value", params={"ns": "platform-tokens", "key": layout.user_stripe_token(served.flow["userId"])}
    )
    assert value.status_code == 200 and "accessToken: (secret)" in value.text
    vendors = client.get("/vendors").text
    assert "Stripe" in vendors and "Clerk" in vendors
    users = re.search(r'href="(/vendors/clerk/objects/dream-api/user)"', vendors)
    assert users is not None
    listing = client.get(users.group(1)).text
    assert served.flow["userId"] in listing
    detail = client.get(f"/vendors/clerk/object/{served.flow['userId']}")
    assert detail.status_code == 200 and served.flow["userId"] in detail.text
    webhooks = client.get("/webhooks").text
    assert "checkout.session.completed" in webhooks and "delivered" in webhooks
    assert "Not verified yet" in client.get("/replication").text


def test_live_counters_stream_as_server_sent_events(served):
    client = served.client()
    with client.stream("GET", "/live") as events:
        assert events.headers["content-type"].startswith("text/event-stream")
        line = next(line for line in events.iter_lines() if line.startswith("data: "))
    import json

    figures = json.loads(line.removeprefix("data: "))
    assert figures["developers"] == 1 and figures["webhooksFailed"] == 0 and "callsThisMonth" in figures


# -- actions ---------------------------------------------------------------------------------------------------


def test_rotate_with_grace_shows_the_new_secret_once_and_the_store_has_both_pairs(served):
    client = served.client()
    plt, pk = served.flow["platformId"], served.flow["publishableKey"]
    confirm = client.get(f"/platforms/{plt}/keys/{pk}/rotate")
    assert confirm.status_code == 200 and 'name="grace"' in confirm.text
    done = client.post(f"/platforms/{plt}/keys/{pk}/rotate", data={"csrf": csrf_of(confirm.text), "grace": "24h"})
    assert done.status_code == 200
    secret = re.search(r'<code class="secret">(sk_[A-Za-z0-9_]+)</code>', done.text)
    assert secret is not None and "shown this once" in done.text
    now = served.store.clock()
    pairs = {p.publishable_key: p for p in keys.list_keys(served.store, plt)}
    assert pairs[pk].status(now) == "expiring" and 86_000 < pairs[pk].expires_at - now <= 86_400
    (new_pk,) = set(pairs) - {pk}
    assert pairs[new_pk].status(now) == "active"
    from dreamcli.platform.secrets import hash_secret

    assert pairs[new_pk].secret_hash == hash_secret(secret.group(1))
    assert served.store.kv(API_TOKENS).get(layout.secret_key_publishable(hash_secret(secret.group(1)))) is not None
    assert secret.group(1) not in client.get(f"/platforms/{plt}").text  # never shown again


def test_revoke_needs_force_for_the_last_pair_then_the_store_has_it_revoked(served):
    client = served.client()
    plt, pk = served.flow["platformId"], served.flow["publishableKey"]
    page = f"/platforms/{plt}/keys/{pk}/revoke"
    refused = post(client, page, {}, page)
    assert refused.status_code == 400 and "last active pair" in refused.text
    done = post(client, page, {"force": "yes"}, page)
    assert done.status_code == 303
    assert "is revoked" in client.get(done.headers["location"]).text
    (pair,) = keys.list_keys(served.store, plt)
    assert pair.status(served.store.clock()) == "revoked"
    assert served.store.kv(API_TOKENS).get(layout.publishable_key_platform(pk)) is None


def _wait_for_job(served: Served, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    jobs = served.server.console.jobs
    while jobs.busy():
        assert time.monotonic() < deadline, "the console's job did not end"
        time.sleep(0.05)
    return jobs.current


def test_verify_then_repair_a_drifted_store_with_live_progress(served):
    client = served.client()
    pk = served.flow["publishableKey"]
    served.store.kv(API_TOKENS).delete(layout.publishable_key_platform(pk))  # the guide's bug: a missing copy
    started = post(client, "/replication/verify", {}, "/replication")
    assert started.status_code == 303 and started.headers["location"] == "/replication/progress-page"
    with client.stream("GET", "/replication/progress") as events:
        states = [line for line in events.iter_lines() if line.startswith("data: ")]
    assert '"finished": true' in states[-1]
    assert _wait_for_job(served).error is None
    page = client.get("/replication").text
    assert "1 findings" in page and layout.publishable_key_platform(pk) in page
    confirm = client.get("/replication/repair")
    assert confirm.status_code == 200 and "Apply 1 actions" in confirm.text
    digest = re.search(r'name="plan" value="([0-9a-f]{32})"', confirm.text)
    assert digest is not None
    applied = client.post("/replication/repair", data={"csrf": csrf_of(confirm.text), "plan": digest.group(1)})
    assert applied.status_code == 303
    job = _wait_for_job(served)
    assert job.error is None and job.declined_because is None and job.report.applied == 1
    assert served.store.kv(API_TOKENS).get(layout.publishable_key_platform(pk)) is not None
    assert replication.verify(served.store).clean
    assert "clean" in client.get("/replication").text


def test_a_repair_confirmed_on_an_older_plan_applies_nothing(served):
    client = served.client()
    pk = served.flow["publishableKey"]
    api = served.store.kv(API_TOKENS)
    api.delete(layout.publishable_key_platform(pk))
    post(client, "/replication/verify", {}, "/replication")
    _wait_for_job(served)
    confirm = client.get("/replication/repair")
    digest = re.search(r'name="plan" value="([0-9a-f]{32})"', confirm.text).group(1)
    served.store.kv(PLATFORM_TOKENS).delete(layout.user_stripe_token(served.flow["userId"]))  # the store drifts on
    client.post("/replication/repair", data={"csrf": csrf_of(confirm.text), "plan": digest})
    job = _wait_for_job(served)
    assert job.declined_because is not None and "nothing was applied" in job.declined_because
    assert api.get(layout.publishable_key_platform(pk)) is None
    assert "the store changed since the plan you confirmed" in client.get("/replication").text


def test_resend_a_delivery_and_the_outbox_has_its_new_attempt(served):
    client = served.client()
    emulator = served.server.console.emulator
    (first,) = [
        row for row in emulator.deliveries_list("stripe", limit=50) if row["type"] == "checkout.session.completed"
    ]
    before = len(emulator.deliveries_list("stripe", limit=200))
    done = post(client, "/webhooks/resend", {"event": first["id"], "endpoint": first["endpoint"]}, "/webhooks")
    assert done.status_code == 303
    rows = emulator.deliveries_list("stripe", limit=200)
    assert len(rows) == before + 1 and rows[0]["id"] == first["id"] and rows[0]["state"] == "delivered"
    assert f"{first['id']} resent to" in client.get("/webhooks").text


def test_a_read_only_console_refuses_every_change_but_verifies(flowed):
    for served in _served(*flowed, read_only=True):
        client = served.client()
        plt, pk = served.flow["platformId"], served.flow["publishableKey"]
        page = client.get(f"/platforms/{plt}").text
        assert "(read-only)" in page and "Rotate</a>" not in page
        refused = post(client, f"/platforms/{plt}/keys/{pk}/revoke", {"force": "yes"})
        assert refused.status_code == 403 and "read-only" in refused.text
        assert keys.list_keys(served.store, plt)[0].status(served.store.clock()) == "active"
        assert post(client, "/replication/verify", {}, "/replication").status_code == 303
        assert _wait_for_job(served).error is None


# -- hostile input ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "form"), CONSOLE_CASES, ids=[f"{m} {p[:60]}" for m, p, _ in CONSOLE_CASES])
def test_hostile_requests_get_a_4xx_page_never_a_500(served, method, path, form):
    client = served.client()
    target = _fill(path, served)
    if method == "POST":
        answer = post(client, target, {key: _fill(value, served) for key, value in (form or {}).items()})
    else:
        answer = client.get(target)
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text[-400:])
    assert "<script>alert" not in answer.text and "<img src=x" not in answer.text
    assert answer.headers["content-type"].startswith("text/html")


def test_oversized_and_odd_forms_are_refused(served):
    client = served.client()
    token = csrf_of(client.get("/").text)
    huge = client.post("/webhooks/resend", data={"csrf": token, "event": "x" * 20_000})
    assert huge.status_code == 413
    as_json = client.post("/webhooks/resend", json={"csrf": token, "event": "evt_x"})
    assert as_json.status_code == 415
    garbled = client.post(
        "/webhooks/resend", content=b"\xff\xfe", headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert garbled.status_code == 400


def test_hostile_keys_values_emails_and_metadata_render_inert(served):
    client = served.client()
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    served.store.kv(API_TOKENS).put(f"note:{evil}", evil, metadata={"who": evil})
    served.server.console.emulator.clerk.import_users(
        "dream-api", [{"id": "user_evil", "email": f"a{evil}@example.com", "public_metadata": {"plan": evil}}]
    )
    listing = client.get("/kv", params={"ns": "api-tokens", "prefix": "note:"}).text
    value = client.get("/kv/value", params={"ns": "api-tokens", "key": f"note:{evil}"}).text
    for page in (listing, value):
        assert "<script>alert" not in page and "<img src=x" not in page
        assert "&lt;script&gt;alert" in page
    users = client.get("/vendors/clerk/objects/dream-api/user").text
    assert "<script>alert" not in users and "<img src=x" not in users


# -- the commands that serve it ----------------------------------------------------------------------------------


def _read_until(stream: Any, marker: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    seen = ""
    while time.monotonic() < deadline:
        line = stream.readline()
        seen += line
        if marker in line:
            return line
    raise AssertionError(f"no {marker!r} in: {seen}")


def _start_console(path: Path) -> tuple[subprocess.Popen[str], str]:
    """`dream console` on a free port over the store at `path`: the process and the sign-in address it printed."""
    process = subprocess.Popen(
        [DREAM, "--store", str(path), "console", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        return process, _read_until(process.stdout, "/signin?token=").split()[1]
    except BaseException:
        stop_process(process)
        raise


def test_dream_console_prints_its_address_serves_the_store_and_stops_on_ctrl_c(flowed):
    path, flow = flowed
    process, address = _start_console(path)
    try:
        assert address.startswith("http://127.0.0.1:")
        client = httpx.Client(timeout=30.0)
        assert client.get(address).status_code == 303
        base = address.split("/signin")[0]
        assert flow["platformId"] in client.get(f"{base}/platforms/{flow['platformId']}").text
        process.send_signal(2)
        assert process.wait(timeout=30) == 0
    finally:
        stop_process(process)


def test_emulator_serve_carries_the_console_on_loopback(flowed):
    from emulator.serve import port_flags

    path, flow = flowed
    process = subprocess.Popen(
        [DREAM, "--store", str(path), "emulator", "serve", *port_flags()],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = _read_until(process.stdout, "console")
        address = line.split()[1]
        assert address.startswith("http://127.0.0.1:") and "/signin?token=" in address
        client = httpx.Client(timeout=30.0)
        assert client.get(address).status_code == 303
        assert flow["platformId"] in client.get(address.split("/signin")[0] + "/platforms").text
    finally:
        stop_process(process)


def test_a_corrupt_tier_config_is_shown_as_such_not_a_failure(served):
    client = served.client()
    plt = served.flow["platformId"]
    for corrupt in ("not json", '{"tiers": 5}', "[1, 2]", '"text"'):
        served.store.kv(API_TOKENS).put(layout.tier_config(plt), corrupt)
        page = client.get(f"/platforms/{plt}")
        assert page.status_code == 200, corrupt
        assert "`dream kv verify` reports it" in page.text and served.flow["publishableKey"] in page.text


def test_without_vendors_the_console_still_shows_the_store(flowed, tmp_path):
    """A store with no vendors reachable (a wrangler or Cloudflare store, no emulated vendors' state, no vendor keys):
    the overview says so and shows what the store holds; the vendor pages say where to look instead."""
    path, flow = flowed
    run = AppContext(store_spec=str(path))
    server = ConsoleServer(Console(run.store(), None, None), port=0)
    server.start()
    try:
        client = httpx.Client(base_url=server.url, timeout=30.0)
        assert client.get(server.sign_in_url()).status_code == 303
        overview = client.get("/")
        assert overview.status_code == 200 and "No vendors here" in overview.text
        assert f'href="/platforms/{flow["platformId"]}"' in overview.text
        assert client.get(f"/platforms/{flow['platformId']}").status_code == 200
        for path_ in ("/webhooks", "/vendors"):
            answer = client.get(path_)
            assert answer.status_code == 400 and "vendor" in answer.text
        with client.stream("GET", "/live") as events:
            line = next(line for line in events.iter_lines() if line.startswith("data: "))
        assert "callsThisMonth" in line and "developers" not in line
    finally:
        server.stop()
        run.close()


def _nasty(count: int) -> list[str]:
    """Strings a hostile or careless operator may type: separators, NUL, quotes, markup, non-ASCII, long ones."""
    import random

    rng = random.Random(29)
    alphabet = ":/\\%?#&=+ \t\n\x00\"'<>{}[]|é😀plt_user_pk_live_0123456789abcdef"
    fixed = ["a:b", "plt_a:b", "plt_", "user:1", "@", "a@b", "  ", "%", "..", "/", "\x00", "é" * 300, "x" * 600]
    return fixed + ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40))) for _ in range(count)]


def test_typed_text_never_fails_a_page(served):
    """Whatever an operator types in a search, a prefix, a key, a cursor or a path: a page or a 4xx, never a 500."""
    client = served.client()
    plt = served.flow["platformId"]
    for text in _nasty(60):
        quoted = quote(text, safe="")
        for method, url, params in (
            ("GET", "/platforms", {"q": text}),
            ("GET", "/platforms", {"cursor": text}),
            ("GET", f"/platforms/{quoted}", None),
            ("GET", f"/platforms/{plt}/keys/{quoted}/rotate", None),
            ("GET", "/kv", {"ns": "api-tokens", "prefix": text}),
            ("GET", "/kv", {"ns": "platform-tokens", "cursor": text}),
            ("GET", "/kv/value", {"ns": "api-tokens", "key": text}),
            ("GET", "/replication", {"class": text, "platform": text}),
            ("GET", "/webhooks", {"before": text, "vendor": text}),
            ("GET", f"/vendors/stripe/objects/{quoted}/{quoted}", {"before": text}),
            ("GET", f"/vendors/clerk/object/{quoted}", None),
        ):
            answer = client.request(method, url, params=params)
            assert answer.status_code < 500, (url, params, answer.status_code, answer.text[-300:])


def test_a_bug_in_a_page_is_a_logged_500_page_not_a_reset_connection(served, monkeypatch, caplog):
    from dreamcli.console import browse

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(browse, "kv_page", broken)
    client = served.client()
    answer = client.get("/kv")
    assert answer.status_code == 500 and "the console failed on this page" in answer.text.lower()
    assert any("console GET /kv failed" in record.getMessage() for record in caplog.records)
    assert client.get("/platforms").status_code == 200  # the connection and the server go on


def test_on_the_cloudflare_store_the_console_reads_and_writes_only_when_asked(dream, tmp_path, monkeypatch):
    """`dream --store cloudflare console`: production is read-only (pages over the REST API, every change refused)
    unless started with --allow-writes."""
    from tests.conftest import served_cloudflare

    with served_cloudflare(tmp_path / "cloudflare.db") as (_, env):
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        flow = dream.json("--store", "cloudflare", "flow", "run", "--json")
        for allow_writes in (False, True):
            process = subprocess.Popen(
                [
                    DREAM,
                    "--store",
                    "cloudflare",
                    "console",
                    "--port",
                    "0",
                    *(["--allow-writes"] if allow_writes else []),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, **env},
            )
            try:
                address = _read_until(process.stdout, "/signin?token=").split()[1]
                client = httpx.Client(base_url=address.split("/signin")[0], timeout=60.0)
                assert client.get(address).status_code == 303
                page = client.get(f"/platforms/{flow['platformId']}")
                assert page.status_code == 200 and flow["publishableKey"] in page.text
                assert ("(read-only)" in page.text) is not allow_writes
                kv = client.get("/kv", params={"ns": "api-tokens", "prefix": "publishablekey:"})
                assert layout.publishable_key_platform(flow["publishableKey"]) in kv.text
                revoke = f"/platforms/{flow['platformId']}/keys/{flow['publishableKey']}/revoke"
                answer = client.post(revoke, data={"csrf": csrf_of(page.text), "force": "yes"})
                assert answer.status_code == (303 if allow_writes else 403), answer.text[-300:]
            finally:
                process.send_signal(2)
                process.wait(timeout=60)
        listed = dream.json("--store", "cloudflare", "keys", "list", "-p", flow["platformId"], "--json")
        assert [pair["status"] for pair in listed["keys"]] == ["revoked"]  # revoked by the console allowed to write


def test_the_overview_links_the_first_platforms_and_the_rest(dream, tmp_path):
    assert dream("seed", "--platforms", "12", "--keys-only").exit_code == 0
    flow = dream.json("flow", "run", "--json")
    for served in _served(tmp_path / "store.db", flow):
        overview = served.client().get("/").text
        listed = re.search(r'<h2 id="platforms">Platforms</h2>(.*?)</section>', overview, re.S).group(1)
        assert len(re.findall(r'href="/platforms/plt_', listed)) == 5 and 'href="/platforms">all platforms' in listed


def test_serve_moves_its_console_when_its_port_is_taken(flowed):
    """A `dream console` holding :8793 (or anything else) does not stop `dream emulator serve`: its console takes
    another free port and says so."""
    import socket

    from emulator.serve import port_flags

    path, _ = flowed
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        flags = [*port_flags()]
        flags[flags.index("--console-port") + 1] = str(taken)
        process = subprocess.Popen(
            [DREAM, "--store", str(path), "emulator", "serve", *flags],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            address = _read_until(process.stdout, "console").split()[1]
            assert f":{taken}/" not in address
            assert httpx.get(address).status_code == 303
            assert f"port {taken} is taken" in _read_until(process.stderr, "console:")
        finally:
            stop_process(process)


def test_the_console_acts_while_other_processes_write_and_die_on_the_same_store(flowed, tmp_path):
    """`dream console` serving, a `dream kv bulk-put` killed midway and `kv put`s finishing beside it, the console
    verifying, rotating and revoking meanwhile: every acknowledged write is there, the file is intact, and no store
    file was deleted under the console."""
    import json as json_module
    import signal
    import sqlite3

    from tests.processes import deleted_while_open

    path, flow = flowed
    plt, pk = flow["platformId"], flow["publishableKey"]
    console, address = _start_console(path)
    try:
        client = httpx.Client(base_url=address.split("/signin")[0], timeout=60.0)
        assert client.get(address).status_code == 303
        batch = tmp_path / "batch.json"
        batch.write_text(json_module.dumps([{"key": f"note:bulk:{i:06d}", "value": "x" * 200} for i in range(10_000)]))
        killed = subprocess.Popen([DREAM, "--store", str(path), "kv", "bulk-put", str(batch), "--ns", "api-tokens"])
        time.sleep(0.3)
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        page = f"/platforms/{plt}/keys/{pk}/rotate"
        for i in range(5):
            put = subprocess.Popen(
                [DREAM, "--store", str(path), "kv", "put", f"note:put:{i}", str(i), "--ns", "api-tokens"]
            )
            if i == 1:
                assert post(client, page, {"grace": "24h"}, page).status_code == 200
            if i == 3:
                assert post(client, "/replication/verify", {}, "/replication").status_code == 303
            assert put.wait(timeout=60) == 0
        with client.stream("GET", "/replication/progress") as events:
            last = [line for line in events.iter_lines() if line.startswith("data: ")][-1]
        assert '"finished": true' in last and '"error": null' in last
        revoke = f"/platforms/{plt}/keys/{pk}/revoke"
        assert post(client, revoke, {}, revoke).status_code == 303
        assert deleted_while_open(console.pid, path.parent) == []
    finally:
        console.send_signal(signal.SIGINT)
        assert console.wait(timeout=60) == 0
    check = sqlite3.connect(path)
    assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    check.close()
    run = AppContext(store_spec=str(path))
    store = run.store()
    assert [store.kv(API_TOKENS).get(f"note:put:{i}") for i in range(5)] == [str(i).encode() for i in range(5)]
    bulk = sum(1 for _ in store.kv(API_TOKENS).scan(prefix="note:bulk:"))
    assert bulk in (0, 10_000)  # a bulk write is all or nothing
    statuses = sorted(p.status(store.clock()) for p in keys.list_keys(store, plt))
    assert statuses == ["active", "revoked"]
    run.close()
