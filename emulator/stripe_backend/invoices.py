"""Invoices (a subscription's, or one-off from invoice items): drafted, finalized, charged, and their events."""

from __future__ import annotations

import builtins
import json
from typing import Any

from emulator.stripe_backend.common import (
    _as_bool,
    _line,
    _merge_metadata,
    _pricing,
    as_int,
    currency_of,
)
from emulator.stripe_backend.discounts import Discounts
from emulator.stripe_errors import StripeAPIError, missing_param
from emulator.vendor_state import new_id, public


class Invoices(Discounts):
    def _invoice(
        self,
        account: str,
        customer: dict[str, Any],
        subscription: dict[str, Any],
        reason: str,
        invoice_id: str,
        *,
        trial: bool = False,
    ) -> dict[str, Any]:
        """A subscription's invoice, finalized: `invoice.created` and `invoice.finalized` are emitted. A trial's
        first invoice is for 0 ("Trial period for ...")."""
        lines = [
            _line(
                invoice_id,
                0 if trial else item["price"]["unit_amount"] * item["quantity"],
                item["price"]["currency"],
                (
                    f"Trial period for {item['price'].get('nickname') or item['price']['product']}"
                    if trial
                    else f"{item['quantity']} × {item['price'].get('nickname') or item['price']['product']}"
                ),
                {
                    "invoice_item_details": None,
                    "subscription_item_details": {
                        "invoice_item": None,
                        "proration": False,
                        "proration_details": {"credited_items": None},
                        "subscription": subscription["id"],
                        "subscription_item": item["id"],
                    },
                    "type": "subscription_item_details",
                },
                {"end": item["current_period_end"], "start": item["current_period_start"]},
                item["quantity"],
                item["price"],
            )
            for item in subscription["items"]["data"]
        ]
        for pending in self.pending_prorations(account, subscription["id"]):  # billed with this invoice
            lines.append(self._proration_line(account, invoice_id, pending))
        parent = {
            "quote_details": None,
            "subscription_details": {"metadata": subscription["metadata"], "subscription": subscription["id"]},
            "type": "subscription_details",
        }
        invoice = self._draft_invoice(
            account,
            customer,
            invoice_id,
            lines,
            reason,
            currency=subscription["currency"],
            parent=parent,
            default_payment_method=subscription.get("default_payment_method"),
            discounts=[] if trial else subscription.get("discounts") or [],
            now=self.clock_now(customer),
        )
        invoice["_subscription"] = subscription["id"]  # the list filter `subscription=` reads it
        return self._finalize_invoice(account, invoice)

    def _draft_invoice(
        self,
        account: str,
        customer: dict[str, Any],
        invoice_id: str,
        lines: builtins.list[dict[str, Any]],
        reason: str,
        *,
        currency: str | None,
        parent: dict[str, Any] | None = None,
        default_payment_method: str | None = None,
        description: str | None = None,
        metadata: dict[str, str] | None = None,
        discounts: builtins.list[str] | None = None,
        now: int | None = None,
    ) -> dict[str, Any]:
        """A draft invoice at 2026-10-28.endive (lines priced by `pricing`, its origin under `parent`), its
        `discounts` taken off the discountable lines; emits `invoice.created`."""
        subtotal = sum(line["amount"] for line in lines)
        discountable = sum(line["amount"] for line in lines if line["discountable"])
        taken = (
            self.discount_amounts(account, discounts, discountable, currency, now or self.state.now())
            if discounts and discountable > 0
            else []
        )
        now = self.state.now()
        total = subtotal - sum(t["amount"] for t in taken)
        sequence = customer.get("next_invoice_sequence", 1)
        customer["next_invoice_sequence"] = sequence + 1
        self.state.save(account, customer)
        invoice = {
            "id": invoice_id,
            "object": "invoice",
            "account_country": "US",
            "account_name": None,
            "account_tax_ids": None,
            "amount_due": total,
            "amount_overpaid": 0,
            "amount_paid": 0,
            "amount_remaining": total,
            "amount_shipping": 0,
            "application": None,
            "attempt_count": 0,
            "attempted": False,
            "auto_advance": True,
            "automatic_tax": {
                "disabled_reason": None,
                "enabled": False,
                "liability": None,
                "provider": None,
                "status": None,
            },
            "automatically_finalizes_at": None,
            "billing_reason": reason,
            "collection_method": "charge_automatically",
            "confirmation_secret": None,
            "created": now,
            "currency": currency,
            "custom_fields": None,
            "customer": customer["id"],
            "customer_account": None,
            "customer_address": customer.get("address"),
            "customer_email": customer.get("email"),
            "customer_name": customer.get("name"),
            "customer_phone": customer.get("phone"),
            "customer_shipping": customer.get("shipping"),
            "customer_tax_exempt": customer.get("tax_exempt", "none"),
            "customer_tax_ids": [],
            "default_payment_method": default_payment_method,
            "default_source": None,
            "default_tax_rates": [],
            "description": description,
            "discounts": [t["discount"] for t in taken],
            "due_date": None,
            "effective_at": None,
            "ending_balance": None,
            "footer": None,
            "from_invoice": None,
            "hosted_invoice_url": None,
            "invoice_pdf": None,
            "issuer": {"type": "self"},
            "last_finalization_error": None,
            "latest_revision": None,
            "lines": {"object": "list", "data": lines, "has_more": False, "url": f"/v1/invoices/{invoice_id}/lines"},
            "livemode": False,
            "metadata": metadata or {},
            "next_payment_attempt": None,
            "number": None,
            "on_behalf_of": None,
            "parent": parent,
            "payment_settings": {"default_mandate": None, "payment_method_options": None, "payment_method_types": None},
            "period_end": now,
            "period_start": now,
            "post_payment_credit_notes_amount": 0,
            "pre_payment_credit_notes_amount": 0,
            "receipt_number": None,
            "rendering": None,
            "shipping_cost": None,
            "shipping_details": None,
            "starting_balance": 0,
            "statement_descriptor": None,
            "status": "draft",
            "status_transitions": {
                "finalized_at": None,
                "marked_uncollectible_at": None,
                "paid_at": None,
                "voided_at": None,
            },
            "subtotal": subtotal,
            "subtotal_excluding_tax": subtotal,
            "test_clock": None,
            "total": total,
            "total_discount_amounts": taken,
            "total_excluding_tax": total,
            "total_pretax_credit_amounts": [],
            "total_taxes": [],
            "webhooks_delivered_at": None,
        }
        invoice["_sequence"] = sequence
        self.state.save(account, invoice)
        self.emit(account, "invoice.created", public(json.loads(json.dumps(invoice))))
        return invoice

    def _finalize_invoice(self, account: str, invoice: dict[str, Any]) -> dict[str, Any]:
        """Draft -> open, numbered, with its hosted page; emits `invoice.finalized`."""
        now, invoice_id = self.state.now(), invoice["id"]
        customer = self.get(account, "customer", invoice["customer"])
        sequence = invoice["_sequence"]
        invoice.update(
            status="open",
            number=f"{customer.get('invoice_prefix', 'DREAM')}-{sequence:04d}",
            effective_at=now,
            ending_balance=0,
            hosted_invoice_url=f"https://invoice.stripe.com/i/{account}/{invoice_id}",
            invoice_pdf=f"https://pay.stripe.com/invoice/{account}/{invoice_id}/pdf",
        )
        invoice["status_transitions"]["finalized_at"] = now
        self.state.save(account, invoice)
        self.emit(account, "invoice.finalized", public(json.loads(json.dumps(invoice))))
        return invoice

    # Invoice items and one-off invoices (what the Stripe CLI's invoice triggers make)

    def create_invoice_item(self, account: str, params: dict[str, Any]) -> dict[str, Any]:
        if not params.get("customer"):
            raise missing_param("customer")
        customer = self.get(account, "customer", str(params["customer"]), label="customer")
        price = None
        if params.get("price") or params.get("pricing"):
            price_id = params.get("price") or (params.get("pricing") or {}).get("price")
            price = self.get(account, "price", str(price_id))
            quantity = as_int(params, "quantity", minimum=1) or 1
            amount, currency = price["unit_amount"] * quantity, price["currency"]
        else:
            amount = as_int(params, "amount", required=True) or 0
            currency, quantity = currency_of(params), 1
        now = self.state.now()
        item = {
            "id": new_id("ii_", 24),
            "object": "invoiceitem",
            "amount": amount,
            "currency": currency,
            "customer": customer["id"],
            "date": now,
            "description": params.get("description"),
            "discountable": True,
            "discounts": [],
            "invoice": None,
            "livemode": False,
            "metadata": _merge_metadata({}, params.get("metadata")),
            "parent": None,
            "period": {"end": now, "start": now},
            "pricing": _pricing(price),
            "proration": False,
            "quantity": quantity,
            "tax_rates": [],
            "test_clock": None,
            "_price": price,
        }
        self.state.save(account, item)
        self.emit(account, "invoiceitem.created", public(item))
        return public(item)

    def create_invoice(self, account: str, params: dict[str, Any]) -> dict[str, Any]:
        """A one-off draft invoice, holding the customer's pending invoice items unless told to exclude them."""
        if not params.get("customer"):
            raise missing_param("customer")
        customer = self.get(account, "customer", str(params["customer"]), label="customer")
        behavior = params.get("pending_invoice_items_behavior", "exclude")
        if behavior not in ("include", "exclude"):
            raise StripeAPIError(400, "Invalid pending_invoice_items_behavior", param="pending_invoice_items_behavior")
        if params.get("collection_method", "charge_automatically") != "charge_automatically":
            raise StripeAPIError(
                400, "Only collection_method=charge_automatically is emulated.", param="collection_method"
            )
        invoice_id = new_id("in_", 24)
        items = (
            [
                i
                for i in self.state.find(account, "invoiceitem", newest_first=False)
                if i["customer"] == customer["id"] and i["invoice"] is None
            ]
            if behavior == "include"
            else []
        )
        lines = []
        for item in items:
            parent = {
                "invoice_item_details": {
                    "invoice_item": item["id"],
                    "proration": False,
                    "proration_details": {"credited_items": None},
                    "subscription": None,
                },
                "subscription_item_details": None,
                "type": "invoice_item_details",
            }
            lines.append(
                _line(
                    invoice_id,
                    item["amount"],
                    item["currency"],
                    item["description"],
                    parent,
                    item["period"],
                    item["quantity"],
                    item["_price"],
                )
            )
            item["invoice"] = invoice_id
            self.state.save(account, item)
        currency = (
            items[0]["currency"] if items else (str(params["currency"]).lower() if params.get("currency") else "usd")
        )
        invoice = self._draft_invoice(
            account,
            customer,
            invoice_id,
            lines,
            "manual",
            currency=currency,
            default_payment_method=params.get("default_payment_method"),
            description=params.get("description"),
            metadata=_merge_metadata({}, params.get("metadata")),
        )
        invoice["auto_advance"] = _as_bool(params.get("auto_advance", False))
        self.state.save(account, invoice)
        return public(invoice)

    def finalize_invoice(self, account: str, invoice_id: str) -> dict[str, Any]:
        invoice = self.get(account, "invoice", invoice_id)
        if invoice["status"] != "draft":
            raise StripeAPIError(400, "This invoice is already finalized, you can't re-finalize a non-draft invoice.")
        return public(self._finalize_invoice(account, invoice))

    def pay_invoice(self, account: str, invoice_id: str, params: dict[str, Any]) -> dict[str, Any]:
        """Charge an invoice now (finalizing a draft first); a declining card answers 402 `card_error`, as Stripe
        does, after `invoice.payment_failed`."""
        invoice = self.get(account, "invoice", invoice_id)
        if invoice["status"] == "paid":
            raise StripeAPIError(400, "Invoice is already paid", code="invoice_already_paid")
        if invoice["status"] not in ("draft", "open"):
            raise StripeAPIError(400, f"You cannot pay an invoice that is {invoice['status']}.")
        if invoice["status"] == "draft":
            invoice = self._finalize_invoice(account, invoice)
        customer = self.get(account, "customer", invoice["customer"])
        method = params.get("payment_method") or invoice.get("default_payment_method")
        problem = self._charge_error(account, customer, str(method) if method else None)
        self._settle_invoice(account, invoice, problem is None)
        if problem is not None:
            raise problem
        return public(invoice)

    def _settle_invoice(self, account: str, invoice: dict[str, Any], paid: bool) -> None:
        """An attempt to charge an open invoice, and its events."""
        now = self.state.now()
        invoice.update(attempted=True, attempt_count=invoice["attempt_count"] + 1)
        if paid:
            invoice.update(status="paid", amount_paid=invoice["amount_due"], amount_remaining=0, auto_advance=False)
            invoice["status_transitions"]["paid_at"] = now
            self.state.save(account, invoice)
            self.emit(account, "invoice.paid", public(invoice))
            self.emit(account, "invoice.payment_succeeded", public(invoice))
        else:
            invoice["next_payment_attempt"] = now + 3 * 24 * 3600
            self.state.save(account, invoice)
            self.emit(account, "invoice.payment_failed", public(invoice))

    def update_invoice(self, account: str, invoice_id: str, params: dict[str, Any]) -> dict[str, Any]:
        invoice = self.get(account, "invoice", invoice_id)
        before = json.loads(json.dumps(invoice))
        for field in ("description", "footer"):
            if field in params:
                invoice[field] = params[field] or None
        if "auto_advance" in params:
            invoice["auto_advance"] = params["auto_advance"] in (True, "true")
        invoice["metadata"] = _merge_metadata(invoice["metadata"], params.get("metadata"))
        return public(self._updated(account, "invoice.updated", before, invoice))

    def close_invoice(self, account: str, invoice_id: str, status: str) -> dict[str, Any]:
        """Void an open invoice, or mark it uncollectible: nothing more is collected on it."""
        invoice = self.get(account, "invoice", invoice_id)
        if invoice["status"] not in ("open",) and not (
            status == "uncollectible" and invoice["status"] == "uncollectible"
        ):
            raise StripeAPIError(
                400, f"You can only {'void' if status == 'void' else 'mark uncollectible'} an open invoice."
            )
        invoice.update(status=status, auto_advance=False, next_payment_attempt=None)
        stamp = "voided_at" if status == "void" else "marked_uncollectible_at"
        invoice["status_transitions"][stamp] = self.state.now()
        self.state.save(account, invoice)
        self.emit(account, "invoice.voided" if status == "void" else "invoice.marked_uncollectible", public(invoice))
        return public(invoice)

    def delete_invoice(self, account: str, invoice_id: str) -> dict[str, Any]:
        invoice = self.get(account, "invoice", invoice_id)
        if invoice["status"] != "draft":
            raise StripeAPIError(400, "You can only delete draft invoices.")
        return self._removed(account, invoice, "invoice.deleted")

    def delete_invoice_item(self, account: str, item_id: str) -> dict[str, Any]:
        item = self.get(account, "invoiceitem", item_id)
        if item["invoice"] is not None:
            raise StripeAPIError(400, "This invoice item is on an invoice and cannot be deleted.")
        return self._removed(account, item, "invoiceitem.deleted")

    def _proration_line(self, account: str, invoice_id: str, pending: dict[str, Any]) -> dict[str, Any]:
        """A pending proration as a line of `invoice_id` (the item now belongs to that invoice)."""
        details = pending["parent"]["subscription_details"]
        line = _line(
            invoice_id,
            pending["amount"],
            pending["currency"],
            pending["description"],
            {
                "invoice_item_details": {
                    "invoice_item": pending["id"],
                    "proration": True,
                    "proration_details": {"credited_items": None},
                    "subscription": details["subscription"],
                },
                "subscription_item_details": None,
                "type": "invoice_item_details",
            },
            pending["period"],
            pending["quantity"],
            pending["_price"],
        )
        line["discountable"] = False
        pending["invoice"] = invoice_id
        self.state.save(account, pending)
        return line

    def invoice_prorations_now(self, account: str, subscription: dict[str, Any]) -> dict[str, Any] | None:
        """`proration_behavior=always_invoice`: the pending prorations on an invoice now, charged."""
        pending = self.pending_prorations(account, subscription["id"])
        if not pending:
            return None
        customer = self.get(account, "customer", subscription["customer"])
        invoice_id = new_id("in_", 24)
        lines = [self._proration_line(account, invoice_id, item) for item in pending]
        invoice = self._draft_invoice(
            account,
            customer,
            invoice_id,
            lines,
            "subscription_update",
            currency=subscription["currency"],
            default_payment_method=subscription.get("default_payment_method"),
        )
        invoice["_subscription"] = subscription["id"]
        invoice = self._finalize_invoice(account, invoice)
        if invoice["amount_due"] > 0:
            self._settle_invoice(
                account, invoice, self._charge_succeeds(account, customer, invoice["default_payment_method"])
            )
        else:  # a net credit: nothing to collect (Stripe would add it to the customer's balance)
            invoice.update(status="paid", amount_paid=0, amount_remaining=0)
            self.state.save(account, invoice)
        return invoice
