"""Keys stranded in a writer's local copy: under `wrangler dev` each worker folder keeps its own state unless the
workers share `--persist-to`, so what oauth-api writes into its CUSTOMER_TOKENS_KV lands in oauth-api's state while
api-multi reads its own (the guide's "Invalid API key" as it really happens). For every namespace with more than
one copy, a key a writer's copy holds that the live copy lacks, or holds older (by the write time its blob id
carries), is a finding, fixed by copying it, value, metadata and expiration, into the live copy.

A key deleted from the live copy while a writer's copy still holds it would look stranded too (local state keeps
no tombstones): so the wrangler store deletes from every copy of a namespace (`WranglerKVNamespace.copies`), and a
revoked key is never brought back."""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dreamcli import layout
from dreamcli.errors import UsageError
from dreamcli.layout import KeyKind
from dreamcli.platform.replication.findings import Action, Finding, FindingClass, Fix, Phase, shown
from dreamcli.stores.bulk import write_in_batches
from dreamcli.stores.kv_rules import decode_metadata
from dreamcli.stores.ports import KVWrite, Store

# Where a copied key goes in repair's safe order: what authenticates (the secret mapping) last.
_PHASES = {
    KeyKind.TIER_CONFIG: Phase.TIER_CONFIG,
    KeyKind.PUBLISHABLE_KEY_PLATFORM: Phase.API_PUBLISHABLE,
    KeyKind.SECRET_KEY_PUBLISHABLE: Phase.API_SECRET,
}


def _where(copy: Any, index: Any) -> str:
    return f"{copy.worker}'s {copy.binding} ({index.parent.parent.parent.parent}, id {copy.id})"


def _stranded(
    name: str,
    key: str,
    source: Any,
    other: Any,
    target: Any,
    into: Any,
    value: bytes,
    current: bytes | None,
    expiration: int | None,
    metadata: str | None,
) -> Finding:
    kind = layout.classify(key)[0]
    lacks = "lacks it" if current is None else "holds an older value"
    serves = "serves" if target.live else "reads"
    return Finding(
        FindingClass.STRANDED,
        name,
        key,
        None,
        f"{source.worker} wrote it into {_where(source, other.index)}; {target.worker} {serves} {name} from "
        f"{_where(target, into.index)}, which {lacks}",
        shown(kind, value.decode("utf-8", errors="replace")),
        None if current is None else shown(kind, current.decode("utf-8", errors="replace")),
        Fix(
            Action.PUT,
            name,
            key,
            _PHASES.get(kind, Phase.PLATFORM_TOKENS),
            data=value,
            expiration=None if expiration is None else expiration // 1000,
            metadata=decode_metadata(metadata),
            copy=None if target.live else target.worker,
        ),
    )


def stranded(store: Store) -> tuple[list[Finding], int]:
    """The findings, and how many keys of the other copies were looked at closer."""
    project = store.project
    if project is None:
        return [], 0
    from dreamcli.stores.wrangler import WranglerKVNamespace

    findings: list[Finding] = []
    scanned = 0
    for name, copies in sorted(project.copies.items()):
        if not any(copy.live for copy in copies) or len({copy.place for copy in copies}) == 1:
            continue
        distinct = list({copy.place: copy for copy in sorted(copies, key=lambda c: not c.live)}.values())
        # Every copy a worker reads must hold what every copy a worker writes holds: oauth-api's writes must reach
        # the serving worker's copy, and what front-auth-api wrote must reach the copy oauth-api reads.
        for target in distinct:
            if not (target.live or "reads" in target.role):
                continue
            into = WranglerKVNamespace(target.state_root, target.id, store.clock)
            for source in distinct:
                if source is target or "writes" not in source.role:
                    continue
                other = WranglerKVNamespace(source.state_root, source.id, store.clock)
                for key, blob_id, expiration, metadata, held in into.ahead_of_me(other):
                    scanned += 1
                    value = other.blob(blob_id)
                    current = into.blob(held) if held is not None else None
                    if value is None or (held is not None and current == value):
                        continue
                    findings.append(
                        _stranded(name, key, source, other, target, into, value, current, expiration, metadata)
                    )
    return findings, scanned


@dataclass
class MergeReport:
    target: Path
    copied: dict[str, int] = field(default_factory=dict)  # namespace -> keys written into the shared folder
    d1: str = ""
    dev_scripts: dict[str, str] = field(default_factory=dict)  # worker -> its new `npm run dev`
    store_spec: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "target": str(self.target),
            "copied": self.copied,
            "d1": self.d1,
            "devScripts": self.dev_scripts,
            "store": self.store_spec,
        }


def merge_into(store: Store, folder: Path) -> MergeReport:
    """Every copy of every namespace into one shared state folder (`wrangler dev --persist-to FOLDER` for all
    workers), the newest version of each key winning; the live D1 copied there unless one is there already. Nothing
    is removed from the workers' own states. `folder` is relative to the project."""
    project = store.project
    if project is None:
        raise UsageError("--merge-into is for wrangler's local state (--store wrangler:PROJECT)")
    from dreamcli.stores.wrangler import WranglerKVNamespace, d1_path

    target = (project.root / folder.expanduser()).resolve()
    report = MergeReport(target)
    for name, copies in sorted(project.copies.items()):
        live = next((copy for copy in copies if copy.live), None)
        if live is None:
            continue
        into = WranglerKVNamespace(target, live.id, store.clock)
        written = 0
        for copy in sorted(copies, key=lambda c: not c.live):  # the live copy first
            source = WranglerKVNamespace(copy.state_root, copy.id, store.clock)
            batch = []
            for key, blob_id, expiration, metadata, _ in into.ahead_of_me(source):
                value = source.blob(blob_id)
                if value is not None:
                    batch.append(
                        KVWrite(
                            key,
                            value,
                            None if expiration is None else expiration // 1000,
                            None,
                            decode_metadata(metadata),
                        )
                    )
            write_in_batches(into, batch, batch_size=10_000)
            written += len(batch)
        report.copied[name] = written
    live_d1 = project.live_d1()
    if live_d1 is not None:
        source_path, target_path = d1_path(live_d1.state_root, live_d1.id), d1_path(target, live_d1.id)
        if target_path.exists():
            report.d1 = f"kept the D1 database already in {target_path}"
        elif source_path.exists():
            target_path.parent.mkdir(parents=True, exist_ok=True)
            with sqlite3.connect(f"file:{source_path}?mode=ro", uri=True) as conn:
                conn.execute("VACUUM INTO ?", (str(target_path),))
            report.d1 = f"copied {live_d1.worker}'s D1 database to {target_path}"
    for role, (worker, _) in sorted(project.roles.items()):
        relative = os.path.relpath(target, worker.folder)
        flags = f" --env {project.env}" if project.env else ""
        report.dev_scripts[role] = f"wrangler dev --persist-to {relative}{flags}"
    spec = f"wrangler:{project.root},persist-to={os.path.relpath(target, project.root)}"
    report.store_spec = spec + (f",env={project.env}" if project.env else "")
    return report
