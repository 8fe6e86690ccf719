"""Webhooks leave in the background, are retried on the vendor's schedule, are logged attempt by attempt and can be
sent again; two processes over one store never deliver one attempt twice."""

from __future__ import annotations

import json
import time

import pytest
import stripe
from svix.webhooks import Webhook

from emulator.app import Emulator
from emulator.server import LoopbackServer
from emulator.webhooks import STRIPE_RETRY_WAITS, SVIX_RETRY_WAITS
from tests.vendors.conftest import Receiver

pytestmark = pytest.mark.socket


def served_receiver(**kwargs):
    receiver = Receiver(**kwargs)
    server = LoopbackServer(receiver.app)
    return receiver, server, server.start() + "/hook"


def wait_until(predicate, timeout=60.0):
    """Poll until `predicate` holds; the timeout only guards against a hang (no test relies on it being short)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


@pytest.fixture
def emulator(tmp_path):
    # a hundredth of a second for each of the vendors' hours: Svix's 27-hour schedule runs in a quarter second
    emulator = Emulator(tmp_path / "hooks.db", webhook_hour=0.01)
    yield emulator
    emulator.close()


def clerk_endpoint(emulator, url):
    return emulator.clerk.add_webhook("end-user-api", url)


def stripe_endpoint(emulator, url):
    account = emulator.stripe._platform["id"]
    return emulator.stripe.create_webhook_endpoint(account, {"url": url, "enabled_events": ["*"]})


def test_a_receiver_that_hangs_does_not_hold_up_the_api_request(emulator):
    """The API call returns while the receiver still holds its answer back: delivery is not inside the request."""
    import threading

    gate = threading.Event()
    receiver, server, url = served_receiver(gate=gate)
    try:
        clerk_endpoint(emulator, url)
        made: list[dict] = []
        call = threading.Thread(
            target=lambda: made.append(emulator.clerk.create_user("end-user-api", {"email_address": ["s@example.com"]}))
        )
        call.start()
        call.join(timeout=60)  # a guard against a hang only
        assert made and not gate.is_set()  # returned while the receiver has not answered
        gate.set()
        assert wait_until(lambda: emulator.outbox.messages("clerk")[0].state == "delivered")
        assert json.loads(receiver.received[0]["body"])["data"]["id"] == made[0]["id"]
    finally:
        gate.set()
        server.stop()


def test_failures_are_retried_with_the_same_svix_id_until_delivered(emulator):
    receiver, server, url = served_receiver(answers=[500, 503, 404])
    try:
        endpoint = clerk_endpoint(emulator, url)
        emulator.clerk.create_user("end-user-api", {"email_address": ["retry@example.com"]})
        assert wait_until(lambda: emulator.outbox.messages("clerk")[0].state == "delivered")
        message = emulator.outbox.messages("clerk")[0]
        assert message.attempts == 4
        assert [a["status"] for a in emulator.outbox.attempts(message.seq)] == [500, 503, 404, 200]
        assert {r["headers"]["svix-id"] for r in receiver.received} == {message.message_id}
        for delivery in receiver.received:  # every attempt is signed, each with its own timestamp
            Webhook(endpoint["secret"]).verify(delivery["body"], delivery["headers"])
    finally:
        server.stop()


@pytest.mark.parametrize(("vendor", "waits"), [("stripe", STRIPE_RETRY_WAITS), ("clerk", SVIX_RETRY_WAITS)])
def test_a_message_that_never_succeeds_fails_after_the_vendors_last_attempt(emulator, vendor, waits):
    receiver, server, url = served_receiver(answers=[500] * 20)
    try:
        if vendor == "stripe":
            stripe_endpoint(emulator, url)
            emulator.stripe.create_customer(emulator.stripe._platform["id"], {"email": "x@example.com"})
        else:
            clerk_endpoint(emulator, url)
            emulator.clerk.create_user("end-user-api", {"email_address": ["x@example.com"]})
        assert wait_until(lambda: emulator.outbox.messages(vendor)[0].state == "failed")
        message = emulator.outbox.messages(vendor)[0]
        assert message.attempts == len(waits) + 1 == len(receiver.received)
        assert message.next_at is None
    finally:
        server.stop()


def test_retries_wait_the_vendors_schedule(tmp_path):
    """With real hours (webhook_hour=3600) the second attempt is five seconds away for Svix: nothing is due."""
    from tests.conftest import FakeClock

    clock = FakeClock()
    emulator = Emulator(tmp_path / "slow.db", webhook_hour=3600, clock=clock)
    receiver, server, url = served_receiver(answers=[500])
    try:
        clerk_endpoint(emulator, url)
        emulator.clerk.create_user("end-user-api", {"email_address": ["later@example.com"]})
        assert wait_until(lambda: emulator.outbox.messages("clerk")[0].attempts == 1)
        message = emulator.outbox.messages("clerk")[0]
        assert message.state == "pending" and message.next_at == clock() + 5  # Svix's first wait, 5 s
        assert emulator.settle(0.5) and len(receiver.received) == 1
    finally:
        server.stop()
        emulator.close()


def test_a_deleted_endpoint_stops_its_retries(tmp_path):
    emulator = Emulator(tmp_path / "gone.db", webhook_hour=3600)
    receiver, server, url = served_receiver(answers=[500])
    try:
        endpoint = stripe_endpoint(emulator, url)
        account = emulator.stripe._platform["id"]
        emulator.stripe.create_customer(account, {"email": "gone@example.com"})
        assert wait_until(lambda: emulator.outbox.messages("stripe")[0].attempts == 1)
        emulator.stripe.delete_webhook_endpoint(account, endpoint["id"])
        message = emulator.outbox.messages("stripe")[0]
        with emulator.file.write() as conn:  # the hour passes
            conn.execute("UPDATE _dream_webhook_outbox SET next_at = 0 WHERE seq = ?", (message.seq,))
        assert wait_until(lambda: emulator.outbox.messages("stripe")[0].state == "failed")
        assert emulator.outbox.attempts(message.seq)[-1]["error"] == "endpoint deleted or disabled"
        assert len(receiver.received) == 1
    finally:
        server.stop()
        emulator.close()


def test_resend_delivers_the_same_event_again(emulator):
    receiver, server, url = served_receiver()
    try:
        endpoint = stripe_endpoint(emulator, url)
        event = emulator.stripe.emit(emulator.stripe._platform["id"], "customer.created", {"id": "cus_x"})
        assert emulator.settle()
        again = emulator.outbox.resend("stripe", event["id"])
        assert [m.message_id for m in again] == [event["id"]]
        assert emulator.settle()
        assert len(receiver.received) == 2
        bodies = [r["body"] for r in receiver.received]
        assert bodies[0] == bodies[1]
        for delivery in receiver.received:
            signed = stripe.Webhook.construct_event(
                delivery["body"], delivery["headers"]["stripe-signature"], endpoint["secret"]
            )
            assert signed.id == event["id"]
    finally:
        server.stop()


def test_two_processes_over_one_store_deliver_each_attempt_once(tmp_path):
    path = tmp_path / "shared.db"
    first, second = Emulator(path, webhook_hour=0.01), Emulator(path, webhook_hour=0.01)
    receiver, server, url = served_receiver()
    try:
        stripe_endpoint(first, url)
        second.deliveries.start()  # like `dream emulator serve`, looking for work queued by others
        account = first.stripe._platform["id"]
        events = [first.stripe.emit(account, "customer.created", {"id": f"cus_{n}"})["id"] for n in range(40)]
        assert wait_until(lambda: all(m.state == "delivered" for m in first.outbox.messages("stripe", limit=100)))
        ids = [json.loads(r["body"])["id"] for r in receiver.received]
        assert sorted(ids) == sorted(events)  # every event, none twice
        assert len(first.stripe.state.deliveries()) == 40
    finally:
        server.stop()
        first.close()
        second.close()


def test_a_failing_receivers_status_and_answer_are_logged_and_named_by_the_flow(tmp_path):
    """`flow run --workers` says which request failed with which status and body, never a guess at the cause."""
    import httpx

    from dreamcli.platform.flow_http import HttpFlow

    receiver, server, url = served_receiver(answers=[500, 500, 500, 500])
    emulator = Emulator(tmp_path / "hooks.db", webhook_hour=3600)  # real hours: the retry waits an hour
    try:
        stripe_endpoint(emulator, url)
        customer = emulator.stripe.create_customer(emulator.stripe._platform["id"], {"email": "c@example.com"})
        assert wait_until(lambda: emulator.outbox.attempts(emulator.outbox.messages("stripe")[0].seq))
        attempt = emulator.outbox.attempts(emulator.outbox.messages("stripe")[0].seq)[0]
        assert attempt["status"] == 500 and attempt["error"] == 'HTTP 500: {"received":false}'
        with httpx.Client() as http:
            fate = HttpFlow({}, emulator, None, http)._webhook_fate("customer.created", customer["id"])
        assert fate == (
            f'Stripe\'s customer.created: {url} answered HTTP 500: {{"received":false}} (attempt 1, pending) '
            "(`dream events list`)"
        )
        with httpx.Client() as http:
            none = HttpFlow({}, emulator, None, http)._webhook_fate("customer.created", "cus_nobody")
        assert none == "Stripe made no customer.created event for cus_nobody (`dream events list`)"
    finally:
        server.stop()
        emulator.close()
