"""Every Stripe call of the platform, through the official stripe SDK.

`HttpxStripeHTTPClient` lets the SDK send its requests through any httpx client:
the emulator in-process (a transport, no port), the emulator on loopback, or the
real api.stripe.com. Nothing else changes between them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import stripe

from dreamcli.vendors.errors import OAuthGrantError, VendorError, VendorNotFound, WebhookSignatureError


class HttpxStripeHTTPClient(stripe.HTTPClient):
    """A `stripe.HTTPClient` over an httpx client the caller owns."""

    name = "httpx-dream"

    def __init__(self, client: httpx.Client) -> None:
        super().__init__()
        self._client = client

    def request(self, method: str, url: str, headers: Mapping[str, str] | None, post_data: Any = None, **_: Any):
        try:
            response = self._client.request(method.upper(), url, headers=dict(headers or {}), content=post_data)
        except httpx.HTTPError as exc:
            raise stripe.APIConnectionError(
                f"could not reach Stripe at {url.split('?')[0]}: {type(exc).__name__}"
            ) from None
        return response.text, response.status_code, response.headers

    def request_stream(self, method: str, url: str, headers: Mapping[str, str] | None, post_data: Any = None, **_: Any):
        text, status, headers_out = self.request(method, url, headers, post_data)
        return text.encode(), status, headers_out

    def close(self) -> None:  # the httpx client belongs to the caller
        pass


@dataclass(frozen=True)
class StripeSettings:
    secret_key: str
    client_id: str
    api_base: str = "https://api.stripe.com"
    connect_base: str = "https://connect.stripe.com"
    webhook_secret: str | None = None
    connect_webhook_secret: str | None = None

    def __repr__(self) -> str:  # never print a key
        return f"StripeSettings(api_base={self.api_base!r}, connect_base={self.connect_base!r})"


@dataclass(frozen=True)
class ConnectedAccount:
    stripe_user_id: str
    access_token: str


def _fail(exc: stripe.StripeError) -> Exception:
    message = exc.user_message or getattr(exc, "_message", None) or str(exc) or type(exc).__name__
    code = getattr(exc, "code", None)
    if isinstance(exc, stripe.oauth_error.OAuthError):
        if code == "invalid_grant":
            return OAuthGrantError("stripe", f"{code}: {message}", status=exc.http_status, code=code)
        return VendorError("stripe", f"{code}: {message}", status=exc.http_status, code=code)
    if exc.http_status == 404 or code == "resource_missing":
        return VendorNotFound("stripe", message, code=code)
    return VendorError("stripe", message, status=exc.http_status, code=code)


class StripeGateway:
    """The platform's Stripe operations; `account` names a connected account (`Stripe-Account`)."""

    def __init__(self, settings: StripeSettings, http: httpx.Client, *, max_network_retries: int = 2) -> None:
        self.settings = settings
        self.client = stripe.StripeClient(
            settings.secret_key,
            base_addresses={"api": settings.api_base, "connect": settings.connect_base},
            client_id=settings.client_id,
            http_client=HttpxStripeHTTPClient(http),
            max_network_retries=max_network_retries,
        )

    @staticmethod
    def _options(account: str | None, idempotency_key: str | None = None) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if account:
            options["stripe_account"] = account
        if idempotency_key:
            options["idempotency_key"] = idempotency_key
        return options

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except stripe.StripeError as exc:
            raise _fail(exc) from None

    # Connect OAuth

    def authorize_url(self, state: str, redirect_uri: str, **extra: str) -> str:
        params = {"response_type": "code", "scope": "read_write", "state": state, "redirect_uri": redirect_uri, **extra}
        return self.client.oauth.authorize_url(params)  # type: ignore[arg-type]

    def exchange_code(self, code: str) -> ConnectedAccount:
        token = self._call(self.client.oauth.token, {"grant_type": "authorization_code", "code": code})
        return ConnectedAccount(stripe_user_id=token["stripe_user_id"], access_token=token["access_token"])

    def deauthorize(self, stripe_user_id: str) -> None:
        self._call(self.client.oauth.deauthorize, {"stripe_user_id": stripe_user_id})

    # Products and prices (on a connected account)

    def create_product(
        self,
        account: str | None,
        name: str,
        metadata: dict[str, str],
        *,
        description: str | None = None,
        idempotency_key: str | None = None,
    ) -> Any:
        params: dict[str, Any] = {"name": name, "metadata": metadata}
        if description:
            params["description"] = description
        return self._call(self.client.v1.products.create, params, self._options(account, idempotency_key))

    def retrieve_product(self, account: str | None, product_id: str) -> Any:
        return self._call(self.client.v1.products.retrieve, product_id, None, self._options(account))

    def update_product(self, account: str | None, product_id: str, **params: Any) -> Any:
        return self._call(self.client.v1.products.update, product_id, params, self._options(account))

    def create_monthly_price(
        self,
        account: str | None,
        product_id: str,
        unit_amount: int,
        currency: str,
        metadata: dict[str, str],
        *,
        idempotency_key: str | None = None,
    ) -> Any:
        params = {
            "product": product_id,
            "unit_amount": unit_amount,
            "currency": currency,
            "recurring": {"interval": "month"},
            "metadata": metadata,
        }
        return self._call(self.client.v1.prices.create, params, self._options(account, idempotency_key))

    def retrieve_price(self, account: str | None, price_id: str) -> Any:
        return self._call(self.client.v1.prices.retrieve, price_id, None, self._options(account))

    def update_price(self, account: str | None, price_id: str, **params: Any) -> Any:
        return self._call(self.client.v1.prices.update, price_id, params, self._options(account))

    def list_prices(self, account: str | None, product_id: str | None = None) -> list[Any]:
        params: dict[str, Any] = {"limit": 100}
        if product_id:
            params["product"] = product_id
        return list(self._call(self.client.v1.prices.list, params, self._options(account)).data)

    # Checkout, subscriptions, webhooks

    def create_subscription_checkout(
        self,
        account: str | None,
        price_id: str,
        *,
        success_url: str,
        cancel_url: str | None = None,
        customer_email: str | None = None,
        client_reference_id: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> Any:
        params: dict[str, Any] = {
            "mode": "subscription",
            "line_items": [{"price": price_id, "quantity": 1}],
            "success_url": success_url,
        }
        for name, value in (
            ("cancel_url", cancel_url),
            ("customer_email", customer_email),
            ("client_reference_id", client_reference_id),
        ):
            if value:
                params[name] = value
        if metadata:
            params["metadata"] = metadata
            params["subscription_data"] = {"metadata": metadata}
        return self._call(self.client.v1.checkout.sessions.create, params, self._options(account))

    def update_subscription(self, account: str | None, subscription_id: str, **params: Any) -> Any:
        return self._call(self.client.v1.subscriptions.update, subscription_id, params, self._options(account))

    def list_subscriptions(self, account: str | None, status: str = "active") -> list[dict[str, Any]]:
        """Every subscription of the account in `status` (all pages), as plain dicts."""
        found = self._call(self.client.v1.subscriptions.list, {"status": status, "limit": 100}, self._options(account))
        return self._call(lambda: [subscription.to_dict() for subscription in found.auto_paging_iter()])

    def cancel_subscription(self, account: str | None, subscription_id: str) -> Any:
        return self._call(self.client.v1.subscriptions.cancel, subscription_id, None, self._options(account))

    def create_webhook_endpoint(
        self, url: str, events: list[str], *, connect: bool = False, account: str | None = None
    ) -> Any:
        params: dict[str, Any] = {"url": url, "enabled_events": events}
        if connect:
            params["connect"] = True
        return self._call(self.client.v1.webhook_endpoints.create, params, self._options(account))

    def request(
        self, method: str, path: str, params: dict[str, Any] | None = None, account: str | None = None
    ) -> tuple[dict[str, Any], str | None]:
        """Any API call (as `stripe post|get|delete PATH` makes one): the answer and the request's Request-Id."""
        options: dict[str, Any] = {"stripe_account": account} if account else {}
        response = self._call(self.client.raw_request, method, path, **(params or {}), **options)
        return self.client.deserialize(response, api_mode="V1").to_dict(), response.request_id

    def list_events(self, account: str | None, limit: int = 100) -> list[dict[str, Any]]:
        """The account's newest events, newest first."""
        found = self._call(self.client.v1.events.list, {"limit": limit}, self._options(account))
        return [event.to_dict() for event in found.data]

    @staticmethod
    def construct_event(
        payload: bytes | str, signature: str | None, secret: str, tolerance: int = 300, now: float | None = None
    ) -> stripe.Event:
        """Verify `Stripe-Signature` and parse the event (stale, wrong or missing signatures are refused).

        Stripe's libraries refuse only timestamps older than `tolerance`; a signature dated ahead is refused here too
        (past `tolerance`): once captured it could be replayed until its date, years on."""
        stamps = [part[2:] for part in (signature or "").split(",") if part.strip().startswith("t=")]
        moment = time.time() if now is None else now
        if tolerance and stamps and stamps[0].strip().isdigit() and int(stamps[0]) > moment + tolerance:
            raise WebhookSignatureError("stripe webhook refused: its timestamp is in the future, past the tolerance")
        try:
            return stripe.Webhook.construct_event(payload, signature or "", secret, tolerance=tolerance)
        except stripe.SignatureVerificationError as exc:
            raise WebhookSignatureError(f"stripe webhook refused: {exc.user_message or exc}") from None
        except ValueError as exc:
            raise WebhookSignatureError(f"stripe webhook refused: payload is not JSON ({exc})") from None
