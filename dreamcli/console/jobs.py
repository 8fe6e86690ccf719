"""verify and repair from the console: one at a time, in a background thread (at 100,000 platforms verify reads
1.2M keys for seconds; no page waits for it), their progress kept here for the page to stream.

The same core calls as `dream kv verify` and `dream kv repair` (dreamcli.platform.replication): the repair
re-verifies before it writes, as the CLI's does, and applies only the plan the operator confirmed: if the store
changed since the page showed it (another process repaired, or drifted further), it applies nothing and says so."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dreamcli.errors import DreamError
from dreamcli.platform import replication
from dreamcli.stores.ports import Store

log = logging.getLogger("dream.console")


def plan_digest(plan: Any) -> str:
    """What identifies a plan's actions (phase, action, namespace, key, copy): the confirmation names it."""
    text = "\n".join(f"{int(fix.phase)}\t{fix.action}\t{fix.namespace}\t{fix.key}\t{fix.copy}" for fix, _ in plan.fixes)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass
class Options:
    prune: bool = False
    remove_plaintext: bool = False
    reset_usage: bool = False


@dataclass
class Job:
    kind: str  # "verify" or "repair"
    started: float
    phase: str = "starting"
    done: int = 0
    total: int | None = None
    finished: float | None = None
    error: str | None = None
    report: Any = None  # a RepairReport, for a repair
    declined_because: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "phase": self.phase,
            "done": self.done,
            "total": self.total,
            "finished": self.finished is not None,
            "error": self.error,
            "declined": self.declined_because,
        }


@dataclass
class Jobs:
    store: Store
    tier_config_builder: Callable[[], Any] | None = None
    clock: Callable[[], float] = time.time
    last_verify: replication.VerifyResult | None = None
    verified_at: float | None = None
    current: Job | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def busy(self) -> bool:
        return self.current is not None and self.current.finished is None

    def _start(self, job: Job, work: Callable[[Job], object]) -> Job:
        with self._lock:
            if self.busy():
                raise DreamError(f"a {self.current.kind if self.current else 'job'} is running: wait for it to end")
            self.current = job
        thread = threading.Thread(target=self._run, args=(job, work), name=f"console-{job.kind}", daemon=True)
        thread.start()
        return job

    def _run(self, job: Job, work: Callable[[Job], object]) -> None:
        try:
            work(job)
        except DreamError as exc:
            job.error = str(exc)
        except Exception as exc:  # noqa: BLE001 - a background job: any failure is shown on its page and logged
            log.exception("console %s failed", job.kind)
            job.error = f"{type(exc).__name__}: {exc}"
        finally:
            job.phase = "done" if job.error is None else "failed"
            job.finished = self.clock()

    def _verify(self, job: Job) -> replication.VerifyResult:
        again = job.phase == "applying"  # repair's verify after its writes
        job.phase, job.done, job.total = (
            "checking again" if again else "verifying",
            0,
            replication.keys_to_read(self.store),
        )

        def progress(done: int) -> None:
            job.done = done

        result = replication.verify(self.store, on_progress=progress, now=self.store.clock())
        self.last_verify, self.verified_at = result, self.clock()
        return result

    def verify(self) -> Job:
        return self._start(Job("verify", self.clock()), self._verify)

    def repair(self, options: Options, confirmed: str) -> Job:
        def work(job: Job) -> None:
            def confirm(plan: Any) -> bool:
                if plan_digest(plan) != confirmed:
                    job.declined_because = (
                        "the store changed since the plan you confirmed (verify found other findings now): "
                        "nothing was applied; review the new plan"
                    )
                    return False
                job.phase, job.done, job.total = "applying", 0, len(plan.fixes)
                return True

            def progress(done: int, total: int) -> None:
                job.done, job.total = done, total

            report = replication.run(
                self.store,
                lambda: self._verify(job),
                prune=options.prune,
                remove_plaintext=options.remove_plaintext,
                reset_usage=options.reset_usage,
                confirm=confirm,
                tier_config_builder=self.tier_config_builder,
                on_progress=progress,
            )
            job.report = report
            if report.after is not None:
                self.last_verify, self.verified_at = report.after, self.clock()

        return self._start(Job("repair", self.clock()), work)
