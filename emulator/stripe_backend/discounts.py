"""Discounts and prorations, what turns prices into the amounts invoices charge: a coupon or promotion code applied
to a subscription (or a checkout's) becomes a Discount (`once`: the next invoice; `repeating`: for its months;
`forever`), redeeming the coupon and code within their limits; a price or quantity changed mid-period makes
proration invoice items for the unused and the remaining time (`proration_behavior`), billed on the next invoice,
or at once with `always_invoice`."""

from __future__ import annotations

import builtins
from typing import Any

from emulator.stripe_backend.common import PERIOD_SECONDS
from emulator.stripe_backend.customers import Customers
from emulator.stripe_errors import StripeAPIError, no_such
from emulator.vendor_state import new_id, public

MONTH = PERIOD_SECONDS


class Discounts(Customers):
    def resolve_discounts(
        self, account: str, raw: Any, customer_id: str, subscription_id: str | None, now: int, param: str = "discounts"
    ) -> builtins.list[str]:
        """`discounts` ([{coupon} | {promotion_code}]) as Discount objects (made and saved; the coupon and the code
        redeemed); their ids."""
        made = []
        for index, entry in enumerate(raw if isinstance(raw, list) else []):
            if not isinstance(entry, dict):
                continue
            promo = None
            if entry.get("promotion_code"):
                promo = self.state.load(str(entry["promotion_code"]), account, "promotion_code")
                if promo is None:
                    raise no_such("promotion_code", str(entry["promotion_code"]), f"{param}[{index}][promotion_code]")
                self._check_promotion_code(promo, customer_id, now, f"{param}[{index}][promotion_code]")
                coupon_id = promo["promotion"]["coupon"]
            elif entry.get("coupon"):
                coupon_id = str(entry["coupon"])
            else:
                continue
            coupon = self.state.load(coupon_id, account, "coupon")
            if coupon is None:
                raise no_such("coupon", coupon_id, f"{param}[{index}][coupon]")
            self._check_coupon(coupon, now, f"{param}[{index}][coupon]")
            end = now + coupon["duration_in_months"] * MONTH if coupon["duration"] == "repeating" else None
            discount = {
                "id": new_id("di_", 24),
                "object": "discount",
                "checkout_session": None,
                "customer": customer_id,
                "end": end,
                "invoice": None,
                "invoice_item": None,
                "promotion_code": promo["id"] if promo else None,
                "source": {"coupon": coupon["id"], "type": "coupon"},
                "start": now,
                "subscription": subscription_id,
                "subscription_item": None,
                "_once_left": coupon["duration"] == "once",
            }
            self.state.save(account, discount)
            coupon["times_redeemed"] += 1
            coupon["valid"] = not (coupon["max_redemptions"] and coupon["times_redeemed"] >= coupon["max_redemptions"])
            self.state.save(account, coupon)
            if promo is not None:
                promo["times_redeemed"] += 1
                self.state.save(account, promo)
            made.append(discount["id"])
        return made

    def _check_coupon(self, coupon: dict[str, Any], now: int, param: str) -> None:
        if not coupon["valid"] or (coupon.get("redeem_by") and coupon["redeem_by"] < now):
            raise StripeAPIError(400, f"Coupon expired: {coupon['id']}", code="coupon_expired", param=param)

    def _check_promotion_code(self, promo: dict[str, Any], customer_id: str, now: int, param: str) -> None:
        limit = promo.get("max_redemptions")
        if (
            not promo["active"]
            or (promo.get("expires_at") and promo["expires_at"] < now)
            or (limit and promo["times_redeemed"] >= limit)
            or (promo.get("customer") and promo["customer"] != customer_id)
        ):
            raise StripeAPIError(
                400,
                f"This promotion code cannot be redeemed: {promo['code']}",
                code="promotion_code_invalid",
                param=param,
            )

    def promotion_code_by_code(self, account: str, code: str) -> dict[str, Any]:
        found = next(
            (
                p
                for p in self.state.find(account, "promotion_code")
                if p["code"].lower() == code.lower() and p["active"]
            ),
            None,
        )
        if found is None:
            raise StripeAPIError(
                400, f"No active promotion code {code!r}.", code="promotion_code_invalid", param="promotion_code"
            )
        return found

    def discount_amounts(
        self, account: str, discount_ids: builtins.list[str], subtotal: int, currency: str | None, now: int
    ) -> builtins.list[dict[str, Any]]:
        """What each discount takes off `subtotal` now (percent of what is left, or an amount in the invoice's
        currency), each used once for a `once` coupon; `[{amount, discount}]`."""
        taken, left = [], subtotal
        for discount_id in discount_ids:
            discount = self.state.load(discount_id, account, "discount")
            if discount is None or (discount["end"] is not None and discount["end"] <= now):
                continue
            if discount["_once_left"] is False and self._coupon_of(account, discount)["duration"] == "once":
                continue
            coupon = self._coupon_of(account, discount)
            if coupon.get("percent_off") is not None:
                amount = round(left * float(coupon["percent_off"]) / 100)
            elif coupon.get("currency") == currency:
                amount = min(int(coupon["amount_off"]), left)
            else:
                continue
            if coupon["duration"] == "once":
                discount["_once_left"] = False
                self.state.save(account, discount)
            left -= amount
            taken.append({"amount": amount, "discount": discount_id})
        return taken

    def _coupon_of(self, account: str, discount: dict[str, Any]) -> dict[str, Any]:
        return self.state.load(discount["source"]["coupon"], account, "coupon") or {"duration": "forever"}

    # Prorations

    def prorate(
        self,
        account: str,
        subscription: dict[str, Any],
        old: tuple[dict[str, Any], int] | None,
        new: tuple[dict[str, Any], int] | None,
        item: dict[str, Any],
        now: int,
    ) -> builtins.list[dict[str, Any]]:
        """Invoice items for an item's change now: credit for the unused time on the old price and quantity, charge
        for the remaining time on the new, pending on the subscription's next invoice."""
        start, end = item["current_period_start"], item["current_period_end"]
        if end <= now or end <= start:
            return []
        fraction = (end - now) / (end - start)
        made = []
        for sign, side, words in ((-1, old, "Unused time on"), (1, new, "Remaining time on")):
            if side is None:
                continue
            price, quantity = side
            amount = sign * round(price["unit_amount"] * quantity * fraction)
            if amount == 0:
                continue
            entry = {
                "id": new_id("ii_", 24),
                "object": "invoiceitem",
                "amount": amount,
                "currency": price["currency"],
                "customer": subscription["customer"],
                "date": now,
                "description": f"{words} {quantity} × {price.get('nickname') or price['product']}",
                "discountable": False,
                "discounts": [],
                "invoice": None,
                "livemode": False,
                "metadata": {},
                "parent": {
                    "subscription_details": {"subscription": subscription["id"], "subscription_item": item["id"]},
                    "type": "subscription_details",
                },
                "period": {"end": end, "start": now},
                "pricing": None,
                "proration": True,
                "quantity": quantity,
                "tax_rates": [],
                "test_clock": subscription.get("test_clock"),
                "_price": price,
                "_subscription": subscription["id"],
            }
            self.state.save(account, entry)
            self.emit(account, "invoiceitem.created", public(entry))
            made.append(entry)
        return made

    def pending_prorations(self, account: str, subscription_id: str) -> builtins.list[dict[str, Any]]:
        return [
            item
            for item in self.state.find(account, "invoiceitem", newest_first=False)
            if item.get("_subscription") == subscription_id and item["invoice"] is None
        ]
