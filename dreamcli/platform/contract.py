"""The HTTP contract `dream flow run --workers` drives: every request the guide's onboarding makes of the three
workers (route, method, query and body fields, auth, the statuses it accepts, what it reads back), each taken from the
guide and saying where; where the guide names no route, what dream assumes. A user's workers that differ are
described in `dream.toml` (`[workers.routes]`), never rewritten for dream; `--explain` prints the result.

Where the guide is ambiguous about how a worker learns its developer (its frontend calls with a Clerk session, and
it also writes `/authorize?userId=` and `{userId, tiers}`), dream sends both: the Clerk session token as
`Authorization: Bearer` and the user id where the guide passes one, so a worker that reads either is served."""

from __future__ import annotations

from dataclasses import dataclass, replace

from dreamcli.errors import UsageError
from dreamcli.workers_config import WorkersConfig

# Who authenticates a request, and how.
SESSION = "Clerk session token (Authorization: Bearer)"
SECRET = "the developer's secret key (Authorization: Bearer sk_live_...)"
STRIPE = "Stripe-Signature (Stripe sends it)"
NONE = "none (the single-use state)"


@dataclass(frozen=True)
class Route:
    """One request of the contract."""

    step: str  # its name in `[workers.routes]`
    phase: str  # the flow's step it belongs to
    worker: str
    method: str
    path: str
    auth: str
    query: tuple[str, ...] = ()
    body: tuple[str, ...] = ()
    headers: tuple[str, ...] = ()
    expect: tuple[int, ...] = (200,)
    reads: str = ""  # what dream takes from the answer
    checks: str = ""  # the part of the contract this request proves
    source: str = ""  # the guide's words, or what dream assumes where it has none
    caller: str = "dream"  # who makes the request: dream (as the developer's browser or backend), or a vendor

    @property
    def route(self) -> str:
        return f"{self.method} {self.path}"

    def as_json(self, base: str | None = None) -> dict[str, object]:
        return {
            "step": self.step,
            "phase": self.phase,
            "worker": self.worker,
            "method": self.method,
            "path": self.path,
            **({"url": base + self.path} if base else {}),
            "auth": self.auth,
            "query": list(self.query),
            "body": list(self.body),
            "headers": list(self.headers),
            "expect": list(self.expect),
            "reads": self.reads,
            "checks": self.checks,
            "source": self.source,
            "caller": self.caller,
        }


GUIDE_CONTRACT: tuple[Route, ...] = (
    Route(
        "platform-id",
        "signup",
        "front-auth-api",
        "POST",
        "/generate-platform-id",
        SESSION,
        body=("userId",),
        expect=(200, 201),
        reads="platformId",
        checks="user:{u}:platformId and platform:{plt}:userId written in front-auth-api's TOKENS_KV",
        source='guide, phase 1: "Frontend calls: POST /generate-platform-id"',
    ),
    Route(
        "checkout",
        "pay",
        "front-auth-api",
        "POST",
        "/create-checkout",
        SESSION,
        body=("userId",),
        expect=(200, 201, 302, 303),
        reads="the checkout's url (JSON `url`, or a redirect's Location); its session id (`sessionId`, else from "
        "the url)",
        checks="a Stripe checkout for the developer's $15/month plan (STRIPE_PRICE_ID)",
        source='dream assumes this route: the guide says only "Dev clicks Subscribe -> Stripe checkout"',
    ),
    Route(
        "webhook",
        "pay",
        "front-auth-api",
        "POST",
        "/webhook/stripe",
        STRIPE,
        body=("a signed checkout.session.completed event",),
        expect=(200, 201, 202, 204),
        checks='the paid checkout makes the developer\'s Clerk publicMetadata.plan "paid" (dream waits for it)',
        source="guide, phase 2: \"front-auth-api/webhook/stripe updates Clerk: publicMetadata.plan = 'paid'\"",
        caller="Stripe (dream dev registers this route as the platform's webhook endpoint)",
    ),
    Route(
        "authorize",
        "connect",
        "oauth-api",
        "GET",
        "/authorize",
        SESSION,
        query=("userId",),
        expect=(302, 303),
        reads="Location: Stripe Connect's /oauth/authorize (client_id, state, redirect_uri)",
        checks="oauth:state:{state} saved, the developer sent to Stripe Connect",
        source='guide, phase 3: "oauth-api/authorize?userId={userId} ... Redirects to Stripe Connect"',
    ),
    Route(
        "callback",
        "connect",
        "oauth-api",
        "GET",
        "/callback",
        NONE,
        query=("code", "state"),
        expect=(302, 303),
        reads="Location (the guide's /api-tier-config?stripe=connected)",
        checks="the code exchanged; user:{u}:stripeToken and platform:{plt}:stripeToken saved",
        source='guide, phase 3: "Stripe redirects: oauth-api/callback?code={code}&state={state}"',
        caller="the developer's browser, sent by Stripe (dream dev registers this route as the Connect redirect URI; "
        "dream follows whatever redirect_uri oauth-api gave Stripe)",
    ),
    Route(
        "create-products",
        "tiers",
        "oauth-api",
        "POST",
        "/create-products",
        SESSION,
        body=("userId", "tiers: [{name, price, limit, features}]", "currency"),
        expect=(200, 201),
        reads="publishableKey, secretKey (else from get-credentials), products",
        checks="products and prices on the connected account; the key pair and tierConfig in both token namespaces",
        source='guide, phase 4: "Frontend submits: POST /create-products Body: {userId, tiers: [...]}"',
    ),
    Route(
        "credentials",
        "credentials",
        "front-auth-api",
        "GET",
        "/get-credentials",
        SESSION,
        query=("userId",),
        reads="publishableKey (the one create-products returned), products",
        checks="the credentials page's data",
        source='guide: "Updated /get-credentials to return products array"',
    ),
    Route(
        "api-data",
        "api call",
        "api-multi",
        "POST",
        "/api/data",
        SECRET,
        headers=("X-User-Id: test_user_123", "X-User-Plan: free", "Content-Type: application/json"),
        checks="the guide's curl: answered, not \"Invalid API key\" (the keys reached api-multi's namespace)",
        source="guide, BLOCKING ISSUE: the test curl",
    ),
    Route(
        "create-customer",
        "customer",
        "api-multi",
        "POST",
        "/customers",
        SECRET,
        body=("email", "name", "plan"),
        expect=(200, 201),
        reads="the customer's id (`id`, or `customer.id`)",
        checks="an end-user in the end-user-api Clerk app",
        source='guide, phase 5: "POST /customers Authorization: Bearer sk_live_... Body: {email, name, plan}"',
    ),
    Route(
        "list-customers",
        "customer",
        "api-multi",
        "GET",
        "/customers",
        SECRET,
        reads="a list of customers (`customers`, `data` or the body itself) holding the one just created",
        checks="the dashboard API lists the developer's customers",
        source='guide, next steps: "Build dashboard API (GET /customers)"',
    ),
)
STEPS = tuple(route.step for route in GUIDE_CONTRACT)


def contract(config: WorkersConfig | None = None) -> dict[str, Route]:
    """The guide's contract with `[workers.routes]` applied."""
    routes = {route.step: route for route in GUIDE_CONTRACT}
    for step, override in (config.routes if config else {}).items():
        if step not in routes:
            raise UsageError(
                f"{config.source if config else 'dream.toml'}: [workers.routes] has no step {step!r} "
                f"(the steps: {', '.join(STEPS)})"
            )
        routes[step] = replace(
            routes[step],
            method=override.method,
            path=override.path,
            expect=override.expect or routes[step].expect,
            source=f"{config.source if config else 'dream.toml'} (the guide's: {routes[step].route}; {routes[step].source})",
        )
    return routes
