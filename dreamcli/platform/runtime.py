"""What api-multi does on every call: secret key -> hash -> publishable key -> platform -> tier config,
all read from `api-tokens` (the guide's path, and where its "Invalid API key" comes from)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from dreamcli import layout
from dreamcli.errors import DreamError, ExitCode
from dreamcli.platform.secrets import hash_secret
from dreamcli.stores.ports import Store
from dreamcli.topology import API_TOKENS, API_USAGE


class InvalidApiKey(DreamError):
    """The guide's `{"error": "Invalid API key", "message": "API key not found or expired"}`."""

    exit_code = ExitCode.FAILED
    error = "Invalid API key"
    message = "API key not found or expired"

    def __init__(self, missing: str) -> None:
        super().__init__(f"{self.error}: {self.message} ({missing})")
        self.missing = missing

    def body(self) -> dict[str, str]:
        return {"error": self.error, "message": self.message}


@dataclass(frozen=True)
class Caller:
    publishable_key: str
    platform_id: str
    tier_config: dict[str, Any]

    def tier(self, name: str) -> dict[str, Any] | None:
        return next((t for t in self.tier_config.get("tiers", []) if t.get("name") == name), None)


def authenticate(store: Store, secret_key: str) -> Caller:
    """Resolve a secret key exactly as api-multi does; InvalidApiKey names the first missing key."""
    tokens = store.kv(API_TOKENS)
    if not secret_key:
        raise InvalidApiKey("no secret key given")
    secret_entry = layout.secret_key_publishable(hash_secret(secret_key))
    raw_pk = tokens.get(secret_entry)
    if raw_pk is None:
        raise InvalidApiKey(f"{API_TOKENS} has no {secret_entry}")
    publishable_key = raw_pk.decode("utf-8", errors="replace")
    platform_entry = layout.publishable_key_platform(publishable_key)
    raw_plt = tokens.get(platform_entry)
    if raw_plt is None:
        raise InvalidApiKey(f"{API_TOKENS} has no {platform_entry}")
    platform_id = raw_plt.decode("utf-8", errors="replace")
    config_entry = layout.tier_config(platform_id)
    raw_config = tokens.get(config_entry)
    if raw_config is None:
        raise InvalidApiKey(f"{API_TOKENS} has no {config_entry}")
    try:
        config = json.loads(raw_config)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidApiKey(f"{config_entry} in {API_TOKENS} is not JSON") from None
    return Caller(publishable_key, platform_id, config)


class InvalidToken(DreamError):
    """An end-user token that is refused (bad JWT, or a publishable key that maps to no platform)."""

    exit_code = ExitCode.FAILED

    def body(self) -> dict[str, str]:
        return {"error": "Invalid token", "message": str(self)}


@dataclass(frozen=True)
class EndUser:
    caller: Caller
    user_id: str


def resolve_publishable(store: Store, publishable_key: str) -> Caller:
    """publishable key -> platform -> tier config, from api-tokens (what an end-user token is scoped by)."""
    tokens = store.kv(API_TOKENS)
    raw_plt = tokens.get(layout.publishable_key_platform(publishable_key))
    if raw_plt is None:
        raise InvalidToken(f"publishable key {publishable_key} is not live")
    platform_id = raw_plt.decode("utf-8", errors="replace")
    raw_config = tokens.get(layout.tier_config(platform_id))
    if raw_config is None:
        raise InvalidToken(f"platform {platform_id} has no tier config")
    return Caller(publishable_key, platform_id, json.loads(raw_config))


def authenticate_end_user(store: Store, verifier: Any, token: str) -> EndUser:
    """An end-user-api JWT (verified RS256 against its JWKS) whose `publishableKey` claim scopes the caller."""
    claims = verifier.verify(token)
    publishable_key = claims.get("publishableKey")
    if not isinstance(publishable_key, str) or not publishable_key:
        raise InvalidToken("the token carries no publishableKey claim")
    return EndUser(resolve_publishable(store, publishable_key), claims["sub"])


class UsageExceeded(DreamError):
    """The end-user reached the tier's monthly limit (the call is refused and not counted)."""

    exit_code = ExitCode.FAILED
    code = "USAGE_EXCEEDED"


class RateLimited(DreamError):
    """Too many calls this minute (checked before the monthly quota, so it spends none)."""

    exit_code = ExitCode.FAILED
    code = "RATE_LIMITED"

    def __init__(self, message: str, *, limit: int, reset: int, retry_after: int) -> None:
        super().__init__(message)
        self.limit, self.reset, self.retry_after = limit, reset, retry_after


RATE_LIMIT_PER_MINUTE = 60


def month_period(now: float) -> tuple[int, int]:
    """The calendar month (UTC) holding `now`, as Unix seconds [start, end)."""
    moment = datetime.fromtimestamp(now, UTC)
    start = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return int(start.timestamp()), int(end.timestamp())


@dataclass(frozen=True)
class RateWindow:
    limit: int
    remaining: int
    reset: int


class CorruptRecord(DreamError):
    """A value the platform counts with is not what it writes: reported, never guessed at or reset."""

    code = "CORRUPT_RECORD"

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(
            f"api-usage {key!r} is corrupt ({problem}): the call is refused and not counted; "
            f"`dream kv delete {key!r} --ns api-usage` starts it afresh"
        )
        self.key, self.problem = key, problem


def rate_count(raw: bytes | None, key: str) -> int:
    """A minute's call count as api-multi writes it: the digits of a non-negative integer."""
    if raw is None:
        return 0
    if not raw.isdigit() or len(raw) > 18:
        raise CorruptRecord(key, f"a count must be a non-negative integer, not {raw[:40]!r}")
    return int(raw)


def usage_record(raw: bytes | None, key: str) -> dict[str, Any]:
    """An end-user's month as api-multi writes it: a JSON object whose usageCount is a non-negative integer."""
    if raw is None:
        return {}
    try:
        record = json.loads(raw)
    except ValueError:
        raise CorruptRecord(key, "not JSON") from None
    if not isinstance(record, dict):
        raise CorruptRecord(key, f"a JSON {type(record).__name__}, not an object")
    count = record.get("usageCount")
    if type(count) is not int or count < 0:
        raise CorruptRecord(key, f"usageCount is {json.dumps(count)[:40]}, not a non-negative integer")
    return record


def check_rate(
    store: Store, caller: Caller, user_id: str, *, now: float, limit: int = RATE_LIMIT_PER_MINUTE
) -> RateWindow:
    """Count the call in this minute's bucket (scoped by platform); RateLimited past `limit`."""
    minute = int(now // 60)
    reset = (minute + 1) * 60
    key = layout.platform_rate_limit(caller.platform_id, user_id, minute)

    counted: list[int] = []

    def bump(raw: bytes | None) -> bytes:
        count = rate_count(raw, key)
        if count >= limit:
            return str(count).encode()
        counted.append(count + 1)
        return str(count + 1).encode()

    store.kv(API_USAGE).update(key, bump, expiration_ttl=120)
    if not counted:  # decided inside the same atomic update that would have counted it
        raise RateLimited(
            f"{user_id} made {limit} calls this minute", limit=limit, reset=reset, retry_after=max(1, reset - int(now))
        )
    count = counted[0]
    return RateWindow(limit, max(0, limit - count), reset)


def record_usage(store: Store, caller: Caller, user_id: str, plan: str, *, now: float) -> dict[str, Any]:
    """Count one call for an end-user under the platform id (so a rotation never resets it), within the
    tier's monthly limit; a refused call is not counted."""
    tier = caller.tier(plan)
    if tier is None:
        raise UsageExceeded(f"unknown plan {plan!r} for platform {caller.platform_id}")
    start, end = month_period(now)
    limit = tier.get("limit")
    refused: list[int] = []

    usage_key = layout.end_user_usage(caller.platform_id, user_id)

    def count(raw: bytes | None) -> bytes:
        record = usage_record(raw, usage_key)
        if record.get("periodStart") != start:
            record = {"usageCount": 0, "periodStart": start, "periodEnd": end}
        if limit is not None and record["usageCount"] >= limit:
            refused.append(record["usageCount"])
            return json.dumps(record).encode()
        record.update(usageCount=record["usageCount"] + 1, plan=plan, lastUpdated=int(now), periodEnd=end)
        return json.dumps(record).encode()

    record = json.loads(store.kv(API_USAGE).update(usage_key, count))
    if refused:
        raise UsageExceeded(f"{user_id} used {refused[0]} of {limit} calls this month")
    record["limit"] = limit
    return record
