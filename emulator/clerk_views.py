"""Clerk's objects as the Backend API shows them: a user in full (every field of Clerk's User object, those dream
does not keep at their empty value), its email addresses and phone numbers verified by an admin, and what the store
keeps for itself (its ordering field, the password digest) never shown."""

from __future__ import annotations

from typing import Any

from emulator.vendor_state import public

CLERK_HIDDEN = frozenset({"created", "_password"})  # the store's ordering field; Clerk's own is created_at
USER_DEFAULTS: dict[str, Any] = {
    "external_id": None,
    "primary_email_address_id": None,
    "primary_phone_number_id": None,
    "primary_web3_wallet_id": None,
    "username": None,
    "first_name": None,
    "last_name": None,
    "locale": None,
    "image_url": "",
    "has_image": False,
    "public_metadata": {},
    "private_metadata": {},
    "unsafe_metadata": {},
    "email_addresses": [],
    "phone_numbers": [],
    "web3_wallets": [],
    "passkeys": [],
    "password_enabled": False,
    "two_factor_enabled": False,
    "totp_enabled": False,
    "backup_code_enabled": False,
    "mfa_enabled_at": None,
    "mfa_disabled_at": None,
    "password_last_updated_at": None,
    "external_accounts": [],
    "saml_accounts": [],
    "enterprise_accounts": [],
    "last_sign_in_at": None,
    "banned": False,
    "locked": False,
    "lockout_expires_in_seconds": None,
    "verification_attempts_remaining": None,
    "delete_self_enabled": True,
    "create_organization_enabled": True,
    "create_organizations_limit": None,
    "last_active_at": None,
    "legal_accepted_at": None,
}


# An identification made through the Backend API: verified by an admin.
ADMIN_VERIFIED = {
    "object": "verification_admin",
    "status": "verified",
    "strategy": "admin",
    "attempts": None,
    "expire_at": None,
}


def _email_view(address: dict[str, Any], created_at: int, updated_at: int) -> dict[str, Any]:
    """An EmailAddress as Clerk sends it: made through the Backend API, so verified by an admin."""
    return {
        "id": address["id"],
        "object": "email_address",
        "email_address": address["email_address"],
        "reserved": False,
        "verification": dict(ADMIN_VERIFIED),
        "linked_to": [],  # @clerk/backend maps over it: it must be there
        "matches_sso_connection": False,
        "created_at": address.get("created_at", created_at),
        "updated_at": address.get("updated_at", updated_at),
    }


def _phone_view(number: dict[str, Any], created_at: int, updated_at: int) -> dict[str, Any]:
    """A PhoneNumber as Clerk sends it, made through the Backend API: verified by an admin."""
    return {
        "id": number["id"],
        "object": "phone_number",
        "phone_number": number["phone_number"],
        "reserved_for_second_factor": False,
        "default_second_factor": False,
        "reserved": False,
        "verification": dict(ADMIN_VERIFIED),
        "linked_to": [],
        "backup_codes": None,
        "created_at": created_at,
        "updated_at": updated_at,
    }


def _user_view(user: dict[str, Any]) -> dict[str, Any]:
    view = {**USER_DEFAULTS, **{k: v for k, v in user.items() if k not in CLERK_HIDDEN}}
    view["email_addresses"] = [
        _email_view(address, user["created_at"], user["updated_at"]) for address in user.get("email_addresses", [])
    ]
    view["phone_numbers"] = [
        _phone_view(number, user["created_at"], user["updated_at"]) for number in user.get("phone_numbers", [])
    ]
    return view


def clerk_public(obj: dict[str, Any]) -> dict[str, Any]:
    """An object as the Backend API shows it (a user in full, see USER_DEFAULTS)."""
    if obj.get("object") == "user" and not obj.get("deleted"):
        return _user_view(obj)
    return public(obj, hidden=CLERK_HIDDEN)
