"""`dream doctor`: the guide's "next steps" checks, done on the workers' configuration instead of by hand."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dreamcli.stores.discovery import GUIDE_BINDINGS, Worker, discover
from dreamcli.stores.wrangler import WranglerKVNamespace

# The guide's .dev.vars, per worker (names only; values are never read out).
DEV_VARS = {
    "front-auth-api": (
        "CLERK_SECRET_KEY",
        "CLERK_PUBLISHABLE_KEY",
        "CLERK_WEBHOOK_SECRET",
        "STRIPE_SECRET_KEY",
        "STRIPE_PRICE_ID",
        "STRIPE_WEBHOOK_SECRET",
        "FRONTEND_URL",
    ),
    "oauth-api": (
        "STRIPE_CLIENT_ID",
        "STRIPE_CLIENT_SECRET",
        "CLERK_SECRET_KEY",
        "CLERK_PUBLISHABLE_KEY",
        "FRONTEND_URL",
    ),
    "api-multi": ("CLERK_SECRET_KEY", "CLERK_PUBLISHABLE_KEY", "FRONTEND_URL"),
}
_PERSIST = re.compile(r"--persist-to[= ]+(\S+)")


@dataclass(frozen=True)
class Diagnosis:
    check: str
    worker: str
    problem: str
    fix: str
    severity: str = "error"

    def as_json(self) -> dict[str, str]:
        return {
            "check": self.check,
            "worker": self.worker,
            "severity": self.severity,
            "problem": self.problem,
            "fix": self.fix,
        }


def _persist_to(worker: Worker) -> Path | None:
    """`--persist-to DIR` from the worker's `npm run dev` script, if it has one."""
    package = worker.folder / "package.json"
    try:
        script = json.loads(package.read_text()).get("scripts", {}).get("dev", "")
    except (OSError, json.JSONDecodeError, AttributeError):
        return None
    found = _PERSIST.search(script or "")
    return (worker.folder / found.group(1)).resolve() if found else None


def _dev_vars(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return values
    for line in lines:
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            name, _, value = line.partition("=")
            values[name.strip()] = value.split("#", 1)[0].strip().strip('"').strip("'")
    return values


def diagnose(root: Path, *, persist_to: Path | None = None) -> tuple[list[Worker], list[Diagnosis]]:
    workers = discover(root)
    found: list[Diagnosis] = []
    # Which workers bind each logical namespace, with which ids.
    bound: dict[str, list[tuple[Worker, Any]]] = {}
    for worker in workers:
        for binding in worker.kv:
            name = GUIDE_BINDINGS.get((worker.name, binding.binding))
            if name:
                bound.setdefault(name, []).append((worker, binding))
    for name, pairs in sorted(bound.items()):
        reader, reader_binding = pairs[0]
        for worker, binding in pairs[1:]:
            if binding.id != reader_binding.id:
                found.append(
                    Diagnosis(
                        "namespace ids",
                        worker.name,
                        f"{binding.binding} has id {binding.id} but {reader.name}'s {reader_binding.binding} ({name}) has "
                        f"{reader_binding.id}: {worker.name}'s writes go to a namespace {reader.name} never reads",
                        f'set id = "{reader_binding.id}" for {binding.binding} in {worker.config.relative_to(root) if worker.config.is_relative_to(root) else worker.config}',
                    )
                )
            if (binding.preview_id or binding.id) != (reader_binding.preview_id or reader_binding.id):
                found.append(
                    Diagnosis(
                        "preview ids",
                        worker.name,
                        f"under `wrangler dev`, {binding.binding} uses {binding.preview_id or binding.id} but "
                        f"{reader.name}'s {reader_binding.binding} uses {reader_binding.preview_id or reader_binding.id}",
                        f"give both bindings of {name} the same preview_id",
                    )
                )
        states = {}
        for worker, binding in pairs:
            shared = persist_to or _persist_to(worker)
            states[worker.name] = (worker.state_root(shared), binding)
        roots = {root_path for root_path, _ in states.values()}
        if len(roots) > 1:
            evidence = []
            for worker_name, (state_root, binding) in states.items():
                ns = WranglerKVNamespace(state_root, binding.local_id(preview=True))
                count = sum(1 for _ in ns.scan()) if ns.index.exists() else 0
                evidence.append(f"{worker_name}: {count} keys")
            names = " and ".join(states)
            found.append(
                Diagnosis(
                    "separate local state",
                    ", ".join(states),
                    f"{names} bind {name} but keep separate local state ({'; '.join(evidence)}): locally their writes never "
                    'meet, which is the guide\'s "Invalid API key" (oauth-api writes the keys api-multi never sees)',
                    "run every worker with the same `wrangler dev --persist-to ../.wrangler-shared` (and use "
                    "`dream --store wrangler:PROJECT,persist-to=.wrangler-shared`)",
                )
            )
    for worker in workers:
        expected = DEV_VARS.get(worker.name)
        if expected is None:
            continue
        dev_vars = _dev_vars(worker.folder / ".dev.vars")
        missing = [name for name in expected if not dev_vars.get(name)]
        if missing:
            found.append(
                Diagnosis(
                    "dev vars",
                    worker.name,
                    f".dev.vars lacks {', '.join(missing)}",
                    f"add them to {worker.name}/.dev.vars (see the guide's Environment Variables)",
                    "warning",
                )
            )
        if dev_vars.get("STRIPE_CLIENT_SECRET", "").startswith("rk_"):
            found.append(
                Diagnosis(
                    "dev vars",
                    worker.name,
                    "STRIPE_CLIENT_SECRET is a restricted key (rk_...)",
                    "use the platform's secret key (sk_test_...), as the guide says",
                )
            )
    d1_ids = {(w.name, d.database_id) for w in workers for d in w.d1}
    if len({database_id for _, database_id in d1_ids}) > 1:
        found.append(
            Diagnosis(
                "D1",
                ", ".join(sorted(n for n, _ in d1_ids)),
                f"workers bind different D1 databases: {sorted(d1_ids)}",
                "bind one database id everywhere the dashboard and api-multi read",
            )
        )
    if not any(w.d1 for w in workers if w.name == "api-multi"):
        found.append(
            Diagnosis(
                "D1",
                "api-multi",
                "api-multi binds no D1 database: customers have nowhere to go",
                "add a [[d1_databases]] binding (DB) to api-multi",
                "warning",
            )
        )
    d1_workers = [w for w in workers if w.d1]
    if len(d1_workers) > 1 and len({w.state_root(persist_to or _persist_to(w)) for w in d1_workers}) > 1:
        found.append(
            Diagnosis(
                "separate local state",
                ", ".join(w.name for w in d1_workers),
                "workers bind the same D1 database but keep separate local state",
                "run them with the same `--persist-to`",
                "warning",
            )
        )
    return workers, found
