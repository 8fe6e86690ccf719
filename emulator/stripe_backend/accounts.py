"""The platform account, its keys, and Connect: OAuth authorize, token and deauthorize, and which account a
request acts as (its key's own, or a connected one named by Stripe-Account)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from emulator.schema import sha256_hex
from emulator.stripe_backend.common import (
    CONNECT_REDIRECT_URI,
    OAUTH_CODE_TTL,
    PLATFORM,
    _redact,
)
from emulator.stripe_backend.core import Core
from emulator.stripe_errors import StripeAPIError, StripeOAuthError
from emulator.vendor_state import new_id


class Accounts(Core):
    # Accounts and keys

    def _ensure_platform(self) -> dict[str, Any]:
        found = self.state.find(PLATFORM, "account")
        if found:
            return found[0]
        account_id = new_id("acct_", 16)
        account = {"id": account_id, "object": "account", "type": "standard", "created": self.state.now()}
        self.state.save(PLATFORM, account)
        self.state.issue_key(new_id("sk_test_", 32), account_id, "secret")
        self.state.issue_key(new_id("pk_test_", 32), account_id, "publishable")
        self.state.issue_key(new_id("ca_", 32), account_id, "client_id")
        return account

    def connect_redirect_uri(self) -> str:
        """The Connect application's default redirect URI (its dashboard setting; `dream dev` sets it to
        oauth-api's callback route)."""
        platform = self.state.load(self._platform["id"], PLATFORM, "account") or self._platform
        return str(platform.get("_connect_redirect_uri") or CONNECT_REDIRECT_URI)

    def set_connect_redirect_uri(self, url: str) -> None:
        platform = self.state.load(self._platform["id"], PLATFORM, "account") or dict(self._platform)
        platform["_connect_redirect_uri"] = url
        self.state.save(PLATFORM, platform)

    def _is_connected(self, account: str) -> bool:
        connected = self.state.load(account, self._platform["id"], "account")
        return connected is not None and not connected.get("_deauthorized")

    def config(self) -> dict[str, str]:
        """The emulator's own test credentials for the platform account."""
        account = self._platform["id"]
        return {
            "account": account,
            "secret_key": self.state.keys_of(account, "secret")[0],
            "publishable_key": self.state.keys_of(account, "publishable")[0],
            "client_id": self.state.keys_of(account, "client_id")[0],
        }

    def authenticate(self, api_key: str | None, stripe_account: str | None) -> str:
        """The account a request acts as: the key's own, or a connected account named by `Stripe-Account`."""
        if not api_key:
            raise StripeAPIError(
                401,
                "You did not provide an API key. You need to provide your API key in the Authorization header, "
                "using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
            )
        owner = self.state.key_owner(api_key)
        if owner is None or owner[1] not in ("secret", "access_token"):
            raise StripeAPIError(401, f"Invalid API Key provided: {_redact(api_key)}")
        account = owner[0]
        if stripe_account and stripe_account != account:
            if account != self._platform["id"] or not self._is_connected(stripe_account):
                raise StripeAPIError(
                    403,
                    f"The provided key '{_redact(api_key)}' does not have access to account '{stripe_account}' "
                    "(or that account does not exist). Application access may have been revoked.",
                    code="account_invalid",
                )
            return stripe_account
        return account

    def _require_platform_key(self, api_key: str | None) -> None:
        owner = self.state.key_owner(api_key or "")
        if owner is None or owner != (self._platform["id"], "secret"):
            raise StripeOAuthError("invalid_client", f"Invalid API Key provided: {_redact(api_key or '')}", 401)

    # Connect OAuth

    def oauth_authorize(self, params: dict[str, Any]) -> str:
        """The redirect target: `redirect_uri?code=...&state=...`, or `error=access_denied` when asked to deny."""
        client_id = params.get("client_id")
        if not client_id or self.state.key_owner(client_id) != (self._platform["id"], "client_id"):
            raise StripeOAuthError("invalid_client", f"No such application: '{client_id}'")
        if params.get("response_type", "code") != "code":
            raise StripeOAuthError("invalid_request", "response_type must be 'code'")
        # Without one, Stripe sends the user to the application's redirect URI from its Connect settings.
        redirect_uri = params.get("redirect_uri") or self.connect_redirect_uri()
        answer: dict[str, str] = {}
        if params.get("emulator_decision") == "deny":
            answer = {"error": "access_denied", "error_description": "The user denied your request"}
        else:
            account = {"id": new_id("acct_", 16), "object": "account", "type": "standard", "created": self.state.now()}
            self.state.save(self._platform["id"], account)
            code = new_id("ac_", 32)
            with self.state.file.write() as conn:
                conn.execute(
                    "INSERT INTO _dream_stripe_oauth_codes (code, account, client_id, expires) VALUES (?, ?, ?, ?)",
                    (code, account["id"], client_id, self.state.now() + OAUTH_CODE_TTL),
                )
            answer = {"code": code, "scope": params.get("scope", "read_write")}
        if params.get("state") is not None:
            answer["state"] = params["state"]
        separator = "&" if "?" in redirect_uri else "?"
        return f"{redirect_uri}{separator}{urlencode(answer)}"

    def oauth_token(self, api_key: str | None, params: dict[str, Any]) -> dict[str, Any]:
        self._require_platform_key(api_key)
        if params.get("grant_type") != "authorization_code":
            raise StripeOAuthError("unsupported_grant_type", f"Unsupported grant type: {params.get('grant_type')}")
        code = params.get("code")
        if not code:
            raise StripeOAuthError("invalid_request", "No authorization code provided")
        refusal: str | None = None
        with self.state.file.write() as conn:
            row = conn.execute(
                "SELECT account, expires, used FROM _dream_stripe_oauth_codes WHERE code = ?", (code,)
            ).fetchone()
            if row is None:
                refusal = f"Authorization code does not exist: {code}"
            elif row[2]:
                # Stripe revokes the connection when a code is used twice (committed before refusing).
                conn.execute(
                    "DELETE FROM _dream_vendor_keys WHERE vendor = 'stripe' AND scope = ? AND role = 'access_token'",
                    (row[0],),
                )
                refusal = f"Authorization code already used: {code}"
            elif row[1] <= self.state.now():
                refusal = f"Authorization code expired: {code}"
            else:
                account = row[0]
                conn.execute("UPDATE _dream_stripe_oauth_codes SET used = 1 WHERE code = ?", (code,))
                access_token = new_id("sk_test_", 32)
                publishable = new_id("pk_test_", 32)
                refresh = new_id("rt_", 32)
                conn.executemany(
                    "INSERT INTO _dream_vendor_keys (vendor, key, key_sha256, scope, role) VALUES ('stripe', ?, ?, ?, ?)",
                    [
                        (key, sha256_hex(key), account, role)
                        for key, role in (
                            (access_token, "access_token"),
                            (publishable, "publishable"),
                            (refresh, "refresh"),
                        )
                    ],
                )
        if refusal is not None:
            raise StripeOAuthError("invalid_grant", refusal)
        return {
            "access_token": access_token,
            "livemode": False,
            "refresh_token": refresh,
            "scope": "read_write",
            "stripe_publishable_key": publishable,
            "stripe_user_id": account,
            "token_type": "bearer",
        }

    def oauth_deauthorize(self, api_key: str | None, params: dict[str, Any]) -> dict[str, Any]:
        self._require_platform_key(api_key)
        account = params.get("stripe_user_id")
        if params.get("client_id") != self.config()["client_id"]:
            raise StripeOAuthError("invalid_client", f"No such application: '{params.get('client_id')}'")
        if not account or not self._is_connected(account):
            raise StripeOAuthError("invalid_client", f"No such user: {account}")
        self.state.revoke_keys(account, "access_token")
        connected = self.state.load(account, self._platform["id"], "account")
        if connected is not None:  # the platform no longer acts for it (Stripe-Account is refused from now on)
            connected["_deauthorized"] = self.state.now()
            self.state.save(self._platform["id"], connected)
        return {"stripe_user_id": account}
