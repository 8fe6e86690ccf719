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
    """SQLite files under `folder` a process still has open although they were deleted (`... (deleted)` in /proc):
    a database, WAL or shared-memory file unlinked under a process that is still writing into it. Not a KV value's
    blob: Miniflare deletes the blob a put replaced while a get of the old value may still be streaming it, which
    POSIX makes safe (the reader reads the old value whole); workerd does it to itself under load."""
    prefix = str(folder.resolve())
    return [
        target
        for target in open_files(pid)
        if target.startswith(prefix) and target.endswith(" (deleted)") and "/blobs/" not in target
    ]


def listening_ports(pids: list[int]) -> list[int]:
    """The TCP ports (IPv4 and IPv6) these processes listen on, from /proc/net/tcp* and their descriptors."""
    inodes: set[str] = set()
    for pid in pids:
        for target in open_files(pid):
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    ports = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # state LISTEN
                ports.append(int(fields[1].rsplit(":", 1)[1], 16))
    return sorted(set(ports))


PORT_NAMES = (
    "api",
    "front",
    "oauth",
    "vendor",
    "stripe",
    "clerk",
    "console",
)  # `--NAME-port` of `emulator serve`, `dev`


def free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 now (bound then released: a server started next takes them)."""
    import socket

    sockets = [socket.socket() for _ in range(count)]
    try:
        for probe in sockets:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in sockets]
    finally:
        for probe in sockets:
            probe.close()


def port_flags_free() -> list[str]:
    """`--api-port N --front-port N ...`, each a free port; the console's 0 (any: it binds last, after `dream dev`'s
    workers have taken ports of their own, and says where it is)."""
    return [
        part
        for name, port in zip(PORT_NAMES, free_ports(len(PORT_NAMES)), strict=True)
        for part in (f"--{name}-port", str(0 if name == "console" else port))
    ]
