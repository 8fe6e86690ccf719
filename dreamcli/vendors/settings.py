"""Where the vendors are and which keys reach them: the embedded emulator by default, the real
services (or a served emulator) when the environment names them. Keys are never printed."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dreamcli.errors import UsageError

if TYPE_CHECKING:
    import httpx

    from dreamcli.vendors.stripe_gateway import StripeSettings

DREAM_API = "dream-api"
END_USER_API = "end-user-api"
GUIDE_FRONTEND = "http://localhost:5173"  # the guide's frontend origin: the `azp` its tokens carry


@dataclass(frozen=True)
class ClerkInstanceSettings:
    secret_key: str = field(repr=False)
    issuer: str
    jwks_url: str | None = None  # None: the Backend API's /v1/jwks with the secret key
    # The origins whose tokens are accepted (`azp`), as Clerk's authorizedParties: empty accepts any.
    authorized_parties: tuple[str, ...] = (GUIDE_FRONTEND,)


@dataclass(frozen=True)
class VendorSettings:
    source: str  # "emulator" or "environment"
    stripe: StripeSettings
    clerk_api_url: str
    clerk: dict[str, ClerkInstanceSettings]


# (variable, what it is); the Clerk pairs follow the guide's .dev.vars, one secret key per app.
ENVIRONMENT = {
    "STRIPE_SECRET_KEY": "the platform's Stripe secret key (sk_test_... or sk_live_...)",
    "STRIPE_CLIENT_ID": "the Stripe Connect application id (ca_...)",
    "CLERK_SECRET_KEY": "the dream-api Clerk app's secret key",
    "CLERK_ISSUER": "the dream-api Clerk app's Frontend API URL (its tokens' iss)",
    "CLERK_END_USER_SECRET_KEY": "the end-user-api Clerk app's secret key",
    "CLERK_END_USER_ISSUER": "the end-user-api Clerk app's Frontend API URL",
}


def _parties(raw: str | None) -> tuple[str, ...]:
    """A comma-separated list of origins; unset means the guide's frontend."""
    if raw is None:
        return (GUIDE_FRONTEND,)
    return tuple(origin.strip().rstrip("/") for origin in raw.split(",") if origin.strip())


def settings_from_env(env: Mapping[str, str]) -> VendorSettings | None:
    """Real vendors when the environment names them all; None (use the emulator) when it names none."""
    from dreamcli.vendors.stripe_gateway import StripeSettings

    present = [name for name in ENVIRONMENT if env.get(name)]
    if not present:
        return None
    missing = [name for name in ENVIRONMENT if not env.get(name)]
    if missing:
        raise UsageError(
            f"real vendors need {', '.join(missing)} as well (set all of {', '.join(ENVIRONMENT)}, or none for the emulator)"
        )
    stripe = StripeSettings(
        secret_key=env["STRIPE_SECRET_KEY"],
        client_id=env["STRIPE_CLIENT_ID"],
        api_base=env.get("STRIPE_API_BASE") or "https://api.stripe.com",
        connect_base=env.get("STRIPE_CONNECT_BASE") or "https://connect.stripe.com",
        webhook_secret=env.get("STRIPE_WEBHOOK_SECRET"),
        connect_webhook_secret=env.get("STRIPE_CONNECT_WEBHOOK_SECRET"),
    )
    clerk = {
        DREAM_API: ClerkInstanceSettings(
            env["CLERK_SECRET_KEY"],
            env["CLERK_ISSUER"].rstrip("/"),
            env["CLERK_ISSUER"].rstrip("/") + "/.well-known/jwks.json",
            _parties(env.get("CLERK_AUTHORIZED_PARTIES")),
        ),
        END_USER_API: ClerkInstanceSettings(
            env["CLERK_END_USER_SECRET_KEY"],
            env["CLERK_END_USER_ISSUER"].rstrip("/"),
            env["CLERK_END_USER_ISSUER"].rstrip("/") + "/.well-known/jwks.json",
            _parties(env.get("CLERK_END_USER_AUTHORIZED_PARTIES")),
        ),
    }
    return VendorSettings("environment", stripe, env.get("CLERK_API_URL") or "https://api.clerk.com", clerk)


def settings_from_emulator(config: Mapping[str, Any]) -> VendorSettings:
    """Settings from the emulator's `/_emulator/config` document."""
    from dreamcli.vendors.stripe_gateway import StripeSettings

    stripe_cfg = config["stripe"]
    stripe = StripeSettings(
        secret_key=stripe_cfg["secret_key"],
        client_id=stripe_cfg["client_id"],
        api_base=stripe_cfg["api_base"],
        connect_base=stripe_cfg["connect_base"],
        webhook_secret=stripe_cfg.get("webhook_secret"),
        connect_webhook_secret=stripe_cfg.get("connect_webhook_secret"),
    )
    clerk = {
        name: ClerkInstanceSettings(
            entry["secret_key"],
            entry["issuer"],
            entry["jwks_url"],
            tuple(entry.get("authorized_parties", (GUIDE_FRONTEND,))),
        )
        for name, entry in config["clerk"]["instances"].items()
    }
    return VendorSettings("emulator", stripe, config["clerk"]["api_url"], clerk)


class Vendors:
    """The clients the platform code uses, built once over one httpx client."""

    def __init__(self, settings: VendorSettings, http: httpx.Client, *, clock: Callable[[], float] = time.time) -> None:
        # The SDKs load only when vendors are used: most commands never need them.
        from dreamcli.vendors.clerk import ClerkClient
        from dreamcli.vendors.jwt_verify import JWTVerifier
        from dreamcli.vendors.stripe_gateway import StripeGateway

        self.settings = settings
        self.http = http
        self.clock = clock
        self.stripe = StripeGateway(settings.stripe, http)
        self.clerk = {
            name: ClerkClient(http, s.secret_key, settings.clerk_api_url) for name, s in settings.clerk.items()
        }
        self.verifiers = {
            name: JWTVerifier(self._jwks_fetcher(name), s.issuer, authorized_parties=s.authorized_parties, clock=clock)
            for name, s in settings.clerk.items()
        }

    def _jwks_fetcher(self, name: str) -> Callable[[], dict[str, Any]]:
        instance = self.settings.clerk[name]
        if instance.jwks_url is None:
            return self.clerk[name].jwks

        def fetch() -> dict[str, Any]:
            response = self.http.get(instance.jwks_url)  # type: ignore[arg-type]
            response.raise_for_status()
            return response.json()

        return fetch
