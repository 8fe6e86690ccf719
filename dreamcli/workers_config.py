"""The `[workers]` section of `dream.toml`: how a user's own workers differ from the guide's, described, never
rewritten. Everything in it is optional; what it leaves out is recognised from the workers' wrangler files (names,
folders, bound ids) or is the guide's.

    [workers.front-auth-api]
    folder = "platform"                          # the worker's folder, relative to dream.toml
    port = 8788                                  # where `dream dev` runs it and `flow run --workers` calls it

    [workers.api-multi]
    folder = "api"
    bindings = { api-usage = "END_USER_USAGE" }  # only when the bound ids cannot tell (see `dream topology`)
    d1 = "CUSTOMERS_DB"                          # only when it binds several databases

    [workers.routes]                             # a step of the contract whose route differs from the guide's
    checkout = "POST /billing/checkout"
    create-products = { route = "PUT /tiers", expect = [201] }

`dream flow run --workers --explain` lists every step with the route it will call."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dreamcli.errors import UsageError
from dreamcli.topology import GUIDE_TOPOLOGY

FILE = "dream.toml"
ROLES = ("front-auth-api", "oauth-api", "api-multi")
GUIDE_PORTS = {"api-multi": 8787, "front-auth-api": 8788, "oauth-api": 8789}  # the guide's `npm run dev` ports
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
_ROUTE = re.compile(r"^(?P<method>[A-Z]+) +(?P<path>/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*)$")
_BINDING = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def find_file(start: Path) -> Path | None:
    """The nearest dream.toml: in `start` or one of its parents."""
    for folder in [start, *start.parents]:
        if (folder / FILE).is_file():
            return folder / FILE
    return None


def read_file(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"{path}: {exc}") from None


@dataclass(frozen=True)
class WorkerSettings:
    """One role's entry: where its worker is, its port, and bindings named where ids cannot tell."""

    folder: Path | None = None
    port: int | None = None
    bindings: dict[str, str] = field(default_factory=dict)  # logical namespace -> binding name
    d1: str | None = None


@dataclass(frozen=True)
class RouteOverride:
    method: str
    path: str
    expect: tuple[int, ...] | None = None


@dataclass(frozen=True)
class WorkersConfig:
    source: Path | None = None
    roles: dict[str, WorkerSettings] = field(default_factory=dict)
    routes: dict[str, RouteOverride] = field(default_factory=dict)

    def role(self, name: str) -> WorkerSettings:
        return self.roles.get(name) or WorkerSettings()

    def port(self, role: str, default: int) -> int:
        return self.role(role).port or default


def load_workers_config(*starts: Path) -> WorkersConfig:
    """The `[workers]` section of the nearest dream.toml from the first of `starts` that has one (none: empty)."""
    for start in starts:
        path = find_file(start.expanduser().resolve())
        if path is not None:
            return parse_workers_config(read_file(path).get("workers"), path)
    return WorkersConfig()


def parse_workers_config(section: Any, path: Path) -> WorkersConfig:
    if section is None:
        return WorkersConfig(path)
    where = f"{path}: [workers]"
    if not isinstance(section, dict):
        raise UsageError(f"{where} must be a table")
    unknown = set(section) - {*ROLES, "routes"}
    if unknown:
        raise UsageError(
            f"{where} has unknown entries {', '.join(sorted(unknown))} (known: {', '.join(ROLES)}, routes)"
        )
    roles = {role: _worker(section[role], path, f"{where}.{role}") for role in ROLES if role in section}
    routes_section = section.get("routes", {})
    if not isinstance(routes_section, dict):
        raise UsageError(f'{where}.routes must be a table of step = "METHOD /path"')
    routes = {step: _route(value, f"{where}.routes.{step}") for step, value in routes_section.items()}
    return WorkersConfig(path, roles, routes)


def _worker(entry: Any, path: Path, where: str) -> WorkerSettings:
    if not isinstance(entry, dict):
        raise UsageError(f"{where} must be a table")
    unknown = set(entry) - {"folder", "port", "bindings", "d1"}
    if unknown:
        raise UsageError(
            f"{where} has unknown settings {', '.join(sorted(unknown))} (known: folder, port, bindings, d1)"
        )
    folder = entry.get("folder")
    if folder is not None and not (isinstance(folder, str) and folder):
        raise UsageError(f"{where}.folder must be a folder name (relative to {path.parent})")
    port = entry.get("port")
    if port is not None and not (isinstance(port, int) and not isinstance(port, bool) and 0 < port < 65536):
        raise UsageError(f"{where}.port must be a port number (1-65535)")
    bindings = entry.get("bindings", {})
    names = GUIDE_TOPOLOGY.names()
    if not isinstance(bindings, dict):
        raise UsageError(f"{where}.bindings maps a namespace ({', '.join(names)}) to a binding name")
    for namespace, binding in bindings.items():
        if namespace not in names:
            raise UsageError(f"{where}.bindings: {namespace!r} is none of the namespaces {', '.join(names)}")
        if not (isinstance(binding, str) and _BINDING.match(binding)):
            raise UsageError(f"{where}.bindings.{namespace} must be a binding name (like USAGE_KV)")
    d1 = entry.get("d1")
    if d1 is not None and not (isinstance(d1, str) and _BINDING.match(d1)):
        raise UsageError(f"{where}.d1 must be a binding name (like DB)")
    return WorkerSettings((path.parent / folder).resolve() if folder else None, port, dict(bindings), d1)


def _route(value: Any, where: str) -> RouteOverride:
    expect = None
    if isinstance(value, dict):
        unknown = set(value) - {"route", "expect"}
        if unknown:
            raise UsageError(f"{where} has unknown settings {', '.join(sorted(unknown))} (known: route, expect)")
        raw_expect = value.get("expect")
        if raw_expect is not None:
            if isinstance(raw_expect, int) and not isinstance(raw_expect, bool):
                raw_expect = [raw_expect]
            if not (
                isinstance(raw_expect, list)
                and raw_expect
                and all(isinstance(s, int) and not isinstance(s, bool) and 100 <= s < 600 for s in raw_expect)
            ):
                raise UsageError(f"{where}.expect must be an HTTP status or a list of them")
            expect = tuple(raw_expect)
        value = value.get("route")
    found = _ROUTE.match(value) if isinstance(value, str) else None
    if found is None or found["method"] not in METHODS:
        raise UsageError(f'{where} must be "METHOD /path" (METHOD one of {", ".join(METHODS)})')
    return RouteOverride(found["method"], found["path"], expect)
