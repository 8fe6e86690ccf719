"""Stripe's subset the platform uses: Connect OAuth, products and prices on connected accounts,
checkout sessions, customers, subscriptions, webhook endpoints and signed events.

State and logic only (no HTTP), in the moto shape: `emulator/stripe_http.py` parses requests,
calls these methods and wraps the results in Stripe's envelopes.

A package in the moto shape, one module a resource family, each a class the next one builds on: core (objects, lists,
expansion, events) -> accounts (Connect) -> catalog -> customers (and payment methods) -> invoices -> billing
(subscriptions) -> checkout -> payments (PaymentIntents, charges, refunds, SetupIntents) -> promotions (coupons,
promotion codes, plans, the customer portal) -> clocks (test clocks: renewals, Smart Retries, trials ending).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from dreamcli.stores.sqlite_file import SQLiteFile
from emulator.stripe_backend.clocks import Clocks
from emulator.stripe_backend.common import (
    API_VERSION,
    CURRENT_REQUEST,
    PLATFORM,
    TEST_CARD_TOKENS,
    TEST_PAYMENT_METHODS,
    as_int,
    card_error,
    currency_of,
    known_api_version,
    sign_payload,
)
from emulator.stripe_errors import StripeAPIError, StripeOAuthError, missing_param, no_such
from emulator.vendor_state import VendorState
from emulator.webhooks import Outbox

__all__ = [
    "API_VERSION",
    "CURRENT_REQUEST",
    "PLATFORM",
    "TEST_CARD_TOKENS",
    "TEST_PAYMENT_METHODS",
    "StripeAPIError",
    "StripeBackend",
    "StripeOAuthError",
    "as_int",
    "card_error",
    "currency_of",
    "known_api_version",
    "missing_param",
    "no_such",
    "sign_payload",
]


class StripeBackend(Clocks):
    def __init__(self, file: SQLiteFile, clock: Callable[[], float] = time.time, outbox: Outbox | None = None) -> None:
        self.state = VendorState(file, "stripe", clock)
        self.outbox = outbox or Outbox(file, clock)
        self._platform = self._ensure_platform()
