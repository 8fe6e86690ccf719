"""`dream flow run`: one fresh developer through every phase on the emulator, then the call that
failed in the guide (secret -> hash -> publishable key -> platform -> tier config)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dreamcli import layout
from dreamcli.errors import DreamError
from dreamcli.platform import onboarding
from dreamcli.platform.runtime import InvalidApiKey, authenticate
from dreamcli.platform.secrets import hash_secret
from dreamcli.platform.tiers import Tier
from dreamcli.stores.ports import Store
from dreamcli.topology import API_TOKENS
from dreamcli.vendors.settings import Vendors

FAULTS = ("skip-api-replication",)


@dataclass
class Step:
    phase: str
    ok: bool
    wrote: list[str]
    detail: str
    ms: float


@dataclass
class FlowReport:
    steps: list[Step] = field(default_factory=list)
    user_id: str | None = None
    platform_id: str | None = None
    publishable_key: str | None = None
    secret_key: str | None = None
    failure: str | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None and all(step.ok for step in self.steps)

    @property
    def total_ms(self) -> float:
        return sum(step.ms for step in self.steps)

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "ok": self.ok,
            "userId": self.user_id,
            "platformId": self.platform_id,
            "publishableKey": self.publishable_key,
            "steps": [
                {"phase": s.phase, "ok": s.ok, "wrote": s.wrote, "detail": s.detail, "ms": round(s.ms, 1)}
                for s in self.steps
            ],
            "failure": self.failure,
        }
        if self.secret_key:
            data["secretKey"] = self.secret_key  # created by this run: its one showing
        return data


def run_flow(
    store: Store,
    vendors: Vendors,
    tiers: list[Tier],
    *,
    email: str | None = None,
    fault: str | None = None,
    mimic_plaintext_secret: bool = False,
    clock: Callable[[], float] = time.time,
) -> FlowReport:
    report = FlowReport()
    email = email or f"dev-{secrets.token_hex(4)}@example.com"

    def step(phase: str, action: Callable[[], tuple[list[str], str]]) -> bool:
        started = time.perf_counter()
        try:
            wrote, detail = action()
            ok = True
        except DreamError as exc:
            wrote, detail, ok = [], str(exc), False
            report.failure = f"{phase}: {exc}"
        report.steps.append(Step(phase, ok, wrote, detail, (time.perf_counter() - started) * 1000))
        return ok

    def signup() -> tuple[list[str], str]:
        result = onboarding.signup(store, vendors, email=email)
        report.user_id, report.platform_id = result.user_id, result.platform_id
        return result.writes, f"{result.user_id} -> {result.platform_id}"

    def pay() -> tuple[list[str], str]:
        checkout = onboarding.start_payment(store, vendors, report.user_id)  # type: ignore[arg-type]
        onboarding.pay_in_emulator(vendors, checkout)
        return ["clerk dream-api: public_metadata.plan = paid"], f"checkout {checkout.session_id} paid"

    def connect() -> tuple[list[str], str]:
        url, _ = onboarding.connect_start(store, vendors, report.user_id)  # type: ignore[arg-type]
        answer = onboarding.consent_in_emulator(vendors, url)
        result = onboarding.connect_callback(
            store, vendors, code=answer.get("code"), state=answer.get("state"), error=answer.get("error")
        )
        return result.writes, f"connected {result.stripe_user_id}"

    def configure() -> tuple[list[str], str]:
        result = onboarding.configure_tiers(
            store,
            vendors,
            report.user_id or "",
            tiers,
            mimic_plaintext_secret=mimic_plaintext_secret,
            skip_api_replication=fault == "skip-api-replication",
            store_now=clock,
        )
        report.publishable_key, report.secret_key = result.publishable_key, result.secret_key
        wrote = result.writes + ["clerk dream-api: public_metadata.publishableKey"]
        return wrote, f"{len(result.products)} products on the connected account"

    def show_credentials() -> tuple[list[str], str]:
        data = onboarding.credentials(store, report.user_id)  # type: ignore[arg-type]
        return [], f"{data['publishableKey']}, {len(data['products'])} price ids"

    def call() -> tuple[list[str], str]:
        try:
            caller = authenticate(store, report.secret_key or "")
        except InvalidApiKey as exc:
            missing = missing_api_keys(store, report.platform_id, report.publishable_key, report.secret_key)
            raise InvalidApiKey(f"missing in {API_TOKENS}: {', '.join(missing) or exc.missing}") from None
        return (
            [],
            f"Bearer sk -> {caller.publishable_key} -> {caller.platform_id} -> {len(caller.tier_config['tiers'])} tiers",
        )

    for phase, action in (
        ("signup", signup),
        ("pay", pay),
        ("connect", connect),
        ("tiers", configure),
        ("credentials", show_credentials),
        ("api call", call),
    ):
        if not step(phase, action):
            break
    return report


def missing_api_keys(
    store: Store, platform_id: str | None, publishable_key: str | None, secret_key: str | None
) -> list[str]:
    """The api-tokens keys an authenticated call needs for this developer that are absent."""
    wanted = []
    if secret_key:
        wanted.append(layout.secret_key_publishable(hash_secret(secret_key)))
    if publishable_key:
        wanted.append(layout.publishable_key_platform(publishable_key))
    if platform_id:
        wanted.append(layout.tier_config(platform_id))
    found = store.kv(API_TOKENS).bulk_get(wanted) if wanted else {}
    return [key for key in wanted if found.get(key) is None]
