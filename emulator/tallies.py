"""The operator's figures over the emulated vendors, counted in SQL (`dream overview`, the console).

Listing 100,000 developers through Clerk's API and every subscription through Stripe's, as a real vendor must be
read, took minutes; here the figures are read from the tally indexes (schema migration 6) alone, in milliseconds.
Same answers as the listing (`dreamcli.platform.overview.ListedTallies`); a test holds the two equal."""

from __future__ import annotations

import json
from typing import Any

from dreamcli.platform.overview import SubscriptionTerms, Terms
from dreamcli.stores.sqlite_file import SQLiteFile
from emulator.schema import CLERK_PLAN, SUBSCRIPTION_TERMS


class EmulatedTallies:
    """`dreamcli.platform.overview.Tallies` over the emulator's vendor state."""

    def __init__(self, file: SQLiteFile, instance: str, account: str) -> None:
        self.file = file
        self.instance = instance  # the Clerk instance of the platform's developers
        self.account = account  # the platform's own Stripe account

    def plans(self) -> dict[str, int]:
        rows = self.file.read(
            lambda conn: conn.execute(
                f"SELECT {CLERK_PLAN}, count(*) FROM _dream_vendor_objects "
                "WHERE vendor = 'clerk' AND type = 'user' AND scope = ? GROUP BY 1",
                (self.instance,),
            ).fetchall()
        )
        plans: dict[str, int] = {}
        for plan, count in rows:
            name = str(plan) if plan not in (None, "") else "free"
            plans[name] = plans.get(name, 0) + count
        return plans

    def subscriptions(self) -> list[SubscriptionTerms]:
        terms = ", ".join(SUBSCRIPTION_TERMS)
        rows = self.file.read(
            lambda conn: conn.execute(
                f"SELECT {terms}, count(*) FROM _dream_vendor_objects "
                f"WHERE vendor = 'stripe' AND type = 'subscription' AND scope = ? GROUP BY {terms}",
                (self.account,),
            ).fetchall()
        )
        found: list[SubscriptionTerms] = []
        several = False
        for status, created, ended_at, items, currency, amount, quantity, interval, interval_count, count in rows:
            if items != 1:  # none or several items: read those subscriptions whole (rare)
                several = several or bool(items)
                continue
            one = Terms(currency, amount, quantity or 1, interval, interval_count or 1)
            found += [SubscriptionTerms(status, created, ended_at, (one,))] * count
        if several:
            found += [self._whole(data) for data in self._several()]
        return found

    def _several(self) -> list[str]:
        items = SUBSCRIPTION_TERMS[3]
        return [
            row[0]
            for row in self.file.read(
                lambda conn: conn.execute(
                    f"SELECT data FROM _dream_vendor_objects WHERE vendor = 'stripe' AND type = 'subscription' "
                    f"AND scope = ? AND {items} > 1",
                    (self.account,),
                ).fetchall()
            )
        ]

    @staticmethod
    def _whole(data: str) -> SubscriptionTerms:
        subscription: dict[str, Any] = json.loads(data)
        return SubscriptionTerms.of(subscription)
