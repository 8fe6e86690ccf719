"""Products and prices, on the platform or a connected account."""

from __future__ import annotations

import json
from typing import Any

from emulator.stripe_backend.accounts import Accounts
from emulator.stripe_backend.common import (
    _as_bool,
    _merge_metadata,
    as_int,
    currency_of,
)
from emulator.stripe_errors import StripeAPIError, missing_param, no_such
from emulator.stripe_params import store_plain
from emulator.vendor_state import new_id


class Catalog(Accounts):
    # Products and prices

    def create_product(self, account: str, params: dict[str, Any]) -> dict[str, Any]:
        if not params.get("name"):
            raise missing_param("name")
        now = self.state.now()
        product = {
            "id": params.get("id") or new_id("prod_", 14),
            "object": "product",
            "active": _as_bool(params.get("active", True)),
            "created": now,
            "default_price": None,
            "description": params.get("description"),
            "images": [],
            "livemode": False,
            "marketing_features": [],
            "metadata": _merge_metadata({}, params.get("metadata")),
            "name": params["name"],
            "package_dimensions": None,
            "shippable": None,
            "statement_descriptor": None,
            "tax_code": None,
            "tax_details": None,
            "type": "service",
            "unit_label": None,
            "updated": now,
            "url": None,
        }
        if self.state.load(product["id"]) is not None:
            raise StripeAPIError(400, "Product already exists.", code="resource_already_exists", param="id")
        store_plain(
            product,
            params,
            "POST /v1/products",
            {"id", "active", "description", "metadata", "name", "default_price_data"},
        )
        self.state.save(account, product)
        data = params.get("default_price_data")
        if isinstance(data, dict):  # as Stripe: the product's first price, made with it and set as its default
            price = self.create_price(account, {**data, "product": product["id"]})
            product["default_price"] = price["id"]
            self.state.save(account, product)
        self.emit(account, "product.created", product)
        return product

    def update_product(self, account: str, product_id: str, params: dict[str, Any]) -> dict[str, Any]:
        product = self.get(account, "product", product_id)
        before = json.loads(json.dumps(product))
        if "name" in params:
            product["name"] = params["name"]
        if "active" in params:
            product["active"] = _as_bool(params["active"])
        if "description" in params:
            product["description"] = params["description"] or None
        product["metadata"] = _merge_metadata(product["metadata"], params.get("metadata"))
        product["updated"] = self.state.now()
        if params.get("default_price"):
            price = self.state.load(str(params["default_price"]), account, "price")
            if price is None or price["product"] != product_id:
                raise no_such("price", str(params["default_price"]), "default_price")
            product["default_price"] = price["id"]
        store_plain(
            product, params, "POST /v1/products/{id}", {"name", "active", "description", "metadata", "default_price"}
        )
        return self._updated(account, "product.updated", before, product)

    def create_price(self, account: str, params: dict[str, Any]) -> dict[str, Any]:
        currency = currency_of(params)
        if not params.get("product"):
            raise missing_param("product")
        self.get(account, "product", params["product"])
        unit_amount = as_int(params, "unit_amount", required=True, minimum=0)
        recurring = params.get("recurring")
        if recurring is not None:
            interval = recurring.get("interval") if isinstance(recurring, dict) else None
            if interval not in ("day", "week", "month", "year"):
                raise StripeAPIError(
                    400,
                    "Invalid recurring[interval]: must be one of day, week, month, or year",
                    param="recurring[interval]",
                )
            recurring = {
                "interval": interval,
                "interval_count": as_int(recurring, "interval_count", minimum=1) or 1,
                "meter": None,
                "trial_period_days": None,
                "usage_type": "licensed",
            }
        price = {
            "id": new_id("price_", 24),
            "object": "price",
            "active": _as_bool(params.get("active", True)),
            "billing_scheme": "per_unit",
            "created": self.state.now(),
            "currency": currency,
            "custom_unit_amount": None,
            "livemode": False,
            "lookup_key": None,
            "metadata": _merge_metadata({}, params.get("metadata")),
            "nickname": params.get("nickname"),
            "product": params["product"],
            "recurring": recurring,
            "tax_behavior": "unspecified",
            "tiers_mode": None,
            "transform_quantity": None,
            "type": "recurring" if recurring else "one_time",
            "unit_amount": unit_amount,
            "unit_amount_decimal": str(unit_amount),
        }
        store_plain(
            price,
            params,
            "POST /v1/prices",
            {"currency", "product", "unit_amount", "recurring", "active", "metadata", "nickname"},
        )
        self.state.save(account, price)
        self.emit(account, "price.created", price)
        return price

    def update_price(self, account: str, price_id: str, params: dict[str, Any]) -> dict[str, Any]:
        price = self.get(account, "price", price_id)
        before = json.loads(json.dumps(price))
        if "active" in params:
            price["active"] = _as_bool(params["active"])
        if "nickname" in params:
            price["nickname"] = params["nickname"] or None
        price["metadata"] = _merge_metadata(price["metadata"], params.get("metadata"))
        store_plain(price, params, "POST /v1/prices/{id}", {"active", "nickname", "metadata", "transfer_lookup_key"})
        return self._updated(account, "price.updated", before, price)

    def delete_product(self, account: str, product_id: str) -> dict[str, Any]:
        """As Stripe: a product with prices cannot be deleted (archive it with active=false)."""
        product = self.get(account, "product", product_id)
        if any(price.get("product") == product_id for price in self.state.find(account, "price")):
            raise StripeAPIError(
                400, "This product cannot be deleted because it has one or more user-created prices.", param="id"
            )
        return self._removed(account, product, "product.deleted")
