"""Webhook delivery as the vendors do it: in the background, never inside the API request that caused the event,
retried on the vendor's schedule, every attempt logged, any message replayable.

An event is written to the outbox (`_dream_webhook_outbox`, in the store file) once per endpoint, in the same
process and moment the vendor backend makes it; a `Deliveries` loop (a thread of whichever process holds the
emulator: `dream emulator serve`, or a CLI command that emitted events) claims due messages, signs them as the
vendor signs (a fresh timestamp per attempt), posts them, and records the attempt. Claims are one write transaction,
so two processes over one store never deliver the same attempt twice; a claim not finished in `LEASE` seconds (the
process died) is taken again. A `lane` keeps a `dream stripe listen` endpoint's messages for the listener alone.

Schedules are the vendors' own, in their hours; `hour` says how long one of those hours lasts here (one second by
default, so Svix's 27-hour schedule runs in about 30 s and Stripe's test-mode retries in 7 s).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from dreamcli.errors import StoreError
from dreamcli.stores.sqlite_file import SQLiteFile

delivery_log = logging.getLogger("dream.webhooks")

# Seconds to wait after each failed attempt; one attempt more than there are waits.
# Svix (Clerk's webhooks): 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (docs.svix.com/retries; clerk-objects.md §4).
SVIX_RETRY_WAITS = (5, 300, 1800, 7200, 18000, 36000, 36000)
# Stripe in test mode: "three tries over a few hours" (stripe-objects.md §4); the spacing is not published, so it
# doubles from one hour here.
STRIPE_RETRY_WAITS = (3600, 7200, 14400)
LEASE = 30.0  # seconds a claimed attempt is the claimer's
TIMEOUT = 15.0  # a receiver that has not answered 2xx by then failed this attempt (Svix's 15 s)
POLL = 0.2  # how often the loop looks for messages other processes queued

Signer = Callable[["Message", int], "dict[str, str] | None"]


class ReceiverUnreachable(Exception):
    """A receiver that is down, refuses the connection or hangs past the timeout: a failed attempt, as the vendors
    log it (the poster turns its transport's errors into this)."""


# Posts (url, body, headers, timeout) and says the receiver's status and the start of its answer, or raises
# ReceiverUnreachable.
Poster = Callable[[str, bytes, dict[str, str], float], "tuple[int, str]"]
ANSWER_KEPT = 300  # characters of a failing receiver's answer kept in the attempt log, as Stripe's dashboard shows it


@dataclass(frozen=True)
class Message:
    """One event for one endpoint, as the outbox holds it."""

    seq: int
    vendor: str
    message_id: str
    event_type: str
    endpoint_id: str
    url: str
    body: bytes
    attempts: int
    state: str
    next_at: float | None
    created: float
    lane: str


_COLUMNS = "seq, vendor, message_id, event_type, endpoint_id, url, body, attempts, state, next_at, created, lane"


def _message(row: Any) -> Message:
    seq, vendor, message_id, event_type, endpoint_id, url, body, attempts, state, next_at, created, lane = row
    return Message(
        seq, vendor, message_id, event_type, endpoint_id, url, bytes(body), attempts, state, next_at, created, lane
    )


class Outbox:
    """The store file's outbox: messages queued, claimed, finished; and the attempt log."""

    def __init__(self, file: SQLiteFile, clock: Callable[[], float] = time.time) -> None:
        self.file = file
        self.clock = clock
        self.listeners: list[Callable[[], None]] = []  # woken when this process queues a message

    def enqueue(
        self,
        vendor: str,
        message_id: str,
        event_type: str,
        endpoint: dict[str, Any],
        body: bytes,
        conn: Any = None,
    ) -> None:
        row = (
            vendor,
            message_id,
            event_type,
            endpoint["id"],
            endpoint["url"],
            body,
            endpoint.get("_lane", ""),
            self.clock(),
            self.clock(),
        )
        sql = (
            "INSERT INTO _dream_webhook_outbox (vendor, message_id, event_type, endpoint_id, url, body, lane, "
            "next_at, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )
        if conn is not None:  # the caller's transaction, committed by the caller, who then calls wake()
            conn.execute(sql, row)
            return
        with self.file.write() as tx:
            tx.execute(sql, row)
        self.wake()

    def wake(self) -> None:
        """Tell this process's delivery loops that messages were queued."""
        for listener in self.listeners:
            listener()

    def resend(self, vendor: str, message_id: str, endpoint_id: str | None = None) -> list[Message]:
        """Queue `message_id` again, now, for each endpoint it went to (or only `endpoint_id`): new messages, the
        same body (and so, for Stripe, the same event id; for Svix, the same `svix-id`)."""
        where = "vendor = ? AND message_id = ?" + (" AND endpoint_id = ?" if endpoint_id else "")
        args: tuple[Any, ...] = (vendor, message_id, endpoint_id) if endpoint_id else (vendor, message_id)
        now = self.clock()
        with self.file.write() as conn:
            originals = conn.execute(
                "SELECT endpoint_id, url, event_type, body, lane FROM _dream_webhook_outbox "
                f"WHERE {where} GROUP BY endpoint_id ORDER BY min(seq)",
                args,
            ).fetchall()
            seqs: list[int] = [
                conn.execute(
                    "INSERT INTO _dream_webhook_outbox (vendor, message_id, event_type, endpoint_id, url, body, lane, "
                    "next_at, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (vendor, message_id, event_type, ep, url, body, lane, now, now),
                ).lastrowid
                or 0
                for ep, url, event_type, body, lane in originals
            ]
        self.wake()
        return [self.get(seq) for seq in seqs]

    def get(self, seq: int) -> Message:
        row = self.file.read(
            lambda conn: conn.execute(f"SELECT {_COLUMNS} FROM _dream_webhook_outbox WHERE seq = ?", (seq,)).fetchone()
        )
        return _message(row)

    def messages(
        self,
        vendor: str | None = None,
        *,
        limit: int = 100,
        event_type: str | None = None,
        state: str | None = None,
        before: int | None = None,
    ) -> list[Message]:
        """The newest messages first (`before`: with a smaller seq than that)."""
        clauses: list[str] = []
        args: list[Any] = []
        for column, wanted in (("vendor", vendor), ("event_type", event_type), ("state", state)):
            if wanted:
                clauses.append(f"{column} = ?")
                args.append(wanted)
        if before is not None:
            clauses.append("seq < ?")
            args.append(before)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self.file.read(
            lambda conn: conn.execute(
                f"SELECT {_COLUMNS} FROM _dream_webhook_outbox {where} ORDER BY seq DESC LIMIT ?", (*args, limit)
            ).fetchall()
        )
        return [_message(row) for row in rows]

    def attempts(self, seq: int) -> list[dict[str, Any]]:
        rows = self.file.read(
            lambda conn: conn.execute(
                "SELECT attempt, status, error, attempted_at FROM _dream_webhook_deliveries WHERE outbox_seq = ? "
                "ORDER BY seq",
                (seq,),
            ).fetchall()
        )
        return [dict(zip(("attempt", "status", "error", "attempted_at"), row, strict=True)) for row in rows]

    def claim(self, lane: str, busy: frozenset[str] = frozenset(), limit: int = 64) -> list[Message]:
        """Take due messages of `lane` for `LEASE` seconds, nobody else attempting them meanwhile: for each endpoint
        not in `busy` (one being posted to already), its oldest due message, so one endpoint gets its messages
        one at a time and in order while a slow endpoint holds up no other."""
        now = self.clock()
        with self.file.write() as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM _dream_webhook_outbox WHERE lane = ? AND next_at <= ? ORDER BY seq LIMIT ?",
                (lane, now, limit),
            ).fetchall()
            taken, seen = [], set(busy)
            for row in rows:
                if row[4] not in seen:
                    seen.add(row[4])
                    taken.append(row)
            conn.executemany(
                "UPDATE _dream_webhook_outbox SET next_at = ? WHERE seq = ?", [(now + LEASE, row[0]) for row in taken]
            )
        return [_message(row) for row in taken]

    def states(self) -> dict[str, int]:
        """How many messages are in each state (pending, delivered, failed)."""
        rows = self.file.read(
            lambda conn: conn.execute("SELECT state, count(*) FROM _dream_webhook_outbox GROUP BY state").fetchall()
        )
        return {state: count for state, count in rows}

    def pending(self, lane: str, *, first_only: bool = False) -> int:
        """How many messages of `lane` are due for an attempt now (only never-attempted ones if `first_only`)."""
        first = " AND attempts = 0" if first_only else ""
        return self.file.read(
            lambda conn: conn.execute(
                f"SELECT count(*) FROM _dream_webhook_outbox WHERE lane = ? AND next_at <= ?{first}",
                (lane, self.clock()),
            ).fetchone()[0]
        )

    def finish(
        self, message: Message, status: int | None, error: str | None, waits: tuple[int, ...], hour: float
    ) -> str:
        """Record an attempt; the message is then `delivered`, `failed` (no attempt left), or retried later."""
        attempt = message.attempts + 1
        now = self.clock()
        if status is not None and 200 <= status < 300:
            state, next_at = "delivered", None
        elif attempt > len(waits):
            state, next_at = "failed", None
        else:
            state, next_at = "pending", now + waits[attempt - 1] * hour / 3600
        with self.file.write() as conn:
            conn.execute(
                "UPDATE _dream_webhook_outbox SET attempts = ?, state = ?, next_at = ? WHERE seq = ?",
                (attempt, state, next_at, message.seq),
            )
            conn.execute(
                "INSERT INTO _dream_webhook_deliveries (vendor, event_id, event_type, url, status, error, "
                "attempted_at, attempt, outbox_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    message.vendor,
                    message.message_id,
                    message.event_type,
                    message.url,
                    status,
                    error,
                    int(now),
                    attempt,
                    message.seq,
                ),
            )
        return state

    def abandon(self, lane: str, reason: str) -> int:
        """Give up every message still waiting in `lane` (its listener has gone): logged, never attempted again."""
        for message in self.claim(lane, limit=1_000_000):
            self.drop(message, reason)
        with self.file.write() as conn:
            left = conn.execute(
                "UPDATE _dream_webhook_outbox SET state = 'failed', next_at = NULL WHERE lane = ? AND next_at IS NOT NULL",
                (lane,),
            ).rowcount
        return left

    def drop(self, message: Message, reason: str) -> None:
        """Stop a message whose endpoint is gone or disabled (the vendors stop retrying then too)."""
        with self.file.write() as conn:
            conn.execute(
                "UPDATE _dream_webhook_outbox SET state = 'failed', next_at = NULL WHERE seq = ?", (message.seq,)
            )
            conn.execute(
                "INSERT INTO _dream_webhook_deliveries (vendor, event_id, event_type, url, status, error, "
                "attempted_at, attempt, outbox_seq) VALUES (?, ?, ?, ?, NULL, ?, ?, ?, ?)",
                (
                    message.vendor,
                    message.message_id,
                    message.event_type,
                    message.url,
                    reason,
                    int(self.clock()),
                    message.attempts,
                    message.seq,
                ),
            )


@dataclass(frozen=True)
class Vendor:
    """How one vendor signs and retries."""

    sign: Signer  # (message, unix time) -> the signed headers, or None when its endpoint is gone or disabled
    waits: tuple[int, ...]


class Deliveries:
    """The loop that delivers a lane's due messages: a daemon thread, started on demand, stopped with its owner."""

    def __init__(
        self,
        outbox: Outbox,
        vendors: dict[str, Vendor],
        post: Poster,
        *,
        lane: str = "",
        hour: float = 1.0,
        workers: int = 4,
        report: Callable[[Message, int | None, str | None, str], None] | None = None,
    ) -> None:
        self.outbox = outbox
        self.vendors = vendors
        self.post = post
        self.lane = lane
        self.hour = hour
        self.report = report
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dream-webhook")
        self._in_flight = 0
        self._busy: set[str] = set()  # endpoints being posted to now
        self._lock = threading.Lock()
        outbox.listeners.append(self.wake)

    def wake(self) -> None:
        self.start()
        self._wake.set()

    def start(self) -> None:
        with self._lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name=f"dream-deliveries{self.lane}", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            with self._lock:
                self._in_flight += 1  # the claim itself: settle() must not see "nothing due" between claim and submit
                busy = frozenset(self._busy)
            try:
                claimed = self.outbox.claim(self.lane, busy)
            except StoreError as exc:  # locked a while by another process: nothing is lost, the messages wait
                delivery_log.warning("webhook deliveries wait for the store (%s); trying again", exc)
                claimed = []
            with self._lock:
                self._in_flight += len(claimed) - 1
                self._busy.update(message.endpoint_id for message in claimed)
            for message in claimed:
                self._pool.submit(self._attempt, message).add_done_callback(_report_crash)
            if not claimed:
                self._wake.wait(POLL)

    def _attempt(self, message: Message) -> None:
        try:
            vendor = self.vendors[message.vendor]
            headers = vendor.sign(message, int(self.outbox.clock()))
            if headers is None:
                self.outbox.drop(message, "endpoint deleted or disabled")
                if self.report:
                    self.report(message, None, "endpoint deleted or disabled", "failed")
                return
            status: int | None = None
            error: str | None = None
            try:
                status, answer = self.post(message.url, message.body, headers, TIMEOUT)
                if not 200 <= status < 300:
                    error = f"HTTP {status}: {answer[:ANSWER_KEPT]}" if answer else f"HTTP {status}"
            except ReceiverUnreachable as exc:
                error = str(exc)
            state = self.outbox.finish(message, status, error, vendor.waits, self.hour)
            if self.report:
                self.report(message, status, error, state)
        except StoreError as exc:
            # The attempt could not be recorded (the store locked, or closed as this process stops): its lease
            # lapses and the message is attempted again, by this loop or the next process's; nothing is lost.
            delivery_log.warning(
                "webhook %s to %s not recorded (%s): it will be attempted again", message.message_id, message.url, exc
            )
        finally:
            with self._lock:
                self._in_flight -= 1
                self._busy.discard(message.endpoint_id)
            self._wake.set()

    def settle(self, timeout: float = 10.0, *, first_only: bool = False) -> bool:
        """Wait until no message of this lane is due or in flight (retries scheduled later do not count; with
        `first_only`, retries due now do not count either: every message has had its first attempt)."""
        self.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                busy = self._in_flight
            if not busy and not self.outbox.pending(self.lane, first_only=first_only):
                return True
            self._wake.set()
            time.sleep(0.01)
        return False

    def stop(self, settle: float = 0.0) -> None:
        """Stop the loop; with `settle`, first give every queued message its first attempt (at most that long):
        retries stay queued in the store for the next loop."""
        if settle and self._thread is not None:
            self.settle(settle, first_only=True)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self.wake in self.outbox.listeners:
            self.outbox.listeners.remove(self.wake)


def _report_crash(attempt: Any) -> None:
    """An attempt that failed in a way none of its handlers expected: said, never dropped with its future (the
    message's lease lapses and it is attempted again)."""
    exc = attempt.exception()
    if exc is not None:
        delivery_log.error("a webhook attempt failed unexpectedly", exc_info=exc)
