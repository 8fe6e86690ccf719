"""What every command shares: the chosen store, output mode and clock, opened lazily once per run."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from dreamcli.errors import ExitCode, NotFound, UsageError
from dreamcli.plural import plural as plural  # re-exported: the commands' one import of it
from dreamcli.stores.ports import Store

STORE_KINDS = ("emulator", "wrangler", "cloudflare")
DEFAULT_STORE = "emulator:.dream/emulator.db"


class LazyModule:
    """A module imported at its first attribute access: commands pay only for the core modules they use
    (every `dream` start builds the whole command tree, so eager imports would cost every command)."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: Any = None

    def __getattr__(self, attribute: str) -> Any:
        if self._module is None:
            import importlib

            self._module = importlib.import_module(self._name)
        return getattr(self._module, attribute)


JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON on stdout (stable keys) instead of tables.")]


FORMATS = ("auto", "table", "tsv", "csv")
_chosen_format = ["auto"]  # set by the root command on every invocation (--format / DREAM_FORMAT)


def choose_format(chosen: str) -> None:
    if chosen not in FORMATS:
        raise UsageError(f"--format {chosen!r}: use one of {', '.join(FORMATS)} (or --json)")
    _chosen_format[0] = chosen


def output_format() -> str:
    """table on a terminal, tsv off it (`auto`); or what --format / DREAM_FORMAT says."""
    chosen = _chosen_format[0]
    if chosen == "auto":
        return "table" if sys.stdout.isatty() else "tsv"
    return chosen


class PlainConsole:
    """What a pipe gets: every table one record per line (a header line first), tab- or comma-separated, nothing
    cut or wrapped, no styles; anything else as plain text."""

    def __init__(self, separator: str) -> None:
        self.separator = separator

    def print(self, *objects: Any, **_: Any) -> None:
        import csv

        from rich.table import Table
        from rich.text import Text

        def plain(cell: Any) -> str:
            text = cell.plain if isinstance(cell, Text) else Text.from_markup(str(cell)).plain
            return text.replace("\n", " ").replace("\t", " ") if self.separator == "\t" else text

        for obj in objects:
            if isinstance(obj, Table):
                rows = [[plain(c.header) for c in obj.columns]]
                rows += [
                    list(row) for row in zip(*([plain(cell) for cell in c.cells] for c in obj.columns), strict=True)
                ]
                if self.separator == ",":
                    writer = csv.writer(sys.stdout, lineterminator="\n")
                    writer.writerows(rows)
                else:
                    sys.stdout.write("".join(self.separator.join(row) + "\n" for row in rows))
            else:
                sys.stdout.write(plain(obj) + "\n")
        sys.stdout.flush()


FOLDED_MIN = 24  # the narrowest a prose column may wrap to and still read


def _natural_width(table: Any) -> int:
    """How wide `table` must be drawn: its rigid columns (ids, counts: never cut or wrapped) at their widest line,
    its prose columns (`overflow="fold"`: messages, what was written) wrapped to no less than FOLDED_MIN, plus the
    borders and padding."""
    from rich.text import Text

    def width(cell: Any) -> int:
        text = cell.plain if isinstance(cell, Text) else Text.from_markup(str(cell)).plain
        return max((len(line) for line in text.splitlines()), default=0)

    total = 1
    for column in table.columns:
        widest = max([width(column.header)] + [width(cell) for cell in column.cells])
        total += (min(widest, FOLDED_MIN) if column.overflow == "fold" else widest) + 3
    return total


def _plain(cell: Any) -> str:
    from rich.text import Text

    return cell.plain if isinstance(cell, Text) else Text.from_markup(str(cell)).plain


def _wrap(text: str, width: int) -> list[str]:
    """Prose wrapped to `width`, an id in it never broken (a line holding one may be longer)."""
    import textwrap

    return textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False) or [""]


def _widest(text: str) -> int:
    return max((len(line) for line in text.splitlines()), default=0)


def _columns_to_move(table: Any, width: int) -> list[int] | None:
    """The rigid columns (ids, keys, values) to show on detail lines under each row so that the rest fits `width`
    as a table, widest first, never the first column; None when even that does not fit (then one record at a
    time)."""
    columns = table.columns
    widths = [
        min(FOLDED_MIN, w) if c.overflow == "fold" else w
        for c, w in ((c, max([_widest(_plain(c.header))] + [_widest(_plain(x)) for x in c.cells])) for c in columns)
    ]
    moved: list[int] = []
    candidates = sorted((i for i in range(1, len(columns)) if columns[i].overflow != "fold"), key=lambda i: -widths[i])
    while sum(w for i, w in enumerate(widths) if i not in moved) + 2 * (len(columns) - len(moved) - 1) > width:
        if not candidates:
            return None
        moved.append(candidates.pop(0))
    return moved


class TerminalConsole:
    """A terminal: Rich tables when they fit its width (COLUMNS honoured), prose columns wrapped within their cells;
    when even that does not fit, one record at a time, a field a line, so an id is never shown as `user_F…` nor
    sliced over lines; no styles at all under NO_COLOR."""

    def __init__(self) -> None:
        from rich.console import Console

        no_color = "NO_COLOR" in os.environ
        self.console = Console(highlight=False, color_system=None if no_color else "auto", no_color=no_color)

    def print(self, *objects: Any, **kwargs: Any) -> None:
        from rich.table import Table

        for obj in objects:
            if isinstance(obj, Table) and _natural_width(obj) > self.console.width:
                moved = _columns_to_move(obj, self.console.width)
                if moved is None:
                    self._records(obj)
                else:
                    self._with_details(obj, moved)
            elif isinstance(obj, Table):
                for column in obj.columns:  # rigid columns keep their width; Rich wraps only the prose ones
                    column.no_wrap = column.overflow != "fold"
                self.console.print(obj, **kwargs)
            else:
                self.console.print(obj, **kwargs)

    def _with_details(self, table: Any, moved: list[int]) -> None:
        """A table too wide for the terminal as a table of the columns that fit (prose wrapped in its cells), each
        row followed by its long values (`moved`: ids, keys) on detail lines of their own, whole."""
        headers = [_plain(column.header) for column in table.columns]
        rows = list(zip(*([_plain(cell) for cell in column.cells] for column in table.columns), strict=True))
        kept = [i for i in range(len(headers)) if i not in moved]
        widths = {i: max([len(headers[i])] + [_widest(row[i]) for row in rows]) for i in kept}
        folded = [i for i in kept if table.columns[i].overflow == "fold"]
        spare = self.console.width - sum(widths[i] for i in kept if i not in folded) - 2 * (len(kept) - 1)
        for i in folded:  # the prose columns share what is left, none under FOLDED_MIN
            widths[i] = min(widths[i], max(FOLDED_MIN, spare // len(folded)))
        label = max((len(headers[i]) for i in moved), default=0) + 2
        out = [_plain(table.title)] if table.title else []
        out.append("  ".join(f"{headers[i]:<{widths[i]}}" for i in kept))
        out.append("  ".join("─" * widths[i] for i in kept))
        for row in rows:
            cells = {i: _wrap(row[i], widths[i]) if i in folded else [row[i]] for i in kept}
            for line in range(max(len(cell) for cell in cells.values())):
                out.append("  ".join(f"{cells[i][line] if line < len(cells[i]) else '':<{widths[i]}}" for i in kept))
            out.extend(f"    {headers[i] + ':':<{label}}{row[i]}" for i in moved if row[i])
        sys.stdout.write("".join(line.rstrip() + "\n" for line in out))
        sys.stdout.flush()

    def _records(self, table: Any) -> None:
        """A table too wide for the terminal, one record at a time, a field a line (`name  value`), a blank line
        between records: every value whole, ids unbroken, at any width."""
        from rich.text import Text

        def plain(cell: Any) -> str:
            return cell.plain if isinstance(cell, Text) else Text.from_markup(str(cell)).plain

        headers = [plain(column.header) for column in table.columns]
        label = max((len(h) for h in headers), default=0) + 2
        rows = list(zip(*([plain(cell) for cell in column.cells] for column in table.columns), strict=True))
        out = [plain(table.title)] if table.title else []
        for number, row in enumerate(rows):
            if number or out:
                out.append("")
            for header, value in zip(headers, row, strict=True):
                lines = value.splitlines() or [""]
                out.append(f"{header:<{label}}{lines[0]}")
                out.extend(f"{'':<{label}}{line}" for line in lines[1:])
        sys.stdout.write("".join(line.rstrip() + "\n" for line in out))
        sys.stdout.flush()


def stdout_console() -> Any:
    """Where tables go: drawn on a terminal, plain records in a pipe (see output_format)."""
    chosen = output_format()
    if chosen == "table":
        return TerminalConsole()
    return PlainConsole("," if chosen == "csv" else "\t")


MAX_NOW = 253402300799  # 9999-12-31T23:59:59Z: the last instant dates can print
MAX_BUSY_TIMEOUT_S = 3600


def _seconds(name: str, raw: str, low: float, high: float) -> float:
    """A finite number of seconds in [low, high] from an environment variable, or a UsageError naming it."""
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not low <= value <= high:
        raise UsageError(f"{name} must be a number of seconds from {low:g} to {high:g}, got {raw!r}")
    return value


def clock_from_env() -> Callable[[], float]:
    """The wall clock, or a fixed instant from DREAM_NOW (Unix seconds) for tests and replays."""
    fixed = os.environ.get("DREAM_NOW")
    if not fixed:
        return time.time
    instant = _seconds("DREAM_NOW", fixed, 0, MAX_NOW)
    return lambda: instant


def busy_timeout_ms() -> int:
    """How long to wait for a store another process holds locked: DREAM_BUSY_TIMEOUT seconds (default 5)."""
    return int(_seconds("DREAM_BUSY_TIMEOUT", os.environ.get("DREAM_BUSY_TIMEOUT", "5"), 0, MAX_BUSY_TIMEOUT_S) * 1000)


def parse_store_spec(spec: str) -> tuple[str, str]:
    """`emulator:PATH`, a bare path to an emulator file, `emulator` for the default file, or
    `wrangler:PROJECT[,persist-to=DIR][,preview]` for wrangler's local state of the workers in PROJECT, or
    `cloudflare[:PROJECT]` for production through the REST API (namespace ids from PROJECT's wrangler files)."""
    kind, sep, where = spec.partition(":")
    if sep and kind in STORE_KINDS:
        return kind, os.path.expanduser(where) if where else DEFAULT_STORE.partition(":")[2]
    if not sep and spec == "emulator":
        return spec, DEFAULT_STORE.partition(":")[2]
    if not sep and spec == "wrangler":
        return spec, "."
    if not sep and spec == "cloudflare":
        return spec, ""
    if sep and kind.isalpha() and len(kind) > 1:
        raise UsageError(f"unknown store kind {kind!r} in --store {spec!r} (known: {', '.join(STORE_KINDS)})")
    return "emulator", os.path.expanduser(spec)


@dataclass
class AppContext:
    store_spec: str = DEFAULT_STORE
    json: bool = False
    verbose: bool = False
    environ: dict[str, str] = field(default_factory=lambda: dict(os.environ))  # with a profile's variables
    _store: Store | None = field(default=None, repr=False)
    _vendors: Any = field(default=None, repr=False)
    _emulator: Any = field(default=None, repr=False)

    def store(self, *, create: bool = False) -> Store:
        """The store chosen by --store. Reading never creates one: an emulator file that does not exist is "not
        found" (exit 3; a typo must not pass a CI gate as an empty, clean store) unless the command writes
        (`create=True`: `flow`, `kv put`, `d1 migrations apply` ...)."""
        if self._store is None:
            kind, where = parse_store_spec(self.store_spec)
            # Imported here: only commands that touch data pay for opening a store.
            if kind == "cloudflare":
                from dreamcli.stores.cloudflare import open_cloudflare_store
                from dreamcli.stores.discovery import discover, topology_of
                from dreamcli.topology import GUIDE_TOPOLOGY
                from dreamcli.workers_config import load_workers_config

                topology = (
                    topology_of(discover(Path(where)), config=load_workers_config(Path(where)))
                    if where
                    else GUIDE_TOPOLOGY
                )
                self._store = open_cloudflare_store(self.environ, topology=topology)
            elif kind == "wrangler":
                from dreamcli.stores.wrangler import open_wrangler_store

                self._store = open_wrangler_store(where, clock=clock_from_env(), busy_timeout_ms=busy_timeout_ms())
            else:
                from emulator.store import open_emulator_store

                clock, busy = clock_from_env(), busy_timeout_ms()  # bad settings are said before a missing store
                if not create and not Path(where).exists():
                    raise NotFound(
                        f"no store at {where}: nothing has been written there yet (a typo? `dream flow run` or any "
                        "command that writes makes one)"
                    )
                self._store = open_emulator_store(Path(where), clock=clock, busy_timeout_ms=busy)
        return self._store

    def vendors(self, *, create: bool = False) -> Any:
        """Real vendors when the environment names them (see dreamcli.vendors.settings), else the
        emulator in-process, its state in the emulator store file: one that does not exist is "not found" (exit 3)
        unless the command writes (`create=True`), as for `store()`."""
        if self._vendors is None:
            import httpx

            from dreamcli.vendors.settings import Vendors, settings_from_emulator, settings_from_env

            settings = settings_from_env(self.environ)
            if settings is not None:
                self._vendors = Vendors(settings, httpx.Client(timeout=30.0), clock=clock_from_env())
            else:
                from emulator.app import Emulator

                kind, where = parse_store_spec(self.store_spec)
                # The vendors' emulated state lives in the emulator file (the default one beside a wrangler store).
                vendor_file = Path(where) if kind == "emulator" else Path(DEFAULT_STORE.partition(":")[2])
                if not create and not vendor_file.exists():
                    raise NotFound(
                        f"no store at {vendor_file} (where the emulated vendors keep their state): nothing has been "
                        "written there yet (a typo? `dream flow run` or `dream dev` makes one)"
                    )
                self._emulator = Emulator(vendor_file, clock=clock_from_env(), busy_timeout_ms=busy_timeout_ms())
                self._vendors = Vendors(
                    settings_from_emulator(self._emulator.config()), self._emulator.client(), clock=clock_from_env()
                )
        return self._vendors

    def emulator(self, purpose: str, *, create: bool = False) -> Any:
        """The in-process emulator whose vendors this run uses; UsageError when real vendors are configured."""
        self.vendors(create=create)
        if self._emulator is None:
            raise UsageError(
                f"{purpose} works on the emulated vendors, and this environment names real ones "
                "(STRIPE_SECRET_KEY / CLERK_SECRET_KEY): unset them, or use the vendor's own dashboard or CLI"
            )
        return self._emulator

    def emulated(self) -> Any:
        """The in-process emulator when this run's vendors are emulated, else None (real vendors)."""
        self.vendors()
        return self._emulator

    def close(self) -> None:
        if self._vendors is not None:
            self._vendors.http.close()
            self._vendors = None
        if self._emulator is not None:
            self._emulator.close()
            self._emulator = None
        if self._store is not None:
            self._store.close()
            self._store = None

    def wants_json(self, flag: bool) -> bool:
        return flag or self.json


def app_context(ctx: typer.Context) -> AppContext:
    """The root callback's AppContext (sub-contexts inherit `obj`)."""
    if not isinstance(ctx.obj, AppContext):  # a sub-app invoked on its own
        ctx.obj = AppContext()
        ctx.call_on_close(ctx.obj.close)
    return ctx.obj


JSON_SCHEMA_VERSION = 1  # every JSON object dream prints says which contract it follows (README: JSON contracts)


def print_json(data: Any) -> None:
    """JSON on stdout; an object carries `schemaVersion` first (arrays are the items of a listing, version 1)."""
    if isinstance(data, dict) and "schemaVersion" not in data:
        data = {"schemaVersion": JSON_SCHEMA_VERSION, **data}
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False, default=_json_default))


def print_json_streamed(head: dict[str, Any], name: str, items: Iterable[Any]) -> None:
    """`print_json({**head, name: list(items)})`, byte for byte, written item by item: a verify of a million platforms
    has 100,000 findings, and the whole document as one string (and its dicts) tripled the process's memory."""
    out = typer.get_text_stream("stdout")
    opening = json.dumps({"schemaVersion": JSON_SCHEMA_VERSION, **head}, indent=2, ensure_ascii=False)
    out.write(opening[: -len("\n}")] + f",\n  {json.dumps(name)}: [")
    count = 0
    for item in items:
        text = json.dumps(item, indent=2, ensure_ascii=False, default=_json_default)
        out.write(("\n" if count == 0 else ",\n") + "\n".join("    " + line for line in text.splitlines()))
        count += 1
    out.write("\n  ]\n}\n" if count else "]\n}\n")
    out.flush()


def print_json_lines(items: Iterable[Any]) -> int:
    """Stream a JSON array item by item, so memory stays flat for millions of entries."""
    out = typer.get_text_stream("stdout")
    count = 0
    out.write("[")
    for item in items:
        out.write(("\n  " if count == 0 else ",\n  ") + json.dumps(item, ensure_ascii=False, default=_json_default))
        count += 1
    out.write("\n]\n" if count else "]\n")
    out.flush()
    return count


def _json_default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return list(bytes(value))  # D1 returns BLOBs as arrays of bytes
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def status(message: str) -> None:
    """One status line on stderr."""
    typer.echo(message, err=True)


def progress_line(label: str, total: int | None = None, unit: str = "keys") -> Any:
    """A progress line on stderr while long work runs (only on a terminal): the count, the rate, and with a total
    the share and an ETA. Call it as often as you like: it redraws at most every 0.2 s, and at the total.
    `.tick()` redraws it with the time spent, for work that cannot count (SQL building a snapshot in place)."""
    import time

    if not sys.stderr.isatty():
        return None
    started = time.monotonic()
    drawn = [0.0]
    counted = [0]

    def draw(line: str) -> None:
        sys.stderr.write(f"\r{line}\x1b[K")  # the rest of a longer line before it erased
        sys.stderr.flush()

    def report(count: int) -> None:
        counted[0] = count
        now = time.monotonic()
        if now - drawn[0] < 0.2 and count != total:
            return
        drawn[0] = now
        elapsed = max(now - started, 1e-6)
        line = f"{label}: {count:,}"
        if total:
            eta = elapsed / count * (total - count) if count else 0
            line += f"/{total:,} {unit} ({min(100, count * 100 // total)}%), {count / elapsed:,.0f}/s, ETA {eta:.0f} s"
        else:
            line += f" {unit}, {count / elapsed:,.0f}/s"
        draw(line)

    def tick() -> None:
        now = time.monotonic()
        if now - drawn[0] < 0.2:
            return
        drawn[0] = now
        elapsed = f"{now - started:.1f} s"
        if counted[0]:
            draw(f"{label}: {counted[0]:,}{f'/{total:,}' if total else ''} {unit} read; checking, {elapsed}")
        else:
            draw(f"{label}: {f'{total:,} ' if total else ''}{unit} being read in place by SQL, {elapsed}")

    report.tick = tick  # type: ignore[attr-defined]
    return report


def stop_on_signals(stop: Any) -> None:
    """From now on Ctrl-C, a kill and the terminal closing set `stop` (a threading.Event), each as cleanly as the
    others: called before a long-running command says it is ready, so a signal right after that is a clean stop.
    SIGINT explicitly too: a process started in the background of a script inherits it ignored, and `kill -INT`
    must still stop a server."""
    import signal

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda *_: stop.set())


def wait_until_stopped(stop: Any, timeout: float | None = None) -> None:
    """Block until `stop` (a threading.Event) is set, a signal arrives (see stop_on_signals) or `timeout` seconds
    pass: how the long-running commands (`emulator serve`, `dream dev`, `stripe listen`) wait before cleaning up."""
    stop_on_signals(stop)
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while not stop.wait(0.5 if deadline is None else max(0.0, min(0.5, deadline - time.monotonic()))):
            if deadline is not None and time.monotonic() >= deadline:
                return
    except KeyboardInterrupt:
        pass


YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Do it without asking.")]
PlanOption = Annotated[bool, typer.Option("--plan", help="Only show what would change (exit 0); change nothing.")]


def confirm_change(question: str, yes: bool) -> None:
    """A change that cannot be undone goes ahead with --yes, or a yes typed on a terminal. Without a terminal and
    without --yes it is refused (exit 2): a script never changes data by accident; a "no" typed is exit 1."""
    if yes:
        return
    if stdin_is_tty() and sys.stderr.isatty():
        if ask(question):
            return
        status("nothing changed")
        raise typer.Exit(int(ExitCode.FAILED))
    raise UsageError(
        f"{question.rstrip('?')}: refused without --yes (no terminal to ask; --plan shows what it would do)"
    )


def ask(question: str) -> bool:
    """`question [y/N]` on stderr; only y or yes is a yes. Ctrl-C is an interruption like anywhere else (exit 130,
    "interrupted"), not click's "Aborted!" with exit 1; the end of input is a no."""
    sys.stderr.write(f"{question} [y/N]: ")
    sys.stderr.flush()
    try:
        answer = sys.stdin.readline()
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        raise
    return answer.strip().lower() in ("y", "yes")


def read_secret(label: str) -> str:
    """A secret typed on a terminal, not echoed; Ctrl-C exits 130 like anywhere else."""
    import getpass

    try:
        return getpass.getpass(f"{label}: ", stream=sys.stderr)
    except EOFError:
        raise UsageError(f"no {label} given") from None


def stdin_is_tty() -> bool:
    return sys.stdin is None or sys.stdin.isatty()
