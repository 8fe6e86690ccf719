"""`dream.toml` profiles: named places (a local emulator, a wrangler project, a production account), each with its
store and its vendor settings, so a CI job and an operator type the same short commands (`dream --profile prod kv
verify`). Secrets are never written in the file: a profile's `env` table maps the variable dream reads to the name
of the environment variable that holds the value.

    [profiles.local]
    store = "emulator:.dream/emulator.db"

    [profiles.dev]
    store = "wrangler:workers,persist-to=.wrangler-shared"

    [profiles.prod]
    store = "cloudflare:workers"
    env = { CLOUDFLARE_API_TOKEN = "PROD_CF_TOKEN", CLOUDFLARE_ACCOUNT_ID = "PROD_CF_ACCOUNT" }
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from dreamcli.errors import NotFound, UsageError
from dreamcli.workers_config import FILE, find_file, read_file

_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
# What a pasted secret looks like: a vendor key's prefix, or a long unbroken token (a Cloudflare API token is 40).
_SECRET = re.compile(r"\b(?:sk|rk)_(?:live|test)_|\bwhsec_|(?<![\w/.-])[A-Za-z0-9_-]{32,}(?![\w/.])")


@dataclass(frozen=True)
class Profile:
    name: str
    source: Path
    store: str | None = None
    env: dict[str, str] = field(default_factory=dict)  # variable dream reads -> the variable holding its value

    def environ(self, base: dict[str, str]) -> dict[str, str]:
        """`base` with the profile's variables filled from the ones it names; a named one that is unset is refused."""
        merged = dict(base)
        for wanted, holder in self.env.items():
            if holder not in base:
                # The holder's name is not echoed: a secret pasted where a name belongs must not reach a CI log.
                raise UsageError(
                    f"profile {self.name} ({self.source}) takes {wanted} from the variable its env table names for "
                    "it, which is not set"
                )
            merged[wanted] = base[holder]
        return merged


def load_profile(name: str, start: Path | None = None) -> Profile:
    """Profile `name` from the nearest dream.toml (this folder or a parent); store paths are relative to its folder."""
    path = find_file((start or Path.cwd()).resolve())
    if path is None:
        raise NotFound(f"--profile {name}: no {FILE} in {start or Path.cwd()} or its parents")
    data = read_file(path)
    profiles = data.get("profiles")
    if not isinstance(profiles, dict) or not isinstance(profiles.get(name), dict):
        known = ", ".join(sorted(profiles)) if isinstance(profiles, dict) else "none"
        raise NotFound(f"no profile {name!r} in {path} (its profiles: {known})")
    entry = profiles[name]
    unknown = set(entry) - {"store", "env"}
    if unknown:
        raise UsageError(
            f"{path}: profile {name} has unknown settings {', '.join(sorted(unknown))} (known: store, env)"
        )
    store = entry.get("store")
    if store is not None and not isinstance(store, str):
        raise UsageError(f"{path}: profile {name}: store must be a string")
    if store is not None and _SECRET.search(store):
        raise UsageError(
            f"{path}: profile {name}: store holds what looks like a secret key (not shown); a store is "
            "emulator:PATH, wrangler:PATH[,...] or cloudflare[:PATH], and secrets go in the environment (env table)"
        )
    env = entry.get("env", {})
    if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        raise UsageError(f"{path}: profile {name}: env maps variable names to the names of variables that hold them")
    for wanted, holder in env.items():
        if not _ENV_NAME.match(holder):
            raise UsageError(
                f"{path}: profile {name}: env.{wanted} must name an environment variable, and it does not (its value "
                "is not shown: it may be a secret, which never goes in the file)"
            )
    if store is not None:
        store = _relative_to(store, path.parent)
    return Profile(name, path, store, dict(env))


def _relative_to(spec: str, folder: Path) -> str:
    """A store spec whose path is relative to the profile file's folder, made absolute."""
    kind, sep, where = spec.partition(":")
    if not sep:
        return str(folder / os.path.expanduser(spec)) if spec not in ("emulator", "wrangler", "cloudflare") else spec
    if not where:
        return spec
    head, comma, rest = where.partition(",")
    return f"{kind}:{folder / os.path.expanduser(head)}{comma}{rest}"
