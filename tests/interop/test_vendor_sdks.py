"""Stripe and Clerk served at the root of their own ports, as the official clients take them: a base URL and nothing
else. stripe-python, stripe-node, @clerk/backend and clerk-backend-api run unchanged (no wrapper, no proxy); curl's
Basic auth (`-u sk_test_...:`) works as in Stripe's docs."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest
import stripe

from emulator.serve import DEFAULT_PORTS, Serving, client_settings
from tests.peers import NODE_PEERS

pytestmark = pytest.mark.socket


@pytest.fixture
def served(tmp_path):
    serving = Serving(tmp_path / "emulator.db", ports={name: 0 for name in DEFAULT_PORTS}, log=lambda line: None)
    urls = serving.start()
    try:
        yield serving, urls
    finally:
        serving.stop()


def stripe_client(serving, urls):
    """stripe-python as anyone would point it at another Stripe: a key and a base address."""
    key = serving.emulator.config()["stripe"]["secret_key"]
    return stripe.StripeClient(key, base_addresses={"api": urls["stripe"]})


def monthly_checkout(client, email, quantity=1, unit_amount=2900):
    """A customer, a product with a monthly price, and a subscription checkout of it: (customer, price, session)."""
    customer = client.v1.customers.create(params={"email": email})
    product = client.v1.products.create(params={"name": "Pro"})
    price = client.v1.prices.create(
        params={
            "product": product.id,
            "unit_amount": unit_amount,
            "currency": "usd",
            "recurring": {"interval": "month"},
        }
    )
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "subscription",
            "customer": customer.id,
            "line_items": [{"price": price.id, "quantity": quantity}],
            "success_url": "http://localhost:5173/ok",
        }
    )
    return customer, price, session


def test_stripe_python_unchanged_at_the_root(served):
    serving, urls = served
    client = stripe_client(serving, urls)
    customer, _, session = monthly_checkout(client, "root@example.com")
    assert session.id.startswith("cs_") and session.customer == customer.id
    assert client.v1.customers.retrieve(customer.id).email == "root@example.com"
    assert customer.id in [c.id for c in client.v1.customers.list(params={"limit": 100}).data]
    with pytest.raises(stripe.AuthenticationError):
        stripe.StripeClient("sk_test_wrong", base_addresses={"api": urls["stripe"]}).v1.customers.list()


def test_basic_auth_and_request_ids_as_stripes_docs_use_them(served):
    serving, urls = served
    key = serving.emulator.config()["stripe"]["secret_key"]
    answer = httpx.post(f"{urls['stripe']}/v1/customers", auth=(key, ""), data={"email": "curl@example.com"})
    assert answer.status_code == 200 and answer.json()["email"] == "curl@example.com"
    assert answer.headers["request-id"].startswith("req_")
    refused = httpx.get(f"{urls['stripe']}/v1/customers", auth=("sk_test_wrong", ""))
    assert refused.status_code == 401 and refused.json()["error"]["type"] == "invalid_request_error"
    assert refused.headers["request-id"].startswith("req_")
    garbled = httpx.get(f"{urls['stripe']}/v1/customers", headers={"Authorization": "Basic %%%"})
    assert garbled.status_code == 401 and "error" in garbled.json()
    # The prefixed mount is still there, and both answer from the same store.
    again = httpx.get(f"{urls['vendors']}/stripe/v1/customers/{answer.json()['id']}", auth=(key, ""))
    assert again.status_code == 200 and again.json()["email"] == "curl@example.com"


def test_clerk_at_the_root_and_the_printed_settings(served):
    serving, urls = served
    secret = next(iter(serving.emulator.config()["clerk"]["instances"].values()))["secret_key"]
    made = httpx.post(
        f"{urls['clerk']}/v1/users",
        headers={"Authorization": f"Bearer {secret}"},
        json={"email_address": ["root@example.com"]},
    )
    assert made.status_code == 200, made.text
    listed = httpx.get(f"{urls['clerk']}/v1/users", headers={"Authorization": f"Bearer {secret}"})
    assert made.json()["id"] in [user["id"] for user in listed.json()]
    lines = client_settings(urls)
    assert any(f"stripe.api_base = '{urls['stripe']}'" in line for line in lines)
    assert any(f"apiUrl: '{urls['clerk']}'" in line for line in lines)


def run_node(script: str, *args: str) -> dict[str, object]:
    """Run a conformance script of tests/interop/node with the npm peers (the test marks itself
    `peer("npm-peers")`); its {passed, total, failures}."""
    out = subprocess.run(
        ["node", str(Path(__file__).with_name("node") / script), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NODE_PATH": str(NODE_PEERS), "CLERK_TELEMETRY_DISABLED": "1"},
    )
    assert out.returncode == 0, out.stderr
    report: dict[str, object] = json.loads(out.stdout)
    return report


@pytest.mark.peer("npm-peers")
def test_stripe_node_unchanged_at_the_root(served):
    """stripe-node 23 with nothing but host, port and protocol: no wrapped HTTP client, no proxy."""
    serving, urls = served
    config = serving.emulator.config()["stripe"]
    report = run_node("stripe_root.cjs", config["secret_key"], urls["stripe"], config["client_id"])
    assert report["failures"] == [] and report["passed"] == report["total"] == 24, report


@pytest.mark.peer("npm-peers")
def test_clerk_backend_unchanged_at_the_root(served):
    """@clerk/backend 3 with nothing but apiUrl: create, get, list (with its count), metadata, update, delete."""
    serving, urls = served
    secret = serving.emulator.config()["clerk"]["instances"]["end-user-api"]["secret_key"]
    report = run_node("clerk_backend.cjs", secret, urls["clerk"])
    assert report["failures"] == [] and report["passed"] == report["total"] == 8, report  # the script's 8 checks


@pytest.mark.peer("npm-peers")
def test_clerk_session_tokens_pass_clerk_backends_own_checks(served):
    """verifyToken and authenticateRequest of @clerk/backend, with the instance's Clerk-format publishable key."""
    serving, urls = served
    instance = serving.emulator.config()["clerk"]["instances"]["end-user-api"]
    clerk = serving.emulator.clerk
    user = clerk.create_user("end-user-api", {"email_address": ["tok@example.com"]})
    token = clerk.mint_token("end-user-api", user["id"])
    azp = instance["authorized_parties"][0]
    assert base64.b64decode(instance["publishable_key"].removeprefix("pk_test_") + "==").decode().endswith(".test$")
    report = run_node(
        "clerk_tokens.cjs", instance["secret_key"], instance["publishable_key"], urls["clerk"], token, user["id"], azp
    )
    assert report["failures"] == [] and report["passed"] == report["total"] == 4, report  # the script's 4 checks


def test_clerk_backend_api_python_unchanged_at_the_root(served):
    """clerk-backend-api 7 (pydantic models that require every field of the User object) with only server_url."""
    from clerk_backend_api import Clerk
    from clerk_backend_api.models import ClerkErrors

    serving, urls = served
    secret = serving.emulator.config()["clerk"]["instances"]["end-user-api"]["secret_key"]
    with Clerk(bearer_auth=secret, server_url=f"{urls['clerk']}/v1") as clerk:
        user = clerk.users.create(email_address=["py@example.com"], public_metadata={"plan": "free"})
        assert user.email_addresses[0].email_address == "py@example.com"
        assert clerk.users.get(user_id=user.id).public_metadata == {"plan": "free"}
        listed = clerk.users.list(request={"email_address": ["py@example.com"]})
        assert [u.id for u in listed] == [user.id]
        assert clerk.users.count(request={"email_address": ["py@example.com"]}).total_count == 1
        merged = clerk.users.update_metadata(user_id=user.id, public_metadata={"publishableKey": "pk_live_x"})
        assert merged.public_metadata == {"plan": "free", "publishableKey": "pk_live_x"}
        with pytest.raises(ClerkErrors):
            clerk.users.get(user_id="user_nothere")
        assert clerk.users.delete(user_id=user.id).deleted is True


def test_stripe_versions_pages_backwards_and_items_without_id(served):
    """Stripe-Version refused when unknown; ending_before pages back; a subscription item without an id is added."""
    serving, urls = served
    key = serving.emulator.config()["stripe"]["secret_key"]
    unknown = httpx.get(f"{urls['stripe']}/v1/customers", auth=(key, ""), headers={"Stripe-Version": "2031-01-01.zeta"})
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "api_version_invalid"
    older = httpx.get(f"{urls['stripe']}/v1/customers", auth=(key, ""), headers={"Stripe-Version": "2025-03-31.basil"})
    assert older.status_code == 200  # a real release: accepted (rendered at the pinned version)
    client = stripe_client(serving, urls)  # sends its pinned version
    made = [client.v1.customers.create(params={"email": f"c{i}@example.com"}).id for i in range(5)]
    newest_first = made[::-1]
    page = client.v1.customers.list(params={"limit": 2, "ending_before": newest_first[3]})
    assert [c.id for c in page.data] == newest_first[1:3] and page.has_more
    both = httpx.get(
        f"{urls['stripe']}/v1/customers",
        auth=(key, ""),
        params={"starting_after": made[0], "ending_before": made[1]},
    )
    assert both.status_code == 400

    _, price, session = monthly_checkout(client, "items@example.com", unit_amount=900)
    serving.emulator.stripe.complete_checkout_session(None, session.id)
    subscription_id = client.v1.checkout.sessions.retrieve(session.id).subscription
    extra = client.v1.prices.create(
        params={"product": price.product, "unit_amount": 100, "currency": "usd", "recurring": {"interval": "month"}}
    )
    updated = client.v1.subscriptions.update(subscription_id, params={"items": [{"price": extra.id}]})
    assert [item.price.id for item in updated["items"].data] == [price.id, extra.id]  # added, as Stripe does
    assert all(item.current_period_end > item.current_period_start for item in updated["items"].data)
    assert "current_period_end" not in updated


def test_unknown_parameters_are_refused_as_stripe_refuses_them(served):
    serving, urls = served
    key = serving.emulator.config()["stripe"]["secret_key"]
    typo = httpx.post(f"{urls['stripe']}/v1/customers", auth=(key, ""), data={"emial": "x@example.com"})
    assert typo.status_code == 400 and typo.json()["error"] == {
        "type": "invalid_request_error",
        "code": "parameter_unknown",
        "param": "emial",
        "message": "Received unknown parameter: emial",
        "doc_url": "https://docs.stripe.com/error-codes/parameter-unknown",
    }
    client = stripe.StripeClient(key, base_addresses={"api": urls["stripe"]})
    with pytest.raises(stripe.InvalidRequestError, match="Received unknown parameter: colour"):
        client.v1.products.list(params={"colour": "red"})  # type: ignore[typeddict-unknown-key]
    unauthenticated = httpx.post(f"{urls['stripe']}/v1/customers", data={"emial": "x"})
    assert unauthenticated.status_code == 401  # who you are is checked first, as Stripe does


def test_expand_as_the_sdks_send_it(served):
    serving, urls = served
    client = stripe_client(serving, urls)
    customer, price, session = monthly_checkout(client, "exp@example.com", quantity=2)
    serving.emulator.stripe.complete_checkout_session(None, session.id)
    full = client.v1.checkout.sessions.retrieve(
        session.id, params={"expand": ["subscription", "line_items", "customer"]}
    )
    assert full.customer.email == "exp@example.com" and full.subscription.status == "active"
    assert [(i.price.id, i.quantity, i.amount_total) for i in full.line_items.data] == [(price.id, 2, 5800)]
    listed = client.v1.prices.list(params={"product": price.product, "expand": ["data.product"]})
    assert listed.data[0].product.name == "Pro"
    items = client.v1.checkout.sessions.line_items.list(session.id)
    assert items.data[0].price.id == price.id
    with pytest.raises(stripe.InvalidRequestError, match="cannot be expanded"):
        client.v1.customers.retrieve(customer.id, params={"expand": ["email"]})


def test_currencies_endpoints_and_product_deletes_as_stripe(served):
    serving, urls = served
    client = stripe_client(serving, urls)
    product = client.v1.products.create(params={"name": "Pro"})
    with pytest.raises(stripe.InvalidRequestError, match="Invalid currency: usdd") as refused:
        client.v1.prices.create(params={"product": product.id, "unit_amount": 100, "currency": "usdd"})
    assert refused.value.param == "currency"
    assert (
        client.v1.prices.create(params={"product": product.id, "unit_amount": 100, "currency": "EUR"}).currency == "eur"
    )
    with pytest.raises(stripe.InvalidRequestError, match="has one or more user-created prices"):
        client.v1.products.delete(product.id)
    bare = client.v1.products.create(params={"name": "Nothing priced"})
    assert client.v1.products.delete(bare.id).deleted is True
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.products.retrieve(bare.id)

    endpoint = client.v1.webhook_endpoints.create(
        params={"url": "http://127.0.0.1:9/hook", "enabled_events": ["checkout.session.completed"]}
    )
    assert endpoint.secret.startswith("whsec_")
    fetched = client.v1.webhook_endpoints.retrieve(endpoint.id)
    assert fetched.url == "http://127.0.0.1:9/hook" and "secret" not in fetched  # shown once, at creation
    updated = client.v1.webhook_endpoints.update(
        endpoint.id, params={"disabled": True, "enabled_events": ["*"], "description": "all"}
    )
    assert (updated.status, updated.enabled_events, updated.description) == ("disabled", ["*"], "all")


def test_checkout_in_payment_and_setup_modes(served):
    serving, urls = served
    client = stripe_client(serving, urls)
    product = client.v1.products.create(params={"name": "Credits"})
    once = client.v1.prices.create(params={"product": product.id, "unit_amount": 500, "currency": "usd"})
    paid = client.v1.checkout.sessions.create(
        params={"mode": "payment", "line_items": [{"price": once.id, "quantity": 3}], "success_url": "http://x/ok"}
    )
    assert (paid.amount_total, paid.payment_status) == (1500, "unpaid")
    done = serving.emulator.stripe.complete_checkout_session(None, paid.id)
    assert done["payment_status"] == "paid" and done["payment_intent"].startswith("pi_")
    assert done["subscription"] is None
    saved = client.v1.checkout.sessions.create(
        params={"mode": "setup", "currency": "usd", "success_url": "http://x/ok"}
    )
    assert saved.payment_status == "no_payment_required" and saved.amount_total is None
    assert serving.emulator.stripe.complete_checkout_session(None, saved.id)["setup_intent"].startswith("seti_")
    _, monthly, _ = monthly_checkout(client, "mix@example.com")
    with pytest.raises(stripe.InvalidRequestError, match="recurring price"):
        client.v1.checkout.sessions.create(
            params={"mode": "payment", "line_items": [{"price": monthly.id}], "success_url": "http://x/ok"}
        )
    with pytest.raises(stripe.InvalidRequestError, match="Invalid mode"):
        client.v1.checkout.sessions.create(params={"mode": "rental", "success_url": "http://x/ok"})


def test_connect_authorize_without_a_redirect_uses_the_applications(served):
    """As Stripe: with no redirect_uri, the user goes to the Connect application's configured one."""
    serving, urls = served
    client_id = serving.emulator.config()["stripe"]["client_id"]
    answer = httpx.get(f"{urls['stripe']}/oauth/authorize", params={"client_id": client_id, "state": "s1"})
    assert answer.status_code in (302, 303, 307)
    target = answer.headers["location"]
    assert target.startswith("http://localhost:8789/callback?") and "code=ac_" in target and "state=s1" in target


# The fields Stripe's object reference (stripe-node 23.1's resource types at 2026-10-28.endive, as gathered in
# shared/reference/stripe-objects.md section 2) lists as always present, nullable or not.
STRIPE_FIELDS = {
    "product": "active description images marketing_features name package_dimensions shippable tax_details type "
    "updated url",
    "price": "active billing_scheme currency custom_unit_amount lookup_key nickname product recurring tax_behavior "
    "tiers_mode transform_quantity type unit_amount unit_amount_decimal",
    "checkout.session": "adaptive_pricing after_expiration allow_promotion_codes allowed_payment_method_types "
    "amount_subtotal amount_total automatic_tax billing_address_collection cancel_url client_reference_id "
    "client_secret collected_information consent consent_collection currency currency_conversion custom_fields "
    "custom_text customer customer_account customer_creation customer_details customer_email discounts expires_at "
    "integration_identifier invoice invoice_creation locale managed_payments mode origin_context payment_intent "
    "payment_link payment_method_collection payment_method_configuration_details payment_method_options "
    "payment_method_types payment_status permissions recovered_from saved_payment_method_options setup_intent "
    "shipping_address_collection shipping_cost shipping_options status submit_type subscription success_url "
    "total_details ui_mode url wallet_options",
    "webhook_endpoint": "api_version application description enabled_events status url",
    "subscription": "application application_fee_percent automatic_tax billing_cycle_anchor "
    "billing_cycle_anchor_config billing_mode billing_schedules billing_thresholds cancel_at cancel_at_period_end "
    "canceled_at cancellation_details collection_method currency customer customer_account days_until_due "
    "default_payment_method default_source description discounts ended_at invoice_settings items latest_invoice "
    "managed_payments next_pending_invoice_item_invoice on_behalf_of pause_collection payment_settings "
    "pending_invoice_item_interval pending_setup_intent pending_update schedule start_date status test_clock "
    "transfer_data trial_end trial_settings trial_start",
    "invoice": "account_country account_name account_tax_ids amount_due amount_overpaid amount_paid amount_remaining "
    "amount_shipping application attempt_count attempted automatic_tax automatically_finalizes_at billing_reason "
    "collection_method currency custom_fields customer customer_account customer_address customer_email "
    "customer_name customer_phone customer_shipping customer_tax_exempt default_payment_method default_source "
    "default_tax_rates description discounts due_date effective_at ending_balance footer from_invoice issuer "
    "last_finalization_error latest_revision lines next_payment_attempt number on_behalf_of parent payment_settings "
    "period_end period_start post_payment_credit_notes_amount pre_payment_credit_notes_amount receipt_number "
    "rendering shipping_cost shipping_details starting_balance statement_descriptor status status_transitions "
    "subtotal subtotal_excluding_tax test_clock total total_discount_amounts total_excluding_tax "
    "total_pretax_credit_amounts total_taxes webhooks_delivered_at",
    "customer": "balance default_source description email invoice_settings shipping",
}


def test_objects_carry_every_field_of_stripes_reference(served):
    serving, urls = served
    client = stripe_client(serving, urls)
    _, price, session = monthly_checkout(client, "fields@example.com")
    endpoint = client.v1.webhook_endpoints.create(params={"url": "http://127.0.0.1:9/hook", "enabled_events": ["*"]})
    serving.emulator.stripe.complete_checkout_session(None, session.id)
    session = client.v1.checkout.sessions.retrieve(session.id)
    subscription = client.v1.subscriptions.retrieve(session.subscription)
    invoice = client.v1.invoices.retrieve(subscription.latest_invoice)
    seen = {
        "product": client.v1.products.retrieve(price.product),
        "price": price,
        "checkout.session": session,
        "webhook_endpoint": client.v1.webhook_endpoints.retrieve(endpoint.id),
        "subscription": subscription,
        "invoice": invoice,
        "customer": client.v1.customers.retrieve(session.customer),
    }
    for kind, obj in seen.items():
        missing = [name for name in STRIPE_FIELDS[kind].split() if name not in obj.to_dict()]
        assert missing == [], f"{kind} lacks {missing}"
    assert session.customer_details.email == "fields@example.com" and invoice.status == "paid"


def test_invoices_and_test_cards_as_stripe_python_sees_them(served):
    serving, urls = served
    client = stripe_client(serving, urls)
    customer = client.v1.customers.create(params={"email": "inv@example.com"})
    failing = client.v1.payment_methods.attach("pm_card_chargeCustomerFail", params={"customer": customer.id})
    assert failing.id.startswith("pm_") and failing.customer == customer.id and failing.card.last4 == "0341"
    client.v1.invoice_items.create(params={"customer": customer.id, "amount": 2000, "currency": "usd"})
    invoice = client.v1.invoices.create(params={"customer": customer.id, "pending_invoice_items_behavior": "include"})
    assert invoice.status == "draft" and invoice.amount_due == 2000 and invoice.billing_reason == "manual"
    with pytest.raises(stripe.CardError) as declined:
        client.v1.invoices.pay(invoice.id, params={"payment_method": failing.id})
    assert declined.value.code == "card_declined"
    after = client.v1.invoices.retrieve(invoice.id)
    assert after.status == "open" and after.attempt_count == 1 and after.next_payment_attempt is not None
    paid = client.v1.invoices.pay(invoice.id, params={"payment_method": "pm_card_visa"})
    assert paid.status == "paid" and paid.amount_paid == 2000
    types = [e.type for e in client.v1.events.list(params={"limit": 20}).data][::-1]
    assert types[-5:] == [
        "invoice.created",
        "invoice.finalized",
        "invoice.payment_failed",
        "invoice.paid",
        "invoice.payment_succeeded",
    ]
    listed = client.v1.invoices.list(params={"customer": customer.id, "status": "paid"})
    assert [i.id for i in listed.data] == [invoice.id]
