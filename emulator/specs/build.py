"""Build `stripe-params.json`: every parameter Stripe's published API description gives the routes the emulator
serves, at the API version the emulator renders, trimmed to those routes (run once per SDK upgrade, the output
committed and shipped as package data):

    python -m emulator.specs.build

The source is Stripe's OpenAPI description (stripe/openapi, `openapi/spec3.json`) as stripe-python carries it: the
SDK's request-parameter types are generated from that file at the SDK's pinned API version ("File generated from our
OpenAPI spec" heads each), one TypedDict per operation, nested ones per object parameter, `Literal`s for enums,
required keys kept apart from optional ones. Reading them, rather than the 7 MB spec3.json (whose copy this
workplace cannot fetch: the mirror holds only its pointer), gives the same names, types, enums and requiredness,
at exactly the version the emulator's objects follow. Where the SDK widens an enum for forward compatibility
(`Literal[...]|str`), the schema keeps the enum and marks it open.

Schema node (compact JSON): {"t": "str"|"int"|"num"|"bool"|"map"|"any"} | {"t": "enum", "v": [...], "open"?: true}
| {"t": "list", "of": node} | {"t": "obj", "p": {name: node}, "r": [required]} | {"t": "or", "of": [nodes]};
"empty": true where Stripe takes "" to unset the field.
"""

from __future__ import annotations

import importlib
import json
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any, NotRequired, Required

import stripe
from typing_extensions import is_typeddict

OUT = Path(__file__).resolve().parent / "stripe-params.json"
_CALL = re.compile(r'self\._request\(\s*"(get|post|delete)",\s*"(/v1/[^"]+)"')
_PARAMS = re.compile(r'params: (?:Optional\[)?"(\w+Params)"')
_DEF = re.compile(r"\n    def (\w+)\(")


def _operations() -> dict[tuple[str, str], type]:
    """(METHOD, /v1/path with {id} placeholders) -> the SDK's parameter TypedDict for it."""
    root = Path(stripe.__file__).parent
    found: dict[tuple[str, str], type] = {}
    for source in sorted(root.rglob("_*_service.py")):
        module_name = "stripe." + ".".join(source.relative_to(root).with_suffix("").parts)
        text = source.read_text()
        starts = [m.start() for m in _DEF.finditer(text)] + [len(text)]
        for begin, end in zip(starts, starts[1:], strict=False):
            block = text[begin:end]
            if "_async(" in block.split("\n", 2)[1]:
                continue
            call, params = _CALL.search(block), _PARAMS.search(block)
            if call is None or params is None:
                continue
            path = re.sub(r"\{\w+\}", "{id}", call.group(2))
            module = importlib.import_module(module_name)
            cls = _resolve(module, params.group(1))
            if cls is not None:
                found[(call.group(1).upper(), path)] = cls
    return found


def _resolve(module: types.ModuleType, name: str) -> type | None:
    """A params class by name: imported in the service module under TYPE_CHECKING, so looked up in stripe.params."""
    params = importlib.import_module("stripe.params")
    found = getattr(module, name, None) or getattr(params, name, None)
    if found is None:
        for sub in ("checkout", "billing_portal", "billing", "test_helpers"):
            try:
                found = getattr(importlib.import_module(f"stripe.params.{sub}"), name, None)
            except ImportError:
                continue
            if found is not None:
                break
    return found if isinstance(found, type) else None


_OPTIONS = set(stripe.RequestOptions.__annotations__)
_NAMES = {"StripeContext": getattr(stripe, "StripeContext", object), "Mapping": typing.Mapping}


def _node(hint: Any, depth: int = 0) -> dict[str, Any]:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (Required, NotRequired):
        return _node(args[0], depth)
    if hint is bool:
        return {"t": "bool"}
    if hint is int:
        return {"t": "int"}
    if hint in (float,) or getattr(hint, "__name__", "") == "Decimal":
        return {"t": "num"}
    if hint is str:
        return {"t": "str"}
    if origin is typing.Literal:
        values = [v for v in args if v != ""]
        node: dict[str, Any] = {"t": "enum", "v": values}
        if len(values) < len(args):
            node["empty"] = True
        return node
    if origin in (typing.Union, types.UnionType):
        alternatives = [_node(a, depth) for a in args if a is not type(None)]
        empty = any(a.get("empty") or (a.get("t") == "enum" and not a["v"]) for a in alternatives)
        alternatives = [a for a in alternatives if not (a.get("t") == "enum" and not a["v"])]
        enums = [a for a in alternatives if a["t"] == "enum"]
        if enums and any(a["t"] == "str" for a in alternatives):  # Literal[...]|str: the SDK's open enum
            alternatives = [a for a in alternatives if a["t"] != "str"]
            for a in enums:
                a["open"] = True
        for a in alternatives:
            a.pop("empty", None)
        node = alternatives[0] if len(alternatives) == 1 else {"t": "or", "of": alternatives}
        if empty:
            node = {**node, "empty": True}
        return node
    if origin in (list, typing.List):  # noqa: UP006 - the SDK's own annotations
        return {"t": "list", "of": _node(args[0], depth + 1) if args else {"t": "any"}}
    if origin in (dict, typing.Dict) or getattr(origin, "__name__", "") == "UntypedStripeObject":  # noqa: UP006
        return {"t": "map"}
    if isinstance(hint, type) and is_typeddict(hint) and depth < 8:
        return _object(hint, depth + 1)
    return {"t": "any"}


def _object(cls: type, depth: int = 0) -> dict[str, Any]:
    module = sys.modules[cls.__module__]
    hints = typing.get_type_hints(cls, globalns={**_NAMES, **vars(module)}, include_extras=True)
    required: frozenset[str] = getattr(cls, "__required_keys__", frozenset())
    names = sorted(name for name in hints if name not in _OPTIONS)
    return {
        "t": "obj",
        "p": {name: _node(hints[name], depth) for name in names},
        "r": sorted(name for name in names if name in required),
    }


def build(served: list[tuple[str, str]]) -> dict[str, Any]:
    operations = _operations()
    routes = {}
    for method, path in served:
        cls = operations.get((method, path))
        if cls is not None:
            routes[f"{method} {path}"] = _object(cls)
    return {
        "source": "Stripe's OpenAPI description (stripe/openapi, openapi/spec3.json) as stripe-python "
        f"{stripe.VERSION} carries it (request-parameter types generated from it)",
        "apiVersion": stripe.api_version,
        "routes": routes,
    }


def served_routes() -> list[tuple[str, str]]:
    from emulator.stripe_http import stripe_routes

    served = []
    for route in stripe_routes(None, None):  # type: ignore[arg-type]
        for method in sorted(getattr(route, "methods", None) or ()):
            if route.path.startswith("/v1/") and method != "HEAD":
                served.append((method, route.path))
    return served


if __name__ == "__main__":
    spec = build(served_routes())
    OUT.write_text(json.dumps(spec, indent=None, separators=(",", ":"), sort_keys=True) + "\n")
    missing = sorted(set(f"{m} {p}" for m, p in served_routes()) - set(spec["routes"]))
    print(f"{len(spec['routes'])} routes from {spec['source']} at {spec['apiVersion']} -> {OUT}")
    if missing:
        print("not in the description (validated by the emulator's own list):", ", ".join(missing))
