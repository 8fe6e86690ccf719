"""Tier config files (`fixtures/tiers/*.toml`): parsed and validated with the line and field named."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from dreamcli.errors import UsageError

UNLIMITED = "unlimited"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
_CURRENCY = re.compile(r"^[a-z]{3}$")
_ZERO_DECIMAL = {
    "bif",
    "clp",
    "djf",
    "gnf",
    "jpy",
    "kmf",
    "krw",
    "mga",
    "pyg",
    "rwf",
    "ugx",
    "vnd",
    "vuv",
    "xaf",
    "xof",
    "xpf",
}


@dataclass(frozen=True)
class Tier:
    name: str
    price: Decimal  # per month, major units
    limit: int | None  # requests per month; None = unlimited
    currency: str
    features: str = ""

    @property
    def unit_amount(self) -> int:
        """Stripe's smallest currency unit (cents for usd)."""
        return int(self.price) if self.currency in _ZERO_DECIMAL else int((self.price * 100).to_integral_value())

    @property
    def limit_text(self) -> str:
        return UNLIMITED if self.limit is None else str(self.limit)


class TierFileError(UsageError):
    """A tier file that cannot be used; the message names the file, line and field."""


def _line_of(text: str, index: int, field: str | None) -> int:
    """Line of the index-th [[tiers]] table (or of `field` inside it)."""
    lines = text.splitlines()
    headers = [n for n, line in enumerate(lines, 1) if line.strip().startswith("[[tiers]]")]
    if index >= len(headers):
        return 1
    start = headers[index]
    end = headers[index + 1] if index + 1 < len(headers) else len(lines) + 1
    if field:
        for number in range(start, end):
            if re.match(rf"\s*{re.escape(field)}\s*=", lines[number - 1]):
                return number
    return start


def parse_tiers(path: Path) -> list[Tier]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TierFileError(f"cannot read tier file {path}: {exc}") from None
    return parse_tiers_text(text, str(path))


def parse_tiers_text(text: str, source: str = "<tiers>") -> list[Tier]:
    """A tier file's TOML; errors name the file and line."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TierFileError(f"{source}: not valid TOML: {exc}") from None

    def where(index: int | None, field: str | None) -> str:
        return f"{source}:{1 if index is None else _line_of(text, index, field)}"

    return tiers_from_data(data, where)


def tiers_from_data(data: Any, where: Callable[[int | None, str | None], str] | None = None) -> list[Tier]:
    """Tiers from parsed data, `{currency?, tiers: [{name, price, limit, features?}]}` (a tier file's TOML or
    oauth-api's JSON body). `where(tier index, field)` names a place for error messages (default "tiers")."""

    def fail(index: int | None, field: str | None, message: str) -> TierFileError:
        return TierFileError(f"{where(index, field) if where else 'tiers'}: {message}")

    if not isinstance(data, dict):
        raise fail(None, None, "expected {currency?, tiers: [{name, price, limit, features?}]}")
    currency = data.get("currency", "usd")
    if not isinstance(currency, str) or not _CURRENCY.match(currency.lower()):
        raise fail(None, None, f'currency must be a three-letter ISO code such as "usd", not {currency!r}')
    currency = currency.lower()
    raw = data.get("tiers")
    if not isinstance(raw, list) or not raw:
        raise fail(None, None, "no tiers: add [[tiers]] tables with name, price and limit")
    unknown_top = set(data) - {"currency", "tiers"}
    if unknown_top:
        raise fail(None, None, f"unknown setting(s) {', '.join(sorted(unknown_top))}")
    tiers: list[Tier] = []
    seen: set[str] = set()
    for index, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise fail(index, None, "each tier must be a [[tiers]] table")
        unknown = set(entry) - {"name", "price", "limit", "features", "currency"}
        if unknown:
            field = sorted(unknown)[0]
            raise fail(index, field, f"tier {index + 1}: unknown field {field!r} (known: name, price, limit, features)")
        name = entry.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise fail(
                index, "name", f"tier {index + 1}: name must be lowercase letters, digits, - or _ (got {name!r})"
            )
        if name in seen:
            raise fail(index, "name", f"tier {name!r} is defined twice: names must be unique")
        seen.add(name)
        if "price" not in entry:
            raise fail(index, None, f"tier {name!r}: price is missing")
        price_raw = entry["price"]
        try:
            if isinstance(price_raw, bool):
                raise InvalidOperation
            price = Decimal(str(price_raw))
        except InvalidOperation:
            raise fail(index, "price", f"tier {name!r}: price must be a number, not {price_raw!r}") from None
        if price < 0 or not price.is_finite():
            raise fail(index, "price", f"tier {name!r}: price must be >= 0 (got {price_raw})")
        if "limit" not in entry:
            raise fail(index, None, f'tier {name!r}: limit is missing (a number of requests per month, or "unlimited")')
        limit_raw = entry["limit"]
        if limit_raw == UNLIMITED:
            limit = None
        elif isinstance(limit_raw, int) and not isinstance(limit_raw, bool) and limit_raw >= 0:
            limit = limit_raw
        else:
            raise fail(
                index, "limit", f'tier {name!r}: limit must be an integer >= 0 or "unlimited" (got {limit_raw!r})'
            )
        tier_currency = str(entry.get("currency", currency)).lower()
        if tier_currency != currency:
            raise fail(index, "currency", f"tier {name!r}: every tier must use the file's currency {currency!r}")
        features = entry.get("features", "")
        if not isinstance(features, str):
            raise fail(index, "features", f"tier {name!r}: features must be text")
        tiers.append(Tier(name, price, limit, currency, features))
    return tiers


def tier_json(tier: Tier, price_id: str | None, product_id: str | None) -> dict[str, Any]:
    """One entry of `platform:{platformId}:tierConfig`, as the guide spells it (limit null = unlimited)."""
    price: int | float = int(tier.price) if tier.price == tier.price.to_integral_value() else float(tier.price)
    return {
        "name": tier.name,
        "limit": tier.limit,
        "price": price,
        "currency": tier.currency,
        "priceId": price_id,
        "productId": product_id,
        "features": tier.features,
    }
