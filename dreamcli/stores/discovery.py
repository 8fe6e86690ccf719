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
from dreamcli.workers_config import WorkersConfig, load_workers_config

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
# The namespaces each role binds in the guide.
ROLE_NAMESPACES: dict[str, tuple[str, ...]] = {
    role: tuple(a.namespace for a in GUIDE_ACCESS if a.worker == role) for role in GUIDE_WORKERS
}
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
    main: Path | None = None  # its entry module, as the config (or its [env.NAME]) names it
    # What its bindings were recognised as (`recognise`): logical namespace -> (binding, how it was told), and the
    # D1 database that holds the customers.
    namespaces: dict[str, tuple[KVBinding, str]] = field(default_factory=dict)
    database: tuple[D1Binding, str] | None = None

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
    main = section.get("main") or data.get("main")
    if isinstance(main, str) and main:
        worker.main = (folder / main).resolve()
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


def identify(workers: list[Worker], config: WorkersConfig | None = None) -> dict[str, tuple[Worker, str]]:
    """Which worker plays each guide role, and how it was told: the folder dream.toml's [workers.ROLE] names, else
    its config's `name`, else its folder's name, else its bindings (oauth-api binds PLATFORM_TOKENS_KV and
    CUSTOMER_TOKENS_KV; the worker whose TOKENS_KV is oauth-api's PLATFORM_TOKENS_KV is front-auth-api, the one
    whose TOKENS_KV is its CUSTOMER_TOKENS_KV is api-multi). Two workers for one role is refused, never settled by a
    guess; a role nobody plays is absent."""
    config = config or WorkersConfig()
    found: dict[str, list[tuple[Worker, str]]] = {}
    unknown: list[Worker] = []
    declared = {settings.folder: role for role, settings in config.roles.items() if settings.folder is not None}
    for folder, role in declared.items():
        if not any(worker.folder.resolve() == folder for worker in workers):
            raise UsageError(
                f"{config.source}: [workers.{role}] folder {folder} holds none of the workers found "
                f"({', '.join(str(w.folder) for w in workers)})"
            )
    for worker in workers:
        if worker.folder.resolve() in declared:
            found.setdefault(declared[worker.folder.resolve()], []).append((worker, f"folder in {config.source}"))
        elif worker.name in GUIDE_WORKERS:
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
            raise UsageError(
                f"two workers match {role}: {listed}. Rename one (its config's name), or name its folder in "
                f"dream.toml ([workers.{role}] folder = ...)"
            )
    return {role: candidates[0] for role, candidates in found.items()}


def recognise(
    roles: dict[str, tuple[Worker, str]], config: WorkersConfig | None = None, *, production_ids: bool = False
) -> None:
    """Which of each worker's bindings is which logical namespace, and its D1 database, whatever the bindings are
    called, filled into `Worker.namespaces` / `Worker.database` with how each was told. In order: dream.toml's
    [workers.ROLE] bindings; the guide's binding name or the guide's namespace id (two readings that disagree are
    refused, with both); the id another worker's recognised binding has (the namespace they share); and a worker's
    only binding left for its only namespace left. A binding nothing recognises stays unrecognised (`dream doctor`
    says so), never guessed."""
    config = config or WorkersConfig()

    def local(binding: KVBinding) -> str:
        return binding.id if production_ids else binding.local_id(preview=True)

    def assign(role: str, worker: Worker, namespace: str, binding: KVBinding, how: str) -> None:
        taken = worker.namespaces.get(namespace)
        if taken is not None and taken[0].binding != binding.binding:
            raise UsageError(
                f"{worker.config}: both {taken[0].binding} ({taken[1]}) and {binding.binding} ({how}) read as "
                f'{namespace}: declare which in dream.toml ([workers.{role}] bindings = {{ {namespace} = "..." }})'
            )
        worker.namespaces[namespace] = (binding, how)

    def free(worker: Worker) -> list[KVBinding]:
        used = {binding.binding for binding, _ in worker.namespaces.values()}
        return [binding for binding in worker.kv if binding.binding not in used]

    for role, (worker, _) in roles.items():
        worker.namespaces = {}
        expected = ROLE_NAMESPACES[role]
        for namespace, name in config.role(role).bindings.items():
            binding = worker.binding(name)
            if binding is None:
                bound = ", ".join(b.binding for b in worker.kv) or "none"
                raise UsageError(
                    f"{config.source}: [workers.{role}] bindings.{namespace} = {name!r}, but {worker.config} binds "
                    f"no {name} (its KV bindings: {bound})"
                )
            if namespace not in expected:
                raise UsageError(
                    f"{config.source}: [workers.{role}] bindings.{namespace}: in the guide {role} binds "
                    f"{' and '.join(expected)}, not {namespace}"
                )
            assign(role, worker, namespace, binding, f"declared in {config.source}")
        for binding in free(worker):
            readings = []
            by_name = GUIDE_BINDINGS.get((role, binding.binding))
            if by_name is not None:
                readings.append((by_name, f"binding name {binding.binding}"))
            for ref in GUIDE_TOPOLOGY.namespaces:
                if ref.name in expected and ref.id in (binding.id, binding.preview_id):
                    readings.append((ref.name, f"the guide's id for {ref.name}"))
            if len({namespace for namespace, _ in readings}) > 1:
                both = " but ".join(f"{how} says {namespace}" for namespace, how in readings)
                raise UsageError(
                    f"{worker.config}: {binding.binding}: {both}. Declare which in dream.toml ([workers.{role}] "
                    f'bindings = {{ NAMESPACE = "{binding.binding}" }})'
                )
            if readings:
                assign(role, worker, readings[0][0], binding, readings[0][1])
    changed = True
    while changed:  # the namespaces two workers share: the same id as one already recognised in the other
        changed = False
        for role, (worker, _) in roles.items():
            for binding in free(worker):
                matches = {
                    namespace: f"same id as {other}'s {theirs.binding}"
                    for other, (peer, _) in roles.items()
                    if other != role
                    for namespace, (theirs, _) in peer.namespaces.items()
                    if namespace in ROLE_NAMESPACES[role]
                    and namespace not in worker.namespaces
                    and local(theirs) == local(binding)
                }
                if len(matches) > 1:
                    raise UsageError(
                        f"{worker.config}: {binding.binding} has the id of {' and of '.join(matches.values())}: "
                        f'declare which it is in dream.toml ([workers.{role}] bindings = {{ NAMESPACE = "{binding.binding}" }})'
                    )
                for namespace, how in matches.items():
                    assign(role, worker, namespace, binding, how)
                    changed = True
    for role, (worker, _) in roles.items():
        missing = [namespace for namespace in ROLE_NAMESPACES[role] if namespace not in worker.namespaces]
        left = free(worker)
        if len(missing) == 1 and len(left) == 1:
            assign(role, worker, missing[0], left[0], f"its only KV binding left ({role} binds {missing[0]})")
        worker.database = _database(role, worker, config)


def _database(role: str, worker: Worker, config: WorkersConfig) -> tuple[D1Binding, str] | None:
    """The worker's D1 database that holds the customers: dream.toml's [workers.ROLE] d1, else its only one, else the
    one with the guide's binding, name or id; several and none of those is refused."""
    declared = config.role(role).d1
    if declared is not None:
        found = next((d for d in worker.d1 if d.binding == declared), None)
        if found is None:
            bound = ", ".join(d.binding for d in worker.d1) or "none"
            raise UsageError(
                f"{config.source}: [workers.{role}] d1 = {declared!r}, but {worker.config} binds no such D1 database "
                f"(its D1 bindings: {bound})"
            )
        return found, f"declared in {config.source}"
    if len(worker.d1) <= 1:
        return (worker.d1[0], f"its only D1 binding ({worker.d1[0].binding})") if worker.d1 else None
    guide = GUIDE_TOPOLOGY.database
    matches = [
        d
        for d in worker.d1
        if d.binding == guide.binding
        or d.database_name == guide.name
        or guide.id in (d.database_id, d.preview_database_id)
    ]
    if len(matches) == 1:
        return matches[0], "the guide's binding, name or id"
    raise UsageError(
        f"{worker.config} binds several D1 databases ({', '.join(d.binding for d in worker.d1)}): declare which holds "
        f'the customers in dream.toml ([workers.{role}] d1 = "BINDING")'
    )


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
    how: str = ""  # how the binding was recognised as this namespace

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
    how: str = ""


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
        if serving in self.roles:
            worker = self.roles[serving][0]
            left = [b.binding for b in worker.kv if all(b.binding != t.binding for t, _ in worker.namespaces.values())]
            raise UsageError(
                f"{serving} ({worker.config}) serves {namespace}, but none of its bindings was recognised as it "
                f"(unrecognised: {', '.join(left) or 'none'}): declare it in dream.toml ([workers.{serving}] "
                f'bindings = {{ {namespace} = "BINDING" }})'
            )
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
    config: WorkersConfig | None = None,
) -> Project:
    """The project at `root` with every copy located. `persist_to` (every worker run with `wrangler dev
    --persist-to DIR`) and `worker_persist_to` (one worker's, by role) are relative to `root`; otherwise each
    worker's dev script's, else its own folder's state. Ids are those `wrangler dev` uses (`preview_id ?? id`), or
    the production `id`s with `production_ids`. `config` is dream.toml's [workers] (default: the nearest dream.toml
    from `root` up)."""
    root = root.expanduser()
    workers = discover(root, env)
    config = config if config is not None else load_workers_config(root)

    def resolved(folder: Path) -> Path:
        found = (root / folder.expanduser()).resolve()
        if not found.is_dir():
            raise NotFound(f"persist-to folder {found} does not exist (persist-to is relative to {root})")
        return found

    if persist_to is not None:
        persist_to = resolved(persist_to)
    roles = identify(workers, config)
    recognise(roles, config, production_ids=production_ids)
    for role, folder in (worker_persist_to or {}).items():
        if role not in GUIDE_WORKERS:
            raise UsageError(f"{role}.persist-to: {role} is none of {', '.join(GUIDE_WORKERS)}")
        if role in roles:
            roles[role][0].dev_persist_to = resolved(folder)
    copies: dict[str, list[Copy]] = {}
    for access in GUIDE_ACCESS:
        played = roles.get(access.worker)
        found = played[0].namespaces.get(access.namespace) if played else None
        if played is None or found is None:
            continue
        binding, how = found
        copies.setdefault(access.namespace, []).append(
            Copy(
                access.namespace,
                access.worker,
                binding.binding,
                access.role,
                binding.id if production_ids else binding.local_id(preview=True),
                played[0].state_root(persist_to),
                READERS[access.namespace][0] == access.worker,
                how,
            )
        )
    d1: list[D1Copy] = []
    owner = D1_OWNER if D1_OWNER in roles and roles[D1_OWNER][0].database else None
    for role in GUIDE_WORKERS:
        chosen = roles[role][0].database if role in roles else None
        if chosen is None:
            continue
        database, how = chosen
        owner = owner or role
        database_id = database.database_id if production_ids else (database.preview_database_id or database.database_id)
        d1.append(
            D1Copy(role, database.binding, database_id, roles[role][0].state_root(persist_to), role == owner, how)
        )
    return Project(root, workers, roles, copies, d1, persist_to, env, production_ids)


def topology_of(workers: list[Worker], *, preview: bool = False, config: WorkersConfig | None = None) -> Topology:
    """Logical namespaces -> the ids the guide workers bind, falling back to the guide's ids (the cloudflare
    store's view: production ids unless `preview`)."""
    roles = identify(workers, config)
    recognise(roles, config, production_ids=not preview)
    refs = []
    for default in GUIDE_TOPOLOGY.namespaces:
        found_id = None
        for access in GUIDE_ACCESS:
            if access.namespace != default.name or access.worker not in roles:
                continue
            found = roles[access.worker][0].namespaces.get(access.namespace)
            if found is not None:
                found_id = found_id or found[0].local_id(preview)
        refs.append(NamespaceRef(default.name, found_id or default.id, default.bindings))
    database = GUIDE_TOPOLOGY.database
    for role in (D1_OWNER, *GUIDE_WORKERS):
        chosen = roles[role][0].database if role in roles else None
        if chosen is not None:
            d1 = chosen[0]
            database = DatabaseRef(
                d1.binding,
                d1.database_name or database.name,
                (d1.preview_database_id or d1.database_id) if preview else d1.database_id,
            )
            break
    return Topology(tuple(refs), database)
