"""Stripe's errors, in Stripe's envelopes: the API's `{"error": {type, code, message, param, doc_url}}` and Connect
OAuth's `{"error", "error_description"}`. One place every Stripe piece raises them from."""

from __future__ import annotations

from typing import Any


class StripeAPIError(Exception):
    """An API error with Stripe's envelope: {"error": {type, code, message, param}}."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        decline_code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"error": {"type": type, "message": message}}
        if code:
            self.body["error"]["code"] = code
            self.body["error"]["doc_url"] = f"https://docs.stripe.com/error-codes/{code.replace('_', '-')}"
        if param:
            self.body["error"]["param"] = param
        if decline_code:
            self.body["error"]["decline_code"] = decline_code


class StripeOAuthError(Exception):
    """An OAuth error with Connect's envelope: {"error": ..., "error_description": ...}."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.status = status
        self.body = {"error": error, "error_description": description}


def no_such(kind: str, object_id: str, param: str = "id") -> StripeAPIError:
    return StripeAPIError(404, f"No such {kind}: '{object_id}'", code="resource_missing", param=param)


def missing_param(name: str) -> StripeAPIError:
    return StripeAPIError(400, f"Missing required param: {name}.", code="parameter_missing", param=name)
