"""`dream topology`: per logical namespace and for D1, every worker binding it, what it does there, and the exact
state folder and file the store reads and writes (the live copy) or only compares (a writer's own copy)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dreamcli.stores.ports import Store


def describe(store: Store) -> dict[str, Any]:
    project = store.project
    report: dict[str, Any] = {
        "store": store.kind,
        "location": store.location,
        "workers": [],  # a project's workers (wrangler's state); none elsewhere
        "namespaces": [],
        "d1": [],
    }
    if project is None:
        for ref in store.topology.namespaces:
            report["namespaces"].append(
                {
                    "name": ref.name,
                    "id": ref.id,
                    "copies": [{"bindings": list(ref.bindings), "file": store.location, "live": True}],
                }
            )
        file = getattr(getattr(store.database, "file", None), "path", None)  # the emulator's D1 file; none over REST
        report["d1"].append({"id": store.topology.database.id, "file": file or f"{store.kind} D1 (no local file)"})
        return _jsonable(report)
    from dreamcli.stores.wrangler import WranglerKVNamespace, d1_path

    report["workers"] = [
        {"role": role, "name": worker.name, "identifiedBy": how, "config": str(worker.config)}
        for role, (worker, how) in sorted(project.roles.items())
    ]
    report["unrecognised"] = [str(worker.config) for worker in project.unrecognised()]
    report["unrecognisedBindings"] = [
        {"worker": role, "config": str(worker.config), "binding": binding.binding, "id": binding.id}
        for role, (worker, _) in sorted(project.roles.items())
        for binding in worker.kv
        if all(binding.binding != known.binding for known, _ in worker.namespaces.values())
    ]
    report["env"] = project.env
    report["ids"] = "production (id)" if project.production_ids else "wrangler dev (preview_id ?? id)"
    for ref in store.topology.namespaces:
        copies = []
        for copy in project.copies.get(ref.name, []):
            files = WranglerKVNamespace(copy.state_root, copy.id)
            copies.append(
                {
                    "worker": copy.worker,
                    "binding": copy.binding,
                    "recognisedBy": copy.how,
                    "role": copy.role,
                    "id": copy.id,
                    "stateFolder": copy.state_root,
                    "file": files.index,
                    "blobs": files.blobs,
                    "exists": files.index.exists(),
                    "live": copy.live,
                    "sharedWithLive": not copy.live
                    and any(c.live and c.place == copy.place for c in project.copies[ref.name]),
                }
            )
        report["namespaces"].append({"name": ref.name, "id": ref.id, "copies": copies})
    for copy in project.d1:
        path = d1_path(copy.state_root, copy.id)
        report["d1"].append(
            {
                "worker": copy.worker,
                "binding": copy.binding,
                "recognisedBy": copy.how,
                "id": copy.id,
                "stateFolder": copy.state_root,
                "file": path,
                "exists": path.exists(),
                "live": copy.live,
            }
        )
    return _jsonable(report)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_jsonable(item) for item in value]
    return str(value) if isinstance(value, Path) else value
