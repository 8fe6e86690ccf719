"""What a key is in the guide's schema, where it is in the store, and what it points at."""

from __future__ import annotations

from typing import Any

from dreamcli import layout
from dreamcli.errors import KVError
from dreamcli.stores.ports import Store


def explain_key(store: Store, key: str, namespace: str | None = None) -> dict[str, Any]:
    """A JSON-ready description of `key`; secret values are never included."""
    searched = store.topology.names()
    if namespace is not None:
        store.kv(namespace)  # raises UnknownNamespace, listing the names
        ref = store.topology.namespace(namespace)
        searched = [ref.name] if ref is not None else searched
    parsed = layout.parse(key, searched[0] if namespace is not None else None)
    spec = parsed.spec
    report: dict[str, Any] = {
        "key": key,
        "kind": str(parsed.kind),
        "pattern": spec.pattern if spec else None,
        "fields": parsed.fields,
        "value_is": spec.value if spec else None,
        "guide_namespaces": list(spec.namespaces) if spec else [],
        "note": spec.note if spec else "not a key of the guide's schema",
        "secret": bool(spec and spec.secret),
        "found": [],
        "points_to": [],
    }
    pointer_value: str | None = None
    for name in searched:
        try:
            found = store.kv(name).get_with_metadata(key)
        except KVError as exc:  # a name no namespace accepts: say so instead of failing
            report["invalid"] = str(exc)
            return report
        entry: dict[str, Any] = {"namespace": name, "present": found is not None}
        if found is not None:
            entry["expected_here"] = parsed.belongs_in(name)
            entry["expiration"] = found.expiration
            if not report["secret"]:
                try:
                    entry["value"] = found.value.decode("utf-8")
                    pointer_value = pointer_value or entry["value"]
                except UnicodeDecodeError:
                    entry["value_bytes"] = len(found.value)
        report["found"].append(entry)
    if pointer_value is not None:
        for target_ns, target_key in layout.related_keys(parsed.kind, pointer_value):
            present = store.kv(target_ns).get_with_metadata(target_key) is not None
            report["points_to"].append({"namespace": target_ns, "key": target_key, "present": present})
    return report
