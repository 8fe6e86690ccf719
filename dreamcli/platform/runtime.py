"""What api-multi does on every call: secret key -> hash -> publishable key -> platform -> tier config,
all read from `api-tokens` (the guide's path, and where its "Invalid API key" comes from)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from dreamcli import layout
from dreamcli.errors import DreamError, ExitCode
from dreamcli.platform.secrets import hash_secret
from dreamcli.stores.ports import Store
from dreamcli.topology import API_TOKENS


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
