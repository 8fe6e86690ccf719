"""Every Stripe request checked against Stripe's published description of its parameters (`specs/stripe-params.json`,
built by `python -m emulator.specs.build`), as the real API checks it, one piece for every route: a parameter the
description does not list, at any depth, is `parameter_unknown` (named as Stripe names it: `subscription_data[bogus]`);
a required one missing is `parameter_missing`; a value of the wrong type or outside an enum is refused with Stripe's
message (`Invalid integer: abc`, `Invalid mode: must be one of payment, setup, or subscription`); an empty string
where the field cannot be unset is `parameter_invalid_empty`. Everything the description lists is accepted.

`typed` gives a checked value the type the description declares (the form encoding carries only strings), for the
plain fields a backend stores and renders on its objects as given."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

from emulator.stripe_errors import StripeAPIError, missing_param

SPEC_FILE = Path(__file__).resolve().parent / "specs" / "stripe-params.json"
_INTEGER = re.compile(r"^-?\d+$")
_NUMBER = re.compile(r"^-?(\d+\.?\d*|\.\d+)$")


@cache
def spec() -> dict[str, Any]:
    return json.loads(SPEC_FILE.read_text(encoding="utf-8"))


def schema_of(method: str, path: str) -> dict[str, Any] | None:
    """The parameters of route `METHOD /v1/...` (path with `{id}` placeholders), or None if the description has none."""
    found = spec()["routes"].get(f"{method} {path}")
    return found if isinstance(found, dict) else None


def validate(schema: dict[str, Any], params: dict[str, Any]) -> None:
    """Refuse `params` as Stripe would (the first problem, in parameter order); return nothing when they conform."""
    _object(schema, params, "")


def _name(prefix: str, key: str) -> str:
    return f"{prefix}[{key}]" if prefix else key


def _object(schema: dict[str, Any], value: Any, prefix: str) -> None:
    if not isinstance(value, dict):
        raise StripeAPIError(400, f"Invalid object: {_shown(value)}", param=prefix or None)
    properties: dict[str, Any] = schema.get("p", {})
    for key, item in value.items():
        node = properties.get(key)
        if node is None:
            name = _name(prefix, key)
            raise StripeAPIError(400, f"Received unknown parameter: {name}", code="parameter_unknown", param=name)
        _value(node, item, _name(prefix, key))
    for key in schema.get("r", []):
        if key not in value:
            raise missing_param(_name(prefix, key))


def _value(node: dict[str, Any], value: Any, name: str) -> None:
    if value == "" and node.get("t") not in ("str", "any"):
        if node.get("empty") or node.get("t") == "map":
            return  # "" unsets the field
        raise StripeAPIError(
            400,
            f"You passed an empty string for '{name}'. We assume empty values are an attempt to unset a parameter; "
            f"however '{name}' cannot be unset. You should remove '{name}' from your request or supply a non-empty "
            "value.",
            code="parameter_invalid_empty",
            param=name,
        )
    kind = node.get("t")
    if kind == "or":
        problems = []
        for alternative in node["of"]:
            try:
                _value(alternative, value, name)
                return
            except StripeAPIError as exc:
                problems.append(exc)
        raise problems[-1] if isinstance(value, dict) and problems else problems[0]
    if kind == "obj":
        _object(node, value, name)
    elif kind == "list":
        if isinstance(value, dict) and not value:
            return
        if not isinstance(value, list):
            raise StripeAPIError(400, f"Invalid array: {name} must be an array", param=name)
        for index, item in enumerate(value):
            _value(node["of"], item, f"{name}[{index}]")
    elif kind == "map":
        if not isinstance(value, dict) or any(isinstance(v, (dict, list)) for v in value.values()):
            raise StripeAPIError(400, f"Invalid hash: {name} must be a set of key-value pairs", param=name)
    elif isinstance(value, (dict, list)):
        raise StripeAPIError(
            400, f"Invalid {_word(kind)}: {name} must be a single value, not a hash or array", param=name
        )
    elif kind == "int" and not _INTEGER.match(str(value)):
        raise StripeAPIError(400, f"Invalid integer: {_shown(value)}", code="parameter_invalid_integer", param=name)
    elif kind == "num" and not _NUMBER.match(str(value)):
        raise StripeAPIError(400, f"Invalid decimal: {_shown(value)}", param=name)
    elif kind == "bool" and str(value).lower() not in ("true", "false"):
        raise StripeAPIError(400, f"Invalid boolean: {_shown(value)}", param=name)
    elif kind == "enum" and not node.get("open") and value not in node["v"]:
        choices = [str(v) for v in node["v"]]
        listed = ", ".join(choices[:-1]) + f", or {choices[-1]}" if len(choices) > 1 else choices[0]
        raise StripeAPIError(400, f"Invalid {name}: must be one of {listed}", param=name)


def _word(kind: str | None) -> str:
    return {"int": "integer", "num": "decimal", "bool": "boolean"}.get(kind or "", "string")


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text[:100]


def typed(node: dict[str, Any] | None, value: Any) -> Any:
    """A conforming form value as the description types it (bool, int, nested objects and lists), "" as None."""
    if node is None or value == "":
        return None if value == "" else value
    kind = node.get("t")
    if kind == "or":
        for alternative in node["of"]:
            try:
                _value(alternative, value, "")
            except StripeAPIError:
                continue
            return typed(alternative, value)
        return value
    if kind == "bool":
        return str(value).lower() == "true"
    if kind == "int":
        return int(value)
    if kind == "obj" and isinstance(value, dict):
        return {key: typed(node["p"].get(key), item) for key, item in value.items()}
    if kind == "list" and isinstance(value, list):
        return [typed(node["of"], item) for item in value]
    return value


def store_plain(obj: dict[str, Any], params: dict[str, Any], route: str, handled: set[str]) -> None:
    """The plain fields of `params` (those the backend does not model: every one not in `handled`) stored on `obj` as
    given, typed as the description of `route` ("POST /v1/products") types them, where the object has such a field."""
    schema = spec()["routes"].get(route)
    if schema is None:
        return
    for key, value in params.items():
        node = schema["p"].get(key)
        if node is None or key in handled or key == "expand" or key not in obj:
            continue
        obj[key] = typed(node, value)


# Parameters renamed by recent API versions: (route) -> {old name: its new place}. A request that names an older
# `Stripe-Version`, or none (then the account's default applies: the Stripe CLI's fixtures send none and use the old
# names), may use the old name, as Stripe's versioning layer lets it; a request pinned to the current version may not.
RENAMED: dict[str, dict[str, tuple[str, ...]]] = {
    "POST /v1/payment_intents": {"payment_method_types": ("allowed_payment_method_types",)},
    "POST /v1/setup_intents": {"payment_method_types": ("allowed_payment_method_types",)},
    "POST /v1/promotion_codes": {"coupon": ("promotion", "coupon")},
}


def upgrade(route: str, params: dict[str, Any], version: str | None, pinned: str) -> dict[str, Any]:
    """`params` of a request made at an older `version`, with renamed parameters under their current names."""
    renames = RENAMED.get(route)
    if not renames or (version is not None and version.split(".")[0] >= pinned.split(".")[0]):
        return params
    upgraded = dict(params)
    for old, new in renames.items():
        if old in upgraded:
            value = upgraded.pop(old)
            if len(new) == 1:
                upgraded[new[0]] = value
            else:
                upgraded[new[0]] = {**(upgraded.get(new[0]) or {}), new[1]: value, "type": "coupon"}
    return upgraded
