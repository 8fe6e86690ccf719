"""Customers and their payment methods: Stripe's test cards by id or token, declined when attached or when
charged as the testing docs say, and what charging a customer now answers."""

from __future__ import annotations

import json
import secrets
from typing import Any

from emulator.stripe_backend.catalog import Catalog
from emulator.stripe_backend.common import (
    TEST_CARD_TOKENS,
    TEST_PAYMENT_METHODS,
    _merge_metadata,
    card_error,
)
from emulator.stripe_errors import StripeAPIError, missing_param, no_such
from emulator.stripe_params import store_plain
from emulator.vendor_state import new_id, public


class Customers(Catalog):
    # Customers, checkout, subscriptions

    def create_customer(self, account: str, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("test_clock"):
            self.get(account, "test_helpers.test_clock", str(params["test_clock"]), label="test_clock")
        method = params.get("payment_method")
        if method:
            self.payment_method(account, str(method), param="payment_method")
        settings = params.get("invoice_settings") or {}
        if not isinstance(settings, dict):
            raise StripeAPIError(400, "Invalid object", param="invoice_settings")
        default_method = settings.get("default_payment_method")
        if default_method:
            self.payment_method(account, str(default_method), param="invoice_settings[default_payment_method]")
        customer: dict[str, Any] = {
            "id": new_id("cus_", 14),
            "object": "customer",
            "address": None,
            "balance": 0,
            "created": self.state.now(),
            "currency": None,
            "default_source": None,
            "delinquent": False,
            "description": params.get("description"),
            "email": params.get("email"),
            "invoice_prefix": secrets.token_hex(4).upper(),
            "invoice_settings": {
                "custom_fields": None,
                "default_payment_method": default_method or None,
                "footer": None,
                "rendering_options": None,
            },
            "livemode": False,
            "metadata": _merge_metadata({}, params.get("metadata")),
            "name": params.get("name"),
            "next_invoice_sequence": 1,
            "phone": params.get("phone"),
            "preferred_locales": [],
            "shipping": None,
            "tax_exempt": "none",
            "test_clock": None,
        }
        store_plain(
            customer,
            params,
            "POST /v1/customers",
            {"email", "name", "description", "phone", "metadata", "payment_method", "invoice_settings"},
        )
        self.state.save(account, customer)
        self.emit(account, "customer.created", customer)
        return customer

    def update_customer(self, account: str, customer_id: str, params: dict[str, Any]) -> dict[str, Any]:
        customer = self.get(account, "customer", customer_id)
        before = json.loads(json.dumps(customer))
        for name in ("email", "name", "description", "phone"):
            if name in params:
                customer[name] = params[name] or None
        customer["metadata"] = _merge_metadata(customer["metadata"], params.get("metadata"))
        settings = params.get("invoice_settings")
        if isinstance(settings, dict) and settings.get("default_payment_method"):
            method = self.payment_method(account, str(settings["default_payment_method"]))
            customer["invoice_settings"]["default_payment_method"] = method["id"]
        store_plain(
            customer,
            params,
            "POST /v1/customers/{id}",
            {"email", "name", "description", "phone", "metadata", "invoice_settings"},
        )
        return self._updated(account, "customer.updated", before, customer)

    def delete_customer(self, account: str, customer_id: str) -> dict[str, Any]:
        return self._removed(account, self.get(account, "customer", customer_id), "customer.deleted")

    # Payment methods: Stripe's test cards, by id or token

    def payment_method(self, account: str, method_id: str, param: str = "payment_method") -> dict[str, Any]:
        """A payment method of the account's, or one of Stripe's test ones (`pm_card_visa`: made on first use)."""
        found = self.state.load(method_id, account, "payment_method")
        if found is not None:
            return found
        if method_id not in TEST_PAYMENT_METHODS:
            raise no_such("PaymentMethod", method_id, param)
        return self._card(account, method_id, method_id, None)

    def _card(self, account: str, test_id: str, method_id: str, billing: Any) -> dict[str, Any]:
        brand, last4, _ = TEST_PAYMENT_METHODS[test_id]
        method = {
            "id": method_id,
            "object": "payment_method",
            "allow_redisplay": "unspecified",
            "billing_details": {
                "address": None,
                "email": None,
                "name": None,
                "phone": None,
                **(billing if isinstance(billing, dict) else {}),
            },
            "card": {
                "brand": brand,
                "country": "US",
                "exp_month": 12,
                "exp_year": 2034,
                "funding": "credit",
                "last4": last4,
            },
            "created": self.state.now(),
            "customer": None,
            "livemode": False,
            "metadata": {},
            "type": "card",
            "_test_id": test_id,
        }
        return self.state.save(account, method)

    def create_payment_method(self, account: str, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("type") != "card":
            raise StripeAPIError(400, "Only type=card is emulated.", param="type")
        card = params.get("card") or {}
        token = card.get("token") if isinstance(card, dict) else None
        if token not in TEST_CARD_TOKENS:
            raise StripeAPIError(
                400,
                f"Use one of Stripe's test tokens ({', '.join(TEST_CARD_TOKENS)}) as card[token].",
                param="card[token]",
            )
        return public(self._card(account, TEST_CARD_TOKENS[token], new_id("pm_", 24), params.get("billing_details")))

    def attach_payment_method(self, account: str, method_id: str, params: dict[str, Any]) -> dict[str, Any]:
        if not params.get("customer"):
            raise missing_param("customer")
        method = self.payment_method(account, method_id, "payment_method")
        outcome = TEST_PAYMENT_METHODS[method.get("_test_id", method["id"])][2]
        customer = self.get(account, "customer", str(params["customer"]))
        if outcome is not None and outcome[0] == "attach":  # Stripe checks the card when it is attached
            raise card_error(method.get("_test_id", method["id"])) or AssertionError
        if method["id"] in TEST_PAYMENT_METHODS:  # a shared test id: each attachment is a card of its own
            method = self._card(account, method["id"], new_id("pm_", 24), None)
        method["customer"] = customer["id"]
        self.state.save(account, method)
        self.emit(account, "payment_method.attached", public(method))
        return public(method)

    def _method_of(self, customer: dict[str, Any], method_id: str | None) -> str | None:
        return method_id or customer.get("invoice_settings", {}).get("default_payment_method") or None

    def _charge_error(self, account: str, customer: dict[str, Any], method_id: str | None) -> StripeAPIError | None:
        """What charging the customer now answers: None when it is paid; a card error when the card declines; a
        missing payment method when there is none to charge (the subscription or invoice stays unpaid)."""
        method_id = self._method_of(customer, method_id)
        if not method_id:
            return StripeAPIError(
                400,
                "This customer has no attached payment source or default payment method. Please consider adding a "
                "default payment method.",
                code="resource_missing",
            )
        method = self.payment_method(account, method_id)
        return card_error(method.get("_test_id", method["id"]))

    def _charge_succeeds(self, account: str, customer: dict[str, Any], method_id: str | None) -> bool:
        return self._charge_error(account, customer, method_id) is None

    def detach_payment_method(self, account: str, method_id: str) -> dict[str, Any]:
        method = self.payment_method(account, method_id)
        if not method.get("customer"):
            raise StripeAPIError(
                400, "The payment method you provided is not attached to a customer so detachment is impossible."
            )
        method["customer"] = None
        self.state.save(account, method)
        self.emit(account, "payment_method.detached", public(method), {"customer": method_id})
        return public(method)

    def update_payment_method(self, account: str, method_id: str, params: dict[str, Any]) -> dict[str, Any]:
        method = self.payment_method(account, method_id)
        before = json.loads(json.dumps(method))
        if isinstance(params.get("billing_details"), dict):
            method["billing_details"].update(params["billing_details"])
        if isinstance(params.get("card"), dict):
            for field in ("exp_month", "exp_year"):
                if field in params["card"]:
                    method["card"][field] = int(params["card"][field])
        method["metadata"] = _merge_metadata(method.get("metadata") or {}, params.get("metadata"))
        return public(self._updated(account, "payment_method.updated", before, method))
