"""Subscriptions: started (trials, payment_behavior, charging the first invoice), updated (items,
cancellation fields), canceled, listed as Stripe lists them."""

from __future__ import annotations

import builtins
import json
from typing import Any

from emulator.stripe_backend.common import (
    SUBSCRIPTION_STATUSES,
    _as_bool,
    _in_range,
    _merge_metadata,
    as_int,
    subscription_item,
)
from emulator.stripe_backend.invoices import Invoices
from emulator.stripe_errors import StripeAPIError, missing_param, no_such
from emulator.stripe_params import store_plain
from emulator.vendor_state import new_id


class Billing(Invoices):
    def create_subscription(self, account: str, params: dict[str, Any]) -> dict[str, Any]:
        """POST /v1/subscriptions: charged at once to the customer's default card (a declining test card leaves
        the subscription `incomplete` with an open invoice, as Stripe's `allow_incomplete` does)."""
        if not params.get("customer"):
            raise missing_param("customer")
        customer = self.get(account, "customer", str(params["customer"]), label="customer")
        raw = params.get("items")
        if not isinstance(raw, list) or not raw:
            raise missing_param("items")
        behavior = params.get("payment_behavior", "allow_incomplete")
        if behavior not in ("allow_incomplete", "default_incomplete", "error_if_incomplete", "pending_if_incomplete"):
            raise StripeAPIError(400, f"Invalid payment_behavior: {str(behavior)[:32]}", param="payment_behavior")
        prices = []
        for index, item in enumerate(raw):
            if not isinstance(item, dict) or not item.get("price"):
                raise missing_param(f"items[{index}][price]")
            price = self.state.load(str(item["price"]), account, "price")
            if price is None:
                raise no_such("price", str(item["price"]), f"items[{index}][price]")
            if price["type"] != "recurring":
                raise StripeAPIError(
                    400,
                    "The price specified is set to `type=one_time` but this field only accepts prices with "
                    "`type=recurring`.",
                    param=f"items[{index}][price]",
                )
            prices.append((price, as_int(item, "quantity", minimum=1) or 1))
        method = params.get("default_payment_method")
        if method:
            self.payment_method(account, str(method), "default_payment_method")
        trial_end = self._trial_end(params, prices, self.clock_now(customer))
        if behavior == "error_if_incomplete" and trial_end is None:
            problem = self._charge_error(account, customer, method)
            if problem is not None:
                raise problem
        subscription = self._start_subscription(
            account,
            customer,
            prices,
            _merge_metadata({}, params.get("metadata")),
            payment_method=method or None,
            description=params.get("description"),
            trial_end=trial_end,
            charge=behavior != "default_incomplete",
            discounts=params.get("discounts"),
        )
        store_plain(
            subscription,
            params,
            "POST /v1/subscriptions",
            {
                "customer",
                "items",
                "metadata",
                "default_payment_method",
                "description",
                "payment_behavior",
                "trial_end",
                "trial_period_days",
                "cancel_at",
                "cancel_at_period_end",
                "discounts",
            },
        )
        self._cancel_fields(subscription, params)
        self.state.save(account, subscription)
        return subscription

    def _trial_end(
        self, params: dict[str, Any], prices: builtins.list[tuple[dict[str, Any], int]], now: int | None = None
    ) -> int | None:
        """When a trial asked for ends: `trial_end` (a time, or "now": none), else `trial_period_days`, else
        `trial_from_plan` with the price's own trial days; from `now`, the customer's time."""
        now = self.state.now() if now is None else now
        if params.get("trial_end") not in (None, ""):
            if params["trial_end"] == "now":
                return None
            end = as_int(params, "trial_end")
            if end is None or end <= now:
                raise StripeAPIError(
                    400, "Invalid timestamp: must be an integer Unix timestamp in the future.", param="trial_end"
                )
            return end
        days = as_int(params, "trial_period_days", minimum=0)
        if days is None and _as_bool(params.get("trial_from_plan", False)):
            days = max(((p["recurring"] or {}).get("trial_period_days") or 0 for p, _ in prices), default=0)
        return now + days * 86400 if days else None

    def _cancel_fields(self, subscription: dict[str, Any], params: dict[str, Any]) -> None:
        """`cancel_at_period_end` and `cancel_at` (a time, or the period's end), and `cancellation_details`."""
        period_end = max(item["current_period_end"] for item in subscription["items"]["data"])
        if "cancel_at_period_end" in params:
            on = _as_bool(params["cancel_at_period_end"])
            subscription["cancel_at_period_end"] = on
            subscription["cancel_at"] = period_end if on else None
        if params.get("cancel_at") not in (None,):
            value = params["cancel_at"]
            if value == "":
                subscription.update(cancel_at=None, cancel_at_period_end=False)
            else:
                at = period_end if value in ("min_period_end", "max_period_end") else as_int(params, "cancel_at")
                subscription.update(cancel_at=at, cancel_at_period_end=False)
        details = params.get("cancellation_details")
        if isinstance(details, dict):
            for key in ("comment", "feedback"):
                if key in details:
                    subscription["cancellation_details"][key] = details[key] or None

    def _start_subscription(
        self,
        account: str,
        customer: dict[str, Any],
        prices: builtins.list[tuple[dict[str, Any], int]],
        metadata: dict[str, str],
        *,
        payment_method: str | None = None,
        description: str | None = None,
        trial_end: int | None = None,
        charge: bool = True,
        discounts: Any = None,
    ) -> dict[str, Any]:
        """A new subscription and its first invoice, charged now, with the events Stripe sends in causal order:
        customer.subscription.created, invoice.created, invoice.finalized, then invoice.paid and
        invoice.payment_succeeded (or invoice.payment_failed, the subscription left `incomplete`). With a trial the
        subscription is `trialing` until `trial_end` and its first invoice is for 0; `charge=False`
        (payment_behavior=default_incomplete) leaves it `incomplete` with an open invoice awaiting payment, and a
        customer with no payment method to charge does too."""
        now = self.clock_now(customer)
        subscription_id = new_id("sub_", 24)
        items = [subscription_item(price, quantity, subscription_id, now) for price, quantity in prices]
        if trial_end is not None:
            for item in items:
                item["current_period_end"] = trial_end
        no_method = self._method_of(customer, payment_method) is None
        paid = trial_end is not None or (charge and self._charge_succeeds(account, customer, payment_method))
        attempt = trial_end is None and charge and not no_method
        subscription = {
            "id": subscription_id,
            "object": "subscription",
            "application": None,
            "application_fee_percent": None,
            "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
            "billing_cycle_anchor": now,
            "billing_cycle_anchor_config": None,
            "billing_mode": {"flexible": None, "type": "classic"},
            "billing_schedules": [],
            "billing_thresholds": None,
            "cancel_at": None,
            "cancel_at_period_end": False,
            "canceled_at": None,
            "cancellation_details": {"comment": None, "feedback": None, "reason": None},
            "collection_method": "charge_automatically",
            "created": now,
            "currency": prices[0][0]["currency"] if prices else None,
            "customer": customer["id"],
            "customer_account": None,
            "days_until_due": None,
            "default_payment_method": payment_method,
            "default_source": None,
            "default_tax_rates": [],
            "description": description,
            "discounts": [],
            "ended_at": None,
            "invoice_settings": {"account_tax_ids": None, "issuer": {"type": "self"}},
            # Since API version 2025-03-31 the billing period lives on each item, not on the subscription.
            "items": {
                "object": "list",
                "data": items,
                "has_more": False,
                "url": f"/v1/subscription_items?subscription={subscription_id}",
            },
            "latest_invoice": None,
            "livemode": False,
            "managed_payments": None,
            "metadata": metadata,
            "next_pending_invoice_item_invoice": None,
            "on_behalf_of": None,
            "pause_collection": None,
            "payment_settings": {
                "payment_method_options": None,
                "payment_method_types": None,
                "save_default_payment_method": "off",
            },
            "pending_invoice_item_interval": None,
            "pending_setup_intent": None,
            "pending_update": None,
            "schedule": None,
            "start_date": now,
            "status": "trialing" if trial_end is not None else "active" if paid else "incomplete",
            "test_clock": customer.get("test_clock"),
            "transfer_data": None,
            "trial_end": trial_end,
            "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
            "trial_start": now if trial_end is not None else None,
        }
        if trial_end is not None:
            subscription["billing_cycle_anchor"] = trial_end
        if discounts:
            subscription["discounts"] = self.resolve_discounts(account, discounts, customer["id"], subscription_id, now)
        subscription["latest_invoice"] = invoice_id = new_id("in_", 24)
        self.state.save(account, subscription)
        self.emit(account, "customer.subscription.created", subscription)
        invoice = self._invoice(
            account, customer, subscription, "subscription_create", invoice_id, trial=trial_end is not None
        )
        if paid or attempt:
            self._settle_invoice(account, invoice, paid)
        if trial_end is not None and trial_end - now <= 3 * 86400:  # Stripe tells three days ahead, or at once
            self.emit(account, "customer.subscription.trial_will_end", subscription)
        return subscription

    def update_subscription(self, account: str, subscription_id: str, params: dict[str, Any]) -> dict[str, Any]:
        subscription = self.get(account, "subscription", subscription_id)
        if subscription["status"] == "canceled" and set(params) - {"cancellation_details", "metadata", "expand"}:
            raise StripeAPIError(400, "A canceled subscription can only update its cancellation_details and metadata.")
        previous: dict[str, Any] = {}
        behavior = params.get("proration_behavior") or "create_prorations"
        now = self.clock_now(self.get(account, "customer", subscription["customer"]))
        for index, change in enumerate(params.get("items") or []):
            if not isinstance(change, dict) or not change.get("price"):
                raise missing_param(f"items[{index}][price]")
            price = self.state.load(change["price"], account, "price")
            if price is None:
                raise no_such("price", change["price"], f"items[{index}][price]")
            previous.setdefault("items", json.loads(json.dumps(subscription["items"])))
            if not change.get("id"):  # as Stripe does: an item without an id is a new item, billed besides the others
                quantity = as_int(change, "quantity", minimum=1) or 1
                item = subscription_item(price, quantity, subscription["id"], self.state.now())
                anchor = subscription["items"]["data"][0] if subscription["items"]["data"] else item
                item.update(
                    current_period_start=anchor["current_period_start"], current_period_end=anchor["current_period_end"]
                )
                subscription["items"]["data"].append(item)
                if behavior != "none":
                    self.prorate(account, subscription, None, (price, quantity), item, now)
                continue
            target = next((i for i in subscription["items"]["data"] if i["id"] == change["id"]), None)
            if target is None:
                raise no_such("subscription_item", change["id"], f"items[{index}][id]")
            old = (target["price"], target["quantity"])
            target["price"] = price
            target["quantity"] = as_int(change, "quantity", minimum=1) or target["quantity"]
            if behavior != "none" and old != (price, target["quantity"]):
                self.prorate(account, subscription, old, (price, target["quantity"]), target, now)
        if "metadata" in params:
            previous["metadata"] = subscription["metadata"]
            subscription["metadata"] = _merge_metadata(subscription["metadata"], params["metadata"])
        for key in ("cancel_at_period_end", "cancel_at", "cancellation_details"):
            if key in params:
                previous[key] = json.loads(json.dumps(subscription[key]))
        self._cancel_fields(subscription, params)
        if "default_payment_method" in params and params["default_payment_method"]:
            previous["default_payment_method"] = subscription["default_payment_method"]
            method = self.payment_method(account, str(params["default_payment_method"]), "default_payment_method")
            subscription["default_payment_method"] = method["id"]
        if "discounts" in params:
            previous["discounts"] = subscription["discounts"]
            subscription["discounts"] = self.resolve_discounts(
                account, params["discounts"] or [], subscription["customer"], subscription["id"], now
            )
        if params.get("trial_end") == "now" and subscription["status"] == "trialing":
            previous["status"] = subscription["status"]
            subscription.update(status="active", trial_end=self.state.now())
        store_plain(
            subscription,
            params,
            "POST /v1/subscriptions/{id}",
            {
                "items",
                "metadata",
                "cancel_at_period_end",
                "cancel_at",
                "cancellation_details",
                "default_payment_method",
                "trial_end",
                "proration_behavior",
                "payment_behavior",
                "discounts",
            },
        )
        self.state.save(account, subscription)
        self.emit(account, "customer.subscription.updated", subscription, previous)
        if behavior == "always_invoice":
            invoice = self.invoice_prorations_now(account, subscription)
            if invoice is not None:
                subscription["latest_invoice"] = invoice["id"]
                self.state.save(account, subscription)
        return subscription

    def cancel_subscription(self, account: str, subscription_id: str) -> dict[str, Any]:
        subscription = self.get(account, "subscription", subscription_id)
        if subscription["status"] == "canceled":
            raise StripeAPIError(
                400, f"No such subscription: '{subscription_id}'; it was canceled.", code="resource_missing"
            )
        now = self.state.now()
        subscription.update(status="canceled", canceled_at=now, ended_at=now)
        self.state.save(account, subscription)
        self.emit(account, "customer.subscription.deleted", subscription)
        return subscription

    def list_subscriptions(self, account: str, params: dict[str, Any]) -> dict[str, Any]:
        """As Stripe lists them: not canceled ones unless `status` asks (`all`: every one; `ended`: canceled and
        incomplete_expired), by customer and price, and `created`/`current_period_*` ranges."""
        status = params.get("status")
        wanted: set[str] | None = {
            None: {s for s in SUBSCRIPTION_STATUSES if s not in ("canceled", "incomplete_expired")},
            "all": None,
            "ended": {"canceled", "incomplete_expired"},
        }.get(status, {str(status)})
        price = params.get("price")

        def keep(subscription: dict[str, Any]) -> bool:
            return (
                (wanted is None or subscription["status"] in wanted)
                and (not params.get("customer") or subscription["customer"] == params["customer"])
                and (not price or any(i["price"]["id"] == price for i in subscription["items"]["data"]))
                and _in_range(subscription["created"], params.get("created"))
            )

        return self.list(account, "subscription", params, keep=keep)
