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
# The guide's bindings: (worker, binding) -> logical namespace. The first listed is the namespace's reader.
GUIDE_BINDINGS: dict[tuple[str, str], str] = {
    (binding.partition(":")[0], binding.partition(":")[2]): ref.name
    for ref in GUIDE_TOPOLOGY.namespaces
    for binding in ref.bindings
}
READERS = {ref.name: tuple(ref.bindings[0].split(":")) for ref in GUIDE_TOPOLOGY.namespaces}


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
    name: str
    folder: Path
    config: Path
    kv: list[KVBinding] = field(default_factory=list)
    d1: list[D1Binding] = field(default_factory=list)

    def state_root(self, persist_to: Path | None = None) -> Path:
        """Where wrangler keeps this worker's local state (`--persist-to X` puts it in X/v3)."""
        return persist_to if persist_to is not None else self.folder / ".wrangler" / "state"

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


def load_worker(folder: Path) -> Worker | None:
    config = next((folder / name for name in CONFIG_NAMES if (folder / name).is_file()), None)
    if config is None:
        return None
    data = read_config(config)
    worker = Worker(str(data.get("name") or folder.name), folder, config)
    for entry in data.get("kv_namespaces") or []:
        if not isinstance(entry, dict) or "binding" not in entry:
            raise UsageError(f"{config}: every kv_namespaces entry needs a binding")
        # a binding with no id uses the binding name as its id, locally
        worker.kv.append(KVBinding(entry["binding"], str(entry.get("id") or entry["binding"]), entry.get("preview_id")))
    for entry in data.get("d1_databases") or []:
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


def discover(root: Path) -> list[Worker]:
    """The workers in `root` (a worker folder itself, or a folder of worker folders)."""
    if not root.is_dir():
        raise NotFound(f"project folder {root} does not exist")
    own = load_worker(root)
    if own is not None:
        return [own]
    workers = [w for w in (load_worker(child) for child in sorted(root.iterdir()) if child.is_dir()) if w is not None]
    if not workers:
        raise NotFound(f"no wrangler.toml or wrangler.jsonc in {root} or its sub-folders")
    return workers


def topology_of(workers: list[Worker], *, preview: bool = False) -> Topology:
    """Logical namespaces -> the ids the workers bind (guide binding names), falling back to the guide's ids."""
    refs = []
    for default in GUIDE_TOPOLOGY.namespaces:
        found_id = None
        for worker in workers:
            for binding in worker.kv:
                if GUIDE_BINDINGS.get((worker.name, binding.binding)) == default.name:
                    found_id = found_id or binding.local_id(preview)
        refs.append(NamespaceRef(default.name, found_id or default.id, default.bindings))
    database = GUIDE_TOPOLOGY.database
    for worker in workers:
        for d1 in worker.d1:
            database = DatabaseRef(
                d1.binding,
                d1.database_name or database.name,
                (d1.preview_database_id or d1.database_id) if preview else d1.database_id,
            )
            break
    return Topology(tuple(refs), database)
