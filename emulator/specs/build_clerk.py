"""Build `clerk-bapi.json` from Clerk's published Backend API description (clerk/openapi-specs, `bapi/VERSION.yml`):
every operation's query parameters and JSON body fields (name, type, required) and the statuses it declares, for
the whole API, so the emulator validates what it serves and answers what it does not serve with Clerk's error shape
and a status the description declares. Run once per Clerk API version, with any Python that has PyYAML (the
output is committed and shipped as package data):

    python3 emulator/specs/build_clerk.py path/to/clerk-openapi-specs/bapi/2026-05-12.yml
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "clerk-bapi.json"


def _resolve(spec: dict[str, Any], node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        target: Any = spec
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = target
    return node


def _type(spec: dict[str, Any], schema: Any) -> str:
    schema = _resolve(spec, schema) or {}
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "any")
    if kind is None and ("oneOf" in schema or "anyOf" in schema):
        return "any"
    return str(kind or "any")


def build(spec: dict[str, Any]) -> dict[str, Any]:
    operations: dict[str, Any] = {}
    for path, item in spec["paths"].items():
        shared = item.get("parameters", [])
        for method, operation in item.items():
            if method not in ("get", "post", "patch", "put", "delete"):
                continue
            query = {}
            for parameter in [*shared, *operation.get("parameters", [])]:
                parameter = _resolve(spec, parameter)
                if parameter.get("in") == "query":
                    query[parameter["name"]] = _type(spec, parameter.get("schema"))
            body: dict[str, Any] = {}
            required: list[str] = []
            content = (_resolve(spec, operation.get("requestBody")) or {}).get("content", {})
            schema = _resolve(spec, (content.get("application/json") or {}).get("schema"))
            if isinstance(schema, dict) and isinstance(schema.get("properties"), dict):
                body = {name: _type(spec, field) for name, field in schema["properties"].items()}
                required = list(schema.get("required") or [])
            operations[f"{method.upper()} /v1{path}"] = {
                "query": query,
                "body": body if schema else None,
                "required": required,
                "statuses": sorted(int(s) for s in operation.get("responses", {}) if str(s).isdigit()),
            }
    return {
        "source": "Clerk's Backend API description (clerk/openapi-specs, bapi/" + spec["info"]["version"] + ".yml)",
        "version": spec["info"]["version"],
        "operations": operations,
    }


if __name__ == "__main__":
    import yaml

    described = build(yaml.safe_load(Path(sys.argv[1]).read_text()))
    OUT.write_text(json.dumps(described, separators=(",", ":"), sort_keys=True) + "\n")
    print(f"{len(described['operations'])} operations from {described['source']} -> {OUT}")
