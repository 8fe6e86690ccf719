"""`dream doctor`: the guide's "next steps" checks, done on the workers' configuration instead of by hand."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dreamcli.stores.discovery import GUIDE_WORKERS, ROLE_NAMESPACES, Project, open_project
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


def kept_verifiers(folder: Path) -> list[Diagnosis]:
    """The verifier Workers `kv verify --via-worker --keep-worker` left deployed (their records in `folder`): each
    holds bindings to the token namespaces behind a secret, until the next --via-worker run reuses and deletes it."""
    import json
    import time

    found = []
    for record in sorted(folder.glob("verifier-*.json")):
        try:
            name = str(json.loads(record.read_text())["name"])
            since = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(record.stat().st_mtime))
        except (OSError, ValueError, KeyError, TypeError):
            continue
        found.append(
            Diagnosis(
                "verifier",
                name,
                f"a verifier Worker kept deployed since {since}, bound to the token namespaces ({record})",
                f"the next `dream --store cloudflare kv verify --via-worker` reuses and deletes it; or `wrangler "
                f"delete --name {name}` and remove {record.name}",
                "warning",
            )
        )
    return found


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


def recognition(project: Project) -> list[dict[str, str]]:
    """Every guide worker's bindings and what each was recognised as (a namespace, the D1 database, or nothing),
    and how: what `dream doctor` and `dream topology` show."""
    rows = []
    for role, (worker, how) in sorted(project.roles.items()):
        known = {binding.binding: (namespace, told) for namespace, (binding, told) in worker.namespaces.items()}
        for binding in worker.kv:
            namespace, told = known.get(binding.binding, ("", ""))
            rows.append(
                {
                    "worker": role,
                    "identifiedBy": how,
                    "binding": binding.binding,
                    "id": binding.id,
                    "is": namespace,
                    "recognisedBy": told,
                }
            )
        chosen = worker.database[0].binding if worker.database else None
        for database in worker.d1:
            told = worker.database[1] if worker.database and database.binding == chosen else ""
            rows.append(
                {
                    "worker": role,
                    "identifiedBy": how,
                    "binding": database.binding,
                    "id": database.database_id,
                    "is": "D1 (customers)" if told else "",
                    "recognisedBy": told,
                }
            )
    return rows


def diagnose(root: Path, *, persist_to: Path | None = None, env: str | None = None) -> tuple[Project, list[Diagnosis]]:
    """The guide's checks on a project, seeing its workers and their local state exactly as the wrangler store
    does (`dreamcli.stores.discovery.open_project`): the same roles, the same state folders, the same ids."""
    project = open_project(root, persist_to=persist_to, env=env)
    workers = project.workers
    found: list[Diagnosis] = []
    for role, (worker, _) in sorted(project.roles.items()):
        for namespace in ROLE_NAMESPACES[role]:
            if namespace in worker.namespaces:
                continue
            left = [b.binding for b in worker.kv if all(b.binding != t.binding for t, _ in worker.namespaces.values())]
            found.append(
                Diagnosis(
                    "bindings",
                    worker.name,
                    f"none of {role}'s KV bindings was recognised as {namespace} (unrecognised: "
                    f"{', '.join(left) or 'none'}; recognised by the guide's binding names or ids, an id shared with "
                    "another worker, or being the only one left)",
                    f'declare it in dream.toml: [workers.{role}] bindings = {{ {namespace} = "BINDING" }}',
                )
            )
    for worker in project.unrecognised():
        found.append(
            Diagnosis(
                "workers",
                worker.name,
                f"{worker.config} plays none of the guide's workers (by name, folder or bindings)",
                "name it front-auth-api, oauth-api or api-multi, or give it the guide's bindings",
                "warning",
            )
        )
    for role in GUIDE_WORKERS:
        if role not in project.roles:
            found.append(
                Diagnosis("workers", role, f"no worker of {root} is {role}", f"add {role}/ with its wrangler file")
            )
    for name, copies in sorted(project.copies.items()):
        live = next((c for c in copies if c.live), None)
        if live is None:
            continue
        reader = project.roles[live.worker][0]
        reader_binding = reader.binding(live.binding)
        for copy in copies:
            worker = project.roles[copy.worker][0]
            binding = worker.binding(copy.binding)
            if copy.live or binding is None or reader_binding is None:
                continue
            config = worker.config.relative_to(root) if worker.config.is_relative_to(root) else worker.config
            if binding.id != reader_binding.id:
                found.append(
                    Diagnosis(
                        "namespace ids",
                        worker.name,
                        f"{binding.binding} has id {binding.id} but {reader.name}'s {reader_binding.binding} ({name}) has "
                        f"{reader_binding.id}: {worker.name}'s writes go to a namespace {reader.name} never reads",
                        f'set id = "{reader_binding.id}" for {binding.binding} in {config}',
                    )
                )
            if binding.local_id(preview=True) != reader_binding.local_id(preview=True):
                found.append(
                    Diagnosis(
                        "preview ids",
                        worker.name,
                        f"under `wrangler dev`, {binding.binding} uses {binding.local_id(preview=True)} but "
                        f"{reader.name}'s {reader_binding.binding} uses {reader_binding.local_id(preview=True)}",
                        f"give both bindings of {name} the same preview_id",
                    )
                )
        places = {copy.place for copy in copies}
        if len(places) > 1:
            evidence = []
            for copy in copies:
                ns = WranglerKVNamespace(copy.state_root, copy.id)
                count = sum(1 for _ in ns.scan()) if ns.index.exists() else 0
                evidence.append(f"{copy.worker}: {count} keys in {ns.index.parent.parent.parent.parent}")
            names = " and ".join(copy.worker for copy in copies)
            writers = [c.worker for c in copies if not c.live and "writes" in c.role]
            effect = f"{' and '.join(writers) or 'a writer'} writes what {live.worker} never reads" + (
                ' (the guide\'s "Invalid API key")' if name == "api-tokens" else ""
            )
            found.append(
                Diagnosis(
                    "separate local state",
                    ", ".join(copy.worker for copy in copies),
                    f"{names} bind {name} but keep separate local state ({'; '.join(evidence)}): locally their writes never "
                    f"meet: {effect}",
                    "`dream kv verify` shows the keys stranded in a writer's copy and `dream kv repair` copies them to "
                    f"{live.worker}'s; or run every worker with the same `wrangler dev --persist-to ../.wrangler-shared` "
                    "(`dream kv repair --merge-into .wrangler-shared` moves the data there)",
                )
            )
    for role, (worker, _) in sorted(project.roles.items()):
        expected = DEV_VARS[role]
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
    if "api-multi" in project.roles and not project.roles["api-multi"][0].database:
        found.append(
            Diagnosis(
                "D1",
                "api-multi",
                "api-multi binds no D1 database: customers have nowhere to go",
                "add a [[d1_databases]] binding (DB) to api-multi",
                "warning",
            )
        )
    if len({(copy.state_root.resolve(), copy.id) for copy in project.d1}) > 1:
        found.append(
            Diagnosis(
                "separate local state",
                ", ".join(copy.worker for copy in project.d1),
                "workers bind the same D1 database but keep separate local state",
                "run them with the same `--persist-to`",
                "warning",
            )
        )
    return project, found
