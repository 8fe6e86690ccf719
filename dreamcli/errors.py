"""Exit codes and the domain exceptions the core raises.

The CLI turns every `DreamError` into one line on stderr and its exit code, in
one place (`dreamcli.cli.app`). The core never prints.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes; scripts depend on them, so they never change meaning."""

    OK = 0
    FAILED = 1  # the operation failed, or a check found problems
    USAGE = 2  # bad arguments or bad input
    NOT_FOUND = 3  # a key, namespace, user or id that does not exist
    REMOTE = 4  # a remote API (Cloudflare, Stripe, Clerk) refused or failed
    INTERRUPTED = 130  # Ctrl-C


EXIT_CODES_HELP = (
    "Exit codes: 0 ok; 1 failed or findings; 2 usage or bad input; 3 not found; 4 remote API error; 130 interrupted."
)


class DreamError(Exception):
    """Base of every error the CLI reports as one line."""

    exit_code: ExitCode = ExitCode.FAILED


class UsageError(DreamError):
    """The input given on the command line or in a file is not acceptable."""

    exit_code = ExitCode.USAGE


class NotFound(DreamError):
    """Something named by the user does not exist."""

    exit_code = ExitCode.NOT_FOUND


class RemoteError(DreamError):
    """A remote API refused the request or failed."""

    exit_code = ExitCode.REMOTE


class StoreError(DreamError):
    """The store cannot be opened or used (corrupt, locked, unreadable)."""

    exit_code = ExitCode.FAILED


class KVError(UsageError):
    """A Workers KV limit was violated; the message is Cloudflare's wording."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class KeyNotFound(NotFound):
    """A KV key is absent (or expired) in the namespace asked."""


class UnknownNamespace(NotFound):
    """A namespace name or id that the store's topology does not hold."""


class D1Error(UsageError):
    """A D1 statement failed; the message ends with the SQLite error code as D1 reports it."""
