"""The Stripe CLI (`@stripe/cli` from npm, unchanged) against the emulated Stripe at the root of its port: the API
commands with `--api-base`, `fixtures`, and `trigger` with its own built-in fixtures."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from emulator.serve import DEFAULT_PORTS, Serving
from tests.peers import NODE_PEERS

pytestmark = [pytest.mark.socket, pytest.mark.peer("npm-peers")]

STRIPE_CLI = NODE_PEERS / ".bin" / "stripe"

# The triggers whose built-in fixtures use only the public API the emulator serves, and Checkout's payment_pages.
TRIGGERS = [
    "customer.created",
    "customer.updated",
    "customer.deleted",
    "product.created",
    "product.updated",
    "price.created",
    "price.updated",
    "payment_method.attached",
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "checkout.session.completed",
    "checkout.session.expired",
    "invoiceitem.created",
    "invoice.created",
    "invoice.finalized",
    "invoice.paid",
    "invoice.payment_failed",  # its last step is expected to fail with a card_error, as on Stripe
    "invoice.payment_succeeded",
    "invoice.updated",
    "invoice.voided",
    "invoice.marked_uncollectible",
    "invoice.deleted",
    "invoiceitem.deleted",
    "product.deleted",
    "payment_method.detached",
    "payment_method.updated",
    "customer.subscription.trial_will_end",
    "payment_intent.created",
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "payment_intent.canceled",
    "payment_intent.amount_capturable_updated",
    "charge.succeeded",
    "charge.failed",
    "charge.captured",
    "charge.refunded",
    "setup_intent.created",
    "setup_intent.succeeded",
    "setup_intent.canceled",
    "setup_intent.setup_failed",
    "coupon.created",
    "coupon.updated",
    "coupon.deleted",
    "promotion_code.created",
    "promotion_code.updated",
    "plan.created",
    "plan.updated",
    "plan.deleted",
    "billing_portal.configuration.created",
    "billing_portal.configuration.updated",
    "billing_portal.session.created",
    "subscription.payment_succeeded",
    "subscription.payment_failed",
    "test_helpers.test_clock.created",
    "test_helpers.test_clock.advancing",
    "test_helpers.test_clock.ready",
    "test_helpers.test_clock.deleted",
]
# Triggers named after a scenario rather than an event: the event that shows it happened.
SHOWN_BY = {
    "subscription.payment_succeeded": "invoice.payment_succeeded",
    "subscription.payment_failed": "invoice.payment_failed",
}


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stripe-cli")
    serving = Serving(folder / "emulator.db", ports={name: 0 for name in DEFAULT_PORTS}, log=lambda line: None)
    urls = serving.start()
    key = serving.emulator.config()["stripe"]["secret_key"]
    env = {
        **os.environ,
        "HOME": str(folder),  # its config file, not the user's
        "XDG_CONFIG_HOME": str(folder / "config"),
        "STRIPE_CLI_TELEMETRY_OPTOUT": "1",
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(STRIPE_CLI), "--api-key", key, "--api-base", urls["stripe"], *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            cwd=folder,
        )

    try:
        yield run, serving, folder
    finally:
        serving.stop()


def test_resource_and_raw_api_commands(cli):
    run, serving, _ = cli
    made = run("customers", "create", "--email", "cli@example.com", "--description", "from the CLI")
    assert made.returncode == 0, made.stderr
    customer = json.loads(made.stdout)
    assert customer["email"] == "cli@example.com" and customer["description"] == "from the CLI"
    got = run("get", f"/v1/customers/{customer['id']}")
    assert json.loads(got.stdout)["id"] == customer["id"]
    product = json.loads(run("post", "/v1/products", "-d", "name=Pro", "-d", "metadata[tier]=pro").stdout)
    assert product["metadata"] == {"tier": "pro"}
    listed = json.loads(run("get", "/v1/products", "-d", "limit=1").stdout)
    assert [p["id"] for p in listed["data"]] == [product["id"]]
    refused = run("post", "/v1/products", "-d", "name=X", "-d", "colour=red")
    assert "Received unknown parameter: colour" in refused.stdout + refused.stderr
    deleted = json.loads(run("delete", f"/v1/customers/{customer['id']}", "--confirm").stdout)
    assert deleted == {"id": customer["id"], "object": "customer", "deleted": True}


def test_fixtures_file(cli):
    run, serving, folder = cli
    fixture = {
        "_meta": {"template_version": 0},
        "fixtures": [
            {"name": "product", "path": "/v1/products", "method": "post", "params": {"name": "Team"}},
            {
                "name": "price",
                "path": "/v1/prices",
                "method": "post",
                "params": {
                    "product": "${product:id}",
                    "unit_amount": 4900,
                    "currency": "eur",
                    "recurring": {"interval": "month"},
                },
            },
            {
                "name": "customer",
                "path": "/v1/customers",
                "method": "post",
                "params": {"email": "team@example.com", "invoice_settings": {"default_payment_method": "pm_card_visa"}},
            },
            {
                "name": "subscription",
                "path": "/v1/subscriptions",
                "method": "post",
                "params": {"customer": "${customer:id}", "items": [{"price": "${price:id}", "quantity": 3}]},
            },
        ],
    }
    (folder / "team.json").write_text(json.dumps(fixture))
    done = run("fixtures", "team.json")
    assert done.returncode == 0, done.stdout + done.stderr
    account = serving.emulator.stripe._platform["id"]
    subscriptions = serving.emulator.stripe.state.find(account, "subscription")
    assert subscriptions[0]["status"] == "active"
    assert subscriptions[0]["items"]["data"][0]["quantity"] == 3
    invoice = serving.emulator.stripe.state.load(subscriptions[0]["latest_invoice"])
    assert invoice["status"] == "paid" and invoice["amount_paid"] == 3 * 4900 and invoice["currency"] == "eur"


@pytest.mark.parametrize("event", TRIGGERS)
def test_trigger(cli, event):
    run, serving, _ = cli
    account = serving.emulator.stripe._platform["id"]
    before = {e["id"] for e in serving.emulator.stripe.state.find(account, "event")}
    done = run("trigger", event)
    assert done.returncode == 0 and "Trigger succeeded" in done.stdout + done.stderr, done.stdout + done.stderr
    made = [e for e in serving.emulator.stripe.state.find(account, "event") if e["id"] not in before]
    assert SHOWN_BY.get(event, event) in {e["type"] for e in made}
