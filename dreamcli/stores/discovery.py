"""The workers' own configuration: which namespace ids and D1 databases each worker binds, read from
`wrangler.toml` or `wrangler.jsonc` (comments and trailing commas allowed), and the topology it gives."""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dreamcli.errors import NotFound, UsageError
from dreamcli.topology import GUIDE_TOPOLOGY, DatabaseRef, NamespaceRef, Topology

CONFIG_NAMES = ("wrangler.toml", "wrangler.jsonc", "wrangler.json")
GUIDE_WORKERS = ("front-auth-api", "oauth-api", "api-multi")


@dataclass(frozen=True)
class Access:
    """A guide worker's binding of a logical namespace, and what the guide has it do there."""

    worker: str
    binding: str
    namespace: str
    reads: bool
    writes: bool

    @property
    def role(self) -> str:
        return " and ".join(word for word, on in (("reads", self.reads), ("writes", self.writes)) if on)


# Who binds what, and does what with it (the guide's "Architecture" and each worker's routes). The first binding of
# each namespace is the one that serves it: its worker's copy is the live one, what the platform's callers meet.
GUIDE_ACCESS: tuple[Access, ...] = (
    Access("front-auth-api", "TOKENS_KV", "platform-tokens", reads=True, writes=True),
    Access("oauth-api", "PLATFORM_TOKENS_KV", "platform-tokens", reads=True, writes=True),
    Access("front-auth-api", "USAGE_KV", "platform-usage", reads=True, writes=True),
    Access("api-multi", "TOKENS_KV", "api-tokens", reads=True, writes=False),
    Access("oauth-api", "CUSTOMER_TOKENS_KV", "api-tokens", reads=False, writes=True),
    Access("api-multi", "USAGE_KV", "api-usage", reads=True, writes=True),
)
# The guide's bindings: (worker, binding) -> logical namespace.
GUIDE_BINDINGS: dict[tuple[str, str], str] = {(a.worker, a.binding): a.namespace for a in GUIDE_ACCESS}
READERS = {ref.name: tuple(ref.bindings[0].split(":")) for ref in GUIDE_TOPOLOGY.namespaces}
# The worker whose D1 is the live one: api-multi writes the customers.
D1_OWNER = "api-multi"


@dataclass(frozen=True)
class KVBinding:
    binding: str
    id: str
    preview_id: str | None = None

    def local_id(self, preview: bool = False) -> str:
        """The id that names the files: `wrangler dev` uses preview_id ?? id."""
        return (self.preview_id or self.id) if preview else self.id


@dataclass(frozen=True)
class D1Binding:
    binding: str
    database_name: str | None
    database_id: str
    preview_database_id: str | None = None
    migrations_dir: str = "migrations"


@dataclass
class Worker:
    name: str  # the config's `name` (else the folder's)
    folder: Path
    config: Path
    kv: list[KVBinding] = field(default_factory=list)
    d1: list[D1Binding] = field(default_factory=list)
    dev_persist_to: Path | None = None  # `--persist-to` of its package.json dev script, resolved

    def state_root(self, persist_to: Path | None = None) -> Path:
        """Where `wrangler dev` keeps this worker's local state: `--persist-to X` (given, else its dev script's) puts
        it in X/v3, otherwise its own folder's .wrangler/state."""
        chosen = persist_to or self.dev_persist_to
        return chosen if chosen is not None else self.folder / ".wrangler" / "state"

    def binding(self, name: str) -> KVBinding | None:
        return next((b for b in self.kv if b.binding == name), None)


def strip_jsonc(text: str) -> str:
    """JSON with comments and trailing commas, as wrangler accepts it, made plain JSON (strings kept intact)."""
    out = []
    i = 0
    in_string = False
    while i < len(text):
        char = text[i]
        if in_string:
            out.append(char)
            if char == "\\":
                out.append(text[i + 1 : i + 2])
                i += 2
                continue
            if char == '"':
                in_string = False
        elif char == '"':
            in_string = True
            out.append(char)
        elif text.startswith("//", i):
            i = text.find("\n", i)
            if i == -1:
                break
            continue
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = len(text) if end == -1 else end + 2
            continue
        else:
            out.append(char)
        i += 1
    return re.sub(r",(\s*[}\]])", r"\1", "".join(out))


def read_config(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    try:
        if path.suffix == ".toml":
            return tomllib.loads(text)
        return json.loads(strip_jsonc(text))
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path}: not valid {'TOML' if path.suffix == '.toml' else 'JSON'}: {exc}") from None


_PERSIST = re.compile(r"--persist-to[= ]+(\S+)")


def dev_script_persist_to(folder: Path) -> Path | None:
    """`--persist-to DIR` from the worker's `npm run dev` script (relative to the worker's folder), if any."""
    try:
        script = json.loads((folder / "package.json").read_text()).get("scripts", {}).get("dev", "")
    except (OSError, json.JSONDecodeError, AttributeError):
        return None
    found = _PERSIST.search(script or "")
    return (folder / found.group(1)).resolve() if found else None


def load_worker(folder: Path, env: str | None = None) -> Worker | None:
    """The worker configured in `folder`, its bindings as `wrangler dev [--env ENV]` sees them: an `[env.ENV]`
    section's kv_namespaces and d1_databases replace the top level's (wrangler does not inherit them)."""
    config = next((folder / name for name in CONFIG_NAMES if (folder / name).is_file()), None)
    if config is None:
        return None
    data = read_config(config)
    worker = Worker(str(data.get("name") or folder.name), folder, config, dev_persist_to=dev_script_persist_to(folder))
    section = data
    if env is not None:
        envs: dict[str, Any] = data["env"] if isinstance(data.get("env"), dict) else {}
        if not isinstance(envs.get(env), dict):
            known = ", ".join(sorted(envs)) or "none"
            raise UsageError(f"{config} has no [env.{env}] section (its environments: {known})")
        section = envs[env]
    for entry in section.get("kv_namespaces") or []:
        if not isinstance(entry, dict) or "binding" not in entry:
            raise UsageError(f"{config}: every kv_namespaces entry needs a binding")
        # a binding with no id uses the binding name as its id, locally
        worker.kv.append(KVBinding(entry["binding"], str(entry.get("id") or entry["binding"]), entry.get("preview_id")))
    for entry in section.get("d1_databases") or []:
        if not isinstance(entry, dict) or "binding" not in entry:
            raise UsageError(f"{config}: every d1_databases entry needs a binding")
        worker.d1.append(
            D1Binding(
                entry["binding"],
                entry.get("database_name"),
                str(entry.get("database_id") or entry["binding"]),
                entry.get("preview_database_id"),
                entry.get("migrations_dir", "migrations"),
            )
        )
    return worker


def discover(root: Path, env: str | None = None) -> list[Worker]:
    """The workers in `root` (a worker folder itself, or a folder of worker folders)."""
    if not root.is_dir():
        raise NotFound(f"project folder {root} does not exist")
    own = load_worker(root, env)
    if own is not None:
        return [own]
    children = [child for child in sorted(root.iterdir()) if child.is_dir()]
    workers = [w for w in (load_worker(child, env) for child in children) if w is not None]
    if not workers:
        raise NotFound(f"no wrangler.toml or wrangler.jsonc in {root} or its sub-folders")
    return workers


def _describe(worker: Worker) -> str:
    bindings = ", ".join([b.binding for b in worker.kv] + [d.binding for d in worker.d1]) or "no bindings"
    return f"{worker.config} (name {worker.name!r}; {bindings})"


def identify(workers: list[Worker]) -> dict[str, tuple[Worker, str]]:
    """Which worker plays each guide role, and how it was told: by its config's `name`, else its folder's name,
    else its bindings (oauth-api binds PLATFORM_TOKENS_KV and CUSTOMER_TOKENS_KV; the worker whose TOKENS_KV is
    oauth-api's PLATFORM_TOKENS_KV is front-auth-api, the one whose TOKENS_KV is its CUSTOMER_TOKENS_KV is
    api-multi). Two workers for one role is refused, never settled by a guess; a role nobody plays is absent."""
    found: dict[str, list[tuple[Worker, str]]] = {}
    unknown: list[Worker] = []
    for worker in workers:
        if worker.name in GUIDE_WORKERS:
            found.setdefault(worker.name, []).append((worker, "config name"))
        elif worker.folder.name in GUIDE_WORKERS:
            found.setdefault(worker.folder.name, []).append((worker, "folder name"))
        else:
            unknown.append(worker)
    for worker in unknown:
        names = {b.binding for b in worker.kv}
        if {"PLATFORM_TOKENS_KV", "CUSTOMER_TOKENS_KV"} <= names:
            found.setdefault("oauth-api", []).append((worker, "bindings"))
    oauth = found.get("oauth-api", [])
    for worker in unknown:
        tokens = worker.binding("TOKENS_KV")
        if tokens is None or len(oauth) != 1:
            continue
        for role, binding in (("front-auth-api", "PLATFORM_TOKENS_KV"), ("api-multi", "CUSTOMER_TOKENS_KV")):
            theirs = oauth[0][0].binding(binding)
            if theirs is not None and theirs.id == tokens.id:
                found.setdefault(role, []).append((worker, f"bindings (TOKENS_KV is oauth-api's {binding})"))
    for role, candidates in found.items():
        if len(candidates) > 1:
            listed = "; ".join(f"{_describe(w)} by {how}" for w, how in candidates)
            raise UsageError(f"two workers match {role}: {listed}. Rename one (its config's name) so one does")
    return {role: candidates[0] for role, candidates in found.items()}


@dataclass(frozen=True)
class Copy:
    """One local copy of a logical namespace: a guide worker's binding of it, the id whose files `wrangler dev`
    uses, and the state folder they are in. The live copy is the one the serving worker reads."""

    namespace: str
    worker: str
    binding: str
    role: str
    id: str
    state_root: Path
    live: bool

    @property
    def place(self) -> tuple[Path, str]:
        """Copies with the same place are one and the same files."""
        return (self.state_root.resolve(), self.id)


@dataclass(frozen=True)
class D1Copy:
    worker: str
    binding: str
    id: str
    state_root: Path
    live: bool


@dataclass
class Project:
    """A wrangler project as `wrangler dev` runs it: its workers, who plays which guide role, and every local copy
    of every namespace and of the D1 database."""

    root: Path
    workers: list[Worker]
    roles: dict[str, tuple[Worker, str]]
    copies: dict[str, list[Copy]]
    d1: list[D1Copy]
    persist_to: Path | None = None
    env: str | None = None
    production_ids: bool = False

    def live(self, namespace: str) -> Copy:
        for copy in self.copies.get(namespace, []):
            if copy.live:
                return copy
        found = ", ".join(f"{role} ({how})" for role, (_, how) in sorted(self.roles.items())) or "no guide worker"
        serving = READERS[namespace][0]
        raise UsageError(
            f"no worker of {self.root} serves {namespace} ({serving}'s {READERS[namespace][1]}); found: {found}"
        )

    def live_d1(self) -> D1Copy | None:
        return next((copy for copy in self.d1 if copy.live), None)

    def unrecognised(self) -> list[Worker]:
        playing = {id(worker) for worker, _ in self.roles.values()}
        return [worker for worker in self.workers if id(worker) not in playing]


def open_project(
    root: Path,
    *,
    persist_to: Path | None = None,
    env: str | None = None,
    production_ids: bool = False,
    worker_persist_to: dict[str, Path] | None = None,
) -> Project:
    """The project at `root` with every copy located. `persist_to` (every worker run with `wrangler dev
    --persist-to DIR`) and `worker_persist_to` (one worker's, by role) are relative to `root`; otherwise each
    worker's dev script's, else its own folder's state. Ids are those `wrangler dev` uses (`preview_id ?? id`), or
    the production `id`s with `production_ids`."""
    root = root.expanduser()
    workers = discover(root, env)

    def resolved(folder: Path) -> Path:
        found = (root / folder.expanduser()).resolve()
        if not found.is_dir():
            raise NotFound(f"persist-to folder {found} does not exist (persist-to is relative to {root})")
        return found

    if persist_to is not None:
        persist_to = resolved(persist_to)
    roles = identify(workers)
    for role, folder in (worker_persist_to or {}).items():
        if role not in GUIDE_WORKERS:
            raise UsageError(f"{role}.persist-to: {role} is none of {', '.join(GUIDE_WORKERS)}")
        if role in roles:
            roles[role][0].dev_persist_to = resolved(folder)
    copies: dict[str, list[Copy]] = {}
    for access in GUIDE_ACCESS:
        played = roles.get(access.worker)
        binding = played[0].binding(access.binding) if played else None
        if played is None or binding is None:
            continue
        serving = READERS[access.namespace] == (access.worker, access.binding)
        copies.setdefault(access.namespace, []).append(
            Copy(
                access.namespace,
                access.worker,
                access.binding,
                access.role,
                binding.id if production_ids else binding.local_id(preview=True),
                played[0].state_root(persist_to),
                serving,
            )
        )
    d1: list[D1Copy] = []
    owner = D1_OWNER if D1_OWNER in roles and roles[D1_OWNER][0].d1 else None
    for role in GUIDE_WORKERS:
        if role not in roles or not roles[role][0].d1:
            continue
        database = roles[role][0].d1[0]
        owner = owner or role
        database_id = database.database_id if production_ids else (database.preview_database_id or database.database_id)
        d1.append(D1Copy(role, database.binding, database_id, roles[role][0].state_root(persist_to), role == owner))
    return Project(root, workers, roles, copies, d1, persist_to, env, production_ids)


def topology_of(workers: list[Worker], *, preview: bool = False) -> Topology:
    """Logical namespaces -> the ids the guide workers bind, falling back to the guide's ids (the cloudflare
    store's view: production ids unless `preview`)."""
    roles = identify(workers)
    refs = []
    for default in GUIDE_TOPOLOGY.namespaces:
        found_id = None
        for access in GUIDE_ACCESS:
            if access.namespace != default.name or access.worker not in roles:
                continue
            binding = roles[access.worker][0].binding(access.binding)
            if binding is not None:
                found_id = found_id or binding.local_id(preview)
        refs.append(NamespaceRef(default.name, found_id or default.id, default.bindings))
    database = GUIDE_TOPOLOGY.database
    for role in (D1_OWNER, *GUIDE_WORKERS):
        if role in roles and roles[role][0].d1:
            d1 = roles[role][0].d1[0]
            database = DatabaseRef(
                d1.binding,
                d1.database_name or database.name,
                (d1.preview_database_id or d1.database_id) if preview else d1.database_id,
            )
            break
    return Topology(tuple(refs), database)
