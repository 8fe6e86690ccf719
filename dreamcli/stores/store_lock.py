"""One lock per local store, so that what dream changes in several keys at once (a pair created, rotated or revoked,
a repair, a flow step) is seen whole by dream's readers (verify) in every other process and thread.

Each key write is atomic on its own, but a change of several keys spans namespaces, and on wrangler's state each
namespace is a file of its own: without this lock a `dream kv verify` beside a `dream keys revoke` could read the
pair marked revoked with its mappings not yet deleted, report them stale, and a `dream kv repair` could act on
that half. Writers of such changes hold the lock exclusively (`Store.locked()`), verify holds it shared
(`Store.locked(shared=True)`) while it reads; a reader or writer that finds it taken waits, and says so
(`on_wait`). The workers themselves (workerd) do not take it: what they write is theirs to order, as on
Cloudflare, where no lock spans KV at all (the cloudflare store has none).

The lock is `flock(2)` on a file of its own, never on a database file (closing any descriptor of a database file
drops the process's SQLite locks on it: DESIGN.md). The kernel releases it when its holder dies, however it dies:
a killed process never leaves the store locked. The lock files live in a private folder of the user's in the
temporary folder, named by a digest of the store's real path, so opening a store to read creates nothing in it.
An exclusive holder writes its process id and command into the file, for a waiter to name whom it waits for.
Reentrant per thread: a block that holds the lock may call code that takes it again (shared inside exclusive).
Where there is no flock(2) (Windows) none is taken.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from dreamcli.errors import StoreError

try:
    import fcntl
except ImportError:  # Windows: no flock(2); the lock is not taken there
    fcntl = None  # type: ignore[assignment]

# Told once when a lock is taken by someone else and this process starts waiting for it (the CLI prints it on
# stderr); None: wait silently.
on_wait: Callable[[str], None] | None = None


_held = threading.local()  # .files: lock file -> whether this thread holds it shared (absent: not held)


def lock_folder() -> Path:
    """The user's private folder of lock files (0700), refused if anyone else could have made or changed it."""
    folder = Path(tempfile.gettempdir()) / f"dream-locks-{os.getuid()}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        found = os.lstat(folder)
    except OSError as exc:
        raise StoreError(f"cannot make the store lock folder {folder}: {exc.strerror}") from None
    if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.getuid() or found.st_mode & 0o077:
        raise StoreError(
            f"the store lock folder {folder} is not a private folder of this user's (a link, another owner, "
            "or open to others): remove it and run again"
        )
    return folder


def lock_file(place: str | Path) -> Path:
    """The lock file of a store file or state folder, by its real path (every spelling of it, one lock)."""
    real = os.path.realpath(place)
    return lock_folder() / f"{hashlib.sha256(real.encode()).hexdigest()[:32]}.lock"


class StoreLock:
    """The lock of one store: a file per place it keeps state, always taken in one order (no two processes
    holding one each and waiting for the other's)."""

    def __init__(self, places: Iterable[str | Path], name: str) -> None:
        self.places = sorted({os.path.realpath(place) for place in places})
        self.name = name

    @contextmanager
    def hold(self, *, shared: bool = False) -> Iterator[None]:
        if fcntl is None:
            yield
            return
        with ExitStack() as stack:
            for file in sorted(lock_file(place) for place in self.places):
                stack.enter_context(self._one(file, shared))
            yield

    @contextmanager
    def _one(self, file: Path, shared: bool) -> Iterator[None]:
        held: dict[Path, bool] = _held.__dict__.setdefault("files", {})
        if file in held:  # this thread holds it already: the outer block releases it
            if held[file] and not shared:
                # Upgrading in place would let two upgraders wait for each other forever: take it exclusively first.
                raise RuntimeError(f"{self.name}: exclusive lock wanted inside a shared one")
            yield
            return
        try:
            fd = os.open(file, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StoreError(f"cannot open the lock of {self.name} ({file}): {exc.strerror}") from None
        try:
            self._take(fd, shared)
            if not shared:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()} {_command()}".encode(), 0)
            held[file] = shared
            try:
                yield
            finally:
                del held[file]
                if not shared:
                    os.ftruncate(fd, 0)
        finally:
            os.close(fd)  # drops the lock

    def _take(self, fd: int, shared: bool) -> None:
        mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        if on_wait is not None:
            holder = os.pread(fd, 300, 0).decode("utf-8", "replace").strip()
            whom = (
                f"{holder.partition(' ')[2]} (pid {holder.partition(' ')[0]}) is changing it"
                if holder
                else "another dream process is reading it (verify)"
            )
            on_wait(f"waiting for {self.name}: {whom}")
        fcntl.flock(fd, mode)


_COMMAND_WORD = re.compile(r"[a-z][a-z0-9-]{0,30}")  # a subcommand's name, never an option's value (ids, paths)


def _command() -> str:
    """What this process is, for a waiter's message: `dream keys revoke`, `dream kv repair` ..."""
    words = [arg for arg in sys.argv[1:] if _COMMAND_WORD.fullmatch(arg)][:2]
    return " ".join([Path(sys.argv[0]).name[:40] if sys.argv else "python", *words])
