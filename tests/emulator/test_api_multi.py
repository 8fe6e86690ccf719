"""api-multi, front-auth-api and oauth-api over HTTP: the guide's curl, customers, checkout, isolation, bad input."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dreamcli.platform import onboarding
from dreamcli.platform.tiers import parse_tiers
from emulator.serve import DEFAULT_PORTS, Serving, port_flags

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "tiers"


def onboard(platform, email):
    store, vendors = platform.store, platform.vendors
    signed = onboarding.signup(store, vendors, email=email)
    onboarding.pay_in_emulator(vendors, onboarding.start_payment(store, vendors, signed.user_id))
    url, _ = onboarding.connect_start(store, vendors, signed.user_id)
    answer = onboarding.consent_in_emulator(vendors, url)
    onboarding.connect_callback(store, vendors, code=answer["code"], state=answer["state"])
    return onboarding.configure_tiers(store, vendors, signed.user_id, parse_tiers(FIXTURES / "guide.toml"))


@pytest.fixture
def api(platform):
    """api-multi in-process, over the same store and vendors as `platform`."""
    client = platform.emulator.client("http://emulator.dream.test/api-multi")
    platform.emulator.platform()  # the routes' services: D1 migrated
    yield client
    client.close()


def curl(api, secret, user="test_user_123", plan="free"):
    return api.post(
        "/api/data",
        headers={
            "Authorization": f"Bearer {secret}",
            "X-User-Id": user,
            "X-User-Plan": plan,
            "Content-Type": "application/json",
        },
    )


def test_the_guides_curl_counts_usage(platform, api):
    dev = onboard(platform, "dev@example.com")
    first = curl(api, dev.secret_key)
    assert first.status_code == 200, first.text
    assert first.json()["usage"]["usageCount"] == 1 and first.json()["usage"]["limit"] == 100
    assert first.headers["X-RateLimit-Limit"] == "60" and first.headers["X-RateLimit-Remaining"] == "59"
    assert curl(api, dev.secret_key).json()["usage"]["usageCount"] == 2
    bad = curl(api, "sk_live_" + "0" * 64)
    assert (bad.status_code, bad.json()) == (
        401,
        {"error": "Invalid API key", "message": "API key not found or expired"},
    )


def test_rate_limit_first_then_quota_and_refusals_do_not_count(platform, api, clock):
    dev = onboard(platform, "limits@example.com")
    for _ in range(60):
        assert curl(api, dev.secret_key, user="u1").status_code == 200
    limited = curl(api, dev.secret_key, user="u1")
    assert limited.status_code == 429 and limited.json()["code"] == "RATE_LIMITED"
    assert int(limited.headers["Retry-After"]) >= 1 and limited.headers["X-RateLimit-Remaining"] == "0"
    clock.advance(60)
    ok = curl(api, dev.secret_key, user="u1")
    assert ok.json()["usage"]["usageCount"] == 61  # the refused call spent no quota
    for _ in range(39):
        clock.advance(1)
        curl(api, dev.secret_key, user="u1")
    clock.advance(60)
    over = curl(api, dev.secret_key, user="u1")
    assert over.status_code == 429 and over.json()["code"] == "USAGE_EXCEEDED"
    assert curl(api, dev.secret_key, user="u1", plan="pro").status_code == 200  # another tier, another limit


def test_rate_limits_are_scoped_by_platform(platform, api):
    a = onboard(platform, "a@example.com")
    b = onboard(platform, "b@example.com")
    for _ in range(60):
        curl(api, a.secret_key, user="same_user")
    assert curl(api, a.secret_key, user="same_user").status_code == 429
    assert curl(api, b.secret_key, user="same_user").status_code == 200  # another developer's user


def test_customers_checkout_and_webhooks_change_the_plan(platform, api):
    dev = onboard(platform, "shop@example.com")
    auth = {"Authorization": f"Bearer {dev.secret_key}"}
    created = api.post("/customers", headers=auth, json={"email": "c@example.com", "name": "Cee", "plan": "free"})
    assert created.status_code == 201, created.text
    customer = created.json()
    assert customer["publishable_key"] == dev.publishable_key and customer["plan"] == "free"
    clerk_user = platform.vendors.clerk["end-user-api"].get_user(customer["id"])
    assert clerk_user["public_metadata"] == {"publishableKey": dev.publishable_key, "plan": "free"}
    assert [c["id"] for c in api.get("/customers", headers=auth).json()["customers"]] == [customer["id"]]
    assert api.post("/checkout", headers=auth, json={"customerId": customer["id"], "tier": "free"}).status_code == 400
    assert api.post("/checkout", headers=auth, json={"customerId": customer["id"], "tier": "gold"}).status_code == 400
    session = api.post("/checkout", headers=auth, json={"customerId": customer["id"], "tier": "pro"})
    assert session.status_code == 200, session.text
    platform.vendors.http.post(session.json()["url"] + "/complete")  # the customer pays
    assert platform.emulator.settle()  # and Stripe's webhooks reach api-multi, in the background
    assert api.get(f"/customers/{customer['id']}", headers=auth).json()["plan"] == "pro"
    assert platform.vendors.clerk["end-user-api"].get_user(customer["id"])["public_metadata"]["plan"] == "pro"
    rows = platform.store.database.execute("SELECT tier, status, amount FROM subscriptions").results
    assert rows == [{"tier": "pro", "status": "active", "amount": 2900}]
    # the end-user's own token: scoped to them, and it authenticates /api/data with their id
    token = platform.emulator.clerk.mint_token("end-user-api", customer["id"], expires_in=3600)
    mine = api.get("/customers", headers={"Authorization": f"Bearer {token}"}).json()["customers"]
    assert [c["id"] for c in mine] == [customer["id"]]
    data = api.post("/api/data", headers={"Authorization": f"Bearer {token}", "X-User-Plan": "pro"})
    assert data.status_code == 200 and data.json()["userId"] == customer["id"]
    # cancel: back to free
    account = json.loads(platform.store.kv("platform-tokens").get(f"platform:{dev.platform_id}:stripeToken"))[
        "stripeUserId"
    ]
    subscription = platform.store.database.execute("SELECT id FROM subscriptions").results[0]["id"]
    platform.vendors.stripe.cancel_subscription(account, subscription)
    assert platform.emulator.settle()
    assert api.get(f"/customers/{customer['id']}", headers=auth).json()["plan"] == "free"


def test_tenant_isolation(platform, api):
    a = onboard(platform, "ta@example.com")
    b = onboard(platform, "tb@example.com")
    created = api.post(
        "/customers", headers={"Authorization": f"Bearer {a.secret_key}"}, json={"email": "x@example.com"}
    )
    customer_id = created.json()["id"]
    other = {"Authorization": f"Bearer {b.secret_key}"}
    assert api.get(f"/customers/{customer_id}", headers=other).status_code == 404
    assert api.get("/customers", headers=other).json()["customers"] == []
    assert api.post("/checkout", headers=other, json={"customerId": customer_id, "tier": "pro"}).status_code == 404
    stranger = platform.vendors.clerk["end-user-api"].create_user(
        "s@example.com", public_metadata={"publishableKey": b.publishable_key}
    )
    token = platform.emulator.clerk.mint_token("end-user-api", stranger["id"], expires_in=3600)
    assert api.get(f"/customers/{customer_id}", headers={"Authorization": f"Bearer {token}"}).status_code == 404


@pytest.mark.parametrize(
    ("method", "path", "headers", "body", "status", "error"),
    [
        ("POST", "/api/data", {}, None, 401, "Invalid token"),
        ("POST", "/api/data", {"Authorization": "Basic abc"}, None, 401, "Invalid token"),
        ("POST", "/api/data", {"Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig"}, None, 401, "Invalid token"),
        ("POST", "/customers", {"Authorization": "Bearer sk_live_unknown"}, b"{}", 401, "Invalid API key"),
        ("GET", "/customers/user_x", {"Authorization": "Bearer sk_live_unknown"}, None, 401, "Invalid API key"),
        ("GET", "/nowhere", {}, None, 404, "Not found"),
        ("PUT", "/customers", {}, None, 405, "Method not allowed"),
    ],
)
def test_bad_requests_answer_json(api, method, path, headers, body, status, error):
    response = api.request(method, path, headers=headers, content=body)
    assert response.status_code == status
    assert response.json()["error"] == error and "message" in response.json()


def test_bad_bodies_with_a_valid_key(platform, api):
    dev = onboard(platform, "bodies@example.com")
    auth = {"Authorization": f"Bearer {dev.secret_key}"}
    assert api.post("/customers", headers=auth, content=b"{not json").json() == {
        "error": "Bad request",
        "message": "body is not JSON",
    }
    assert api.post("/customers", headers=auth, json={"name": "no email"}).status_code == 400
    assert api.post("/customers", headers=auth, json=[1, 2]).status_code == 400
    assert api.post("/customers", headers=auth, json={"email": "e@example.com", "plan": "gold"}).status_code == 400
    assert api.post("/api/data", headers=auth).json()["message"] == "X-User-Id header is required with a secret key"
    assert api.post("/checkout", headers=auth, json={"tier": "pro"}).status_code == 400


def test_developer_routes_with_a_dream_api_token(platform):
    store, vendors = platform.store, platform.vendors
    signed = onboarding.signup(store, vendors, email="routes@example.com")
    token = platform.emulator.clerk.mint_token("dream-api", signed.user_id, expires_in=3600)
    front = platform.emulator.client("http://emulator.dream.test/front-auth-api")
    oauth = platform.emulator.client("http://emulator.dream.test/oauth-api")
    auth = {"Authorization": f"Bearer {token}"}
    assert front.post("/generate-platform-id", headers=auth).json() == {"platformId": signed.platform_id, "new": False}
    assert oauth.get("/authorize", headers=auth).status_code == 400  # not paid yet
    onboarding.pay_in_emulator(vendors, onboarding.start_payment(store, vendors, signed.user_id))
    redirect = oauth.get("/authorize", headers=auth)
    assert redirect.status_code == 302
    consent = vendors.http.get(redirect.headers["location"])
    assert consent.status_code == 302 and "/oauth-api/callback?" in consent.headers["location"]
    callback = vendors.http.get(consent.headers["location"])
    assert callback.status_code == 200 and callback.json()["connected"] is True
    products = oauth.post("/create-products", headers=auth, json={"tiers": [{"name": "free", "price": 0, "limit": 10}]})
    assert products.status_code == 200 and products.json()["secretKey"].startswith("sk_live_")
    bad_tiers = oauth.post("/create-products", headers=auth, json={"tiers": [{"name": "x", "price": -1, "limit": 1}]})
    assert bad_tiers.status_code == 400 and "price must be >= 0" in bad_tiers.json()["message"]
    creds = front.get("/get-credentials", headers=auth).json()
    assert creds["publishableKey"] == products.json()["publishableKey"] and creds["secretKey"] is None
    other_instance = platform.emulator.clerk.mint_token(
        "end-user-api", vendors.clerk["end-user-api"].create_user("o@example.com")["id"], expires_in=3600
    )
    assert front.get("/get-credentials", headers={"Authorization": f"Bearer {other_instance}"}).status_code == 401


def test_concurrent_calls_lose_no_increment(platform, api):
    dev = onboard(platform, "race@example.com")
    platform.store.kv("api-tokens")  # warm
    errors = []

    def hammer():
        try:
            with platform.emulator.client("http://emulator.dream.test/api-multi") as client:
                for _ in range(12):
                    response = curl(client, dev.secret_key, user="racer", plan="pro")
                    if response.status_code != 200 and response.json().get("code") != "RATE_LIMITED":
                        errors.append(response.text)
        except Exception as exc:  # noqa: BLE001 - a thread's failure must fail the test, not vanish as a warning
            errors.append(repr(exc))

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    usage = json.loads(platform.store.kv("api-usage").get(f"usage:{dev.platform_id}:racer"))
    assert usage["usageCount"] == 60  # 96 calls at once: exactly the minute's 60 counted, none lost, none extra


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]),
    path=st.sampled_from(
        ["/api/data", "/api/whoami", "/customers", "/customers/x", "/checkout", "/webhook/stripe", "/zzz"]
    ),
    auth=st.one_of(st.none(), st.text(max_size=40), st.just("Bearer sk_live_x"), st.just("Bearer ey.ey.ey")),
    body=st.one_of(
        st.none(),
        st.binary(max_size=60),
        st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3).map(lambda d: json.dumps(d).encode()),
    ),
)
def test_fuzz_never_answers_a_traceback(api, method, path, auth, body):
    headers = {"Authorization": auth} if auth is not None and auth.isascii() and auth.isprintable() else {}
    response = api.request(method, path, headers=headers, content=body)
    assert response.status_code in (200, 201, 400, 401, 404, 405, 429)
    payload = response.json()
    assert "Traceback" not in response.text and ("error" in payload or response.status_code < 300)


@pytest.mark.socket
def test_serve_on_loopback_runs_the_guides_curl(platform, tmp_path):
    dev = onboard(platform, "serve@example.com")
    lines = []
    serving = Serving(
        platform.emulator.path,
        ports={name: 0 for name in DEFAULT_PORTS},
        log=lines.append,
    )
    urls = serving.start()
    try:
        response = httpx.post(
            f"{urls['api-multi']}/api/data",
            headers={
                "Authorization": f"Bearer {dev.secret_key}",
                "X-User-Id": "test_user_123",
                "X-User-Plan": "free",
                "Content-Type": "application/json",
            },
        )
        assert response.status_code == 200 and response.json()["usage"]["usageCount"] == 1
        assert httpx.get(f"{urls['vendors']}/_emulator/config").status_code == 401  # the helpers need the admin token
        admin = httpx.get(f"{urls['vendors']}/_emulator/config", headers=serving.emulator.admin_headers())
        assert admin.status_code == 200 and admin.json()["cloudflare"]["api_token"]
    finally:
        serving.stop()
    assert any(line.startswith("api-multi") and "POST   /api/data 200" in line for line in lines)


@pytest.mark.socket
def test_dream_emulator_serve_as_a_user_runs_it(tmp_path):
    """The command itself: ports printed, the guide's curl, checkout opened from its URL, Ctrl-C stops cleanly."""
    import signal
    import subprocess
    import sys

    dream = str(Path(sys.executable).with_name("dream"))
    run = json.loads(
        subprocess.run([dream, "flow", "run", "--json"], cwd=tmp_path, capture_output=True, text=True).stdout
    )
    server = subprocess.Popen(
        [dream, "emulator", "serve", *port_flags()],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        urls = dict(server.stdout.readline().split() for _ in range(4))
        # Its admin token is on disk before any port answers: the first request may already use it.
        token_file = tmp_path / "store.db.admin-token"  # beside DREAM_STORE
        early = {"Authorization": f"Bearer {token_file.read_text().strip()}"}
        assert httpx.get(f"{urls['vendors']}/_emulator/config", headers=early).status_code == 200
        auth = {"Authorization": f"Bearer {run['secretKey']}"}
        data = httpx.post(
            f"{urls['api-multi']}/api/data", headers={**auth, "X-User-Id": "test_user_123", "X-User-Plan": "free"}
        )
        assert data.status_code == 200 and data.json()["usage"]["usageCount"] == 1
        customer = httpx.post(f"{urls['api-multi']}/customers", headers=auth, json={"email": "c@example.com"}).json()
        session = httpx.post(
            f"{urls['api-multi']}/checkout", headers=auth, json={"customerId": customer["id"], "tier": "pro"}
        ).json()
        assert session["url"].startswith(urls["vendors"])  # openable from outside the process
        assert httpx.post(session["url"] + "/complete").status_code == 200
        # The plan changes when Stripe's webhook reaches api-multi, in the background: waited for, not assumed
        # (the deadline only guards against a hang).
        deadline = time.monotonic() + 60
        while (plan := httpx.get(f"{urls['api-multi']}/customers/{customer['id']}", headers=auth).json()["plan"]) != (
            "pro"
        ) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert plan == "pro"
    finally:
        server.send_signal(signal.SIGINT)
        _, err = server.communicate(timeout=120)  # a guard only: stopping waits for webhooks in flight
    assert server.returncode == 0 and "stopped" in err and "api-multi       POST   /api/data 200" in err
    token = token_file.read_text().strip()
    assert f"{token} (shown once" in err and oct(token_file.stat().st_mode & 0o777) == "0o600"


def test_serve_writes_its_admin_token_before_any_port_answers(tmp_path, dream, monkeypatch):
    """A script that waits for the server, then reads STORE.admin-token, always finds it (0600, whole)."""
    from emulator.serve import Serving as Served

    token_file = tmp_path / "store.db.admin-token"
    seen: list[tuple[bool, int]] = []

    def start(self):
        seen.append((token_file.read_text().strip() == self.emulator.admin_token, token_file.stat().st_mode & 0o777))
        raise OSError("stop here: the ports would open now")

    monkeypatch.setattr(Served, "start", start)
    refused = dream("emulator", "serve", *port_flags())
    assert seen == [(True, 0o600)]
    assert refused.exit_code == 1 and "stop here" in refused.stderr


def test_clerk_failing_never_gives_a_paying_end_user_the_free_tier(platform, api, caplog):
    """An end-user token with no D1 record: its plan is Clerk's to say. Clerk answering 500 is a 503 (the call not
    counted, worth a retry), logged with the request id and Clerk's trace id; never the free tier's limits."""
    dev = onboard(platform, "dev@example.com")
    user = platform.vendors.clerk["end-user-api"].create_user(
        "payer@example.com", public_metadata={"publishableKey": dev.publishable_key, "plan": "pro"}
    )
    token = platform.emulator.clerk.mint_token("end-user-api", user["id"], expires_in=3600)
    call = lambda: api.post("/api/data", headers={"Authorization": f"Bearer {token}"})  # noqa: E731
    assert call().json()["plan"] == "pro"
    clerk = platform.emulator.platform().vendors.clerk["end-user-api"]
    failing = httpx.Client(
        transport=httpx.MockTransport(
            lambda request: httpx.Response(
                500,
                json={
                    "errors": [{"message": "internal", "long_message": "Internal error", "code": "internal"}],
                    "clerk_trace_id": "trace_abc123",
                },
            )
        )
    )
    working, clerk._http = clerk._http, failing
    try:
        with caplog.at_level("WARNING", logger="dream.vendors"):
            refused = call()
    finally:
        clerk._http = working
        failing.close()
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
    assert refused.json()["message"] == (
        f"the plan of {user['id']} is unknown: clerk: Internal error, Clerk request trace_abc123"
    )
    assert [r.getMessage().split(": ", 1)[1] for r in caplog.records] == [refused.json()["message"]]
    assert call().json()["usage"]["usageCount"] == 2  # the refused call was not counted


@pytest.mark.parametrize(
    ("what", "value", "problem"),
    [
        ("usage", b'{"usageCount": "7", "periodStart": 0}', 'usageCount is "7"'),
        ("usage", b'{"usageCount": null}', "usageCount is null"),
        ("usage", b'{"usageCount": NaN}', "usageCount is NaN"),
        ("usage", b"not json", "not JSON"),
        ("usage", b"[1, 2]", "a JSON list, not an object"),
        ("rate", b"abc", "a count must be a non-negative integer, not b'abc'"),
    ],
)
def test_hostile_values_already_in_kv_are_refused_and_reported_never_a_500(platform, api, what, value, problem):
    from dreamcli import layout

    dev = onboard(platform, "dev@example.com")
    assert curl(api, dev.secret_key, user="victim").status_code == 200
    usage = platform.store.kv("api-usage")
    caller = __import__("dreamcli.platform.runtime", fromlist=["x"]).authenticate(platform.store, dev.secret_key)
    if what == "usage":
        key = layout.end_user_usage(caller.platform_id, "victim")
    else:
        minute = int(platform.emulator.clock() // 60)
        key = layout.platform_rate_limit(caller.platform_id, "victim", minute)
    usage.put(key, value)
    refused = curl(api, dev.secret_key, user="victim")
    assert refused.status_code == 409 and refused.json()["code"] == "CORRUPT_RECORD", refused.text
    assert problem in refused.json()["message"] and f"dream kv delete {key!r}" in refused.json()["message"]
    assert usage.get(key) == value  # reported, never reset behind the operator's back
    usage.delete(key)
    assert curl(api, dev.secret_key, user="victim").status_code == 200  # the fix the message names


def test_bulk_get_as_json_of_a_value_that_is_not_json_is_a_400(tmp_path):
    from tests.conftest import served_cloudflare

    with served_cloudflare(tmp_path / "cf.db") as (emulator, env):
        store = emulator.platform().store
        ns = store.kv("api-usage")
        ns.put("text", "not json")
        url = f"{env['CLOUDFLARE_BASE_URL']}/accounts/{env['CLOUDFLARE_ACCOUNT_ID']}/storage/kv/namespaces/{ns.id}"
        answer = httpx.post(
            f"{url}/bulk/get",
            headers={"Authorization": f"Bearer {env['CLOUDFLARE_API_TOKEN']}"},
            json={"keys": ["text"], "type": "json"},
        )
    assert answer.status_code == 400 and answer.json()["success"] is False
    assert "is not JSON" in answer.json()["errors"][0]["message"]


def test_an_admin_token_whose_file_is_gone_is_rotated_never_shown_again(tmp_path, dream, monkeypatch):
    from emulator.serve import Serving as Served

    token_file = tmp_path / "store.db.admin-token"
    monkeypatch.setattr(Served, "start", lambda self: (_ for _ in ()).throw(OSError("stop before the ports")))
    dream("emulator", "serve", *port_flags())
    first = token_file.read_text().strip()
    dream("emulator", "serve", *port_flags())
    assert token_file.read_text().strip() == first  # kept while its file is there
    token_file.unlink()
    dream("emulator", "serve", *port_flags())
    second = token_file.read_text().strip()
    assert second != first and second.startswith("dream_admin_")
    from emulator.app import Emulator

    emulator = Emulator(tmp_path / "store.db")
    try:
        assert emulator.admin_token == second  # the old one no longer opens the helpers
    finally:
        emulator.close()


def test_a_long_d1_statement_never_stalls_the_api(platform, api):
    """Another process holds D1's write lock (a 30 s statement from REST or `dream d1 execute`): /api/data goes on
    answering meanwhile, and the dashboard's counts land once the lock is gone. (Its flush used to run on the
    event loop and wait for the lock there, stalling every request.)"""
    import subprocess
    import sys

    dev = onboard(platform, "dev@example.com")
    database = platform.emulator.platform().store.database
    database.file.conn.execute("PRAGMA busy_timeout = 3600000")  # wait for the lock as long as it is held
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None); c.execute('BEGIN IMMEDIATE');"
            " print('locked', flush=True); sys.stdin.read(); c.execute('ROLLBACK')",
            str(database.file.path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        answered = [curl(api, dev.secret_key, user=f"u{n}", plan="pro").status_code for n in range(10)]
        assert answered == [200] * 10  # all while D1 is still locked
        assert holder.poll() is None
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    deadline = time.monotonic() + 60  # a guard only: the retried flush lands once the lock is gone
    while time.monotonic() < deadline:
        rows = database.execute("SELECT coalesce(sum(calls), 0) AS n FROM usage_daily").results
        if rows[0]["n"] == 10:
            break
        time.sleep(0.05)
    assert rows[0]["n"] == 10


@pytest.mark.socket
@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM", "SIGHUP"])
def test_serve_stops_cleanly_on_every_signal_even_started_with_sigint_ignored(tmp_path, sig):
    """`dream emulator serve &` in a script starts with SIGINT ignored: `kill -INT` must stop it all the same, as
    SIGTERM and SIGHUP (the terminal closed) do; the servers and the store are closed ("stopped", exit 0)."""
    import signal
    import subprocess
    import sys

    dream = str(Path(sys.executable).with_name("dream"))
    server = subprocess.Popen(
        [dream, "emulator", "serve", *port_flags()],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),  # as a script's background job
    )
    try:
        seen = []
        while not (line := server.stderr.readline()).startswith("Ctrl-C stops"):  # it is serving
            assert line, "".join(seen)
            seen.append(line)
        server.send_signal(getattr(signal, sig))
        _, err = server.communicate(timeout=120)  # a guard only
    finally:
        if server.poll() is None:  # the test failed: nothing it started is left running
            server.kill()
            server.wait()
    assert server.returncode == 0 and err.rstrip().endswith("stopped"), err[-500:]


def test_a_plan_change_never_overwrites_a_call_counted_meanwhile(platform, api):
    """The webhook that sets an end-user's plan rewrites their usage record: one atomic update, so a call counted
    while it runs is kept (a get then a put lost it: the put wrote the count read before the call)."""
    import dataclasses

    from dreamcli import layout
    from dreamcli.platform import customers

    dev = onboard(platform, "race@example.com")
    auth = {"Authorization": f"Bearer {dev.secret_key}"}
    customer = api.post("/customers", headers=auth, json={"email": "r@example.com", "plan": "free"}).json()
    assert curl(api, dev.secret_key, user=customer["id"]).json()["usage"]["usageCount"] == 1
    usage = platform.store.kv("api-usage")
    calls = [1]

    class CallLandsAfterEachRead:
        def __getattr__(self, name):
            return getattr(usage, name)

        def get(self, key):
            raw = usage.get(key)
            assert curl(api, dev.secret_key, user=customer["id"]).status_code == 200  # counted meanwhile
            calls.append(1)
            return raw

    racing = dataclasses.replace(
        platform.store, namespaces={**platform.store.namespaces, "api-usage": CallLandsAfterEachRead()}
    )
    customers._set_plan(racing, platform.vendors, dev.platform_id, customer["id"], "pro")
    record = json.loads(usage.get(layout.end_user_usage(dev.platform_id, customer["id"])))
    assert (record["plan"], record["usageCount"]) == ("pro", len(calls))  # every call made is counted
    assert curl(api, dev.secret_key, user=customer["id"], plan="pro").json()["usage"]["usageCount"] == len(calls) + 1
