"""Discounts, legacy plans and the customer portal: coupons and promotion codes (what `allow_promotion_codes`
lets a customer enter), Plans (the older form of recurring prices, still served), and billing portal
configurations and sessions, whose page lets a customer cancel or switch plan with the events that follow."""

from __future__ import annotations

import secrets
from typing import Any

from emulator.stripe_backend.common import _as_bool, _merge_metadata, as_int, currency_of, subscription_item
from emulator.stripe_backend.payments import Payments
from emulator.stripe_errors import StripeAPIError, missing_param, no_such
from emulator.stripe_params import store_plain
from emulator.vendor_state import new_id, public


class Promotions(Payments):
    # Coupons and promotion codes

    def create_coupon(self, account: str, params: dict[str, Any]) -> dict[str, Any]:
        percent, amount = params.get("percent_off"), as_int(params, "amount_off", minimum=1)
        if (percent is None) == (amount is None):
            raise StripeAPIError(400, "You must pass either amount_off or percent_off (but not both).")
        duration = params.get("duration") or "once"
        if duration == "repeating" and not params.get("duration_in_months"):
            raise missing_param("duration_in_months")
        coupon: dict[str, Any] = {
            "id": str(params.get("id") or secrets.token_urlsafe(6).replace("-", "x").replace("_", "y")),
            "object": "coupon",
            "amount_off": amount,
            "created": self.state.now(),
            "currency": currency_of(params) if amount is not None else None,
            "duration": duration,
            "duration_in_months": as_int(params, "duration_in_months"),
            "livemode": False,
            "max_redemptions": as_int(params, "max_redemptions"),
            "metadata": _merge_metadata({}, params.get("metadata")),
            "name": params.get("name"),
            "percent_off": float(percent) if percent is not None else None,
            "redeem_by": as_int(params, "redeem_by"),
            "times_redeemed": 0,
            "valid": True,
        }
        if self.state.load(coupon["id"], account, "coupon") is not None:
            raise StripeAPIError(400, "Coupon already exists.", code="resource_already_exists", param="id")
        self.state.save(account, coupon)
        self.emit(account, "coupon.created", coupon)
        return coupon

    def update_coupon(self, account: str, coupon_id: str, params: dict[str, Any]) -> dict[str, Any]:
        return self._edited(account, "coupon", coupon_id, params, texts=("name",))

    def delete_coupon(self, account: str, coupon_id: str) -> dict[str, Any]:
        return self._removed(account, self.get(account, "coupon", coupon_id), "coupon.deleted")

    def create_promotion_code(self, account: str, params: dict[str, Any]) -> dict[str, Any]:
        promotion: dict[str, Any] = params["promotion"] if isinstance(params.get("promotion"), dict) else {}
        coupon_id = promotion.get("coupon") or params.get("coupon")
        if not coupon_id:
            raise missing_param("promotion[coupon]")
        coupon = self.state.load(str(coupon_id), account, "coupon")
        if coupon is None:
            raise no_such("coupon", str(coupon_id), "promotion[coupon]")
        code = str(params.get("code") or secrets.token_hex(4).upper())
        if any(p["code"].lower() == code.lower() and p["active"] for p in self.state.find(account, "promotion_code")):
            raise StripeAPIError(400, "An active promotion code with `code` already exists.", param="code")
        promo = {
            "id": new_id("promo_", 24),
            "object": "promotion_code",
            "active": _as_bool(params.get("active", True)),
            "code": code,
            "created": self.state.now(),
            "customer": params.get("customer"),
            "expires_at": as_int(params, "expires_at"),
            "livemode": False,
            "max_redemptions": as_int(params, "max_redemptions"),
            "metadata": _merge_metadata({}, params.get("metadata")),
            "promotion": {"coupon": coupon["id"], "type": "coupon"},
            "restrictions": {"first_time_transaction": False, "minimum_amount": None, "minimum_amount_currency": None},
            "times_redeemed": 0,
        }
        self.state.save(account, promo)
        self.emit(account, "promotion_code.created", promo)
        return promo

    def update_promotion_code(self, account: str, promo_id: str, params: dict[str, Any]) -> dict[str, Any]:
        return self._edited(account, "promotion_code", promo_id, params, flags=("active",))

    # Plans: the older form of a recurring price

    def create_plan(self, account: str, params: dict[str, Any]) -> dict[str, Any]:
        interval = params.get("interval")
        if interval not in ("day", "week", "month", "year"):
            raise (
                missing_param("interval")
                if not interval
                else StripeAPIError(400, "Invalid interval: must be one of day, week, month, or year", param="interval")
            )
        product = params.get("product")
        if isinstance(product, dict):
            product = self.create_product(account, product)["id"]
        elif not product:
            raise missing_param("product")
        else:
            self.get(account, "product", str(product), label="product")
        plan = {
            "id": params.get("id") or new_id("plan_", 24),
            "object": "plan",
            "active": _as_bool(params.get("active", True)),
            "amount": as_int(params, "amount", minimum=0),
            "billing_scheme": params.get("billing_scheme") or "per_unit",
            "created": self.state.now(),
            "currency": currency_of(params),
            "interval": interval,
            "interval_count": as_int(params, "interval_count", minimum=1) or 1,
            "livemode": False,
            "metadata": _merge_metadata({}, params.get("metadata")),
            "nickname": params.get("nickname"),
            "product": product,
            "trial_period_days": as_int(params, "trial_period_days"),
            "usage_type": params.get("usage_type") or "licensed",
        }
        self.state.save(account, plan)
        self.emit(account, "plan.created", plan)
        return plan

    def update_plan(self, account: str, plan_id: str, params: dict[str, Any]) -> dict[str, Any]:
        return self._edited(account, "plan", plan_id, params, texts=("nickname",), flags=("active",))

    def delete_plan(self, account: str, plan_id: str) -> dict[str, Any]:
        return self._removed(account, self.get(account, "plan", plan_id), "plan.deleted")

    # The customer portal

    def create_portal_configuration(self, account: str, params: dict[str, Any]) -> dict[str, Any]:
        now = self.state.now()
        configuration = {
            "id": new_id("bpc_", 24),
            "object": "billing_portal.configuration",
            "active": True,
            "application": None,
            "business_profile": params.get("business_profile") or {},
            "created": now,
            "default_return_url": params.get("default_return_url"),
            "features": params.get("features") or {},
            "is_default": not self.state.find(account, "billing_portal.configuration"),
            "livemode": False,
            "login_page": {"enabled": False, "url": None},
            "metadata": _merge_metadata({}, params.get("metadata")),
            "name": params.get("name"),
            "updated": now,
        }
        store_plain(configuration, params, "POST /v1/billing_portal/configurations", {"metadata"})
        self.state.save(account, configuration)
        self.emit(account, "billing_portal.configuration.created", configuration)
        return configuration

    def update_portal_configuration(self, account: str, config_id: str, params: dict[str, Any]) -> dict[str, Any]:
        configuration = self.get(account, "billing_portal.configuration", config_id)
        before = dict(configuration)
        if "active" in params:
            configuration["active"] = _as_bool(params["active"])
        configuration["metadata"] = _merge_metadata(configuration["metadata"], params.get("metadata"))
        store_plain(configuration, params, "POST /v1/billing_portal/configurations/{id}", {"active", "metadata"})
        configuration["updated"] = self.state.now()
        return self._updated(account, "billing_portal.configuration.updated", before, configuration)

    def create_portal_session(self, account: str, params: dict[str, Any], base_url: str) -> dict[str, Any]:
        if not params.get("customer"):
            raise missing_param("customer")
        customer = self.get(account, "customer", str(params["customer"]), label="customer")
        configuration = params.get("configuration") or next(
            (c["id"] for c in self.state.find(account, "billing_portal.configuration") if c["is_default"]), None
        )
        session_id = new_id("bps_", 24)
        session = {
            "id": session_id,
            "object": "billing_portal.session",
            "configuration": configuration,
            "created": self.state.now(),
            "customer": customer["id"],
            "flow": None,
            "livemode": False,
            "locale": params.get("locale"),
            "on_behalf_of": params.get("on_behalf_of"),
            "return_url": params.get("return_url"),
            "url": f"{base_url}/_emulator/stripe/portal/{session_id}",
        }
        self.state.save(account, session)
        self.emit(account, "billing_portal.session.created", session)
        return session

    def portal_action(self, session_id: str, action: str, subscription_id: str, price_id: str | None) -> dict[str, Any]:
        """What the portal page does for its customer: cancel a subscription at its period's end, or switch it
        to another price, with the `customer.subscription.updated` Stripe sends."""
        account = self.state.scope_of(session_id)
        session = self.state.load(session_id, account, "billing_portal.session") if account else None
        if session is None or account is None:
            raise no_such("billing_portal.session", session_id)
        subscription = self.get(account, "subscription", subscription_id)
        if subscription["customer"] != session["customer"]:
            raise no_such("subscription", subscription_id, "subscription")
        if action == "cancel":
            return self.update_subscription(account, subscription_id, {"cancel_at_period_end": "true"})
        if action == "switch" and price_id:
            price = self.get(account, "price", price_id, label="price")
            before = public(subscription)
            item = subscription["items"]["data"][0]
            subscription["items"]["data"] = [
                subscription_item(price, item["quantity"], subscription_id, self.state.now())
            ]
            self.state.save(account, subscription)
            self.emit(account, "customer.subscription.updated", subscription, {"items": before["items"]})
            return subscription
        raise StripeAPIError(400, "The portal can cancel a subscription or switch it to another price.")
