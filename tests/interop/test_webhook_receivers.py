"""The emulator's webhooks as the platform's receivers take them, with the official libraries unchanged: svix
(Python and Node) and @clerk/backend's verifyWebhook for Clerk's, stripe-python and stripe-node for Stripe's."""

from __future__ import annotations

import json

import pytest
import stripe
from svix.webhooks import Webhook, WebhookVerificationError

from emulator.serve import DEFAULT_PORTS, Serving
from emulator.server import LoopbackServer
from tests.interop.test_vendor_sdks import run_node, stripe_client
from tests.vendors.conftest import Receiver

pytestmark = pytest.mark.socket


@pytest.fixture
def delivered(tmp_path):
    """A served emulator's Clerk and Stripe webhooks, as a receiver on loopback got them."""
    serving = Serving(tmp_path / "emulator.db", ports={name: 0 for name in DEFAULT_PORTS}, log=lambda line: None)
    urls = serving.start()
    receiver = Receiver()
    server = LoopbackServer(receiver.app)
    hook = server.start() + "/hook"
    try:
        emulator = serving.emulator
        clerk_secret = emulator.clerk.add_webhook("end-user-api", hook + "?clerk")["secret"]
        client = stripe_client(serving, urls)
        stripe_secret = client.v1.webhook_endpoints.create(params={"url": hook + "?stripe", "enabled_events": ["*"]})
        clerk_key = emulator.config()["clerk"]["instances"]["end-user-api"]["secret_key"]
        import httpx

        auth = {"Authorization": f"Bearer {clerk_key}"}
        user = httpx.post(f"{urls['clerk']}/v1/users", headers=auth, json={"email_address": ["r@example.com"]}).json()
        httpx.patch(f"{urls['clerk']}/v1/users/{user['id']}/metadata", headers=auth, json={"public_metadata": {"a": 1}})
        httpx.delete(f"{urls['clerk']}/v1/users/{user['id']}", headers=auth)
        client.v1.customers.create(params={"email": "s@example.com"})
        assert emulator.settle()
        split = {"clerk": [], "stripe": []}
        for delivery in receiver.received:
            vendor = "clerk" if "svix-id" in delivery["headers"] else "stripe"
            split[vendor].append({"headers": delivery["headers"], "body": delivery["body"].decode()})
        yield {
            "clerk": {"secret": clerk_secret, "deliveries": split["clerk"]},
            "stripe": {"secret": stripe_secret.secret, "deliveries": split["stripe"]},
        }
    finally:
        server.stop()
        serving.stop()


def test_svix_python_and_stripe_python_verify_every_delivery(delivered):
    clerk, stripe_side = delivered["clerk"], delivered["stripe"]
    assert [json.loads(d["body"])["type"] for d in clerk["deliveries"]] == [
        "user.created",
        "user.updated",
        "user.deleted",
    ]
    for delivery in clerk["deliveries"]:
        Webhook(clerk["secret"]).verify(delivery["body"], delivery["headers"])
    with pytest.raises(WebhookVerificationError):
        Webhook(clerk["secret"]).verify(clerk["deliveries"][0]["body"] + " ", clerk["deliveries"][0]["headers"])
    assert [json.loads(d["body"])["type"] for d in stripe_side["deliveries"]] == ["customer.created"]
    for delivery in stripe_side["deliveries"]:
        event = stripe.Webhook.construct_event(
            delivery["body"], delivery["headers"]["stripe-signature"], stripe_side["secret"]
        )
        assert event.type == "customer.created" and event.request.id.startswith("req_")


@pytest.mark.peer("npm-peers")
def test_svix_node_clerk_backend_and_stripe_node_verify_every_delivery(delivered, tmp_path):
    path = tmp_path / "deliveries.json"
    path.write_text(json.dumps(delivered))
    report = run_node("webhook_receivers.cjs", str(path))
    # 3 Clerk deliveries x (svix, verifyWebhook) + a tampered one + 1 Stripe delivery + another secret
    assert report["total"] == 9 and report["failures"] == [] and report["passed"] == 9, report
