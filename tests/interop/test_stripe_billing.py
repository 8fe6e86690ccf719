"""The billing a subscription SaaS depends on, through the official clients with only their base address changed:
trials, payment_behavior, collection without a payment method or with a declining card, cancellation fields, the
test cards' decline codes at the moment Stripe gives them, list filters, deauthorized accounts, event types,
expand with idempotency."""

from __future__ import annotations

import httpx
import pytest
import stripe

from tests.interop.test_vendor_sdks import run_node, served, stripe_client  # noqa: F401 - the fixture

pytestmark = pytest.mark.socket


@pytest.fixture
def billing(served):  # noqa: F811 - the fixture imported above
    serving, urls = served
    client = stripe_client(serving, urls)
    product = client.v1.products.create(params={"name": "Pro"})
    price = client.v1.prices.create(
        params={"product": product.id, "unit_amount": 2900, "currency": "usd", "recurring": {"interval": "month"}}
    )
    return serving, urls, client, price


def paying_customer(client, card="pm_card_visa", **more):
    return client.v1.customers.create(
        params={
            "email": "payer@example.com",
            "payment_method": card,
            "invoice_settings": {"default_payment_method": card},
            **more,
        }
    )


@pytest.mark.peer("npm-peers")
def test_stripe_node_through_the_billing_a_saas_needs(billing):
    serving, urls, _, _ = billing
    report = run_node("stripe_billing.cjs", serving.emulator.config()["stripe"]["secret_key"], urls["stripe"])
    assert report["failures"] == [] and report["passed"] == report["total"] == 7, report


def test_a_trial_is_trialing_until_its_end_then_the_first_invoice_is_zero(billing):
    _, _, client, price = billing
    customer = paying_customer(client)
    sub = client.v1.subscriptions.create(
        params={"customer": customer.id, "items": [{"price": price.id}], "trial_period_days": 14}
    )
    assert sub.status == "trialing" and sub.trial_end - sub.trial_start == 14 * 86400
    assert sub["items"].data[0].current_period_end == sub.trial_end
    invoice = client.v1.invoices.retrieve(sub.latest_invoice)
    assert invoice.total == 0 and invoice.status == "paid"
    events = client.v1.events.list(params={"type": "customer.subscription.trial_will_end"})
    assert all(e.data.object["id"] != sub.id for e in events.data)  # 14 days away: not yet
    ended = client.v1.subscriptions.update(sub.id, params={"trial_end": "now"})
    assert ended.status == "active"


def test_a_checkout_with_a_trial_starts_a_trialing_subscription(billing):
    serving, _, client, price = billing
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "subscription",
            "line_items": [{"price": price.id, "quantity": 1}],
            "success_url": "https://example.com/ok",
            "subscription_data": {"trial_period_days": 7},
            "allow_promotion_codes": True,
            "billing_address_collection": "required",
        }
    )
    serving.emulator.stripe.complete_checkout_session(None, session.id)
    sub = client.v1.subscriptions.retrieve(client.v1.checkout.sessions.retrieve(session.id).subscription)
    assert sub.status == "trialing" and sub.trial_end - sub.trial_start == 7 * 86400


def test_without_a_payment_method_a_subscription_is_incomplete_and_error_if_incomplete_refuses(billing):
    _, _, client, price = billing
    bare = client.v1.customers.create(params={"email": "bare@example.com"})
    sub = client.v1.subscriptions.create(params={"customer": bare.id, "items": [{"price": price.id}]})
    assert sub.status == "incomplete"
    assert client.v1.invoices.retrieve(sub.latest_invoice).status == "open"
    with pytest.raises(stripe.InvalidRequestError, match="no attached payment source or default payment method"):
        client.v1.subscriptions.create(
            params={"customer": bare.id, "items": [{"price": price.id}], "payment_behavior": "error_if_incomplete"}
        )


def test_a_card_that_fails_on_charge_attaches_then_leaves_the_subscription_incomplete(billing):
    _, _, client, price = billing
    customer = paying_customer(client, "pm_card_chargeCustomerFail")
    sub = client.v1.subscriptions.create(params={"customer": customer.id, "items": [{"price": price.id}]})
    assert sub.status == "incomplete"
    failed = client.v1.events.list(params={"type": "invoice.payment_failed"})
    assert any(e.data.object["id"] == sub.latest_invoice for e in failed.data)
    with pytest.raises(stripe.CardError) as declined:
        client.v1.invoices.pay(sub.latest_invoice)
    assert declined.value.code == "card_declined" and declined.value.error.decline_code == "generic_decline"


@pytest.mark.parametrize(
    ("card", "code", "decline"),
    [
        ("pm_card_visa_chargeDeclined", "card_declined", "generic_decline"),
        ("pm_card_visa_chargeDeclinedInsufficientFunds", "card_declined", "insufficient_funds"),
        ("pm_card_chargeDeclinedExpiredCard", "expired_card", None),
        ("pm_card_chargeDeclinedIncorrectCvc", "incorrect_cvc", None),
    ],
)
def test_declining_test_cards_are_refused_when_attached_with_their_codes(billing, card, code, decline):
    _, _, client, _ = billing
    customer = client.v1.customers.create(params={"email": "d@example.com"})
    with pytest.raises(stripe.CardError) as refused:
        client.v1.payment_methods.attach(card, params={"customer": customer.id})
    assert refused.value.code == code and refused.value.error.decline_code == decline
    assert refused.value.error.doc_url == f"https://docs.stripe.com/error-codes/{code.replace('_', '-')}"


def test_cancel_at_and_the_subscription_list_filters(billing):
    _, _, client, price = billing
    customer = paying_customer(client)
    first = client.v1.subscriptions.create(params={"customer": customer.id, "items": [{"price": price.id}]})
    second = client.v1.subscriptions.create(params={"customer": customer.id, "items": [{"price": price.id}]})
    at = client.v1.subscriptions.update(second.id, params={"cancel_at": "max_period_end"})
    assert at.cancel_at == at["items"].data[0].current_period_end and at.cancel_at_period_end is False
    client.v1.subscriptions.cancel(first.id)
    default = [s.id for s in client.v1.subscriptions.list(params={"customer": customer.id}).data]
    assert default == [second.id]
    assert {s.id for s in client.v1.subscriptions.list(params={"status": "all"}).data} >= {first.id, second.id}
    assert [s.id for s in client.v1.subscriptions.list(params={"status": "canceled"}).data] == [first.id]
    assert [s.id for s in client.v1.subscriptions.list(params={"status": "ended"}).data] == [first.id]
    window = client.v1.subscriptions.list(params={"status": "all", "created": {"gte": second.created}})
    assert second.id in [s.id for s in window.data]
    none = client.v1.subscriptions.list(params={"status": "all", "created": {"gt": second.created + 10}})
    assert none.data == []


def test_a_deauthorized_account_is_refused_to_the_platform(billing):
    serving, urls, client, _ = billing
    config = serving.emulator.config()["stripe"]
    stripe_backend = serving.emulator.stripe
    answer = stripe_backend.oauth_authorize({"client_id": config["client_id"], "redirect_uri": "http://x/cb"})
    code = httpx.URL(answer).params["code"]
    token = httpx.post(
        f"{urls['stripe']}/oauth/token",
        data={"grant_type": "authorization_code", "code": code},
        auth=(config["secret_key"], ""),
    ).json()
    account = token["stripe_user_id"]
    assert client.v1.products.list(options={"stripe_account": account}).data == []
    gone = httpx.post(
        f"{urls['stripe']}/oauth/deauthorize",
        data={"client_id": config["client_id"], "stripe_user_id": account},
        auth=(config["secret_key"], ""),
    )
    assert gone.status_code == 200
    with pytest.raises(stripe.PermissionError, match="Application access may have been revoked"):
        client.v1.products.list(options={"stripe_account": account})


def test_webhook_endpoints_take_only_stripes_event_types(billing):
    _, _, client, _ = billing
    made = client.v1.webhook_endpoints.create(
        params={"url": "https://example.com/h", "enabled_events": ["customer.subscription.trial_will_end"]}
    )
    assert made.enabled_events == ["customer.subscription.trial_will_end"]
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.webhook_endpoints.update(made.id, params={"enabled_events": ["*", "customer.teleported"]})
    assert refused.value.param == "enabled_events[1]"


def test_expand_holds_on_a_post_with_an_idempotency_key_and_the_replay(billing):
    _, urls, client, price = billing
    key = client._requestor.api_key  # type: ignore[attr-defined]
    customer = paying_customer(client)
    body = {"customer": customer.id, "items[0][price]": price.id, "expand[0]": "latest_invoice"}
    headers = {"Idempotency-Key": "py-expand-1"}
    first = httpx.post(f"{urls['stripe']}/v1/subscriptions", data=body, headers=headers, auth=(key, ""))
    again = httpx.post(f"{urls['stripe']}/v1/subscriptions", data=body, headers=headers, auth=(key, ""))
    assert first.json()["latest_invoice"]["object"] == "invoice"
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
    assert first.headers["Idempotency-Key"] == again.headers["Idempotency-Key"] == "py-expand-1"


def test_the_search_api_with_stripes_query_language(billing):
    _, _, client, price = billing
    ann = client.v1.customers.create(params={"email": "ann@example.com", "name": "Ann", "metadata": {"tier": "pro"}})
    bob = client.v1.customers.create(params={"email": "bob@example.com", "name": "Bob", "metadata": {"tier": "free"}})
    found = client.v1.customers.search(params={"query": "email:'ann@example.com'"})
    assert [c.id for c in found.data] == [ann.id] and found.object == "search_result"
    assert [c.id for c in client.v1.customers.search(params={"query": 'metadata["tier"]:"free"'}).data] == [bob.id]
    both = client.v1.customers.search(params={"query": "name:'Ann' OR name:'Bob'"})
    assert {c.id for c in both.data} == {ann.id, bob.id}
    assert [c.id for c in client.v1.customers.search(params={"query": "-name:'Ann' AND email~'example'"}).data] == [
        bob.id
    ]
    paged = client.v1.customers.search(params={"query": "email~'example.com'", "limit": 1})
    assert paged.has_more and len(list(paged.auto_paging_iter())) == 2
    assert [
        p.id for p in client.v1.prices.search(params={"query": f"product:'{price.product}' AND active:'true'"}).data
    ] == [price.id]
    with pytest.raises(stripe.InvalidRequestError, match="unsupported search field"):
        client.v1.customers.search(params={"query": "colour:'red'"})
    with pytest.raises(stripe.InvalidRequestError, match="may not combine AND and OR"):
        client.v1.customers.search(params={"query": "name:'a' AND name:'b' OR name:'c'"})
    assert client.v1.customers.retrieve(ann.id).id == ann.id  # an id is still an id


def test_one_off_payments_refunds_and_saved_cards(billing):
    _, _, client, _ = billing
    customer = paying_customer(client)
    paid = client.v1.payment_intents.create(
        params={
            "amount": 1200,
            "currency": "usd",
            "customer": customer.id,
            "payment_method": "pm_card_visa",
            "confirm": True,
        }
    )
    assert paid.status == "succeeded" and paid.amount_received == 1200
    charge = client.v1.charges.retrieve(paid.latest_charge)
    assert charge.paid and charge.payment_intent == paid.id
    refund = client.v1.refunds.create(params={"payment_intent": paid.id, "amount": 200})
    assert refund.amount == 200 and client.v1.charges.retrieve(charge.id).amount_refunded == 200
    held = client.v1.payment_intents.create(
        params={
            "amount": 900,
            "currency": "usd",
            "payment_method": "pm_card_visa",
            "capture_method": "manual",
            "confirm": True,
        }
    )
    assert held.status == "requires_capture" and held.amount_capturable == 900
    assert client.v1.payment_intents.capture(held.id).status == "succeeded"
    with pytest.raises(stripe.CardError) as declined:
        client.v1.payment_intents.create(
            params={"amount": 500, "currency": "usd", "payment_method": "pm_card_chargeCustomerFail", "confirm": True}
        )
    assert declined.value.error.payment_intent["status"] == "requires_payment_method"
    setup = client.v1.setup_intents.create(
        params={"customer": customer.id, "payment_method": "pm_card_visa", "confirm": True}
    )
    assert setup.status == "succeeded"


def test_coupons_promotion_codes_and_the_customer_portal(billing):
    serving, urls, client, price = billing
    coupon = client.v1.coupons.create(params={"percent_off": 25, "duration": "once", "name": "Launch"})
    promo = client.v1.promotion_codes.create(
        params={"promotion": {"type": "coupon", "coupon": coupon.id}, "code": "LAUNCH25"}
    )
    assert promo.code == "LAUNCH25" and promo.promotion.coupon == coupon.id
    with pytest.raises(stripe.InvalidRequestError, match="already exists"):
        client.v1.promotion_codes.create(
            params={"promotion": {"type": "coupon", "coupon": coupon.id}, "code": "launch25"}
        )
    customer = paying_customer(client)
    sub = client.v1.subscriptions.create(params={"customer": customer.id, "items": [{"price": price.id}]})
    portal = client.v1.billing_portal.sessions.create(
        params={"customer": customer.id, "return_url": "https://e.x/back"}
    )
    page = httpx.get(portal.url).json()
    assert page["subscriptions"] == [sub.id]
    canceled = httpx.post(f"{portal.url}/cancel", data={"subscription": sub.id}).json()
    assert canceled["cancel_at_period_end"] is True and canceled["cancel_at"]
    updates = client.v1.events.list(params={"type": "customer.subscription.*"})
    assert any(e.type == "customer.subscription.updated" and e.data.object["id"] == sub.id for e in updates.data)
    other = client.v1.customers.create(params={"email": "other@example.com"})
    foreign = httpx.post(
        f"{client.v1.billing_portal.sessions.create(params={'customer': other.id}).url}/cancel",
        data={"subscription": sub.id},
    )
    assert foreign.status_code == 404  # a portal acts only on its own customer's subscriptions


def test_test_clocks_renew_retry_on_the_smart_retry_schedule_then_cancel(billing):
    _, _, client, price = billing
    start = 1_800_000_000
    clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": start})
    customer = paying_customer(client, test_clock=clock.id)
    sub = client.v1.subscriptions.create(params={"customer": customer.id, "items": [{"price": price.id}]})
    assert sub.status == "active" and sub.start_date == start
    client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": start + 31 * 86400})
    renewed = client.v1.subscriptions.retrieve(sub.id)
    invoices = client.v1.invoices.list(params={"subscription": sub.id}).data
    assert renewed.status == "active" and len(invoices) == 2 and invoices[0].billing_reason == "subscription_cycle"
    assert invoices[0].status == "paid" and renewed["items"].data[0].current_period_start == start + 30 * 86400
    # the card starts failing: the next renewal leaves it past_due, retried, then canceled after the last retry
    client.v1.customers.update(
        customer.id, params={"invoice_settings": {"default_payment_method": "pm_card_chargeCustomerFail"}}
    )
    client.v1.subscriptions.update(sub.id, params={"default_payment_method": "pm_card_chargeCustomerFail"})
    client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": start + 60 * 86400 + 3600})
    late = client.v1.subscriptions.retrieve(sub.id)
    failing = client.v1.invoices.retrieve(late.latest_invoice)
    assert late.status == "past_due" and failing.status == "open" and failing.next_payment_attempt == start + 61 * 86400
    client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": start + 80 * 86400})
    ended = client.v1.subscriptions.retrieve(sub.id)
    assert ended.status == "canceled" and client.v1.invoices.retrieve(failing.id).attempt_count == 8
    assert client.v1.invoices.retrieve(failing.id).next_payment_attempt is None
    deleted = client.v1.events.list(params={"type": "customer.subscription.deleted"}).data
    assert any(e.data.object["id"] == sub.id for e in deleted)


def test_a_trial_ends_on_the_clock_into_a_paid_period(billing):
    _, _, client, price = billing
    start = 1_800_000_000
    clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": start})
    customer = paying_customer(client, test_clock=clock.id)
    sub = client.v1.subscriptions.create(
        params={"customer": customer.id, "items": [{"price": price.id}], "trial_period_days": 7}
    )
    assert sub.status == "trialing" and sub.trial_end == start + 7 * 86400
    client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": start + 8 * 86400})
    after = client.v1.subscriptions.retrieve(sub.id)
    assert after.status == "active"
    assert client.v1.invoices.retrieve(after.latest_invoice).amount_paid == 2900


def test_coupons_and_promotion_codes_take_their_share_of_invoices(billing):
    serving, _, client, price = billing
    once = client.v1.coupons.create(params={"percent_off": 50, "duration": "once"})
    forever = client.v1.coupons.create(params={"amount_off": 400, "currency": "usd", "duration": "forever"})
    start = 1_800_000_000
    clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": start})
    customer = paying_customer(client, test_clock=clock.id)
    sub = client.v1.subscriptions.create(
        params={"customer": customer.id, "items": [{"price": price.id}], "discounts": [{"coupon": once.id}]}
    )
    first = client.v1.invoices.retrieve(sub.latest_invoice)
    assert (first.subtotal, first.total, first.amount_paid) == (2900, 1450, 1450)
    assert first.total_discount_amounts[0].amount == 1450 and first.discounts == sub.discounts
    client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": start + 31 * 86400})
    second = client.v1.invoices.retrieve(client.v1.subscriptions.retrieve(sub.id).latest_invoice)
    assert second.total == 2900  # a `once` coupon: the first invoice only
    assert client.v1.coupons.retrieve(once.id).times_redeemed == 1
    # a promotion code entered on the hosted checkout page, where the session allows them
    promo = client.v1.promotion_codes.create(
        params={"promotion": {"type": "coupon", "coupon": forever.id}, "code": "FOUR"}
    )
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "subscription",
            "line_items": [{"price": price.id, "quantity": 1}],
            "success_url": "https://example.com/ok",
            "allow_promotion_codes": True,
        }
    )
    paid = httpx.post(f"{session.url}/complete", data={"promotion_code": "four"})
    assert paid.status_code == 200, paid.text
    done = client.v1.checkout.sessions.retrieve(session.id)
    assert done.amount_total == 2500 and done.total_details.amount_discount == 400
    assert client.v1.promotion_codes.retrieve(promo.id).times_redeemed == 1
    plain = client.v1.checkout.sessions.create(
        params={
            "mode": "subscription",
            "line_items": [{"price": price.id, "quantity": 1}],
            "success_url": "https://e.x/",
        }
    )
    refused = httpx.post(f"{plain.url}/complete", data={"promotion_code": "FOUR"})
    assert refused.status_code == 400 and "does not allow promotion codes" in refused.text


def test_a_price_change_mid_period_is_prorated(billing):
    _, _, client, price = billing
    bigger = client.v1.prices.create(
        params={"product": price.product, "unit_amount": 5900, "currency": "usd", "recurring": {"interval": "month"}}
    )
    start = 1_800_000_000
    clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": start})
    customer = paying_customer(client, test_clock=clock.id)
    sub = client.v1.subscriptions.create(params={"customer": customer.id, "items": [{"price": price.id}]})
    client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": start + 15 * 86400})  # half the period
    item = sub["items"].data[0]
    upgraded = client.v1.subscriptions.update(
        sub.id, params={"items": [{"id": item.id, "price": bigger.id}], "proration_behavior": "always_invoice"}
    )
    now_invoice = client.v1.invoices.retrieve(upgraded.latest_invoice)
    amounts = sorted(line.amount for line in now_invoice.lines.data)
    assert amounts == [-1450, 2950] and now_invoice.total == 1500 and now_invoice.status == "paid"
    assert now_invoice.billing_reason == "subscription_update"
    # create_prorations (the default): the items wait for the next renewal's invoice
    back = client.v1.subscriptions.update(sub.id, params={"items": [{"id": item.id, "price": price.id}]})
    assert back.latest_invoice == upgraded.latest_invoice
    client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": start + 31 * 86400})
    renewal = client.v1.invoices.retrieve(client.v1.subscriptions.retrieve(sub.id).latest_invoice)
    assert sorted(line.amount for line in renewal.lines.data) == [-2950, 1450, 2900]
    assert renewal.total == 2900 - 2950 + 1450
    unchanged = client.v1.subscriptions.update(
        sub.id, params={"items": [{"id": item.id, "price": bigger.id}], "proration_behavior": "none"}
    )
    assert unchanged["items"].data[0].price.id == bigger.id
