"""Vendor errors as domain errors: one line each, never carrying a key."""

from __future__ import annotations

from dreamcli.errors import ExitCode, NotFound, RemoteError


class VendorError(RemoteError):
    """A vendor API refused a request or failed."""

    def __init__(
        self,
        vendor: str,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(f"{vendor}: {message}")
        self.vendor = vendor
        self.status = status
        self.code = code
        self.request_id = request_id  # the vendor's id of the failed request (Clerk's trace id), for its support


class VendorNotFound(NotFound):
    """A vendor object (user, product, price...) that does not exist."""

    def __init__(self, vendor: str, message: str, *, code: str | None = None) -> None:
        super().__init__(f"{vendor}: {message}")
        self.vendor = vendor
        self.code = code


class OAuthGrantError(VendorError):
    """A Stripe Connect authorization code that is unknown, used already or expired."""


class WebhookSignatureError(RemoteError):
    """A webhook whose signature is wrong, stale or missing."""

    exit_code = ExitCode.USAGE


class TokenError(RemoteError):
    """A JWT that must be rejected (expired, not yet valid, wrong key, issuer or algorithm...)."""

    exit_code = ExitCode.USAGE

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
