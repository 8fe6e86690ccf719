"""Files only their owner may read (stores, secrets, blobs, env files), made without ever opening a descriptor on a
path that may already exist: a database file may be open in this process, and closing any descriptor of it drops the
process's locks on it (see dreamcli.stores.sqlite_file). A new file is made with mknod, 0600 from its first byte,
and refused if anything (a file, a link) is there; it is written by path once it is known to be ours."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path


def create_private(path: Path) -> bool:
    """Make `path` an empty regular file only its owner can read, without opening it; False if something is there."""
    try:
        os.mknod(path, 0o600 | stat.S_IFREG)
    except FileExistsError:
        return False
    path.chmod(0o600)  # by path: a umask may have taken a bit mknod asked for
    return True


def write_private(path: Path, data: bytes | str) -> None:
    """`data` in a new file at `path` only its owner can read; FileExistsError if anything is there already."""
    if not create_private(path):
        raise FileExistsError(f"{path} exists")
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data)


def replace_private(path: Path, data: bytes | str) -> None:
    """`data` at `path`, only its owner can read it, replaced whole: written beside it, then renamed over it (a
    reader sees the old content or the new, never a part)."""
    beside = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    write_private(beside, data)
    try:
        os.replace(beside, path)
    except BaseException:
        beside.unlink(missing_ok=True)
        raise
