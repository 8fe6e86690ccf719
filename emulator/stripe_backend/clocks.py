"""Time for billing, as Stripe gives it in test mode: test clocks. A customer made on a clock (`test_clock`) lives in
the clock's time; advancing the clock runs what Stripe's billing would have run meanwhile, in time order: trials
that end (then the first paid invoice), renewals at each period's end (`subscription_cycle` invoices, charged), a
failed collection leaving the subscription `past_due` and retried on Smart Retries' default schedule (8 attempts
within 2 weeks), after which the subscription is canceled (Stripe's default "cancel the subscription" when all
retries fail), and cancellations due (`cancel_at`, `cancel_at_period_end`)."""

from __future__ import annotations

from typing import Any

from emulator.stripe_backend.common import PERIOD_SECONDS, as_int
from emulator.stripe_backend.promotions import Promotions
from emulator.stripe_errors import StripeAPIError, missing_param
from emulator.vendor_state import new_id, public

DAY = 86400
# Smart Retries' default: up to 8 tries within 2 weeks; the days after the first failure of each of the 7 retries.
RETRY_DAYS = (1, 3, 5, 7, 9, 11, 14)


class Clocks(Promotions):
    def create_test_clock(self, account: str, params: dict[str, Any]) -> dict[str, Any]:
        frozen = as_int(params, "frozen_time", required=True) or 0
        clock: dict[str, Any] = {
            "id": new_id("clock_", 24),
            "object": "test_helpers.test_clock",
            "created": self.state.now(),
            "deletes_after": self.state.now() + 30 * DAY,
            "frozen_time": frozen,
            "livemode": False,
            "name": params.get("name"),
            "status": "ready",
            "status_details": {},
        }
        self.state.save(account, clock)
        self.emit(account, "test_helpers.test_clock.created", clock)
        return clock

    def delete_test_clock(self, account: str, clock_id: str) -> dict[str, Any]:
        clock = self.get(account, "test_helpers.test_clock", clock_id)
        return self._removed(account, clock, "test_helpers.test_clock.deleted")

    def advance_test_clock(self, account: str, clock_id: str, params: dict[str, Any]) -> dict[str, Any]:
        clock = self.get(account, "test_helpers.test_clock", clock_id)
        target = as_int(params, "frozen_time")
        if target is None:
            raise missing_param("frozen_time")
        if target <= clock["frozen_time"]:
            raise StripeAPIError(
                400, "The test clock's new frozen_time must be after its current frozen_time.", param="frozen_time"
            )
        clock["status"] = "advancing"
        self.state.save(account, clock)
        self.emit(account, "test_helpers.test_clock.advancing", clock)
        customers = {c["id"] for c in self.state.find(account, "customer") if c.get("test_clock") == clock_id}
        while (due := self._next_due(account, customers, target)) is not None:
            at, subscription, what = due
            self._run(account, subscription, what, at)
        clock.update(status="ready", frozen_time=target)
        self.state.save(account, clock)
        self.emit(account, "test_helpers.test_clock.ready", clock)
        return clock

    def _next_due(self, account: str, customers: set[str], until: int) -> tuple[int, dict[str, Any], str] | None:
        """The earliest billing moment at or before `until` among the clock's customers' subscriptions."""
        due: list[tuple[int, str, dict[str, Any], str]] = []
        for subscription in self.state.find(account, "subscription"):
            if subscription["customer"] not in customers or subscription["status"] in (
                "canceled",
                "incomplete_expired",
            ):
                continue
            period_end = min(item["current_period_end"] for item in subscription["items"]["data"])
            if subscription.get("cancel_at"):
                due.append((subscription["cancel_at"], "0", subscription, "cancel"))
            if subscription["status"] == "trialing" and subscription.get("trial_end"):
                due.append((subscription["trial_end"], "1", subscription, "trial_end"))
            elif subscription["status"] in ("active", "past_due"):
                due.append((period_end, "2", subscription, "renew"))
            if subscription["status"] == "past_due":
                invoice = self.state.load(subscription["latest_invoice"], account, "invoice")
                if invoice and invoice["status"] == "open" and invoice.get("next_payment_attempt"):
                    due.append((invoice["next_payment_attempt"], "3", subscription, "retry"))
        due = [d for d in due if d[0] <= until]
        if not due:
            return None
        at, _, subscription, what = min(due, key=lambda d: (d[0], d[1]))
        return at, subscription, what

    def _run(self, account: str, subscription: dict[str, Any], what: str, at: int) -> None:
        before = public(subscription)
        customer = self.get(account, "customer", subscription["customer"])
        if what == "cancel":
            subscription.update(status="canceled", canceled_at=at, ended_at=at, cancel_at=None)
            self.state.save(account, subscription)
            self.emit(account, "customer.subscription.deleted", subscription)
            return
        if what == "retry":
            invoice = self.get(account, "invoice", subscription["latest_invoice"])
            paid = self._charge_succeeds(account, customer, subscription.get("default_payment_method"))
            self._collect(account, subscription, invoice, paid, at, before)
            return
        # A trial's end or a period's end: a new period, invoiced and charged now.
        for item in subscription["items"]["data"]:
            start = subscription["trial_end"] if what == "trial_end" else item["current_period_end"]
            item.update(current_period_start=start, current_period_end=start + PERIOD_SECONDS)
        if what == "trial_end":
            subscription["status"] = "active"
        invoice_id = new_id("in_", 24)
        subscription["latest_invoice"] = invoice_id
        self.state.save(account, subscription)
        invoice = self._invoice(account, customer, subscription, "subscription_cycle", invoice_id)
        paid = self._charge_succeeds(account, customer, subscription.get("default_payment_method"))
        self._collect(account, subscription, invoice, paid, at, before)

    def _collect(
        self,
        account: str,
        subscription: dict[str, Any],
        invoice: dict[str, Any],
        paid: bool,
        at: int,
        before: dict[str, Any],
    ) -> None:
        """One collection attempt: paid -> active; failed -> past_due and the next Smart Retry, or, after the last,
        the subscription canceled."""
        self._settle_invoice(account, invoice, paid)
        if paid:
            subscription["status"] = "active"
        else:
            attempt = invoice["attempt_count"]
            if attempt <= len(RETRY_DAYS):
                first_failure = invoice.setdefault("_first_failure", at)
                invoice["next_payment_attempt"] = first_failure + RETRY_DAYS[attempt - 1] * DAY
                self.state.save(account, invoice)
                subscription["status"] = "past_due"
            else:
                invoice["next_payment_attempt"] = None
                self.state.save(account, invoice)
                subscription.update(status="canceled", canceled_at=at, ended_at=at)
                self.state.save(account, subscription)
                self.emit(account, "customer.subscription.deleted", subscription)
                return
        self.state.save(account, subscription)
        changed = {k: v for k, v in before.items() if public(subscription).get(k) != v}
        if changed:
            self.emit(account, "customer.subscription.updated", subscription, changed)
