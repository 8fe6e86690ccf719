"""`dream flow run --workers`: the same onboarding as `dream flow run`, driven over HTTP through the workers' own
routes (front-auth-api, oauth-api, api-multi running under `wrangler dev`, as `dream dev` starts them), with dream's
emulated vendors standing in for the developer's browser: a Clerk session token, the hosted checkout's "pay", the
Connect consent. Each step says which worker did what; a failure names the step and the worker's answer. Then the
KV the workers wrote is checked with the wrangler store (verify)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from dreamcli.errors import DreamError, UsageError
from dreamcli.platform.flow_run import FlowReport, Step
from dreamcli.platform.tiers import Tier
from dreamcli.stores.ports import Store

DEFAULT_WORKERS = {
    "front-auth-api": "http://127.0.0.1:8788",
    "oauth-api": "http://127.0.0.1:8789",
    "api-multi": "http://127.0.0.1:8787",
}
PLAN_WAIT = 20.0  # seconds for Stripe's webhook to reach front-auth-api and make the plan paid


class StepFailed(DreamError):
    """A worker answered other than the step needs."""


def parse_workers(text: str | None) -> dict[str, str]:
    """`front-auth-api=URL,oauth-api=URL,api-multi=URL` (any subset; the rest on the guide's ports)."""
    urls = dict(DEFAULT_WORKERS)
    for part in (text or "").split(","):
        if not part.strip():
            continue
        name, sep, url = part.partition("=")
        if not sep or name.strip() not in DEFAULT_WORKERS or not url.startswith(("http://", "https://")):
            raise UsageError(f"--workers takes front-auth-api=URL,oauth-api=URL,api-multi=URL, not {part!r}")
        urls[name.strip()] = url.rstrip("/")
    return urls


def _answer(response: httpx.Response) -> str:
    return f"{response.request.method} {response.request.url.path} -> {response.status_code} {response.text[:300]}"


def _expect(response: httpx.Response, *statuses: int) -> httpx.Response:
    if response.status_code not in statuses:
        raise StepFailed(_answer(response))
    return response


@dataclass
class HttpFlow:
    workers: dict[str, str]
    emulator: Any  # emulator.app.Emulator over the vendors' store file (the one `dream dev` serves)
    store: Store | None
    http: httpx.Client

    def run(self, tiers: list[Tier], email: str | None = None) -> FlowReport:
        report = FlowReport()
        email = email or f"dev-{secrets.token_hex(4)}@example.com"
        state: dict[str, Any] = {}

        def step(phase: str, action: Callable[[], tuple[list[str], str]]) -> bool:
            started = time.perf_counter()
            try:
                wrote, detail = action()
                ok = True
            except (DreamError, httpx.HTTPError) as exc:
                wrote, detail, ok = [], str(exc), False
                report.failure = f"{phase}: {exc}"
            report.steps.append(Step(phase, ok, wrote, detail, (time.perf_counter() - started) * 1000))
            return ok

        def auth() -> dict[str, str]:
            return {"Authorization": f"Bearer {state['token']}"}

        def signup() -> tuple[list[str], str]:
            # The developer signs up in the dream-api Clerk app (the frontend's job): a user and a session token.
            user = self.emulator.clerk.create_user(
                "dream-api", {"email_address": [email], "public_metadata": {"plan": "free"}}
            )
            report.user_id = user["id"]
            state["token"] = self.emulator.clerk.mint_token("dream-api", user["id"], expires_in=3600)
            answer = _expect(
                self.http.post(f"{self.workers['front-auth-api']}/generate-platform-id", headers=auth()), 200
            )
            report.platform_id = answer.json()["platformId"]
            return (
                [f"front-auth-api: user:{user['id']}:platformId, platform:{report.platform_id}:userId"],
                f"{user['id']} -> {report.platform_id}",
            )

        def pay() -> tuple[list[str], str]:
            answer = _expect(self.http.post(f"{self.workers['front-auth-api']}/create-checkout", headers=auth()), 200)
            checkout = answer.json()
            _expect(self.http.post(checkout["url"].rstrip("/") + "/complete"), 200)
            deadline = time.monotonic() + PLAN_WAIT
            while (plan := self._plan(report.user_id or "")) != "paid":
                if time.monotonic() > deadline:
                    raise StepFailed(
                        f"checkout {checkout['sessionId']} paid, but after {PLAN_WAIT:.0f} s the plan is {plan!r}: "
                        + self._webhook_fate("checkout.session.completed", checkout["sessionId"])
                    )
                time.sleep(0.1)
            return [
                "front-auth-api (webhook): clerk dream-api publicMetadata.plan = paid"
            ], f"checkout {checkout['sessionId']}"

        def connect() -> tuple[list[str], str]:
            start = _expect(self.http.get(f"{self.workers['oauth-api']}/authorize", headers=auth()), 302)
            consent = _expect(self.http.get(start.headers["location"]), 302)  # the developer clicks "Connect"
            callback = consent.headers["location"]
            if not callback.startswith(self.workers["oauth-api"]):
                raise StepFailed(f"Stripe sent the developer to {callback}, not oauth-api's /callback")
            done = _expect(self.http.get(callback), 302)
            if "stripe=connected" not in done.headers["location"]:
                raise StepFailed(_answer(done))
            return (
                [f"oauth-api: user:{report.user_id}:stripeToken, platform:{report.platform_id}:stripeToken"],
                f"redirected to {done.headers['location']}",
            )

        def configure() -> tuple[list[str], str]:
            body = {
                "currency": tiers[0].currency if tiers else "usd",
                "tiers": [
                    {
                        "name": t.name,
                        "price": float(t.price),
                        "limit": t.limit if t.limit is not None else "unlimited",
                        "features": t.features,
                    }
                    for t in tiers
                ],
            }
            answer = _expect(
                self.http.post(f"{self.workers['oauth-api']}/create-products", headers=auth(), json=body), 200
            ).json()
            report.publishable_key, report.secret_key = answer["publishableKey"], answer["secretKey"]
            return (
                [
                    f"oauth-api PLATFORM_TOKENS_KV: user:{report.user_id}:publishableKey, :secretKey, :products, "
                    "publishablekey:..., secretkey:...",
                    f"oauth-api CUSTOMER_TOKENS_KV: platform:{report.platform_id}:tierConfig, publishablekey:..., "
                    "secretkey:...",
                ],
                f"{len(answer['products'])} products on the connected account",
            )

        def credentials() -> tuple[list[str], str]:
            answer = _expect(self.http.get(f"{self.workers['front-auth-api']}/get-credentials", headers=auth()), 200)
            data = answer.json()
            if data.get("publishableKey") != report.publishable_key:
                raise StepFailed(f"front-auth-api shows {data.get('publishableKey')}, not {report.publishable_key}")
            return [], f"front-auth-api: {data['publishableKey']}, {len(data['products'])} price ids"

        def call() -> tuple[list[str], str]:
            answer = self.http.post(
                f"{self.workers['api-multi']}/api/data",
                headers={
                    "Authorization": f"Bearer {report.secret_key}",
                    "X-User-Id": "test_user_123",
                    "X-User-Plan": "free",
                    "Content-Type": "application/json",
                },
            )
            _expect(answer, 200)
            return [], "api-multi: 200, the guide's curl"

        def customer() -> tuple[list[str], str]:
            auth_sk = {"Authorization": f"Bearer {report.secret_key}"}
            body = {"email": f"customer-{secrets.token_hex(3)}@example.com", "name": "Cee", "plan": "free"}
            made = _expect(self.http.post(f"{self.workers['api-multi']}/customers", headers=auth_sk, json=body), 201)
            listed = _expect(self.http.get(f"{self.workers['api-multi']}/customers", headers=auth_sk), 200)
            if made.json()["id"] not in [c["id"] for c in listed.json()["customers"]]:
                raise StepFailed(f"GET /customers does not list {made.json()['id']}")
            return [f"api-multi: clerk end-user-api {made.json()['id']}, D1 customers row"], "POST and GET /customers"

        def verify() -> tuple[list[str], str]:
            from dreamcli.platform import replication

            assert self.store is not None
            result = replication.verify(self.store, now=self.store.clock())
            blocking = {cls: n for cls, n in result.by_class().items() if cls in ("stranded", "missing", "stale")}
            summary = ", ".join(f"{n} {cls}" for cls, n in sorted(result.by_class().items())) or "clean"
            if blocking:
                raise StepFailed(f"{summary} (`dream kv verify --store {self.store.location}` shows them)")
            return [], f"{result.keys_scanned} keys: {summary}"

        phases: list[tuple[str, Callable[[], tuple[list[str], str]]]] = [
            ("signup", signup),
            ("pay", pay),
            ("connect", connect),
            ("tiers", configure),
            ("credentials", credentials),
            ("api call", call),
            ("customer", customer),
        ]
        if self.store is not None:
            phases.append(("verify", verify))
        for phase, action in phases:
            if not step(phase, action) and phase not in ("api call", "customer"):
                break
        return report

    def _webhook_fate(self, event_type: str, object_id: str) -> str:
        """What became of the vendor's webhook about `object_id`: each endpoint's last attempt, its status and the
        start of the answer, as the outbox logged them (never a guess at the cause)."""
        fates = []
        for message in self.emulator.outbox.messages("stripe", event_type=event_type, limit=200):
            if object_id.encode() not in message.body:
                continue
            attempts = self.emulator.outbox.attempts(message.seq)
            if not attempts:
                fates.append(f"{message.url} not attempted yet ({message.state})")
                continue
            last = attempts[-1]
            answer = last["error"] or f"HTTP {last['status']}"
            fates.append(f"{message.url} answered {answer} (attempt {last['attempt']}, {message.state})")
        if not fates:
            return f"Stripe made no {event_type} event for {object_id} (`dream events list`)"
        return f"Stripe's {event_type}: " + "; ".join(fates) + " (`dream events list`)"

    def _plan(self, user_id: str) -> str:
        user = self.emulator.clerk.get_user("dream-api", user_id)
        return (user.get("public_metadata") or {}).get("plan") or "free"
