"""Clerk's subset the platform uses, for two instances: `dream-api` (the platform's developers)
and `end-user-api` (all their customers). Users with deep-merged metadata, RS256 JWT templates
with a JWKS, and Svix-signed `user.*` webhooks. State and logic only; HTTP lives in clerk_http.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Callable
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from dreamcli.stores.sqlite_file import SQLiteFile
from dreamcli.vendors.settings import GUIDE_FRONTEND
from emulator.clerk_accounts import ClerkAccounts
from emulator.clerk_views import clerk_public
from emulator.vendor_state import VendorState, new_id
from emulator.webhooks import Message, Outbox

DREAM_API = "dream-api"
END_USER_API = "end-user-api"
INSTANCES = (DREAM_API, END_USER_API)
# The guide's JWT templates.
TEMPLATES = {
    DREAM_API: {"plan": "{{user.public_metadata.plan}}"},
    END_USER_API: {"publishableKey": "{{user.public_metadata.publishableKey}}"},
}
DEFAULT_AZP = GUIDE_FRONTEND  # the `azp` of the tokens the guide's frontend gets
TEMPLATE_LIFETIME = 60
CLOCK_SKEW = 5
_SHORTCODE = re.compile(r"^\{\{\s*user\.([\w.]+)\s*\}\}$")


class ClerkAPIError(Exception):
    """An error with Clerk's envelope: {"errors": [{message, long_message, code}], "clerk_trace_id"}."""

    def __init__(self, status: int, code: str, message: str, long_message: str | None = None) -> None:
        super().__init__(long_message or message)
        self.status = status
        self.body = {
            "errors": [{"message": message, "long_message": long_message or message, "code": code, "meta": {}}],
            "clerk_trace_id": secrets.token_hex(16),
        }


def frontend_api(instance: str) -> str:
    """An instance's Frontend API host (stable whatever port serves it)."""
    return f"{instance}.clerk.dream.test"


def issuer_of(instance: str) -> str:
    """The `iss` of an instance's tokens: its Frontend API URL."""
    return f"https://{frontend_api(instance)}"


def publishable_key_of(instance: str) -> str:
    """The instance's publishable key in Clerk's own format, `pk_test_` + base64("<frontend api host>$") without
    padding: what @clerk/backend's authenticateRequest parses (the host must hold a "." and end the text with "$")."""
    encoded = base64.b64encode(f"{frontend_api(instance)}$".encode()).decode().rstrip("=")
    return f"pk_test_{encoded}"


def deep_merge(current: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Clerk's metadata merge: nested objects merge, a null value deletes its key."""
    merged = dict(current)
    for key, value in update.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def svix_signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


class ClerkBackend(ClerkAccounts):
    def __init__(self, file: SQLiteFile, clock: Callable[[], float] = time.time, outbox: Outbox | None = None) -> None:
        self.state = VendorState(file, "clerk", clock)
        self.outbox = outbox or Outbox(file, clock)
        self._keys: dict[str, Any] = {}
        self._published: set[str] = set()  # instances whose Clerk-format publishable key is known to be issued
        for name in INSTANCES:
            self._ensure_instance(name)

    def _ensure_instance(self, name: str) -> dict[str, Any]:
        found = self.state.load(f"ins_{name}")
        if found is None:
            private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            pem = private.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ).decode()
            found = {
                "id": f"ins_{name}",
                "object": "instance",
                "name": name,
                "kid": "ins_" + secrets.token_hex(12),
                "private_key_pem": pem,
                "created": self.state.now(),
            }
            self.state.save("instances", found)
            self.state.issue_key(new_id("sk_test_", 40), name, "secret")
        if name not in self._published:
            if publishable_key_of(name) not in self.state.keys_of(name, "publishable"):  # older stores had others
                self.state.issue_key(publishable_key_of(name), name, "publishable")
            self._published.add(name)
        return found

    def _private_key(self, name: str) -> tuple[str, Any]:
        if name not in self._keys:
            instance = self._ensure_instance(name)
            key = serialization.load_pem_private_key(instance["private_key_pem"].encode(), password=None)
            self._keys[name] = (instance["kid"], key)
        return self._keys[name]

    def config(self) -> dict[str, dict[str, Any]]:
        return {
            name: {
                "secret_key": self.state.keys_of(name, "secret")[0],
                "publishable_key": publishable_key_of(name),
                "issuer": issuer_of(name),
                "authorized_parties": self.authorized_parties(name),
            }
            for name in INSTANCES
        }

    def authorized_parties(self, instance: str) -> list[str]:
        """The origins whose tokens the platform accepts for this instance (Clerk's authorizedParties)."""
        return list(self._ensure_instance(instance).get("authorized_parties", [DEFAULT_AZP]))

    def set_authorized_parties(self, instance: str, parties: list[str]) -> list[str]:
        found = self._ensure_instance(self.require_instance(instance))
        found["authorized_parties"] = parties
        self.state.save("instances", found)
        return parties

    def authenticate(self, secret_key: str | None) -> str:
        owner = self.state.key_owner(secret_key or "")
        if owner is None or owner[1] != "secret":
            raise ClerkAPIError(
                401,
                "authentication_invalid",
                "Invalid authentication",
                "The provided Clerk Secret Key is invalid. Make sure that your Clerk Secret Key is correct.",
            )
        return owner[0]

    @staticmethod
    def require_instance(instance: str) -> str:
        if instance not in INSTANCES:
            raise ClerkAPIError(404, "resource_not_found", "not found", f"No instance named {instance}")
        return instance

    def jwks(self, instance: str) -> dict[str, Any]:
        self.require_instance(instance)
        kid, key = self._private_key(instance)
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
        jwk.update({"kid": kid, "alg": "RS256", "use": "sig"})
        return {"keys": [jwk]}

    # Users

    def create_user(self, instance: str, params: dict[str, Any]) -> dict[str, Any]:
        emails = params.get("email_address") or []
        if isinstance(emails, str):
            emails = [emails]
        if not isinstance(emails, list) or not all(isinstance(e, str) and "@" in e for e in emails):
            raise ClerkAPIError(
                422, "form_param_format_invalid", "is invalid", "email_address must be a list of email addresses."
            )
        for field in ("public_metadata", "private_metadata", "unsafe_metadata"):
            if field in params and not isinstance(params[field], dict):
                raise ClerkAPIError(422, "form_param_format_invalid", "is invalid", f"{field} must be an object.")
        phones = params.get("phone_number") or []
        phones = [phones] if isinstance(phones, str) else phones
        if not isinstance(phones, list) or not all(isinstance(p, str) and _PHONE.match(p) for p in phones):
            raise ClerkAPIError(
                422, "form_param_format_invalid", "is invalid", "phone_number must be a list of E.164 phone numbers."
            )
        username = params.get("username")
        if username is not None and not (isinstance(username, str) and _USERNAME.match(username)):
            raise ClerkAPIError(
                422, "form_username_invalid_character", "is invalid", "username must be 4-64 letters, digits, - or _."
            )
        users = self.state.find(instance, "user")
        taken = {e["email_address"].lower() for user in users for e in user["email_addresses"]}
        for email in emails:
            if email.lower() in taken:
                raise ClerkAPIError(422, "form_identifier_exists", "That email address is taken. Please try another.")
        if username and any((u.get("username") or "").lower() == username.lower() for u in users):
            raise ClerkAPIError(422, "form_identifier_exists", "That username is taken. Please try another.")
        taken_phones = {p["phone_number"] for u in users for p in u.get("phone_numbers", [])}
        if any(p in taken_phones for p in phones):
            raise ClerkAPIError(422, "form_identifier_exists", "That phone number is taken. Please try another.")
        user = self._user_record(params, emails, phones, username)
        self.set_password(user, params)
        self.state.save(instance, user)
        self.emit(instance, "user.created", user)
        return clerk_public(user)

    def _user_record(
        self,
        params: dict[str, Any],
        emails: list[str],
        phones: list[str],
        username: str | None,
        user_id: str | None = None,
    ) -> dict[str, Any]:
        """A user as Clerk keeps it (ids for each address), from parameters already checked."""
        now_ms = int(self.state.clock() * 1000)
        addresses = [{"id": new_id("idn_", 24), "object": "email_address", "email_address": e} for e in emails]
        numbers = [{"id": new_id("idn_", 24), "object": "phone_number", "phone_number": p} for p in phones]
        return {
            "id": user_id or new_id("user_", 27),
            "object": "user",
            "created": self.state.now(),
            "created_at": now_ms,
            "updated_at": now_ms,
            "email_addresses": addresses,
            "primary_email_address_id": addresses[0]["id"] if addresses else None,
            "external_id": params.get("external_id"),
            "first_name": params.get("first_name"),
            "last_name": params.get("last_name"),
            "public_metadata": params.get("public_metadata") or {},
            "private_metadata": params.get("private_metadata") or {},
            "unsafe_metadata": params.get("unsafe_metadata") or {},
            "username": username,
            "locale": params.get("locale"),
            "phone_numbers": numbers,
            "primary_phone_number_id": numbers[0]["id"] if numbers else None,
            "banned": bool(params.get("banned", False)),
            "locked": bool(params.get("locked", False)),
        }

    def import_users(self, instance: str, users: list[dict[str, Any]]) -> int:
        """Users written at once, as Clerk keeps them (`dream seed`'s synthetic developers): each {id, email,
        public_metadata}, the ids and e-mail addresses unique by construction (not checked against those there), no
        password and no user.created event (an import is not a sign-up). How many were written."""
        records = [
            self._user_record({"public_metadata": u.get("public_metadata") or {}}, [u["email"]], [], None, u["id"])
            for u in users
        ]
        with self.state.file.write() as conn:
            for record in records:
                self.state.save(instance, record, conn)
        return len(records)

    def get_user(self, instance: str, user_id: str) -> dict[str, Any]:
        user = self.state.load(user_id, instance, "user")
        if user is None:
            raise ClerkAPIError(404, "resource_not_found", "not found", f"No user was found with id {user_id}")
        return user

    def _matching(self, instance: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        """The instance's users that pass `GET /v1/users`'s filters (email_address, user_id and external_id with
        Clerk's `+`/`-` prefixes, query), newest first unless `order_by` says otherwise."""
        users = self.state.find(instance, "user", newest_first=False)  # ties keep the order they were made in
        emails = [e.lower() for e in _values(params, "email_address")]
        if emails:
            users = [u for u in users if any(a["email_address"].lower() in emails for a in u["email_addresses"])]
        for field, attribute in (("user_id", "id"), ("external_id", "external_id"), ("username", "username")):
            values = _values(params, field)
            include = {v.removeprefix("+") for v in values if not v.startswith("-")}
            exclude = {v[1:] for v in values if v.startswith("-")}
            if include:
                users = [u for u in users if u.get(attribute) in include]
            if exclude:
                users = [u for u in users if u.get(attribute) not in exclude]
        phones = _values(params, "phone_number")
        if phones:
            users = [u for u in users if any(p["phone_number"] in phones for p in u.get("phone_numbers", []))]
        if _values(params, "organization_id"):  # no organizations are emulated: no user is a member of one
            users = []
        query = params.get("query")
        if isinstance(query, str) and query:
            needle = query.lower()
            users = [u for u in users if any(needle in str(text).lower() for text in _searchable(u))]
        for field, texts in _QUERIES.items():
            partial = params.get(field)
            if isinstance(partial, str) and partial:
                users = [u for u in users if any(partial.lower() in str(t).lower() for t in texts(u) if t)]
        if params.get("banned") is not None:
            banned = str(params["banned"]).lower() == "true"
            users = [u for u in users if bool(u.get("banned")) == banned]
        for field, (attribute, after) in _RANGES.items():
            if params.get(field) in (None, ""):
                continue
            try:
                bound = int(params[field])
            except (TypeError, ValueError):
                raise ClerkAPIError(
                    422, "form_param_format_invalid", "is invalid", f"{field} must be an integer."
                ) from None
            users = [
                u
                for u in users
                if u.get(attribute) is not None and (u[attribute] > bound if after else u[attribute] < bound)
            ]
        order = params.get("order_by") or "-created_at"
        if not isinstance(order, str) or order.lstrip("+-") not in ORDER_BY:
            raise ClerkAPIError(
                422, "form_param_value_invalid", "is invalid", f"order_by must be one of {', '.join(ORDER_BY)}."
            )
        field = order.lstrip("+-")
        users.sort(key=lambda u: (_sort_value(u, field) is None, _sort_value(u, field) or ""))
        if order.startswith("-"):
            users.reverse()
        return users

    def list_users(self, instance: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        try:
            limit = int(params.get("limit", 10))
            offset = int(params.get("offset", 0))
        except (TypeError, ValueError):
            raise ClerkAPIError(
                422, "form_param_format_invalid", "is invalid", "limit and offset must be integers."
            ) from None
        if not 1 <= limit <= 500 or offset < 0:
            raise ClerkAPIError(422, "form_param_value_invalid", "is invalid", "limit must be 1..500 and offset >= 0.")
        return [clerk_public(user) for user in self._matching(instance, params)[offset : offset + limit]]

    def count_users(self, instance: str, params: dict[str, Any]) -> dict[str, Any]:
        return {"object": "total_count", "total_count": len(self._matching(instance, params))}

    def update_user(self, instance: str, user_id: str, params: dict[str, Any]) -> dict[str, Any]:
        """PATCH /v1/users/{id}: the attributes dream's platform sets (metadata goes through /metadata)."""
        user = self.get_user(instance, user_id)
        for field in ("external_id", "first_name", "last_name", "username", "locale"):
            if field in params:
                value = params[field]
                if value is not None and not isinstance(value, str):
                    raise ClerkAPIError(422, "form_param_format_invalid", "is invalid", f"{field} must be a string.")
                user[field] = value
        user["updated_at"] = int(self.state.clock() * 1000)
        self.state.save(instance, user)
        self.emit(instance, "user.updated", user)
        return clerk_public(user)

    def replace_metadata(self, instance: str, user_id: str, params: dict[str, Any]) -> dict[str, Any]:
        """PUT /v1/users/{id}/metadata: each field given replaces the stored one wholesale (@clerk/backend's
        updateUser sends this)."""
        user = self.get_user(instance, user_id)
        for field in ("public_metadata", "private_metadata", "unsafe_metadata"):
            if field in params:
                if params[field] is not None and not isinstance(params[field], dict):
                    raise ClerkAPIError(422, "form_param_format_invalid", "is invalid", f"{field} must be an object.")
                user[field] = params[field]
        user["updated_at"] = int(self.state.clock() * 1000)
        self.state.save(instance, user)
        self.emit(instance, "user.updated", user)
        return clerk_public(user)

    def update_metadata(self, instance: str, user_id: str, params: dict[str, Any]) -> dict[str, Any]:
        user = self.get_user(instance, user_id)
        for field in ("public_metadata", "private_metadata", "unsafe_metadata"):
            update = params.get(field)
            if update is None:
                continue
            if not isinstance(update, dict):
                raise ClerkAPIError(422, "form_param_format_invalid", "is invalid", f"{field} must be an object.")
            user[field] = deep_merge(user[field], update)
        user["updated_at"] = int(self.state.clock() * 1000)
        self.state.save(instance, user)
        self.emit(instance, "user.updated", user)
        return clerk_public(user)

    def delete_user(self, instance: str, user_id: str) -> dict[str, Any]:
        self.get_user(instance, user_id)
        self.state.delete(user_id)
        deleted = {"id": user_id, "object": "user", "deleted": True}
        self.emit(instance, "user.deleted", deleted)
        return deleted

    # Tokens

    def mint_token(
        self,
        instance: str,
        user_id: str,
        *,
        expires_in: int = TEMPLATE_LIFETIME,
        azp: str = DEFAULT_AZP,
        session_id: str | None = None,
    ) -> str:
        """A JWT template token for a user, as a browser sign-in would get it."""
        user = self.get_user(instance, user_id)
        now = self.state.now()
        claims: dict[str, Any] = {
            "azp": azp,
            "exp": now + expires_in,
            "iat": now,
            "iss": issuer_of(instance),
            "jti": secrets.token_hex(10),
            "nbf": now - CLOCK_SKEW,
            "sub": user["id"],
        }
        claims["sid"] = session_id or new_id("sess_", 27)  # every Clerk session token names its session
        for name, template in TEMPLATES[instance].items():
            claims[name] = _render(template, user)
        kid, key = self._private_key(instance)
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})

    # Webhooks

    def add_webhook(self, instance: str, url: str) -> dict[str, Any]:
        if not url:
            raise ClerkAPIError(422, "form_param_missing", "is missing", "url is required.")
        endpoint = {
            "id": new_id("ep_", 24),
            "object": "webhook_endpoint",
            "url": url,
            "secret": "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode(),
            "created": self.state.now(),
        }
        self.state.save(instance, endpoint)
        return endpoint

    def emit(self, instance: str, event_type: str, data: dict[str, Any]) -> None:
        """Queue a `user.*` event for the instance's endpoints, one Svix message (one `svix-id`, kept across
        retries) per endpoint; delivery happens later, elsewhere."""
        endpoints = self.state.find(instance, "webhook_endpoint", newest_first=False)
        if not endpoints:
            return
        body = json.dumps(
            {
                "data": clerk_public(data),
                "object": "event",
                "type": event_type,
                "timestamp": int(self.state.clock() * 1000),
                "instance_id": f"ins_{instance}",
                "event_attributes": {"http_request": {"client_ip": "127.0.0.1", "user_agent": "dream-emulator"}},
            }
        ).encode()
        msg_id = new_id("msg_", 27)
        with self.state.file.write() as conn:
            for endpoint in endpoints:
                self.outbox.enqueue("clerk", msg_id, event_type, endpoint, body, conn)
        self.outbox.wake()

    def sign(self, message: Message, timestamp: int) -> dict[str, str] | None:
        """Svix's headers for one attempt: the message's id, this attempt's time, the endpoint's signature."""
        instance = self.state.scope_of(message.endpoint_id)
        endpoint = self.state.load(message.endpoint_id, instance, "webhook_endpoint") if instance else None
        if endpoint is None:
            return None
        return {
            "content-type": "application/json",
            "svix-id": message.message_id,
            "svix-timestamp": str(timestamp),
            "svix-signature": svix_signature(endpoint["secret"], message.message_id, timestamp, message.body),
        }


def _render(template: str, user: dict[str, Any]) -> Any:
    """`{{user.public_metadata.plan}}` -> the value at that path, or null when it is missing."""
    match = _SHORTCODE.match(template)
    if not match:
        return template
    node: Any = user
    for part in match.group(1).split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


ORDER_BY = (
    "created_at",
    "updated_at",
    "email_address",
    "web3wallet",
    "first_name",
    "last_name",
    "phone_number",
    "username",
    "last_active_at",
    "last_sign_in_at",
)

# Every field of Clerk's User object (Backend API 2026-05-12) that dream does not keep, at its empty value:
# the official clients parse the whole object (clerk-backend-api requires each key; @clerk/backend reads most).
_PHONE = re.compile(r"^\+[1-9]\d{6,14}$")
_USERNAME = re.compile(r"^[A-Za-z0-9_-]{4,64}$")
# GET /v1/users's partial-match filters: the texts each one searches.
_QUERIES: dict[str, Callable[[dict[str, Any]], list[Any]]] = {
    "email_address_query": lambda u: [a["email_address"] for a in u.get("email_addresses", [])],
    "phone_number_query": lambda u: [p["phone_number"] for p in u.get("phone_numbers", [])],
    "username_query": lambda u: [u.get("username")],
    "name_query": lambda u: [
        u.get("first_name"),
        u.get("last_name"),
        f"{u.get('first_name') or ''} {u.get('last_name') or ''}",
    ],
}
# Its time filters (milliseconds): the attribute, and whether the bound is a lower one.
_RANGES = {
    "created_at_after": ("created_at", True),
    "created_at_before": ("created_at", False),
    "last_active_at_after": ("last_active_at", True),
    "last_active_at_before": ("last_active_at", False),
    "last_active_at_since": ("last_active_at", True),
    "last_sign_in_at_after": ("last_sign_in_at", True),
    "last_sign_in_at_before": ("last_sign_in_at", False),
}


def _values(params: dict[str, Any], name: str) -> list[str]:
    value = params.get(name)
    if value is None:
        return []
    values = value if isinstance(value, list) else [value]
    return [v for v in values if isinstance(v, str) and v]


def _searchable(user: dict[str, Any]) -> list[Any]:
    emails = [a["email_address"] for a in user.get("email_addresses", [])]
    return [user.get("id"), user.get("username"), user.get("first_name"), user.get("last_name"), *emails]


def _sort_value(user: dict[str, Any], field: str) -> Any:
    if field == "email_address":
        emails = user.get("email_addresses") or []
        return emails[0]["email_address"].lower() if emails else None
    return user.get(field)
