"""The clients nobody here wrote that the interop tests drive (wrangler, stripe-node, @clerk/backend, the Stripe
CLI, svix, the reference workers' own dependencies; and Debian's chromium for the console's browser tests): where
each is installed, and installing the missing ones.

The test command installs them itself, cached in `.cache/` (and `fixtures/workers/node_modules`), at the start of
the session (`pytest_sessionstart` in conftest), so `python -m pytest` on a fresh clone runs what CI runs. A test
needing one marks itself `@pytest.mark.peer("NAME")`: without it the test is skipped, saying why, or under CI=true
fails, since CI must prove what the suite claims.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache"
CHROMIUM = Path("/usr/bin/chromium")


@dataclass(frozen=True)
class Peer:
    name: str
    markers: tuple[Path, ...]  # present once installed
    commands: tuple[tuple[str, ...], ...]  # what installs it (npm, from the registry, versions pinned; or apt-get)
    runtime: str = "node"  # what it runs on ("node"), or "" for a program of its own (Debian's chromium)

    @property
    def present(self) -> bool:
        runs = not self.runtime or shutil.which(self.runtime) is not None
        return runs and all(marker.exists() for marker in self.markers)

    @property
    def marker(self) -> Path:
        return self.markers[0]

    def why_missing(self) -> str:
        if self.runtime and shutil.which(self.runtime) is None:
            return f"{self.name} needs Node, which is not installed"
        missing = next(marker for marker in self.markers if not marker.exists())
        commands = "; ".join(" ".join(command) for command in self.commands)
        shown = missing.relative_to(ROOT) if missing.is_relative_to(ROOT) else missing
        return f"{self.name} is not installed ({shown} missing; `{commands}`)"

    def installer_missing(self) -> str | None:
        """Why this machine cannot install it (None: it can)."""
        tool = self.commands[0][0]
        if tool == "apt-get":
            if shutil.which("apt-get") is None:
                return f"{self.name}: this is not a Debian system (no apt-get): install it yourself"
            if os.geteuid() != 0 and not _sudo_without_password():
                return f"{self.name}: installing it needs root (`sudo apt-get install chromium`)"
            return None
        if shutil.which("npm") is None or shutil.which("node") is None:
            return f"{self.name}: Node and npm are not installed"
        return None


def _sudo_without_password() -> bool:
    if shutil.which("sudo") is None:
        return False
    return subprocess.run(["sudo", "-n", "true"], capture_output=True, timeout=30).returncode == 0


NPM = ("npm", "--no-audit", "--no-fund", "--loglevel=error")
NPM_PEERS = ("stripe@23.1.0", "@clerk/backend@3.25.0", "@stripe/cli@1.52.0", "svix@1.84.1")
GUIDE_WORKERS = ROOT / "tests" / "guide_workers"
GUIDE_WORKER_FOLDERS = ("platform", "connect", "customers-api")
PEERS = {
    # wrangler 4.86.0: the newest that runs on Node 20
    "wrangler": Peer(
        "wrangler",
        (CACHE / "wrangler" / "node_modules" / ".bin" / "wrangler",),
        ((*NPM, "install", "--prefix", str(CACHE / "wrangler"), "wrangler@4.86.0"),),
    ),
    "npm-peers": Peer(
        "the official npm clients (stripe-node, @clerk/backend, the Stripe CLI, svix)",
        # a marker naming the versions: a cache of other versions is completed, not trusted
        (CACHE / "npm-peers" / "node_modules" / (".dream-" + "-".join(NPM_PEERS).replace("/", "_")),),
        ((*NPM, "install", "--prefix", str(CACHE / "npm-peers"), *NPM_PEERS),),
    ),
    "workers": Peer(
        "the reference workers' dependencies (stripe, @clerk/backend)",
        (ROOT / "fixtures" / "workers" / "node_modules" / "@clerk" / "backend" / "package.json",),
        ((*NPM, "ci", "--prefix", str(ROOT / "fixtures" / "workers")),),
    ),
    # each of the guide-written workers has its own install, wrangler included, as `npm run dev` in it needs
    "guide-workers": Peer(
        "the guide-written workers' own installs (wrangler, hono, stripe, @clerk/backend in each folder)",
        tuple(GUIDE_WORKERS / folder / "node_modules" / "hono" / "package.json" for folder in GUIDE_WORKER_FOLDERS)
        + tuple(GUIDE_WORKERS / folder / "node_modules" / ".bin" / "wrangler" for folder in GUIDE_WORKER_FOLDERS),
        tuple((*NPM, "ci", "--prefix", str(GUIDE_WORKERS / folder)) for folder in GUIDE_WORKER_FOLDERS),
    ),
    # the console's browser tests: Debian's chromium, driven headless by Playwright for Python (a test extra)
    "chromium": Peer(
        "Debian's chromium (the console's browser tests)",
        (CHROMIUM,),
        (("apt-get", "update", "-q"), ("apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium")),
        runtime="",
    ),
}
WRANGLER = PEERS["wrangler"].marker
NODE_PEERS = CACHE / "npm-peers" / "node_modules"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def install_missing(say=print) -> list[str]:
    """Install every missing peer; what could not be installed, one line each (empty: all present)."""
    failed = []
    for peer in PEERS.values():
        if peer.present:
            continue
        cannot = peer.installer_missing()
        if cannot is not None:
            failed.append(cannot)
            continue
        broke = False
        for command in peer.commands:
            if command[0] == "apt-get" and os.geteuid() != 0:
                command = ("sudo", "-n", *command)  # noqa: PLW2901 - as root, through sudo where it asks no password
            say(f"installing {peer.name} (cached for the next runs): {' '.join(command)}")
            done = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=900,
                env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            )
            if done.returncode != 0:
                failed.append(f"{peer.name}: {' '.join(command)} failed: {done.stderr.strip()[-500:]}")
                broke = True
                break
        if broke:
            continue
        if peer is PEERS["npm-peers"]:
            peer.marker.touch()  # all of them installed, at these versions
        if not peer.present:
            failed.append(f"{peer.name}: installed, but {peer.marker} is still missing")
    return failed


if __name__ == "__main__":  # `python -m tests.peers`: install them now (the benches need them too)
    import sys

    problems = install_missing()
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    sys.exit(1 if problems else 0)
