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
