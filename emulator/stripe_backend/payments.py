"""One-off payments and saved cards: PaymentIntents (created, confirmed with a test card, captured when their
capture is manual, canceled), the Charge each confirmation makes (declined with the card's code), Refunds, and
SetupIntents (a card saved for later, checked when it is confirmed), each with the events Stripe sends."""

from __future__ import annotations

from typing import Any

from emulator.stripe_backend.checkout import Checkout
from emulator.stripe_backend.common import _as_bool, _merge_metadata, as_int, card_error, currency_of
from emulator.stripe_errors import StripeAPIError, missing_param
from emulator.stripe_params import store_plain
from emulator.vendor_state import new_id, public


def _card_details(method: dict[str, Any]) -> dict[str, Any]:
    card = method.get("card") or {}
    return {"card": {**card, "network": card.get("brand"), "checks": None, "three_d_secure": None}, "type": "card"}


class Payments(Checkout):
    # PaymentIntents

    def create_payment_intent(self, account: str, params: dict[str, Any]) -> dict[str, Any]:
        amount = as_int(params, "amount", required=True, minimum=1) or 0
        currency = currency_of(params)
        if params.get("customer"):
            self.get(account, "customer", str(params["customer"]), label="customer")
        intent: dict[str, Any] = {
            "id": new_id("pi_", 24),
            "object": "payment_intent",
            "amount": amount,
            "amount_capturable": 0,
            "amount_received": 0,
            "capture_method": params.get("capture_method") or "automatic_async",
            "client_secret": None,
            "confirmation_method": params.get("confirmation_method") or "automatic",
            "created": self.state.now(),
            "currency": currency,
            "customer": params.get("customer"),
            "description": params.get("description"),
            "last_payment_error": None,
            "latest_charge": None,
            "livemode": False,
            "metadata": _merge_metadata({}, params.get("metadata")),
            "payment_method": None,
            "payment_method_types": params.get("allowed_payment_method_types") or ["card"],
            "receipt_email": params.get("receipt_email"),
            "setup_future_usage": params.get("setup_future_usage"),
            "status": "requires_payment_method",
        }
        intent["client_secret"] = f"{intent['id']}_secret_{new_id('', 24)}"
        store_plain(
            intent, params, "POST /v1/payment_intents", {"amount", "currency", "customer", "metadata", "confirm"}
        )
        if params.get("payment_method"):
            intent["payment_method"] = self.payment_method(account, str(params["payment_method"]))["id"]
            intent["status"] = "requires_confirmation"
        self.state.save(account, intent)
        self.emit(account, "payment_intent.created", public(intent))
        if _as_bool(params.get("confirm", False)):
            return self.confirm_payment_intent(account, intent["id"], {})
        return public(intent)

    def confirm_payment_intent(self, account: str, intent_id: str, params: dict[str, Any]) -> dict[str, Any]:
        """Charge the intent's card now: `succeeded` (or `requires_capture` with manual capture), or a card error
        answered with the intent back at `requires_payment_method` and its `last_payment_error`, as Stripe does."""
        intent = self.get(account, "payment_intent", intent_id)
        if intent["status"] not in ("requires_payment_method", "requires_confirmation"):
            raise StripeAPIError(
                400,
                f"This PaymentIntent's status is {intent['status']}, so it cannot be confirmed.",
                code="payment_intent_unexpected_state",
            )
        if params.get("payment_method"):
            intent["payment_method"] = self.payment_method(account, str(params["payment_method"]))["id"]
        if not intent["payment_method"]:
            raise missing_param("payment_method")
        method = self.payment_method(account, intent["payment_method"])
        declined = card_error(method.get("_test_id", method["id"]))
        charge = self._charge(account, intent, method, declined)
        intent["latest_charge"] = charge["id"]
        if declined is not None:
            error = dict(declined.body["error"], charge=charge["id"], payment_method=public(method))
            intent.update(status="requires_payment_method", last_payment_error=error)
            self.state.save(account, intent)
            self.emit(account, "payment_intent.payment_failed", public(intent))
            declined.body["error"]["payment_intent"] = public(intent)
            raise declined
        manual = intent["capture_method"] == "manual"
        intent.update(
            status="requires_capture" if manual else "succeeded",
            amount_capturable=intent["amount"] if manual else 0,
            amount_received=0 if manual else intent["amount"],
            last_payment_error=None,
        )
        self.state.save(account, intent)
        self.emit(
            account,
            "payment_intent.amount_capturable_updated" if manual else "payment_intent.succeeded",
            public(intent),
        )
        return public(intent)

    def capture_payment_intent(self, account: str, intent_id: str, params: dict[str, Any]) -> dict[str, Any]:
        intent = self.get(account, "payment_intent", intent_id)
        if intent["status"] != "requires_capture":
            raise StripeAPIError(
                400,
                f"This PaymentIntent could not be captured because it has a status of {intent['status']}. Only a "
                "PaymentIntent with one of the following statuses may be captured: requires_capture.",
                code="payment_intent_unexpected_state",
            )
        amount = as_int(params, "amount_to_capture", minimum=1) or intent["amount"]
        charge = self.get(account, "charge", intent["latest_charge"])
        charge.update(captured=True, amount_captured=amount)
        self.state.save(account, charge)
        self.emit(account, "charge.captured", public(charge))
        intent.update(status="succeeded", amount_capturable=0, amount_received=amount)
        self.state.save(account, intent)
        self.emit(account, "payment_intent.succeeded", public(intent))
        return public(intent)

    def cancel_payment_intent(self, account: str, intent_id: str, params: dict[str, Any]) -> dict[str, Any]:
        intent = self.get(account, "payment_intent", intent_id)
        if intent["status"] in ("succeeded", "canceled"):
            raise StripeAPIError(
                400,
                f"You cannot cancel this PaymentIntent because it has a status of {intent['status']}.",
                code="payment_intent_unexpected_state",
            )
        intent.update(
            status="canceled",
            canceled_at=self.state.now(),
            cancellation_reason=params.get("cancellation_reason") or "requested_by_customer",
        )
        self.state.save(account, intent)
        self.emit(account, "payment_intent.canceled", public(intent))
        return public(intent)

    # Charges and refunds

    def _charge(
        self, account: str, intent: dict[str, Any], method: dict[str, Any], declined: StripeAPIError | None
    ) -> dict[str, Any]:
        error = declined.body["error"] if declined is not None else {}
        charge = {
            "id": new_id("ch_", 24),
            "object": "charge",
            "amount": intent["amount"],
            "amount_captured": 0 if declined or intent["capture_method"] == "manual" else intent["amount"],
            "amount_refunded": 0,
            "balance_transaction": None,
            "captured": declined is None and intent["capture_method"] != "manual",
            "created": self.state.now(),
            "currency": intent["currency"],
            "customer": intent.get("customer"),
            "description": intent.get("description"),
            "disputed": False,
            "failure_code": error.get("code"),
            "failure_message": error.get("message"),
            "livemode": False,
            "metadata": dict(intent["metadata"]),
            "outcome": {
                "network_status": "declined_by_network" if declined else "approved_by_network",
                "reason": error.get("decline_code"),
                "risk_level": "normal",
                "seller_message": "The bank did not return any further details with this decline."
                if declined
                else "Payment complete.",
                "type": "issuer_declined" if declined else "authorized",
            },
            "paid": declined is None,
            "payment_intent": intent["id"],
            "payment_method": method["id"],
            "payment_method_details": _card_details(method),
            "receipt_email": intent.get("receipt_email"),
            "refunded": False,
            "refunds": {"object": "list", "data": [], "has_more": False, "url": "/v1/refunds"},
            "status": "failed" if declined else "succeeded",
        }
        self.state.save(account, charge)
        self.emit(account, "charge.failed" if declined else "charge.succeeded", public(charge))
        return charge

    def create_refund(self, account: str, params: dict[str, Any]) -> dict[str, Any]:
        charge_id = params.get("charge")
        if not charge_id and params.get("payment_intent"):
            charge_id = self.get(account, "payment_intent", str(params["payment_intent"]))["latest_charge"]
        if not charge_id:
            raise missing_param("charge")
        charge = self.get(account, "charge", str(charge_id), label="charge")
        left = charge["amount_captured"] - charge["amount_refunded"]
        amount = as_int(params, "amount", minimum=1) or left
        if not charge["paid"] or amount > left:
            raise StripeAPIError(
                400,
                f"Charge {charge['id']} has already been refunded."
                if left == 0
                else f"Refund amount ({amount}) is greater than unrefunded amount on charge ({left})",
                code="charge_already_refunded" if left == 0 else None,
                param="amount",
            )
        refund = {
            "id": new_id("re_", 24),
            "object": "refund",
            "amount": amount,
            "charge": charge["id"],
            "created": self.state.now(),
            "currency": charge["currency"],
            "metadata": _merge_metadata({}, params.get("metadata")),
            "payment_intent": charge["payment_intent"],
            "reason": params.get("reason"),
            "status": "succeeded",
        }
        self.state.save(account, refund)
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] == charge["amount_captured"]
        charge["refunds"]["data"].insert(0, refund)
        self.state.save(account, charge)
        self.emit(account, "refund.created", public(refund))
        self.emit(account, "charge.refunded", public(charge))
        return public(refund)

    # SetupIntents

    def create_setup_intent(self, account: str, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("customer"):
            self.get(account, "customer", str(params["customer"]), label="customer")
        intent: dict[str, Any] = {
            "id": new_id("seti_", 24),
            "object": "setup_intent",
            "cancellation_reason": None,
            "created": self.state.now(),
            "customer": params.get("customer"),
            "description": params.get("description"),
            "last_setup_error": None,
            "livemode": False,
            "metadata": _merge_metadata({}, params.get("metadata")),
            "payment_method": None,
            "payment_method_types": params.get("allowed_payment_method_types") or ["card"],
            "status": "requires_payment_method",
            "usage": params.get("usage") or "off_session",
        }
        intent["client_secret"] = f"{intent['id']}_secret_{new_id('', 24)}"
        store_plain(intent, params, "POST /v1/setup_intents", {"customer", "metadata", "confirm"})
        if params.get("payment_method"):
            intent["payment_method"] = self.payment_method(account, str(params["payment_method"]))["id"]
            intent["status"] = "requires_confirmation"
        self.state.save(account, intent)
        self.emit(account, "setup_intent.created", public(intent))
        if _as_bool(params.get("confirm", False)):
            return self.confirm_setup_intent(account, intent["id"], {})
        return public(intent)

    def confirm_setup_intent(self, account: str, intent_id: str, params: dict[str, Any]) -> dict[str, Any]:
        """Check the card now, as Stripe does when saving one: a card declined at attach fails the setup."""
        intent = self.get(account, "setup_intent", intent_id)
        if params.get("payment_method"):
            intent["payment_method"] = self.payment_method(account, str(params["payment_method"]))["id"]
        if not intent["payment_method"]:
            raise missing_param("payment_method")
        method = self.payment_method(account, intent["payment_method"])
        outcome = method.get("_test_id", method["id"])
        declined = card_error(outcome)
        from emulator.stripe_backend.common import TEST_PAYMENT_METHODS

        if declined is not None and (TEST_PAYMENT_METHODS[outcome][2] or ("",))[0] == "attach":
            intent.update(status="requires_payment_method", last_setup_error=dict(declined.body["error"]))
            self.state.save(account, intent)
            self.emit(account, "setup_intent.setup_failed", public(intent))
            declined.body["error"]["setup_intent"] = public(intent)
            raise declined
        intent["status"] = "succeeded"
        self.state.save(account, intent)
        self.emit(account, "setup_intent.succeeded", public(intent))
        return public(intent)

    def cancel_setup_intent(self, account: str, intent_id: str, params: dict[str, Any]) -> dict[str, Any]:
        intent = self.get(account, "setup_intent", intent_id)
        if intent["status"] in ("succeeded", "canceled"):
            raise StripeAPIError(
                400,
                f"You cannot cancel this SetupIntent because it has a status of {intent['status']}.",
                code="setup_intent_unexpected_state",
            )
        intent.update(
            status="canceled", cancellation_reason=params.get("cancellation_reason") or "requested_by_customer"
        )
        self.state.save(account, intent)
        self.emit(account, "setup_intent.canceled", public(intent))
        return public(intent)
