"""dream: operator console and local emulator for the dream-api platform."""

from typing import Any


def __getattr__(name: str) -> Any:
    # Resolved on first use: importlib.metadata costs tens of milliseconds at every start otherwise.
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("dream")
        except PackageNotFoundError:  # a source tree that was never installed
            return "0.0.0+source"
    raise AttributeError(name)
