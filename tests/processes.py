"""What a process has open, read from /proc: the check that no store file was deleted under a process using it."""

from __future__ import annotations

import os
from pathlib import Path


def open_files(pid: int | str = "self") -> list[str]:
    """The targets of a process's descriptors (those that close while they are read are skipped)."""
    targets = []
    try:
        descriptors = os.listdir(f"/proc/{pid}/fd")
    except (FileNotFoundError, ProcessLookupError):
        return []  # the process is gone
    for fd in descriptors:
        try:
            targets.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except FileNotFoundError:
            continue
    return targets


def deleted_while_open(pid: int | str, folder: Path) -> list[str]:
    """Files under `folder` a process still has open although they were deleted (`... (deleted)` in /proc): a
    WAL or shared-memory file unlinked under a process that is still writing into it."""
    prefix = str(folder.resolve())
    return [target for target in open_files(pid) if target.startswith(prefix) and target.endswith(" (deleted)")]
