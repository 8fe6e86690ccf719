"""`dream stripe trigger|listen` and `dream events list|resend` through the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import stripe

from dreamcli.errors import ExitCode
from emulator.server import LoopbackServer
from tests.vendors.conftest import Receiver


@pytest.fixture
def platform_id(dream):
    return dream.json("flow", "run", "--json", "--email", "hooks@example.com")["platformId"]


def test_trigger_on_a_platforms_connected_account_reaches_api_multi(dream, platform_id):
    result = dream.json(
        "stripe", "trigger", "customer.subscription.created", "-p", platform_id, "-m", "team=blue", "--json"
    )
    assert [c["path"] for c in result["calls"]] == ["/v1/customers", "/v1/products", "/v1/prices", "/v1/subscriptions"]
    assert result["account"].startswith("acct_")
    types = [e["type"] for e in result["events"]]
    assert types == [
        "customer.created",
        "product.created",
        "price.created",
        "customer.subscription.created",
        "invoice.created",
        "invoice.finalized",
        "invoice.paid",
        "invoice.payment_succeeded",
    ]
    created = next(e for e in result["events"] if e["type"] == "customer.subscription.created")
    # api-multi's Connect endpoint takes subscription events: delivered, and answered (no dream metadata: ignored)
    assert [(d["state"], d["last"]) for d in created["deliveries"]] == [("delivered", "200")]
    assert all(e["deliveries"] == [] for e in result["events"] if e["type"].startswith("invoice."))
    listed = dream.json("events", "list", "--vendor", "stripe", "--type", "customer.subscription.created", "--json")[
        "events"
    ]
    assert listed[0]["id"] == created["id"] and listed[0]["state"] == "delivered" and listed[0]["attempts"] == 1


def test_trigger_a_payment_failure(dream, platform_id):
    result = dream.json("stripe", "trigger", "invoice.payment_failed", "-p", platform_id, "--json")
    assert "invoice.payment_failed" in [e["type"] for e in result["events"]]
    assert "invoice.paid" not in [e["type"] for e in result["events"]]


def test_trigger_refusals(dream, platform_id):
    unknown = dream("stripe", "trigger", "charge.dispute.created")
    assert unknown.exit_code == ExitCode.USAGE and "no trigger for 'charge.dispute.created'" in unknown.stderr
    nowhere = dream("stripe", "trigger", "customer.created", "-p", "plt_" + "0" * 32)
    assert nowhere.exit_code == ExitCode.NOT_FOUND and "no connected Stripe account" in nowhere.stderr
    both = dream("stripe", "trigger", "customer.created", "-p", platform_id, "--account", "acct_x")
    assert both.exit_code == ExitCode.USAGE
    bad_metadata = dream("stripe", "trigger", "customer.created", "-m", "novalue")
    assert bad_metadata.exit_code == ExitCode.USAGE and "KEY=VALUE" in bad_metadata.stderr


def test_resend(dream, platform_id):
    dream.json("stripe", "trigger", "customer.subscription.deleted", "-p", platform_id, "--json")
    deleted = dream.json("events", "list", "--type", "customer.subscription.deleted", "--json")["events"][0]
    again = dream.json("events", "resend", deleted["id"], "--json")["events"]
    assert [(r["id"], r["state"], r["lastStatus"]) for r in again] == [(deleted["id"], "delivered", 200)]
    assert len(dream.json("events", "list", "--type", "customer.subscription.deleted", "--json")["events"]) == 2
    missing = dream("events", "resend", "evt_" + "x" * 24)
    assert missing.exit_code == ExitCode.NOT_FOUND
    nonsense = dream("events", "resend", "bogus")
    assert nonsense.exit_code == ExitCode.USAGE and "evt_" in nonsense.stderr
    assert dream("events", "list", "--state", "lost").exit_code == ExitCode.USAGE


def test_resend_to_a_receiver_that_is_down_exits_1_and_stays_queued(dream, platform_id, tmp_path):
    receiver = Receiver(answers=[500] * 10)
    server = LoopbackServer(receiver.app)
    url = server.start() + "/hook"
    try:
        from emulator.app import Emulator

        emulator = Emulator(Path(os.environ["DREAM_STORE"]))
        emulator.stripe.create_webhook_endpoint(emulator.stripe._platform["id"], {"url": url, "enabled_events": ["*"]})
        emulator.close()
        dream.json("stripe", "trigger", "customer.created", "--json")
        event = dream.json("events", "list", "--type", "customer.created", "--json")["events"][0]
        assert event["state"] == "pending" and event["lastStatus"] == 500
        result = dream("events", "resend", event["id"])
        assert result.exit_code == ExitCode.FAILED and "retried" in result.stderr
    finally:
        server.stop()


def test_events_need_the_emulated_vendors(dream, monkeypatch):
    for name in (
        "STRIPE_SECRET_KEY",
        "STRIPE_CLIENT_ID",
        "CLERK_SECRET_KEY",
        "CLERK_ISSUER",
        "CLERK_END_USER_SECRET_KEY",
        "CLERK_END_USER_ISSUER",
    ):
        monkeypatch.setenv(name, "x_" + name.lower())
    result = dream("events", "list")
    assert result.exit_code == ExitCode.USAGE and "real ones" in result.stderr


@pytest.mark.socket
def test_listen_forwards_signed_events_to_a_local_receiver(dream, tmp_path):
    receiver = Receiver()
    server = LoopbackServer(receiver.app)
    url = server.start() + "/hook"
    dream_exe = Path(sys.executable).with_name("dream")
    listener = subprocess.Popen(
        [str(dream_exe), "stripe", "listen", "--forward-to", url, "--max-events", "1", "--timeout", "30"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )
    try:
        ready = listener.stderr.readline()
        assert ready.startswith("Ready! Your webhook signing secret is whsec_"), ready
        secret = ready.split(" is ")[1].split()[0]
        assert dream("stripe", "listen", "--print-secret").stdout.strip() == secret  # the same on every run
        dream.json("stripe", "trigger", "customer.created", "--json")
        out, _ = listener.communicate(timeout=30)
    finally:
        if listener.poll() is None:
            listener.kill()
        server.stop()
    assert listener.returncode == 0
    assert "--> customer.created" in out and "<-- [200] POST " + url in out
    event = stripe.Webhook.construct_event(
        receiver.received[0]["body"], receiver.received[0]["headers"]["stripe-signature"], secret
    )
    assert event.type == "customer.created"
    # the listener's endpoints are gone with it
    from emulator.app import Emulator

    emulator = Emulator(Path(os.environ["DREAM_STORE"]))
    try:
        urls = [e["url"] for e in emulator.stripe.state.find(emulator.stripe._platform["id"], "webhook_endpoint")]
        assert url not in urls
    finally:
        emulator.close()


def test_trigger_on_stripe_itself_through_the_environment(dream, tmp_path, monkeypatch):
    """With real vendors named (here: the served emulator standing in for api.stripe.com) the same calls go
    through the official SDK; there are no deliveries to show, Stripe's dashboard has them."""
    from emulator.serve import DEFAULT_PORTS, Serving

    serving = Serving(tmp_path / "remote.db", ports={name: 0 for name in DEFAULT_PORTS}, log=lambda line: None)
    urls = serving.start()
    try:
        config = serving.emulator.config(urls["vendors"])
        monkeypatch.setenv("STRIPE_SECRET_KEY", config["stripe"]["secret_key"])
        monkeypatch.setenv("STRIPE_CLIENT_ID", config["stripe"]["client_id"])
        monkeypatch.setenv("STRIPE_API_BASE", urls["stripe"])
        for name in ("CLERK_SECRET_KEY", "CLERK_ISSUER", "CLERK_END_USER_SECRET_KEY", "CLERK_END_USER_ISSUER"):
            monkeypatch.setenv(name, "unused_" + name.lower())
        result = dream.json("stripe", "trigger", "checkout.session.completed", "--json")
        assert "checkout.session.completed" in [e["type"] for e in result["events"]]
        assert all(e["deliveries"] == [] for e in result["events"])
    finally:
        serving.stop()
