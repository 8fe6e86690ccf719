"""Checkout sessions: created, completed (the hosted page's payment: a customer, a subscription or a
payment), expired."""

from __future__ import annotations

from typing import Any

from emulator.stripe_backend.billing import Billing
from emulator.stripe_backend.common import (
    _merge_metadata,
    card_error,
    currency_of,
)
from emulator.stripe_errors import StripeAPIError, missing_param, no_such
from emulator.vendor_state import new_id, public


class Checkout(Billing):
    def create_checkout_session(self, account: str, params: dict[str, Any], base_url: str) -> dict[str, Any]:
        mode = params.get("mode")
        if mode is None:
            raise missing_param("mode")
        if mode not in ("payment", "setup", "subscription"):
            raise StripeAPIError(400, "Invalid mode: must be one of payment, setup, or subscription", param="mode")
        if not params.get("success_url"):
            raise missing_param("success_url")
        raw_items = params.get("line_items") or []
        if mode == "setup" and raw_items:
            raise StripeAPIError(400, "You cannot pass `line_items` in `setup` mode.", param="line_items")
        if mode != "setup" and (not isinstance(raw_items, list) or not raw_items):
            raise missing_param("line_items")
        line_items = []
        amount = 0
        currency = currency_of(params) if mode == "setup" and params.get("currency") else None
        for index, item in enumerate(raw_items):
            price_id = item.get("price") if isinstance(item, dict) else None
            if not price_id:
                raise missing_param(f"line_items[{index}][price]")
            price = self.state.load(price_id, account, "price")
            if price is None:
                raise no_such("price", price_id, f"line_items[{index}][price]")
            if mode == "subscription" and price["type"] != "recurring":
                raise StripeAPIError(
                    400,
                    "You must provide at least one recurring price in `subscription` mode when using prices.",
                    param=f"line_items[{index}][price]",
                )
            if mode == "payment" and price["type"] == "recurring":
                raise StripeAPIError(
                    400,
                    "You specified `payment` mode but passed a recurring price. Either switch to `subscription` mode "
                    "or use only one-time prices.",
                    param=f"line_items[{index}][price]",
                )
            quantity = int(item.get("quantity", 1))
            line_items.append({"price": price_id, "quantity": quantity})
            amount += price["unit_amount"] * quantity
            currency = price["currency"]
        customer = params.get("customer")
        if customer:
            self.get(account, "customer", customer)
        now = self.state.now()
        session_id = new_id("cs_test_", 58)
        session = {
            "id": session_id,
            "object": "checkout.session",
            "adaptive_pricing": None,
            "after_expiration": None,
            "allow_promotion_codes": None,
            "allowed_payment_method_types": None,
            "amount_subtotal": None if mode == "setup" else amount,
            "amount_total": None if mode == "setup" else amount,
            "automatic_tax": {"enabled": False, "liability": None, "provider": None, "status": None},
            "billing_address_collection": None,
            "cancel_url": params.get("cancel_url"),
            "client_reference_id": params.get("client_reference_id"),
            "client_secret": None,
            "collected_information": None,
            "consent": None,
            "consent_collection": None,
            "created": now,
            "currency": currency,
            "currency_conversion": None,
            "custom_fields": [],
            "custom_text": {
                "after_submit": None,
                "shipping_address": None,
                "submit": None,
                "terms_of_service_acceptance": None,
            },
            "customer": customer,
            "customer_account": None,
            "customer_creation": None if customer else ("always" if mode == "subscription" else "if_required"),
            "customer_details": None,
            "customer_email": params.get("customer_email"),
            "discounts": [],
            "expires_at": now + 24 * 3600,
            "integration_identifier": None,
            "invoice": None,
            "invoice_creation": None,
            "livemode": False,
            "locale": None,
            "managed_payments": None,
            "metadata": _merge_metadata({}, params.get("metadata")),
            "mode": mode,
            "origin_context": None,
            "payment_intent": None,
            "payment_link": None,
            "payment_method_collection": "always" if mode != "payment" else None,
            "payment_method_configuration_details": None,
            "payment_method_options": None,
            "payment_method_types": ["card"],
            "payment_status": "no_payment_required" if mode == "setup" else "unpaid",
            "permissions": None,
            "recovered_from": None,
            "saved_payment_method_options": None,
            "setup_intent": None,
            "shipping_address_collection": None,
            "shipping_cost": None,
            "shipping_options": [],
            "status": "open",
            "submit_type": None,
            "subscription": None,
            "success_url": params["success_url"],
            "total_details": None if mode == "setup" else {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
            "ui_mode": "hosted_page",
            "url": f"{base_url}/_emulator/stripe/checkout/{session_id}",
            "wallet_options": None,
            "_line_items": line_items,
            "_payment_intent_data": params.get("payment_intent_data"),
            "_subscription_metadata": _merge_metadata({}, (params.get("subscription_data") or {}).get("metadata")),
            "_subscription_data": {
                key: value
                for key, value in (params.get("subscription_data") or {}).items()
                if key in ("trial_period_days", "trial_end", "description")
            },
            "_discounts": params.get("discounts") if isinstance(params.get("discounts"), list) else [],
        }
        if params.get("allow_promotion_codes") in (True, "true"):
            if session["_discounts"]:
                raise StripeAPIError(
                    400, "You may only specify one of these parameters: allow_promotion_codes, discounts."
                )
            session["allow_promotion_codes"] = True
        self.state.save(account, session)
        return public(session)

    def complete_checkout_session(
        self,
        account: str | None,
        session_id: str,
        payment_method: str | None = None,
        expected_amount: int | None = None,
        promotion_code: str | None = None,
    ) -> dict[str, Any]:
        """Stand in for the customer paying (the hosted page's button, or the Stripe CLI's `payment_pages`
        confirm with a test card): customer + subscription (or payment), and their events. `promotion_code` is the
        code the customer enters on a page that allows them (`allow_promotion_codes`)."""
        account = account or self.state.scope_of(session_id)
        session = self.state.load(session_id, account, "checkout.session") if account else None
        if session is None or account is None:
            raise no_such("checkout.session", session_id)
        if session["status"] != "open":
            raise StripeAPIError(400, "This Checkout Session is no longer active.", code="checkout_session_inactive")
        if expected_amount is not None and expected_amount != session["amount_total"]:
            raise StripeAPIError(
                400,
                f"The expected amount ({expected_amount}) does not match the session's ({session['amount_total']}).",
                param="expected_amount",
            )
        discounts = list(session.get("_discounts") or [])
        if promotion_code:
            if not session.get("allow_promotion_codes"):
                raise StripeAPIError(
                    400, "This Checkout Session does not allow promotion codes.", param="promotion_code"
                )
            discounts.append({"promotion_code": self.promotion_code_by_code(account, promotion_code)["id"]})
        payment_method = payment_method or "pm_card_visa"  # the hosted page's card, unless the caller names one
        method = self.payment_method(account, payment_method)
        declined = card_error(method.get("_test_id", method["id"]))
        if declined is not None:
            raise declined
        if session["customer"] is None:
            customer = self.create_customer(account, {"email": session.get("customer_email")})
            session["customer"] = customer["id"]
        buyer = self.get(account, "customer", session["customer"])
        session["customer_details"] = {
            "address": buyer.get("address"),
            "business_name": None,
            "email": buyer.get("email"),
            "individual_name": None,
            "name": buyer.get("name"),
            "phone": buyer.get("phone"),
            "tax_exempt": "none",
            "tax_ids": [],
        }
        if session["mode"] != "subscription":  # a one-time payment, or a card saved for later: no subscription
            if session["mode"] == "payment" and discounts:
                ids = self.resolve_discounts(account, discounts, buyer["id"], None, self.clock_now(buyer))
                off = sum(
                    t["amount"]
                    for t in self.discount_amounts(
                        account, ids, session["amount_subtotal"], session["currency"], self.clock_now(buyer)
                    )
                )
                session["total_details"]["amount_discount"] = off
                session["amount_total"] = session["amount_subtotal"] - off
            if session["mode"] == "payment":
                session.update(status="complete", payment_status="paid", payment_intent=new_id("pi_", 24))
            else:
                session.update(status="complete", setup_intent=new_id("seti_", 24))
            self.state.save(account, session)
            self.emit(account, "checkout.session.completed", public(session))
            return public(session)
        prices = [(self.get(account, "price", item["price"]), item["quantity"]) for item in session["_line_items"]]
        buyer = self.get(account, "customer", session["customer"])
        subscription = self._start_subscription(
            account,
            buyer,
            prices,
            session["_subscription_metadata"],
            payment_method=payment_method,
            trial_end=self._trial_end(session.get("_subscription_data") or {}, prices, self.clock_now(buyer)),
            description=(session.get("_subscription_data") or {}).get("description"),
            discounts=discounts,
        )
        first = self.get(account, "invoice", subscription["latest_invoice"])
        off = sum(t["amount"] for t in first["total_discount_amounts"])
        if off and session["total_details"]:
            session["total_details"]["amount_discount"] = off
            session["amount_total"] = first["total"]
        session.update(status="complete", payment_status="paid", subscription=subscription["id"])
        self.state.save(account, session)
        self.emit(account, "checkout.session.completed", public(session))
        return public(session)

    def expire_checkout_session(self, account: str, session_id: str) -> dict[str, Any]:
        session = self.get(account, "checkout.session", session_id)
        if session["status"] != "open":
            raise StripeAPIError(
                400, f"Only Checkout Sessions with a status of `open` can be expired. This one is {session['status']}."
            )
        session.update(status="expired", url=None)
        self.state.save(account, session)
        self.emit(account, "checkout.session.expired", public(session))
        return public(session)
