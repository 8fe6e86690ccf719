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

from dreamcli.errors import NotFound


def find_wrangler(project: Path) -> Path:
    """wrangler as the project has it (node_modules/.bin, up from the project), else dream's cache, else PATH."""
    here = Path(__file__).resolve().parents[2] / ".cache" / "wrangler" / "node_modules" / ".bin" / "wrangler"
    for folder in [project, *project.parents]:
        candidate = folder / "node_modules" / ".bin" / "wrangler"
        if candidate.exists():
            return candidate
    if here.exists():
        return here
    found = shutil.which("wrangler")
    if found:
        return Path(found)
    raise NotFound(
        "wrangler is not installed: `npm install wrangler@4.86.0` in the project (or, in a clone of dream, `python -m tests.peers`)"
    )


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
    inspect: bool = False,
) -> list[str]:
    """How dream runs one worker locally: `wrangler dev` itself when the user wants its DevTools inspector
    (`inspect`), else wrangler's startWorker API with none (data/wrangler/dev_worker.cjs; the inspector hands out every
    secret of `env` to any local process)."""
    extra = [
        *(["--persist-to", persist_to] if persist_to else []),
        *(["--env-file", str(env_file)] if env_file else []),
    ]
    if inspect:
        return [
            str(wrangler),
            "dev",
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
    return [node, str(DEV_WORKER), str(wrangler_package(wrangler)), config, str(port), *extra]


def wrangler_package(wrangler: Path) -> Path:
    """The wrangler package folder behind its command (node_modules/.bin/wrangler -> ../wrangler/bin/wrangler.js)."""
    return wrangler.resolve().parent.parent
