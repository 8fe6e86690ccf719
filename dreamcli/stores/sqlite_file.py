"""A SQLite file opened safely for a store: WAL, a busy timeout, one lock, write transactions,
and the ways a file goes wrong turned into one clear line each."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from dreamcli.errors import StoreError

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


def make_private(path: Path) -> None:
    """The file (and its WAL and shared-memory files) readable by its owner only, in a folder only the owner
    can enter when dream makes it: a store holds Stripe access tokens, vendor keys and signing keys."""
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700)
    # SQLite gives the -wal and -shm files the mode of the database file, so this covers them once created.
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o600)  # a store made before dream kept its files private
    finally:
        os.close(fd)
    for companion in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if companion.exists() and companion.stat().st_mode & 0o077:
            companion.chmod(0o600)


class SQLiteFile:
    """A connection to the store file with one lock, WAL, a busy timeout and write transactions."""

    def __init__(
        self,
        path: Path,
        *,
        authorizer: Callable[..., int] | None = None,
        busy_timeout_ms: int = BUSY_TIMEOUT_MS,
        foreign_keys: bool = False,
        private: bool = False,
    ) -> None:
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self.lock = threading.RLock()
        try:
            if private:
                make_private(path)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(
                str(path), isolation_level=None, check_same_thread=False, timeout=busy_timeout_ms / 1000
            )
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
        except sqlite3.Error as exc:
            raise describe_sqlite_error(path, exc, busy_timeout_ms) from None
        except OSError as exc:
            raise StoreError(f"store {path} cannot be opened: {exc.strerror or exc}") from None
        if authorizer is not None:
            self.conn.set_authorizer(authorizer)

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """An IMMEDIATE transaction: all of it is written, or none of it."""
        with self.lock:
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
        with self.lock:
            try:
                return fn(self.conn)
            except sqlite3.Error as exc:
                raise describe_sqlite_error(self.path, exc, self.busy_timeout_ms) from None

    def close(self) -> None:
        with self.lock:
            self.conn.close()
