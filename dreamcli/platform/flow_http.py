"""`dream flow run --workers`: the same onboarding as `dream flow run`, driven over HTTP through the workers' own
routes (front-auth-api, oauth-api, api-multi running under `wrangler dev`, as `dream dev` starts them), with dream's
emulated vendors standing in for the developer's browser: a Clerk session token, the hosted checkout's "pay", the
Connect consent. Every request is one of the contract's (`dreamcli.platform.contract`: the guide's routes, or the
ones dream.toml declares); a failure names the request, the status, the body and what that request checks. Then the
KV the workers wrote is checked with the wrangler store (verify)."""

from __future__ import annotations

import re
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from dreamcli.errors import DreamError, UsageError
from dreamcli.platform.contract import Route, contract
from dreamcli.platform.flow_run import FlowReport, Step
from dreamcli.platform.tiers import Tier
from dreamcli.stores.ports import Store
from dreamcli.workers_config import GUIDE_PORTS, WorkersConfig

PLAN_WAIT = 20.0  # seconds for Stripe's webhook to reach front-auth-api and make the plan paid
STRIPE_CONNECT_HOSTS = ("connect.stripe.com",)
_SESSION_ID = re.compile(r"cs_(?:test|live)_[A-Za-z0-9]+")


class StepFailed(DreamError):
    """A worker answered other than the step needs."""


def parse_workers(text: str | None, config: WorkersConfig | None = None) -> dict[str, str]:
    """`front-auth-api=URL,oauth-api=URL,api-multi=URL` (any subset; the rest on the ports dream.toml's [workers]
    gives, else the guide's)."""
    config = config or WorkersConfig()
    urls = {role: f"http://127.0.0.1:{config.port(role, port)}" for role, port in GUIDE_PORTS.items()}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        name, sep, url = part.partition("=")
        if not sep or name.strip() not in GUIDE_PORTS or not url.startswith(("http://", "https://")):
            raise UsageError(f"--urls takes front-auth-api=URL,oauth-api=URL,api-multi=URL, not {part!r}")
        urls[name.strip()] = url.rstrip("/")
    return urls


def _answer(response: httpx.Response) -> str:
    """The request and the answer, as a failure shows them: the query's names but not its values (a Connect code
    and its state are credentials while they live)."""
    url = response.request.url
    query = "&".join(f"{name}=..." for name in dict(url.params)) if url.query else ""
    shown = str(url.copy_with(query=None)) + (f"?{query}" if query else "")
    return f"{response.request.method} {shown} -> {response.status_code} {response.text[:300]}"


def _expect(response: httpx.Response, *statuses: int) -> httpx.Response:
    if response.status_code not in statuses:
        raise StepFailed(_answer(response))
    return response


def _json(response: httpx.Response, needed: str) -> dict[str, Any]:
    """The answer's JSON object, which must hold `needed`."""
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict) or needed not in data:
        raise StepFailed(f"{_answer(response)}: the answer must be a JSON object with {needed!r}")
    return data


def _failed(response: httpx.Response, route: Route) -> StepFailed:
    return StepFailed(
        f"{_answer(response)}; expected {' or '.join(map(str, route.expect))}. {route.step} ({route.worker} "
        f"{route.route}) checks: {route.checks} [{route.source}]"
    )


@dataclass
class HttpFlow:
    workers: dict[str, str]
    emulator: Any  # emulator.app.Emulator over the vendors' store file (the one `dream dev` serves)
    store: Store | None
    http: httpx.Client
    routes: dict[str, Route] = field(default_factory=contract)
    store_spec: str | None = None  # how the user names the store (`--store ...`), for the commands a failure suggests

    def call(
        self,
        step: str,
        *,
        bearer: str | None = None,
        params: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """One request of the contract; an answer with another status fails the step with the request, the status,
        the body, and what that request checks."""
        route = self.routes[step]
        sent = dict(headers or {})
        if bearer is not None:
            sent["Authorization"] = f"Bearer {bearer}"
        response = self.http.request(
            route.method,
            self.workers[route.worker] + route.path,
            params={key: value for key, value in (params or {}).items() if key in route.query} or None,
            json=body if route.method != "GET" else None,
            headers=sent,
        )
        if response.status_code not in route.expect:
            raise _failed(response, route)
        return response

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

        def as_developer() -> dict[str, Any]:
            # The guide's frontend calls with the developer's Clerk session; where the guide passes a userId (a
            # query or body field) it goes too: a worker that reads either is served.
            return {"bearer": state["token"], "params": {"userId": report.user_id or ""}}

        def signup() -> tuple[list[str], str]:
            # The developer signs up in the dream-api Clerk app (the frontend's job): a user and a session token.
            user = self.emulator.clerk.create_user(
                "dream-api", {"email_address": [email], "public_metadata": {"plan": "free"}}
            )
            report.user_id = user["id"]
            state["token"] = self.emulator.clerk.mint_token("dream-api", user["id"], expires_in=3600)
            answer = _json(self.call("platform-id", **as_developer(), body={"userId": user["id"]}), "platformId")
            report.platform_id = answer["platformId"]
            return (
                [
                    f"front-auth-api -> platform-tokens: user:{user['id']}:platformId, platform:{report.platform_id}:userId"
                ],
                f"{user['id']} -> {report.platform_id}",
            )

        def pay() -> tuple[list[str], str]:
            answer = self.call("checkout", **as_developer(), body={"userId": report.user_id})
            data = {} if answer.is_redirect else _json(answer, "url")
            url = answer.headers.get("location", "") if answer.is_redirect else str(data["url"])
            found = _SESSION_ID.search(url)
            session_id = data.get("sessionId") or (found.group(0) if found else None)
            if not session_id:
                raise StepFailed(f"{_answer(answer)}: no checkout session id in the answer or its url")
            _expect(self.http.post(self._checkout_page(session_id) + "/complete"), 200)  # the developer pays
            webhook = self.routes["webhook"]
            deadline = time.monotonic() + PLAN_WAIT
            while (plan := self._plan(report.user_id or "")) != "paid":
                if time.monotonic() > deadline:
                    raise StepFailed(
                        f"checkout {session_id} paid, but after {PLAN_WAIT:.0f} s the plan is {plan!r}: "
                        + self._webhook_fate("checkout.session.completed", session_id)
                        + f". {webhook.worker} {webhook.route} checks: {webhook.checks}"
                    )
                time.sleep(0.1)
            return [f"front-auth-api ({webhook.route}): clerk dream-api publicMetadata.plan = paid"], (
                f"checkout {session_id}"
            )

        def connect() -> tuple[list[str], str]:
            start = self.call("authorize", **as_developer())
            callback = self._consent(start.headers.get("location", ""))  # the developer clicks "Connect"
            route = self.routes["callback"]
            base = self.workers[route.worker]
            if not callback.startswith(base):
                raise StepFailed(
                    f"Stripe sent the developer to {callback}, not to oauth-api ({base}): the redirect_uri oauth-api "
                    "gave Stripe, or the Connect redirect URI `dream dev` registers, names another address"
                )
            done = self.http.get(callback)
            if done.status_code not in route.expect:
                raise _failed(done, route)
            location = done.headers.get("location", "")
            if "error" in location:
                raise StepFailed(f"{_answer(done)}: oauth-api sent the developer to {location}")
            return (
                [
                    f"oauth-api -> platform-tokens: user:{report.user_id}:stripeToken, platform:{report.platform_id}:stripeToken"
                ],
                f"redirected to {location}",
            )

        def configure() -> tuple[list[str], str]:
            body = {
                "userId": report.user_id,
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
            answer = _json(self.call("create-products", **as_developer(), body=body), "publishableKey")
            report.publishable_key = answer["publishableKey"]
            report.secret_key = answer.get("secretKey")
            products = answer.get("products")
            return (
                [
                    f"oauth-api -> platform-tokens: user:{report.user_id}:publishableKey, :secretKey, :products, "
                    "publishablekey:..., secretkey:...",
                    f"oauth-api -> api-tokens: platform:{report.platform_id}:tierConfig, publishablekey:..., "
                    "secretkey:...",
                ],
                f"{len(products)} products on the connected account" if isinstance(products, list) else "keys made",
            )

        def credentials() -> tuple[list[str], str]:
            data = _json(self.call("credentials", **as_developer()), "publishableKey")
            if data.get("publishableKey") != report.publishable_key:
                raise StepFailed(f"front-auth-api shows {data.get('publishableKey')}, not {report.publishable_key}")
            if not report.secret_key and isinstance(data.get("secretKey"), str):
                report.secret_key = data["secretKey"]  # a worker that shows it on the credentials page instead
            if not report.secret_key:
                raise StepFailed("neither create-products nor get-credentials answered a secretKey")
            products = data.get("products")
            count = f"{len(products)} price ids" if isinstance(products, list) else "no products listed"
            return [], f"front-auth-api: {data['publishableKey']}, {count}"

        def call() -> tuple[list[str], str]:
            headers = {"X-User-Id": "test_user_123", "X-User-Plan": "free", "Content-Type": "application/json"}
            self.call("api-data", bearer=report.secret_key, headers=headers)
            return [], "api-multi: 200, the guide's curl"

        def customer() -> tuple[list[str], str]:
            body = {"email": f"customer-{secrets.token_hex(3)}@example.com", "name": "Cee", "plan": "free"}
            made = self.call("create-customer", bearer=report.secret_key, body=body).json()
            made = made.get("customer", made) if isinstance(made, dict) else made
            if not isinstance(made, dict) or not made.get("id"):
                raise StepFailed(f"{self.routes['create-customer'].route} answered no customer id: {made!r:.200}")
            listed = self.call("list-customers", bearer=report.secret_key).json()
            if isinstance(listed, dict):
                listed = listed.get("customers", listed.get("data", []))
            ids = [c.get("id") for c in listed if isinstance(c, dict)] if isinstance(listed, list) else []
            if made["id"] not in ids:
                raise StepFailed(f"{self.routes['list-customers'].route} does not list {made['id']}")
            return [f"api-multi: clerk end-user-api {made['id']}, D1 customers row"], "POST and GET /customers"

        def verify() -> tuple[list[str], str]:
            from dreamcli.platform import replication

            assert self.store is not None
            result = replication.verify(self.store, now=self.store.clock())
            # What this flow wrote is judged (its platform's keys, and keys no platform claims, as stranded copies);
            # another platform's findings are shown, not failed on: another flow's workers may be mid-write now.
            mine = [f for f in result.findings if f.platform in (report.platform_id, None)]
            blocking = [f for f in mine if f.cls in ("stranded", "missing", "stale")]
            others = len(result.findings) - len(mine)
            summary = ", ".join(f"{n} {cls}" for cls, n in sorted(Counter(str(f.cls) for f in mine).items()))
            summary = (summary or "clean") + (f"; {others} on other platforms" if others else "")
            if blocking:
                spec = self.store_spec or f"wrangler:{self.store.location}"
                raise StepFailed(
                    f"{summary} (`dream kv verify --store {spec}` shows them; `dream kv repair` fixes them)"
                )
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

    def _checkout_page(self, session_id: str) -> str:
        """The emulated hosted checkout page of `session_id` (where the developer pays)."""
        stripe = self.emulator.stripe
        account = stripe.state.scope_of(session_id)
        session = stripe.state.load(session_id, account, "checkout.session") if account else None
        if session is None:
            raise StepFailed(f"the worker's checkout {session_id} is not a session of the emulated Stripe")
        return str(session["url"])

    def _consent(self, authorize_url: str) -> str:
        """The developer consents on Stripe Connect: where Stripe then sends the browser. A worker that sends the
        developer to Stripe's real host (as the guide's does) is answered by the emulated Connect in-process."""
        target = httpx.URL(authorize_url)
        if target.host in STRIPE_CONNECT_HOSTS:
            return str(self.emulator.stripe.oauth_authorize(dict(target.params)))
        consent = _expect(self.http.get(authorize_url), 302)
        return consent.headers["location"]

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
