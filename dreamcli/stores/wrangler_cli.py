"""Running wrangler itself: finding it, its environment, and stopping what it started (`wrangler dev` and its
workerd run in a process group of their own, stopped together)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path

from dreamcli.errors import NotFound, UsageError

WRANGLER_MAJOR = 4  # dream runs wrangler 4.x (its startWorker API and local state format)
TESTED_WRANGLER = "4.86.0"  # the version the test suite runs
_CACHE = Path(__file__).resolve().parents[2] / ".cache" / "wrangler" / "node_modules" / ".bin" / "wrangler"


def find_wrangler(project: Path, worker: Path | None = None) -> Path:
    """wrangler as the user runs it: the worker's own folder's node_modules/.bin (`npm run dev` there, as the guide
    does), then each folder up from it through the project and above, then PATH, then dream's own cache (a clone of
    dream, `python -m tests.peers`). Its version must be 4.x."""
    start = worker if worker is not None else project
    folders = [start, *start.parents]
    if worker is not None and project not in folders:
        folders += [project, *project.parents]
    found = next(
        (f / "node_modules" / ".bin" / "wrangler" for f in folders if (f / "node_modules/.bin/wrangler").exists()), None
    )
    if found is None:
        on_path = shutil.which("wrangler")
        found = Path(on_path) if on_path else (_CACHE if _CACHE.exists() else None)
    if found is None:
        raise NotFound(
            f"wrangler is not installed: `npm install --save-dev wrangler@{WRANGLER_MAJOR}` in {start} (what its "
            "`npm run dev` runs), or install it on PATH"
        )
    version = wrangler_version(found)
    if version is not None and not version.startswith(f"{WRANGLER_MAJOR}."):
        raise UsageError(
            f"{found} is wrangler {version}; dream runs wrangler {WRANGLER_MAJOR}.x (tested with {TESTED_WRANGLER}): "
            f"`npm install --save-dev wrangler@{WRANGLER_MAJOR}` in {found.parent.parent.parent}"
        )
    return found


def wrangler_version(wrangler: Path) -> str | None:
    """The version in the package.json behind the `wrangler` command (None if it cannot be read)."""
    import json

    try:
        return str(json.loads((wrangler_package(wrangler) / "package.json").read_text())["version"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def wrangler_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment wrangler runs in: no metrics, no colour, no prompts."""
    return {
        **(os.environ if environ is None else environ),
        "WRANGLER_SEND_METRICS": "false",
        "NO_COLOR": "1",
        "CI": "1",
    }


def signal_group(process: subprocess.Popen[str], sig: int = signal.SIGTERM) -> None:
    """`sig` to the process group `process` leads (started with start_new_session), if it still runs."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):  # it exited between the poll and the signal: nothing to stop
        os.killpg(process.pid, sig)


def reap_group(process: subprocess.Popen[str], timeout: float = 15.0) -> None:
    """Wait for `process` (already signalled), killing its group if it outlives `timeout`, then whatever of its
    group outlived it (a workerd)."""
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):  # it exited just now: what follows reaps it
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    # The group's stragglers (a workerd); none left, or the group id already reused by another user's process.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


# The reaper's own program: it reads what to clean up from its stdin, a pipe only dream holds the other end of, and
# when that pipe closes with anything still registered (dream died: SIGKILL, a crash, the terminal gone) it stops
# those process groups (TERM, then KILL after a grace) and removes those folders.
_REAPER = r"""
import os, shutil, signal, sys, time
groups, folders = set(), set()
for line in sys.stdin:
    verb, _, arg = line.rstrip("\n").partition(" ")
    if verb == "group":
        groups.add(int(arg))
    elif verb == "forget-group":
        groups.discard(int(arg))
    elif verb == "folder":
        folders.add(arg)
    elif verb == "forget-folder":
        folders.discard(arg)
def alive(group):
    try:
        os.killpg(group, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False
for sig in (signal.SIGTERM, signal.SIGKILL):
    for group in groups:
        if alive(group):
            os.killpg(group, sig)
    deadline = time.monotonic() + 5
    while any(alive(group) for group in groups) and time.monotonic() < deadline:
        time.sleep(0.05)
for folder in folders:
    shutil.rmtree(folder, ignore_errors=True)
"""


class Reaper:
    """What dream starts (wrangler and its workerd) and the private folders it writes die with dream, whatever kills
    it, SIGKILL included: a small process of its own session holds the list, and acts when dream's end of their pipe
    closes. A clean stop forgets each item after cleaning it up itself, so the reaper then has nothing to do."""

    def __init__(self) -> None:
        import sys

        self._process = subprocess.Popen(
            [sys.executable, "-c", _REAPER],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,  # not in dream's group: a Ctrl-C or a closed terminal does not reach it
        )

    def _say(self, line: str) -> None:
        assert self._process.stdin is not None
        self._process.stdin.write(line + "\n")
        self._process.stdin.flush()

    def group(self, process: subprocess.Popen[str]) -> None:
        """`process` leads a group (start_new_session) that must not outlive dream."""
        self._say(f"group {process.pid}")

    def forget_group(self, process: subprocess.Popen[str]) -> None:
        self._say(f"forget-group {process.pid}")

    def folder(self, path: Path) -> None:
        """`path` (a folder of secrets) must not outlive dream."""
        self._say(f"folder {path}")

    def forget_folder(self, path: Path) -> None:
        self._say(f"forget-folder {path}")

    def close(self) -> None:
        """Dream is done and cleaned up after itself: the reaper ends with nothing left to do."""
        if self._process.stdin is not None:
            self._process.stdin.close()
        self._process.wait(timeout=30)


DEV_WORKER = Path(__file__).resolve().parents[1] / "data" / "wrangler" / "dev_worker.cjs"


def dev_command(
    wrangler: Path,
    config: str,
    port: int,
    *,
    persist_to: str | None = None,
    env_file: Path | None = None,
    entry: Path | None = None,
    inspect: bool = False,
) -> list[str]:
    """How dream runs one worker locally: `wrangler dev` itself when the user wants its DevTools inspector
    (`inspect`), else wrangler's startWorker API with none (data/wrangler/dev_worker.cjs; the inspector hands out every
    secret of `env` to any local process). `entry` replaces the config's main module (dream's vendor shim)."""
    extra = [
        *(["--persist-to", persist_to] if persist_to else []),
        *(["--env-file", str(env_file)] if env_file else []),
    ]
    if inspect:
        return [
            str(wrangler),
            "dev",
            *([str(entry)] if entry else []),
            "--config",
            config,
            "--ip",
            "127.0.0.1",
            "--port",
            str(port),
            *extra,
            "--inspector-port",
            "0",
            "--show-interactive-dev-session=false",
        ]
    node = shutil.which("node")
    if node is None:
        raise NotFound("Node is not installed: wrangler needs it")
    extra += ["--entry", str(entry)] if entry else []
    return [node, str(DEV_WORKER), str(wrangler_package(wrangler)), config, str(port), *extra]


def wrangler_package(wrangler: Path) -> Path:
    """The wrangler package folder behind its command (node_modules/.bin/wrangler -> ../wrangler/bin/wrangler.js)."""
    return wrangler.resolve().parent.parent
