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


class RunRecord:
    """What a long-running dream command started, written down beside the project (`.dream/dev.json`) so that the
    next run finds and stops what an earlier one left when both it and its reaper were killed (`kill -9` of every
    process of a user, an out-of-memory kill). Process groups are stopped only while their processes still work in
    the project's folder or a recorded private folder (a group id reused by an unrelated process is left alone);
    folders are removed only if they are dream's own temporary folders."""

    def __init__(self, path: Path, project: Path) -> None:
        self.path = path
        self.project = project
        self._groups: list[int] = []
        self._folders: list[str] = []

    def running(self) -> int | None:
        """The process id of the earlier run if it still runs (its record is then not a leftover)."""
        import json

        try:
            record = json.loads(self.path.read_text())
            pid = int(record["dream"])
        except (OSError, ValueError, KeyError, TypeError):  # no record, or one that is not ours: nothing runs
            return None
        command = _command_line(pid)
        if command is None:  # that process is gone
            return None
        ours = any(part.endswith(b"dream") for part in command) and b"dev" in command
        return pid if ours and pid != os.getpid() else None

    def clear_leftovers(self) -> tuple[int, int]:
        """Stop the recorded process groups still running in the project and remove the recorded private folders;
        (processes stopped, folders removed). Call it when `running()` is None."""
        import json
        import tempfile

        try:
            record = json.loads(self.path.read_text())
            groups = [int(group) for group in record.get("groups", [])]
            folders = [Path(str(folder)) for folder in record.get("folders", [])]
        except (OSError, ValueError, TypeError, AttributeError):  # no record, or not ours: nothing to clear
            return 0, 0
        places = [str(self.project), *(str(folder) for folder in folders)]
        stopped = [pid for group in groups for pid in _members(group) if _works_in(pid, places)]
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in stopped:
                with contextlib.suppress(ProcessLookupError, PermissionError):  # gone already, or not ours
                    os.kill(pid, sig)
            _wait_gone(stopped, 5.0)
        temp = Path(tempfile.gettempdir()).resolve()
        removed = 0
        for folder in folders:
            if folder.name.startswith("dream-") and folder.resolve().parent == temp and folder.is_dir():
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
        self.path.unlink(missing_ok=True)
        return len(stopped), removed

    def group(self, pid: int) -> None:
        self._groups.append(pid)
        self._write()

    def folder(self, path: Path) -> None:
        self._folders.append(str(path))
        self._write()

    def done(self) -> None:
        """Everything recorded was stopped and removed by the run itself."""
        self.path.unlink(missing_ok=True)

    def _write(self) -> None:
        import json

        from dreamcli.private_files import replace_private

        self.path.parent.mkdir(parents=True, exist_ok=True)
        replace_private(self.path, json.dumps({"dream": os.getpid(), "groups": self._groups, "folders": self._folders}))


def _command_line(pid: int) -> list[bytes] | None:
    """A process's arguments; None once it is gone. A process in the middle of exec shows none for an instant (and a
    zombie none at all): asked again for up to half a second."""
    import time

    deadline = time.monotonic() + 0.5
    while True:
        try:
            raw = (Path("/proc") / str(pid) / "cmdline").read_bytes()
        except OSError:
            return None
        if raw or time.monotonic() > deadline:
            return raw.split(b"\0")
        time.sleep(0.02)


def _members(group: int) -> list[int]:
    """The processes of process group `group` (from /proc: field 5 of each stat line)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # it ended while we looked
            continue
        fields = stat.rpartition(")")[2].split()
        if len(fields) > 2 and fields[2] == str(group):
            members.append(int(entry.name))
    return members


def _works_in(pid: int, places: list[str]) -> bool:
    try:
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:  # gone, or not ours
        return False
    return any(cwd == place or cwd.startswith(place.rstrip("/") + "/") for place in places)


def _wait_gone(pids: list[int], timeout: float) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    """`pid` runs (a zombie, dead and waiting for its parent to read its status, does not)."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):  # gone
        return False
