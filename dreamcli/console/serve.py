"""The console on a loopback port: `dream console`, and beside `dream emulator serve` and `dream dev`."""

from __future__ import annotations

from typing import Any

from dreamcli.console.pages import Console, create_app

DEFAULT_PORT = 8793


class ConsoleServer:
    """The console's app on 127.0.0.1 (only: it holds the operator's session), in a background thread."""

    def __init__(self, console: Console, port: int = DEFAULT_PORT, *, elsewhere_if_taken: bool = False) -> None:
        """`elsewhere_if_taken`: another free port when `port` is in use (beside `dream emulator serve` and `dream
        dev`, whose console must not stop them because a `dream console` holds its port: `moved` says so)."""
        from emulator.server import LoopbackServer

        self.console = console
        self.moved = elsewhere_if_taken and port != 0 and not _free(port)
        self.server = LoopbackServer(create_app(console), host="127.0.0.1", port=0 if self.moved else port)
        self.url = ""

    def start(self) -> str:
        self.url = self.server.start()
        return self.url

    def sign_in_url(self) -> str:
        """The one-time sign-in address (a secret until used: printed once)."""
        return f"{self.url}/signin?token={self.console.sessions.token}"

    def signal_stop(self) -> None:
        self.console.stopping.set()  # live streams end, so the server's graceful stop does not wait on them
        self.server.signal_stop()

    def stop(self) -> None:
        self.signal_stop()
        self.server.stop()


def _free(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def console_for_emulator(emulator: Any, *, port: int = DEFAULT_PORT) -> ConsoleServer:
    """The console over an emulator's own store and vendors (`dream emulator serve`)."""
    services = emulator.platform()
    return ConsoleServer(Console(services.store, services.vendors, emulator), port, elsewhere_if_taken=True)


def console_for_store(store: Any, emulator: Any, *, port: int = DEFAULT_PORT) -> ConsoleServer:
    """The console over `store` (`dream dev`: the workers' wrangler state) with an emulator's vendors."""
    from dreamcli.vendors.settings import Vendors, settings_from_emulator

    vendors = Vendors(settings_from_emulator(emulator.config()), emulator.client(), clock=emulator.clock)
    return ConsoleServer(Console(store, vendors, emulator), port, elsewhere_if_taken=True)
