"""The stripe SDK against the emulator, in-process and over a loopback socket."""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qs, urlparse

import pytest
import stripe

from dreamcli.vendors.errors import OAuthGrantError, VendorError, VendorNotFound, WebhookSignatureError
from dreamcli.vendors.stripe_gateway import StripeGateway, StripeSettings


def _follow_authorize(reached, url: str) -> dict[str, list[str]]:
    response = reached.http.get(url, follow_redirects=False)
    assert response.status_code == 302
    location = response.headers["location"]
    assert location.startswith("http://localhost:5173/callback?")
    return parse_qs(urlparse(location).query)


def _connect(reached) -> str:
    gateway = reached.vendors.stripe
    answer = _follow_authorize(reached, gateway.authorize_url("st_1", "http://localhost:5173/callback"))
    return gateway.exchange_code(answer["code"][0]).stripe_user_id


def test_oauth_round_trip_and_single_use_code(reached):
    gateway = reached.vendors.stripe
    url = gateway.authorize_url("state-123", "http://localhost:5173/callback")
    assert url.startswith(f"{reached.base_url}/stripe/oauth/authorize?")
    answer = _follow_authorize(reached, url)
    assert answer["state"] == ["state-123"] and answer["code"][0].startswith("ac_")
    account = gateway.exchange_code(answer["code"][0])
    assert account.stripe_user_id.startswith("acct_") and account.access_token.startswith("sk_test_")
    with pytest.raises(OAuthGrantError, match="invalid_grant: Authorization code already used"):
        gateway.exchange_code(answer["code"][0])
    # Stripe revokes the connection when a code is replayed: the access token no longer works.
    as_account = StripeGateway(
        StripeSettings(account.access_token, "ca_x", reached.base_url + "/stripe", reached.base_url + "/stripe"),
        reached.http,
    )
    with pytest.raises(VendorError, match="Invalid API Key provided"):
        as_account.create_product(None, "x", {})


def test_oauth_unknown_and_expired_codes(reached, clock):
    gateway = reached.vendors.stripe
    with pytest.raises(OAuthGrantError, match="Authorization code does not exist: ac_nope"):
        gateway.exchange_code("ac_nope")
    answer = _follow_authorize(reached, gateway.authorize_url("s", "http://localhost:5173/callback"))
    clock.advance(301)
    with pytest.raises(OAuthGrantError, match="Authorization code expired"):
        gateway.exchange_code(answer["code"][0])


def test_oauth_denied(reached):
    gateway = reached.vendors.stripe
    answer = _follow_authorize(
        reached, gateway.authorize_url("s9", "http://localhost:5173/callback", emulator_decision="deny")
    )
    assert answer == {
        "error": ["access_denied"],
        "error_description": ["The user denied your request"],
        "state": ["s9"],
    }


def test_deauthorize_revokes_the_access_token(reached):
    gateway = reached.vendors.stripe
    answer = _follow_authorize(reached, gateway.authorize_url("s", "http://localhost:5173/callback"))
    account = gateway.exchange_code(answer["code"][0])
    gateway.deauthorize(account.stripe_user_id)
    as_account = StripeGateway(
        StripeSettings(account.access_token, "ca_x", reached.base_url + "/stripe", reached.base_url + "/stripe"),
        reached.http,
    )
    with pytest.raises(VendorError, match="Invalid API Key provided"):
        as_account.create_product(None, "x", {})
    with pytest.raises(VendorError, match="No such user"):
        gateway.deauthorize("acct_unknown")


def test_products_and_prices_live_on_the_connected_account(reached):
    gateway = reached.vendors.stripe
    account = _connect(reached)
    other = _connect(reached)
    metadata = {"platformId": "plt_1", "tierName": "free", "limit": "100"}
    product = gateway.create_product(account, "Free Plan", metadata)
    price = gateway.create_monthly_price(account, product.id, 0, "usd", metadata)
    assert product.metadata.to_dict() == metadata
    assert (price.unit_amount, price.currency, price.recurring.interval, price.product) == (
        0,
        "usd",
        "month",
        product.id,
    )
    assert gateway.retrieve_price(account, price.id).metadata["limit"] == "100"
    with pytest.raises(VendorNotFound, match=f"No such product: '{product.id}'"):
        gateway.retrieve_product(other, product.id)
    with pytest.raises(VendorNotFound, match="No such product"):
        gateway.retrieve_product(None, product.id)  # the platform's own account does not see it either
    updated = gateway.update_product(account, product.id, name="Free", metadata={"limit": "200", "tierName": ""})
    assert updated.name == "Free" and updated.metadata.to_dict() == {"platformId": "plt_1", "limit": "200"}
    assert [p.id for p in gateway.list_prices(account, product.id)] == [price.id]
    # the raw SDK maps the emulator's envelope to its own exception class, param included
    with pytest.raises(stripe.InvalidRequestError, match="Missing required param: currency") as caught:
        gateway.client.v1.prices.create({"product": product.id, "unit_amount": 5}, {"stripe_account": account})  # type: ignore[typeddict-item]
    assert caught.value.param == "currency" and caught.value.http_status == 400


def test_unknown_stripe_account_is_refused(reached):
    with pytest.raises(VendorError, match="does not have access to account 'acct_nope'"):
        reached.vendors.stripe.create_product("acct_nope", "x", {})


def test_wrong_api_key_is_401_and_the_key_is_not_echoed(reached):
    bad = StripeGateway(
        StripeSettings(
            "sk_test_wrongwrongwrongwrong1234", "ca_x", reached.base_url + "/stripe", reached.base_url + "/stripe"
        ),
        reached.http,
    )
    with pytest.raises(VendorError) as caught:
        bad.create_product(None, "x", {})
    assert caught.value.status == 401
    assert "sk_test_wrongwrongwrongwrong1234" not in str(caught.value) and "1234" in str(caught.value)


def test_idempotency_keys(reached):
    gateway = reached.vendors.stripe
    first = gateway.create_product(None, "Pro", {"a": "1"}, idempotency_key="key-1")
    again = gateway.create_product(None, "Pro", {"a": "1"}, idempotency_key="key-1")
    assert again.id == first.id
    with pytest.raises(VendorError, match="Keys for idempotent requests can only be used with the same parameters"):
        gateway.create_product(None, "Other", {"a": "1"}, idempotency_key="key-1")
    assert gateway.create_product(None, "Pro", {"a": "1"}, idempotency_key="key-2").id != first.id


def test_unknown_route_has_stripes_envelope(reached):
    response = reached.http.get(f"{reached.base_url}/stripe/v1/nothing", headers={"Authorization": "Bearer x"})
    assert response.status_code == 404
    assert response.json()["error"]["message"].startswith("Unrecognized request URL (GET: /stripe/v1/nothing)")


def _events(receiver, secret):
    return [
        stripe.Webhook.construct_event(r["body"], r["headers"]["stripe-signature"], secret) for r in receiver.received
    ]


# What a paid subscription checkout sends, in causal order (Stripe's own order is not guaranteed).
PAID_CHECKOUT = (
    "customer.created",
    "customer.subscription.created",
    "invoice.created",
    "invoice.finalized",
    "invoice.paid",
    "invoice.payment_succeeded",
    "checkout.session.completed",
)


def test_checkout_subscription_lifecycle_emits_signed_events(reached, receiver):
    recorder, hook_url = receiver
    gateway = reached.vendors.stripe
    account = _connect(reached)
    endpoint = gateway.create_webhook_endpoint(hook_url, ["*"], connect=True)
    assert endpoint.secret.startswith("whsec_")
    product = gateway.create_product(account, "Pro", {"tierName": "pro"})
    price = gateway.create_monthly_price(account, product.id, 2900, "usd", {"tierName": "pro"})
    session = gateway.create_subscription_checkout(
        account,
        price.id,
        success_url="http://localhost:5173/ok",
        customer_email="c@example.com",
        client_reference_id="user_9",
        metadata={"platformId": "plt_1"},
    )
    assert session.status == "open" and session.url.startswith(reached.base_url)
    completed = reached.http.post(f"{reached.base_url}/_emulator/stripe/checkout/{session.id}/complete")
    assert completed.status_code == 200 and completed.json()["payment_status"] == "paid"
    assert reached.emulator.settle()
    catalog = [e.type for e in _events(recorder, endpoint.secret)][:2]
    assert catalog == ["product.created", "price.created"]
    events = _events(recorder, endpoint.secret)[2:]
    assert [e.type for e in events] == list(PAID_CHECKOUT)
    by_type = {e.type: e for e in events}
    assert all(e.account == account for e in events)
    assert all(e.request.id is None for e in events)  # paid on the hosted page: no API request caused them
    session_event, created = by_type["checkout.session.completed"], by_type["customer.subscription.created"]
    assert session_event.data.object.client_reference_id == "user_9"
    subscription_id = created.data.object.id
    assert created.data.object.metadata["platformId"] == "plt_1"
    invoice = by_type["invoice.paid"].data.object
    assert invoice.status == "paid" and invoice.amount_paid == 2900 and invoice.billing_reason == "subscription_create"
    assert invoice.parent.subscription_details.subscription == subscription_id
    assert invoice.lines.data[0].pricing.price_details.price == price.id
    assert created.data.object.latest_invoice == invoice.id
    assert by_type["invoice.created"].data.object.status == "draft"
    again = reached.http.post(f"{reached.base_url}/_emulator/stripe/checkout/{session.id}/complete")
    assert again.status_code == 400 and "no longer active" in again.json()["error"]["message"]

    cheaper = gateway.create_monthly_price(account, product.id, 900, "usd", {})
    item = created.data.object["items"].data[0]
    assert item.current_period_end > item.current_period_start  # on the item since API version 2025-03-31
    gateway.update_subscription(account, subscription_id, items=[{"id": item.id, "price": cheaper.id}])
    gateway.cancel_subscription(account, subscription_id)
    assert reached.emulator.settle()
    events = _events(recorder, endpoint.secret)[9:]
    assert [e.type for e in events] == [
        "price.created",
        "invoiceitem.created",  # the prorations of the price change (credit, then charge), as Stripe makes them
        "invoiceitem.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
    ]
    assert [e.data.object.proration for e in events[1:3]] == [True, True]
    assert events[1].data.object.amount < 0 < events[2].data.object.amount
    events = events[3:]
    assert [i.price.id for i in events[0].data.object["items"].data] == [cheaper.id]
    assert events[1].data.object.status == "canceled"
    # caused by API calls: the events name the request (the id the response carried)
    assert all(e.request.id and e.request.id.startswith("req_") for e in events)
    log = [
        e
        for e in reached.http.get(
            f"{reached.base_url}/_emulator/stripe/deliveries", headers=reached.emulator.admin_headers()
        ).json()
        if e["url"] == hook_url
    ]
    assert [(entry["event_type"], entry["status"], entry["attempt"]) for entry in log] == [
        (event_type, 200, 1)
        for event_type in (
            "product.created",
            "price.created",
            *PAID_CHECKOUT,
            "price.created",
            "invoiceitem.created",
            "invoiceitem.created",
            "customer.subscription.updated",
            "customer.subscription.deleted",
        )
    ]


def test_platform_events_have_no_account_and_skip_connect_endpoints(reached, receiver):
    recorder, hook_url = receiver
    gateway = reached.vendors.stripe
    own = gateway.create_webhook_endpoint(hook_url, ["checkout.session.completed"])
    gateway.create_webhook_endpoint(hook_url + "?connect", ["*"], connect=True)
    product = gateway.create_product(None, "dream-api", {})
    price = gateway.create_monthly_price(None, product.id, 1500, "usd", {})
    session = gateway.create_subscription_checkout(None, price.id, success_url="http://localhost:5173/ok")
    reached.http.post(f"{reached.base_url}/_emulator/stripe/checkout/{session.id}/complete")
    assert reached.emulator.settle()
    assert len(recorder.received) == 1
    event = stripe.Webhook.construct_event(
        recorder.received[0]["body"], recorder.received[0]["headers"]["stripe-signature"], own.secret
    )
    assert event.type == "checkout.session.completed" and "account" not in json.loads(recorder.received[0]["body"])


def test_webhook_signatures_are_checked(reached, receiver, clock):
    recorder, hook_url = receiver
    gateway = reached.vendors.stripe
    endpoint = gateway.create_webhook_endpoint(hook_url, ["checkout.session.completed"])
    product = gateway.create_product(None, "p", {})
    price = gateway.create_monthly_price(None, product.id, 100, "usd", {})
    session = gateway.create_subscription_checkout(None, price.id, success_url="http://x/ok")
    reached.http.post(f"{reached.base_url}/_emulator/stripe/checkout/{session.id}/complete")
    assert reached.emulator.settle()
    body, signature = recorder.received[0]["body"], recorder.received[0]["headers"]["stripe-signature"]
    # the emulator's clock is the fake one: verify against a signature made "now" for freshness
    fresh = stripe.WebhookSignature.generate_signature_header(body.decode(), endpoint.secret)
    assert StripeGateway.construct_event(body, fresh, endpoint.secret).type == "checkout.session.completed"
    assert signature.startswith(f"t={int(clock())},v1=")
    with pytest.raises(WebhookSignatureError, match="stripe webhook refused"):
        StripeGateway.construct_event(body, fresh, "whsec_wrong")
    with pytest.raises(WebhookSignatureError, match="stripe webhook refused"):
        StripeGateway.construct_event(body + b" ", fresh, endpoint.secret)
    stale = stripe.WebhookSignature.generate_signature_header(body.decode(), endpoint.secret, timestamp=1)
    with pytest.raises(WebhookSignatureError, match="Timestamp outside the tolerance zone"):
        StripeGateway.construct_event(body, stale, endpoint.secret)
    with pytest.raises(WebhookSignatureError):
        StripeGateway.construct_event(body, None, endpoint.secret)
    ahead = stripe.WebhookSignature.generate_signature_header(
        body.decode(), endpoint.secret, timestamp=int(time.time()) + 10 * 365 * 86400
    )
    with pytest.raises(WebhookSignatureError, match="its timestamp is in the future, past the tolerance"):
        StripeGateway.construct_event(body, ahead, endpoint.secret)  # 10 years ahead: replayable for 10 years
    nearly = stripe.WebhookSignature.generate_signature_header(
        body.decode(), endpoint.secret, timestamp=int(time.time()) + 60
    )
    assert StripeGateway.construct_event(body, nearly, endpoint.secret).type == "checkout.session.completed"  # skew
