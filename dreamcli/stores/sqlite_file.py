"""A SQLite file opened safely for a store: WAL, a busy timeout, one lock, write transactions,
and the ways a file goes wrong turned into one clear line each.

Many processes share a store (a server, `dream dev`, the CLI, verify), and SQLite keeps them apart with POSIX
advisory locks. Those locks belong to the process and the file, not to a descriptor: closing ANY descriptor of
the file drops every lock the process holds on it (SQLite's "How To Corrupt An SQLite Database File", 2.2). A
process that lost its locks writes on as if it held them; another process then checkpoints and deletes the WAL
under it, and writes vanish or the file is corrupted. So, in this module and everywhere in dream:

- no raw descriptor is ever opened on a store file that may be open: modes are set by path, and a new file
  is created exclusively (a file that did not exist a moment ago is open nowhere);
- a process holds ONE connection per file, shared by every `SQLiteFile` opened on it (keyed by device and
  inode, so two spellings of one path, or a hard link, still share it) and closed with the last of them.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from dreamcli.errors import StoreError
from dreamcli.private_files import create_private

BUSY_TIMEOUT_MS = 5000

T = TypeVar("T")


def describe_sqlite_error(path: Path, exc: sqlite3.Error, waited_ms: int = BUSY_TIMEOUT_MS) -> StoreError:
    """One clear line for the ways a store file goes wrong."""
    message = str(exc)
    if "locked" in message or "busy" in message:
        return StoreError(f"store {path} is locked by another process (waited {waited_ms / 1000:g} s); try again")
    if "not a database" in message or "malformed" in message or "corrupt" in message:
        return StoreError(f"store {path} is corrupt ({message}); move it aside to start a new one")
    if "readonly" in message or "unable to open" in message:
        return StoreError(f"store {path} cannot be written ({message})")
    return StoreError(f"store {path}: {message}")


def companions(path: Path) -> tuple[Path, Path]:
    """The WAL and shared-memory files SQLite keeps beside a database in WAL mode."""
    return path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")


def make_private(path: Path) -> None:
    """The file (and its WAL and shared-memory files) readable by its owner only, in a folder only the owner
    can enter when dream makes it: a store holds Stripe access tokens, vendor keys and signing keys.

    Never through a descriptor of a file that may be open (see the module docstring): a missing file is created
    exclusively, 0600 from its first byte (SQLite gives its -wal and -shm files the database file's mode); an
    existing one is chmod-ed by path."""
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700)
    create_private(path)  # usually it exists (perhaps open in this process): then it is chmod-ed by path below
    for file in (path, *companions(path)):
        try:
            if file.stat().st_mode & 0o077:
                file.chmod(0o600)  # a store made before dream kept its files private
        except FileNotFoundError:
            continue  # no WAL yet (or it was checkpointed away): SQLite creates it with the file's mode


class _Connection:
    """The one connection this process holds on a file, its lock, and what its users share through it."""

    def __init__(self, path: Path, busy_timeout_ms: int, foreign_keys: bool) -> None:
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self.foreign_keys = foreign_keys
        self.users = 0
        # One thread at a time on the connection. Acquired with the busy timeout: a thread that would wait for
        # longer gets the same "locked" error another process's lock gives, never a hang.
        self.lock = threading.RLock()
        self.attachments: dict[str, Any] = {}
        self.conn = sqlite3.connect(
            str(path), isolation_level=None, check_same_thread=False, timeout=busy_timeout_ms / 1000
        )
        try:
            self.conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            mode = self.conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise StoreError(f"store {path} cannot use WAL mode (got {mode})")
            self.conn.execute("PRAGMA synchronous = NORMAL")
            # Bulk writes land in random key order: a 32 MiB page cache keeps them off the disk until
            # commit (SQLite's 2 MiB default thrashes past a few 100k keys). No mmap: mapped file pages
            # would count in the process's memory for nothing measurable.
            self.conn.execute("PRAGMA cache_size = -32768")
            self.conn.execute("PRAGMA temp_store = MEMORY")
            if foreign_keys:  # D1 enforces foreign keys; the KV tables have none to check
                self.conn.execute("PRAGMA foreign_keys = ON")
        except BaseException:
            self.conn.close()
            raise


_open: dict[tuple[int, int], _Connection] = {}
_open_lock = threading.Lock()


def open_connections() -> dict[str, int]:
    """Path -> users of every store file this process holds open (what tests check: one connection a file)."""
    with _open_lock:
        return {str(shared.path): shared.users for shared in _open.values()}


def is_open(path: Path) -> bool:
    """Whether this process holds the file open already (through any SQLiteFile, under any of its names)."""
    key = _identity(path)
    with _open_lock:
        return key is not None and key in _open


class SQLiteFile:
    """A user of the process's one connection to a store file: WAL, a busy timeout, one lock, write transactions.
    Open as many as needed; the connection closes with the last of them."""

    def __init__(
        self,
        path: Path,
        *,
        busy_timeout_ms: int = BUSY_TIMEOUT_MS,
        foreign_keys: bool = False,
        private: bool = False,
    ) -> None:
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self._closed = False
        try:
            if private:
                make_private(path)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
            with _open_lock:
                self._shared = self._attach(path, busy_timeout_ms, foreign_keys)
        except sqlite3.Error as exc:
            raise describe_sqlite_error(path, exc, busy_timeout_ms) from None
        except OSError as exc:
            raise StoreError(f"store {path} cannot be opened: {exc.strerror or exc}") from None
        self.conn = self._shared.conn

    @staticmethod
    def _attach(path: Path, busy_timeout_ms: int, foreign_keys: bool) -> _Connection:
        key = _identity(path)
        shared = _open.get(key) if key is not None else None
        if shared is None:
            shared = _Connection(path, busy_timeout_ms, foreign_keys)
            key = _identity(path)  # SQLite created it if it was missing
            if key is None:  # deleted between the connect and now: nothing sensible to share
                shared.conn.close()
                raise StoreError(f"store {path} vanished while it was being opened")
            _open[key] = shared
        elif shared.foreign_keys != foreign_keys:
            raise StoreError(f"store {path} is open in this process as another kind of file")
        shared.users += 1
        return shared

    @contextmanager
    def _held(self) -> Iterator[None]:
        if not self._shared.lock.acquire(timeout=self.busy_timeout_ms / 1000):
            raise StoreError(
                f"store {self.path} is busy in this process (waited {self.busy_timeout_ms / 1000:g} s); try again"
            )
        try:
            yield
        finally:
            self._shared.lock.release()

    def attachment(self, name: str, make: Callable[[sqlite3.Connection], T]) -> T:
        """What every user of the connection must share (an authorizer's state): made once, by the first."""
        with self._held():
            if name not in self._shared.attachments:
                self._shared.attachments[name] = make(self.conn)
            return self._shared.attachments[name]

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """An IMMEDIATE transaction: all of it is written, or none of it."""
        with self._held():
            try:
                self.conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise describe_sqlite_error(self.path, exc, self.busy_timeout_ms) from None
            try:
                yield self.conn
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise
            try:
                self.conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise describe_sqlite_error(self.path, exc, self.busy_timeout_ms) from None

    def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self._held():
            try:
                return fn(self.conn)
            except sqlite3.Error as exc:
                raise describe_sqlite_error(self.path, exc, self.busy_timeout_ms) from None

    def close(self) -> None:
        """This user is done; the connection closes with its last user (closing twice is harmless)."""
        with _open_lock:
            if self._closed:
                return
            self._closed = True
            shared = self._shared
            shared.users -= 1
            if shared.users:
                return
            for key, candidate in list(_open.items()):
                if candidate is shared:
                    del _open[key]
        with shared.lock:
            shared.conn.close()


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


AUTOCHECKPOINT_PAGES = 1000  # SQLite's default: the commit that grows the WAL past it copies the WAL into the file
SERVED_AUTOCHECKPOINT_PAGES = 4000  # with the background copy: the commit that crosses it finds little left to copy


class Checkpointer:
    """A server's checkpoints, mostly off its requests. SQLite's automatic checkpoint runs inside the commit that
    grows the WAL past 1,000 pages and copies all of them: one API call in a few hundred paid ~5 ms for it (the p99
    of /api/data at one connection). A thread of its own copies the WAL into the file every `interval` seconds with a
    PASSIVE checkpoint (it waits for no reader and no writer), through a connection of its own (SQLite shares a
    file's locks among one process's connections: it drops none of the store's, unlike a raw descriptor, see the
    module's docstring). The automatic checkpoint stays on, at 4,000 pages (16 MiB), and finds only the last few
    frames left to copy: it still completes one, so the next write starts the WAL over (background checkpoints alone,
    overtaken by every commit, never complete one, and the WAL would grow without end)."""

    def __init__(self, file: SQLiteFile, interval: float = 0.02) -> None:
        self.file = file
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.copied = 0  # checkpoints of this thread that found frames to copy (what the tests look at)

    def start(self) -> None:
        with self.file._held():
            self.file.conn.execute(f"PRAGMA wal_autocheckpoint = {SERVED_AUTOCHECKPOINT_PAGES}")
        self._thread = threading.Thread(target=self._run, name="dream-checkpointer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        conn = sqlite3.connect(str(self.file.path), isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.file.busy_timeout_ms)}")
            while not self._stop.wait(self.interval):
                try:
                    _, _, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    self.copied += copied > 0
                except sqlite3.Error as exc:  # another process's checkpoint or a busy file: the next one catches up
                    # Imported here, in servers only: a process that imports logging gets its fork handlers, and a
                    # signal landing in one is lost (verify forks its snapshot builder and must see Ctrl-C).
                    import logging

                    logging.getLogger("dream.store").debug("checkpoint of %s deferred: %s", self.file.path, exc)
        finally:
            conn.close()

    def stop(self) -> None:
        """Stop, and give the file SQLite's own threshold back (a command that goes on writing needs it)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if not self.file._closed:
            with self.file._held():
                self.file.conn.execute(f"PRAGMA wal_autocheckpoint = {AUTOCHECKPOINT_PAGES}")
