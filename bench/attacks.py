"""Replay the attack corpus against `dream emulator serve`, as an attacker on this machine would, and print what
got through: responses with status 500, requests wrongly accepted, server crashes, KV bytes reachable from D1,
and how many slowloris sockets the server cut off.

Run: .venv/bin/python bench/attacks.py [--slow-sockets 500]
Goal: 0, 0, 0, 0, and every slow socket closed while the server keeps answering.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from emulator.serve import port_flags  # noqa: E402
from tests.security.corpus import (  # noqa: E402
    CLOUDFLARE_CASES,
    CONSOLE_CASES,
    CONSOLE_ROUTES,
    D1_ATTACKS,
    GUIDE_CASES,
)

API_TOKENS_NS = "a9f3331b0c8b48d58c32896482484208"


class Tally:
    def __init__(self) -> None:
        self.sent = self.errors_500 = self.wrongly_accepted = 0
        self.kv_in_d1 = self.slow_closed = self.answered_meanwhile = 0
        self.notes: list[str] = []

    def expect(self, what: str, response: httpx.Response, refused: bool = True) -> httpx.Response:
        self.sent += 1
        if response.status_code >= 500:
            self.errors_500 += 1
            self.notes.append(f"500: {what}")
        elif refused and response.status_code < 400:
            self.wrongly_accepted += 1
            self.notes.append(f"accepted: {what} -> {response.status_code}")
        return response


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slow-sockets", type=int, default=500, help="slowloris sockets to open (bounded)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="dream-attacks-"))
    dream = str(Path(sys.executable).with_name("dream"))
    runs = [
        json.loads(
            subprocess.run(
                [dream, "flow", "run", "--json", "--email", email],
                cwd=folder,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        )
        for email in ("a@example.com", "b@example.com")
    ]
    server = subprocess.Popen(
        [dream, "emulator", "serve", *port_flags()],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    tally = Tally()
    try:
        urls = dict(server.stdout.readline().split() for _ in range(7))  # the six servers, then the console
        time.sleep(0.3)
        replay(tally, urls, runs, folder, args.slow_sockets)
        alive = server.poll() is None and httpx.get(f"{urls['api-multi']}/api/whoami").status_code == 401
    finally:
        server.terminate()
        server.wait(timeout=30)
    d1_file = next((folder / ".dream" / "emulator.db.d1").glob("*.sqlite"))
    secret = runs[1]["secretKey"].encode()
    tally.kv_in_d1 += len(secret) if secret in d1_file.read_bytes() else 0
    print(f"attacks replayed over HTTP: {tally.sent:,}")
    print(f"responses with status 500: {tally.errors_500}")
    print(f"wrongly accepted: {tally.wrongly_accepted}")
    print(f"server crashes: {0 if alive else 1} (the server still answers after the corpus)")
    print(f"KV bytes reachable from D1: {tally.kv_in_d1} (D1 answers and the D1 file searched for KV values)")
    print(
        f"slowloris: {tally.slow_closed}/{args.slow_sockets} slow sockets closed by the server; "
        f"it answered {tally.answered_meanwhile} requests meanwhile"
    )
    for note in tally.notes[:20]:
        print("  " + note)
    shutil.rmtree(folder, ignore_errors=True)
    if tally.errors_500 or tally.wrongly_accepted or not alive or tally.kv_in_d1:
        sys.exit(1)


def replay(tally: Tally, urls: dict[str, str], runs: list[dict], folder: Path, slow_sockets: int) -> None:
    a, b = runs
    vendors = urls["vendors"]
    api = httpx.Client(base_url=urls["api-multi"], timeout=30)
    token = (folder / ".dream" / "emulator.db.admin-token").read_text().strip()
    admin = {"Authorization": f"Bearer {token}"}
    b_auth = {"Authorization": f"Bearer {b['secretKey']}"}

    # The emulator's helpers without (or with a wrong) admin token.
    for method, path in [
        ("GET", "/_emulator/config"),
        ("POST", "/_emulator/clerk/end-user-api/tokens"),
        ("GET", "/_emulator/stripe/deliveries"),
        ("PATCH", "/_emulator/clerk/end-user-api/settings"),
    ]:
        for headers in ({}, {"Authorization": "Bearer guess"}):
            tally.expect(f"{method} {path} {headers}", httpx.request(method, vendors + path, headers=headers, json={}))
    config = httpx.get(f"{vendors}/_emulator/config", headers=admin).json()

    # Malformed requests on api-multi and the Cloudflare REST subset.
    for method, path, headers, body in GUIDE_CASES:
        tally.expect(
            f"api-multi {method} {path}", api.request(method, path, headers={**b_auth, **headers}, content=body)
        )
    cloudflare = config["cloudflare"]
    cf_auth = {"Authorization": f"Bearer {cloudflare['api_token']}"}
    base = f"{vendors}/cloudflare/client/v4/accounts/{cloudflare['account_id']}"
    database = "00000000-0000-4000-8000-00000000d1d1"
    for method, path, headers, body in CLOUDFLARE_CASES:
        url = base + path.format(ns=API_TOKENS_NS, db=database)
        tally.expect(
            f"cloudflare {method} {path}", httpx.request(method, url, headers={**cf_auth, **headers}, content=body)
        )

    # D1 statements over the REST API: refused, and nothing of KV in any answer.
    secret_hash_prefix = "secretkey:"
    for sql in [
        *D1_ATTACKS,
        "SELECT fts3_tokenizer('simple', x'4141414141414141')",
        "SELECT name, sql FROM sqlite_master",
    ]:
        response = httpx.post(f"{base}/d1/database/{database}/query", headers=cf_auth, json={"sql": sql})
        tally.expect(f"d1 {sql}", response, refused=not sql.startswith("SELECT name, sql"))
        if secret_hash_prefix in response.text or b["publishableKey"] in response.text:
            tally.kv_in_d1 += len(response.text)

    # Cross-tenant: A pays on A's own account with B's platform and customer in the metadata.
    victim = tally.expect(
        "create B's customer",
        api.post("/customers", headers=b_auth, json={"email": "victim@example.com"}),
        refused=False,
    ).json()["id"]
    import stripe

    client = stripe.StripeClient(config["stripe"]["secret_key"], base_addresses={"api": f"{vendors}/stripe"})
    a_account = account_of(folder, a["platformId"])
    price = tier_price(folder, a["platformId"], "pro")
    forged = {"platformId": b["platformId"], "customerId": victim, "tier": "enterprise"}
    session = client.v1.checkout.sessions.create(
        {
            "mode": "subscription",
            "line_items": [{"price": price, "quantity": 1}],
            "success_url": "http://localhost:5173/x",
            "metadata": forged,
            "subscription_data": {"metadata": forged},
        },
        {"stripe_account": a_account},
    )
    httpx.post(session.url + "/complete")
    plan = api.get(f"/customers/{victim}", headers=b_auth).json()["plan"]
    tally.sent += 1
    if plan != "free":
        tally.wrongly_accepted += 1
        tally.notes.append(f"accepted: A's checkout moved B's customer to {plan}")

    # An end-user choosing their plan; a token from another origin.
    jwt = httpx.post(
        f"{vendors}/_emulator/clerk/end-user-api/tokens", headers=admin, json={"user_id": victim, "expires_in": 600}
    ).json()["jwt"]
    data = api.post("/api/data", headers={"Authorization": f"Bearer {jwt}", "X-User-Plan": "enterprise"})
    tally.sent += 1
    if data.json().get("plan") != "free":
        tally.wrongly_accepted += 1
        tally.notes.append("accepted: an end-user token chose its plan")
    evil = httpx.post(
        f"{vendors}/_emulator/clerk/end-user-api/tokens",
        headers=admin,
        json={"user_id": victim, "expires_in": 600, "azp": "https://evil.example"},
    ).json()["jwt"]
    tally.expect(
        "token with azp https://evil.example", api.post("/api/data", headers={"Authorization": f"Bearer {evil}"})
    )

    # Round two: headers past Node's 16 KiB, and a 100 MB bulk write without the API token (refused from its
    # headers, before a byte of body is read).
    big = httpx.get(f"{urls['api-multi']}/api/whoami", headers={"X-Big": "a" * (1024 * 1024)})
    tally.sent += 1
    if big.status_code != 431:
        tally.wrongly_accepted += 1
        tally.notes.append(f"accepted: 1 MiB of headers ({big.status_code})")
    vhost, vport = vendors.removeprefix("http://").split(":")
    with socket.create_connection((vhost, int(vport)), timeout=10) as sock:
        sock.sendall(
            f"PUT /cloudflare/client/v4/accounts/{cloudflare['account_id']}/storage/kv/namespaces/{API_TOKENS_NS}/bulk "
            "HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong\r\nContent-Length: 100000000\r\n\r\n".encode()
        )
        head = sock.recv(64)
    tally.sent += 1
    if not head.startswith(b"HTTP/1.1 403"):
        tally.wrongly_accepted += 1
        tally.notes.append(f"accepted: an unauthenticated 100 MB bulk write was read ({head[:20]!r})")

    # A huge unauthenticated body, refused from its declared length.
    host, port = urls["api-multi"].removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /webhook/stripe HTTP/1.1\r\nHost: x\r\nContent-Length: 104857600\r\n\r\n" + b"x" * 65536)
        head = sock.recv(64)
    tally.sent += 1
    if not head.startswith(b"HTTP/1.1 413"):
        tally.wrongly_accepted += 1
        tally.notes.append(f"accepted: a 100 MB body ({head[:20]!r})")

    # The web console (served by `dream emulator serve`): every route without a session, every POST without the
    # session's CSRF token or from another origin, another Host, then the hostile requests of the corpus signed in.
    console(tally, urls["console"], a)

    # Slowloris: sockets that never finish their headers.
    slow = []
    for index in range(slow_sockets):
        sock = socket.create_connection((host, int(port)), timeout=20)
        sock.sendall(b"POST /api/data HTTP/1.1\r\nHost: x\r\n" if index % 2 else b"P")
        slow.append(sock)
    tally.answered_meanwhile = sum(httpx.get(f"{urls['api-multi']}/api/whoami").status_code == 401 for _ in range(20))
    time.sleep(11)
    closed = 0
    for sock in slow:
        with contextlib.suppress(OSError):  # a reset connection was closed too, just less politely: not counted
            closed += sock.recv(1) == b""
        sock.close()
    tally.slow_closed = closed


def console(tally: Tally, address: str, run: dict) -> None:
    base = address.split("/signin")[0]

    def fill(path: str) -> str:
        return path.replace("{plt}", run["platformId"]).replace("{pk}", run["publishableKey"])

    for method, path in CONSOLE_ROUTES:
        for headers in ({}, {"cookie": "dream_console=forged"}):
            tally.expect(
                f"console {method} {path} {headers}", httpx.request(method, base + fill(path), headers=headers)
            )
    tally.expect("console sign-in with a wrong token", httpx.get(f"{base}/signin?token=guess"))
    client = httpx.Client(base_url=base, timeout=30)
    tally.expect("console sign-in", client.get(address), refused=False)
    tally.expect("console sign-in a second time", httpx.get(address))
    tally.expect("console another Host", client.get("/", headers={"host": "attacker.example"}))
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/").text).group(1)  # type: ignore[union-attr]
    for method, path in CONSOLE_ROUTES:
        if method == "POST" and path != "/signout":
            for fields, headers in (
                ({}, {}),
                ({"csrf": "guess"}, {}),
                ({"csrf": token}, {"origin": "http://evil.example"}),
                ({"csrf": token}, {"sec-fetch-site": "cross-site"}),
            ):
                tally.expect(
                    f"console {path} {fields} {headers}", client.post(fill(path), data=fields, headers=headers)
                )
    for method, path, form in CONSOLE_CASES:
        if method == "POST":
            answer = client.post(fill(path), data={"csrf": token, **{k: fill(v) for k, v in (form or {}).items()}})
        else:
            answer = client.get(fill(path))
        tally.expect(f"console {method} {path[:60]}", answer)
        if "<script>alert" in answer.text or "<img src=x" in answer.text:
            tally.wrongly_accepted += 1
            tally.notes.append(f"console rendered markup from {path[:60]}")


def account_of(folder: Path, platform_id: str) -> str:
    from emulator.store import open_emulator_store

    store = open_emulator_store(folder / ".dream" / "emulator.db")
    try:
        return json.loads(store.kv("platform-tokens").get(f"platform:{platform_id}:stripeToken"))["stripeUserId"]
    finally:
        store.close()


def tier_price(folder: Path, platform_id: str, tier: str) -> str:
    from emulator.store import open_emulator_store

    store = open_emulator_store(folder / ".dream" / "emulator.db")
    try:
        config = json.loads(store.kv("api-tokens").get(f"platform:{platform_id}:tierConfig"))
        return next(t["priceId"] for t in config["tiers"] if t["name"] == tier)
    finally:
        store.close()


if __name__ == "__main__":
    os.environ.pop("DREAM_STORE", None)
    main()
