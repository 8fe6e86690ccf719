"""What Clerk keeps about a user's access beyond the profile: the password (stored as a salted scrypt digest, never
as given; checked with `POST /v1/users/{id}/verify_password`), bans and locks, and sessions (created, listed,
revoked; a ban revokes every session of the user, as Clerk does). A mixin of ClerkBackend: state and logic only."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Any

from emulator.vendor_state import VendorState, new_id

PASSWORD_MIN_LENGTH = 8  # Clerk's default password policy
SESSION_LIFETIME_MS = 7 * 24 * 3600 * 1000  # a session's default maximum lifetime
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    return "scrypt$" + base64.b64encode(salt).decode() + "$" + base64.b64encode(digest).decode()


def password_matches(stored: str, password: str) -> bool:
    _, salt, digest = stored.split("$")
    attempt = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), dklen=32, **_SCRYPT)
    return hmac.compare_digest(attempt, base64.b64decode(digest))


def _error(status: int, code: str, message: str, long_message: str) -> Exception:
    from emulator.clerk_backend import ClerkAPIError

    return ClerkAPIError(status, code, message, long_message)


class ClerkAccounts:
    state: VendorState  # ClerkBackend's, with the two methods below

    def get_user(self, instance: str, user_id: str) -> dict[str, Any]:
        raise NotImplementedError

    def emit(self, instance: str, event_type: str, data: dict[str, Any]) -> None:
        raise NotImplementedError

    def set_password(self, user: dict[str, Any], params: dict[str, Any]) -> None:
        """The password of a new or updated user, checked against Clerk's default policy unless told not to."""
        password = params.get("password")
        if password is None:
            return
        if not isinstance(password, str):
            raise _error(422, "form_param_format_invalid", "is invalid", "password must be a string.")
        if len(password) < PASSWORD_MIN_LENGTH and not params.get("skip_password_checks"):
            raise _error(
                422,
                "form_password_length_too_short",
                "Passwords must be 8 characters or more.",
                "Passwords must be 8 characters or more.",
            )
        user["_password"] = hash_password(password)
        user["password_enabled"] = True
        user["password_last_updated_at"] = int(self.state.clock() * 1000)

    def verify_password(self, instance: str, user_id: str, params: dict[str, Any]) -> dict[str, Any]:
        user = self.get_user(instance, user_id)
        stored = user.get("_password")
        if not stored:
            raise _error(400, "password_not_set", "no password set", "The user does not have a password set.")
        if not isinstance(params.get("password"), str) or not password_matches(stored, params["password"]):
            raise _error(
                422, "form_password_incorrect", "Password is incorrect.", "The provided password was incorrect."
            )
        return {"verified": True}

    def set_access(self, instance: str, user_id: str, field: str, on: bool) -> dict[str, Any]:
        """Ban or unban (`banned`), lock or unlock (`locked`) a user; a ban also revokes every session of theirs."""
        from emulator.clerk_views import clerk_public

        user = self.get_user(instance, user_id)
        user[field] = on
        if field == "locked":
            user["lockout_expires_in_seconds"] = None
        user["updated_at"] = int(self.state.clock() * 1000)
        self.state.save(instance, user)
        if field == "banned" and on:
            for session in self.state.find(instance, "session"):
                if session["user_id"] == user_id and session["status"] == "active":
                    self._end_session(instance, session, "revoked")
        self.emit(instance, "user.updated", user)
        return clerk_public(user)

    # Sessions

    def create_session(self, instance: str, params: dict[str, Any]) -> dict[str, Any]:
        user_id = params.get("user_id")
        if not isinstance(user_id, str) or not user_id:
            raise _error(422, "form_param_missing", "is missing", "user_id must be included.")
        user = self.get_user(instance, user_id)
        if user.get("banned"):
            raise _error(403, "user_banned", "user is banned", "This user is banned and cannot sign in.")
        now = int(self.state.clock() * 1000)
        session = {
            "id": new_id("sess_", 27),
            "object": "session",
            "client_id": new_id("client_", 27),
            "user_id": user_id,
            "status": "active",
            "last_active_at": now,
            "last_active_organization_id": params.get("active_organization_id"),
            "actor": None,
            "latest_activity": None,
            "expire_at": now + SESSION_LIFETIME_MS,
            "abandon_at": now + SESSION_LIFETIME_MS,
            "created_at": now,
            "updated_at": now,
        }
        self.state.save(instance, session)
        user["last_active_at"] = user["last_sign_in_at"] = now
        self.state.save(instance, user)
        self.emit(instance, "session.created", session)
        return session

    def get_session(self, instance: str, session_id: str) -> dict[str, Any]:
        session = self.state.load(session_id, instance, "session")
        if session is None:
            raise _error(404, "resource_not_found", "not found", f"No session was found with id {session_id}")
        return session

    def list_sessions(self, instance: str, params: dict[str, Any]) -> list[dict[str, Any]] | dict[str, Any]:
        if not params.get("user_id") and not params.get("client_id"):
            raise _error(400, "form_param_missing", "is missing", "Either user_id or client_id must be given.")
        sessions = [
            s
            for s in self.state.find(instance, "session")
            if params.get("user_id") in (None, s["user_id"])
            and params.get("client_id") in (None, s["client_id"])
            and params.get("status") in (None, s["status"])
        ]
        limit, offset = int(params.get("limit") or 10), int(params.get("offset") or 0)
        page = sessions[offset : offset + limit]
        if str(params.get("paginated", "")).lower() == "true":  # as @clerk/backend asks: the page and the count
            return {"data": page, "total_count": len(sessions)}
        return page

    def revoke_session(self, instance: str, session_id: str) -> dict[str, Any]:
        session = self.get_session(instance, session_id)
        if session["status"] != "active":
            raise _error(400, "session_not_active", "session is not active", f"The session is {session['status']}.")
        return self._end_session(instance, session, "revoked")

    def _end_session(self, instance: str, session: dict[str, Any], status: str) -> dict[str, Any]:
        session["status"] = status
        session["updated_at"] = int(self.state.clock() * 1000)
        self.state.save(instance, session)
        self.emit(instance, f"session.{status}", session)
        return session
