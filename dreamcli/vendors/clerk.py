"""A small Clerk Backend API client over httpx: the calls the platform makes, nothing more."""

from __future__ import annotations

import time
from typing import Any

import httpx

from dreamcli.vendors.errors import VendorError, VendorNotFound

MAX_RETRIES = 2


class ClerkClient:
    """One Clerk instance (its secret key picks it). `api_url` ends before `/v1`."""

    def __init__(
        self, http: httpx.Client, secret_key: str, api_url: str = "https://api.clerk.com", *, sleep: Any = time.sleep
    ) -> None:
        self._http = http
        self._secret_key = secret_key
        self._api = api_url.rstrip("/") + "/v1"
        self._sleep = sleep

    def __repr__(self) -> str:  # never print the key
        return f"ClerkClient(api={self._api!r})"

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self._secret_key}", "Accept": "application/json"}
        for attempt in range(MAX_RETRIES + 1):
            try:
                response = self._http.request(method, self._api + path, headers=headers, **kwargs)
            except httpx.HTTPError as exc:
                raise VendorError("clerk", f"could not reach {self._api}: {type(exc).__name__}") from None
            if response.status_code == 429 and attempt < MAX_RETRIES:
                self._sleep(min(float(response.headers.get("retry-after", "1") or 1), 10.0))
                continue
            break
        if response.is_success:
            return response.json()
        raise self._error(response)

    @staticmethod
    def _error(response: httpx.Response) -> Exception:
        try:
            first = response.json()["errors"][0]
            message, code = first.get("long_message") or first.get("message"), first.get("code")
        except (ValueError, KeyError, IndexError, TypeError):
            message, code = f"HTTP {response.status_code}", None
        if response.status_code == 404:
            return VendorNotFound("clerk", message, code=code)
        return VendorError("clerk", message, status=response.status_code, code=code, request_id=_trace_id(response))

    def create_user(
        self,
        email: str | None = None,
        *,
        first_name: str | None = None,
        public_metadata: dict[str, Any] | None = None,
        external_id: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if email:
            body["email_address"] = [email]
        if first_name:
            body["first_name"] = first_name
        if public_metadata:
            body["public_metadata"] = public_metadata
        if external_id:
            body["external_id"] = external_id
        return self._request("POST", "/users", json=body)

    def get_user(self, user_id: str) -> dict[str, Any]:
        return self._request("GET", f"/users/{user_id}")

    def list_users(self, *, email: str | None = None, limit: int = 10, offset: int = 0) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if email:
            params["email_address"] = email
        return self._request("GET", "/users", params=params)

    def update_metadata(
        self, user_id: str, *, public: dict[str, Any] | None = None, private: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Deep-merges; a None value deletes that key."""
        body: dict[str, Any] = {}
        if public is not None:
            body["public_metadata"] = public
        if private is not None:
            body["private_metadata"] = private
        return self._request("PATCH", f"/users/{user_id}/metadata", json=body)

    def delete_user(self, user_id: str) -> dict[str, Any]:
        return self._request("DELETE", f"/users/{user_id}")

    def jwks(self) -> dict[str, Any]:
        return self._request("GET", "/jwks")


def _trace_id(response: httpx.Response) -> str | None:
    """Clerk's id of a failed request: `clerk_trace_id` in its error body, else Cloudflare's `cf-ray` header."""
    try:
        trace = response.json().get("clerk_trace_id")
    except (ValueError, AttributeError):
        trace = None
    return trace if isinstance(trace, str) and trace else response.headers.get("cf-ray")
