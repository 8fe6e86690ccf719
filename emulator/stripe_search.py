"""Stripe's Search API query language (docs.stripe.com/search#search-query-language), over the emulator's objects:
clauses `field:value` (exact; strings quoted), `field~value` (substring, at least 3 characters), `-field:value`
(negation), `field>value`, `<`, `>=`, `<=` (numbers), `metadata["key"]:value`, joined by `AND` or `OR` (not both in
one query), with the fields Stripe makes searchable per resource."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from typing import Any

from emulator.stripe_errors import StripeAPIError

# The fields each resource can be searched by (Stripe's "Supported query fields for each resource").
SEARCHABLE = {
    "customer": {"created", "email", "metadata", "name", "phone"},
    "subscription": {"created", "metadata", "status"},
    "price": {"active", "currency", "lookup_key", "metadata", "product", "type"},
    "product": {"active", "description", "metadata", "name", "shippable", "url"},
}
_CLAUSE = re.compile(
    r"""\s*(?P<negate>-)?(?P<field>[a-z_]+(?:\[(?:"[^"]*"|'[^']*')\])?)\s*(?P<op>:|~|>=|<=|>|<)\s*"""
    r"""(?P<value>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[^\s"']+)\s*"""
)
_JOIN = re.compile(r"\s+(AND|OR)\s+")


@dataclass(frozen=True)
class Clause:
    field: str
    key: str | None  # metadata["key"]
    op: str
    value: str
    negate: bool


def parse(kind: str, query: str) -> tuple[list[Clause], str]:
    """The clauses of `query` and how they join ("AND"/"OR"); a malformed query is refused as Stripe refuses it."""
    if not query or not query.strip():
        raise StripeAPIError(400, "Missing required param: query.", code="parameter_missing", param="query")
    joins = set(_JOIN.findall(query))
    if len(joins) > 1:
        raise StripeAPIError(400, "Queries may not combine AND and OR.", param="query")
    clauses = []
    for part in _JOIN.split(query):
        if part in ("AND", "OR"):
            continue
        found = _CLAUSE.fullmatch(part)
        if found is None:
            raise StripeAPIError(400, f"Invalid query: could not parse {part.strip()[:80]!r}.", param="query")
        field, key = found["field"], None
        if "[" in field:
            field, _, rest = field.partition("[")
            key = rest[1:-2]
        if field not in SEARCHABLE[kind]:
            raise StripeAPIError(
                400,
                f"Field `{field}` is an unsupported search field for resource `{kind}s`. See "
                f"https://docs.stripe.com/search#query-fields-for-{kind}s for a list of supported fields.",
                param="query",
            )
        if field == "metadata" and key is None:
            raise StripeAPIError(400, 'Search by metadata needs a key: metadata["key"]:"value".', param="query")
        value = found["value"]
        if value[0] in "\"'":
            value = value[1:-1].replace("\\" + value[0], value[0])
        if found["op"] == "~" and len(value) < 3:
            raise StripeAPIError(400, "Substring searches (~) need at least 3 characters.", param="query")
        clauses.append(Clause(field, key, found["op"], value, bool(found["negate"])))
    return clauses, (joins.pop() if joins else "AND")


def matches(obj: dict[str, Any], clauses: list[Clause], join: str) -> bool:
    results = [_holds(obj, clause) != clause.negate for clause in clauses]
    return all(results) if join == "AND" else any(results)


def _holds(obj: dict[str, Any], clause: Clause) -> bool:
    actual = (obj.get("metadata") or {}).get(clause.key or "") if clause.field == "metadata" else obj.get(clause.field)
    if clause.op in (">", "<", ">=", "<="):
        try:
            number, bound = float(actual if actual is not None else "nan"), float(clause.value)
        except (TypeError, ValueError):
            return False
        return {">": number > bound, "<": number < bound, ">=": number >= bound, "<=": number <= bound}[clause.op]
    if actual is None:
        return clause.value == "null" and clause.op == ":"
    text = str(actual).lower() if isinstance(actual, bool) else str(actual)
    if clause.op == "~":
        return clause.value.lower() in text.lower()
    return text.lower() == clause.value.lower() if clause.field in ("email", "name") else text == clause.value


def page(kind: str, items: list[dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
    """A page of matching `items` (newest first) as Stripe's `search_result`, `next_page` an opaque token."""
    clauses, join = parse(kind, str(params.get("query") or ""))
    limit = int(params.get("limit") or 10)
    if not 1 <= limit <= 100:
        raise StripeAPIError(400, "This value must be between 1 and 100.", param="limit")
    start = 0
    if params.get("page"):
        try:
            start = int(json.loads(base64.urlsafe_b64decode(str(params["page"]).encode()))["offset"])
        except (ValueError, KeyError, TypeError):
            raise StripeAPIError(400, "Invalid page token.", param="page") from None
    found = [item for item in items if matches(item, clauses, join)]
    chunk = found[start : start + limit]
    more = start + limit < len(found)
    token = base64.urlsafe_b64encode(json.dumps({"offset": start + limit}).encode()).decode() if more else None
    return {
        "object": "search_result",
        "data": chunk,
        "has_more": more,
        "next_page": token,
        "url": f"/v1/{kind}s/search",
    }
