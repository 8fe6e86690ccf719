"""dream: operator console and local emulator for the dream-api platform."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dream")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"
