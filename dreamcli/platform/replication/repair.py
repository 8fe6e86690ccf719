"""Repair: a plan of fixes in a safe order, confirmed, applied in batches, and checked again (`run`)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dreamcli.errors import DreamError, ExitCode
from dreamcli.platform.replication.findings import Action, Finding, FindingClass, Fix, Need, Phase, VerifyResult
from dreamcli.plural import plural
from dreamcli.stores.bulk import write_in_batches
from dreamcli.stores.ports import KVWrite, Store


@dataclass
class Plan:
    fixes: list[tuple[Fix, Finding]] = field(default_factory=list)
    skipped: list[tuple[Finding, str]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "actions": [
                {
                    "phase": int(fix.phase),
                    "action": str(fix.action),
                    "namespace": fix.namespace,
                    "key": fix.key,
                    "copy": fix.copy,
                    "platform": finding.platform,
                    "because": f"{finding.cls}: {finding.message}",
                }
                for fix, finding in self.fixes
            ],
            "skipped": [
                {"key": finding.key, "namespace": finding.namespace, "class": str(finding.cls), "why": why}
                for finding, why in self.skipped
            ],
        }


def plan_repair(
    result: VerifyResult, *, prune: bool = False, remove_plaintext: bool = False, reset_usage: bool = False
) -> Plan:
    """Fixes in apply order: removals that stop a key authenticating first, the api-tokens secret mappings
    last, so a crash at any point never leaves a secret that authenticates without its tier config."""
    plan = Plan()
    seen: set[tuple[str, str, str | None]] = set()
    for finding in result.findings:
        fix = finding.fix
        if fix is None:
            reason = "reported, not guessed at" if finding.cls is FindingClass.CORRUPT else "no safe automatic fix"
            plan.skipped.append((finding, reason))
            continue
        if fix.needs is Need.PRUNE and not prune:
            plan.skipped.append((finding, "deletes only with --prune"))
            continue
        if fix.needs is Need.REMOVE_PLAINTEXT_SECRETS and not remove_plaintext:
            plan.skipped.append((finding, "plaintext secrets are removed only with --remove-plaintext-secrets"))
            continue
        if fix.needs is Need.RESET_CORRUPT_USAGE and not reset_usage:
            plan.skipped.append(
                (finding, "a corrupt month is deleted (its count starts at 0) only with --reset-corrupt-usage")
            )
            continue
        if (fix.namespace, fix.key, fix.copy) in seen:
            continue
        seen.add((fix.namespace, fix.key, fix.copy))
        plan.fixes.append((fix, finding))
    plan.fixes.sort(key=lambda item: item[0].phase)
    return plan


def copy_of(store: Store, namespace: str, worker: str) -> Any:
    """A worker's own copy of a namespace (wrangler's local state), where a stranded key's fix may go."""
    from dreamcli.stores.wrangler import WranglerKVNamespace

    copy = next(c for c in store.project.copies[namespace] if c.worker == worker)
    return WranglerKVNamespace(copy.state_root, copy.id, store.clock)


class RepairError(DreamError):
    """A repair action that could not be carried out (e.g. Stripe unreachable for a tier config)."""


TierConfigBuilder = Callable[[str, str | None], str]


def apply_plan(
    store: Store,
    plan: Plan,
    *,
    build_tier_config: TierConfigBuilder | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    batch_size: int = 10_000,
) -> tuple[int, list[tuple[Fix, str]]]:
    """Carry out the plan phase by phase, in batches; returns (actions done, actions that failed)."""
    done = 0
    failed: list[tuple[Fix, str]] = []
    without_config: set[str] = set()
    total = len(plan.fixes)
    phase_groups: dict[Phase, list[tuple[Fix, Finding]]] = {}
    for fix, finding in plan.fixes:
        phase_groups.setdefault(fix.phase, []).append((fix, finding))
    for phase in sorted(phase_groups):
        puts: dict[tuple[str, str | None], list[KVWrite]] = {}
        deletes: dict[str, list[str]] = {}
        copies: dict[str, list[tuple[Fix, tuple[str, str, str]]]] = {}
        for fix, finding in phase_groups[phase]:
            if fix.action is Action.REBUILD_TIER_CONFIG:
                try:
                    if build_tier_config is None:
                        raise RepairError("Stripe is needed to rebuild a tier config")
                    puts.setdefault((fix.namespace, None), []).append(
                        KVWrite(fix.key, build_tier_config(finding.platform or "", fix.user_id))
                    )
                except DreamError as exc:
                    failed.append((fix, str(exc)))
                    if finding.platform:
                        without_config.add(finding.platform)
            elif fix.phase in (Phase.API_PUBLISHABLE, Phase.API_SECRET) and finding.platform in without_config:
                failed.append(
                    (fix, f"skipped: {finding.platform} has no tier config yet (it would authenticate without one)")
                )
            elif fix.action is Action.PUT and store.sealed and fix.source is not None:
                copies.setdefault(fix.namespace, []).append((fix, (fix.key, fix.source, fix.value or "")))
            elif fix.action is Action.PUT:
                value = fix.data if fix.data is not None else fix.value or ""
                puts.setdefault((fix.namespace, fix.copy), []).append(
                    KVWrite(fix.key, value, expiration=fix.expiration, metadata=fix.metadata)
                )
            else:
                deletes.setdefault(fix.namespace, []).append(fix.key)
        for namespace, keys in deletes.items():
            for start in range(0, len(keys), batch_size):
                store.kv(namespace).bulk_delete(keys[start : start + batch_size])
                done += len(keys[start : start + batch_size])
                if on_progress:
                    on_progress(done, total)
        for (namespace, copy), items in puts.items():
            write_in_batches(
                store.kv(namespace) if copy is None else copy_of(store, namespace, copy),
                items,
                batch_size=batch_size,
                on_batch=functools.partial(_progress_from, on_progress, done, total) if on_progress else None,
            )
            done += len(items)
        for namespace, pairs in copies.items():
            # A sealed value (a secret the Worker sent as a digest) is copied inside the Worker, never written here.
            sealed_namespace: Any = store.kv(namespace)
            refused = dict(sealed_namespace.copy_sealed([copy for _, copy in pairs]))
            failed += [(fix, refused[fix.key]) for fix, _ in pairs if fix.key in refused]
            done += len(pairs) - len(refused)
            if on_progress:
                on_progress(done, total)
    return done, failed


def _progress_from(on_progress: Callable[[int, int], None], base: int, total: int, written: int, _batch: int) -> None:
    """Progress of one namespace's batched puts, counted after the `base` actions already done."""
    on_progress(base + written, total)


@dataclass
class RepairReport:
    """What one repair did: the findings it started from, its plan, what it applied, and verify afterwards."""

    before: VerifyResult
    plan: Plan
    applied: int = 0
    failed: list[tuple[Fix, str]] = field(default_factory=list)
    after: VerifyResult | None = None  # verify again, when anything was applied
    declined: bool = False  # the plan was not confirmed

    @property
    def remaining(self) -> VerifyResult:
        return self.after if self.after is not None else self.before

    @property
    def clean(self) -> bool:
        return not self.failed and not self.declined and self.remaining.clean

    def as_json(self) -> dict[str, Any]:
        return {
            "plan": self.plan.as_json(),
            "applied": self.applied,
            "failed": [{"key": fix.key, "namespace": fix.namespace, "why": why} for fix, why in self.failed],
            "after": self.remaining.as_json()["summary"],
        }


class RepairInterrupted(DreamError):
    """Ctrl-C during a repair: how far it got (every batch applied is consistent; a re-run finishes the job)."""

    exit_code = ExitCode.INTERRUPTED

    def __init__(self, done: int, total: int) -> None:
        super().__init__(
            f"interrupted after {done} of {plural(total, 'action')} (at least; a batch may have landed just before): "
            "what is applied is consistent; "
            "`dream kv repair` again re-verifies and finishes the job"
        )
        self.done, self.total = done, total


def run(
    store: Store,
    verify: Callable[[], VerifyResult],
    *,
    prune: bool = False,
    remove_plaintext: bool = False,
    reset_usage: bool = False,
    confirm: Callable[[Plan], bool] = lambda plan: True,
    tier_config_builder: Callable[[], TierConfigBuilder] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> RepairReport:
    """Verify, plan, confirm, apply, verify again. `verify` is the (possibly narrowed) check to run before
    and after; `tier_config_builder` is asked for only when a tier config must be rebuilt from Stripe.

    The store's lock is held throughout, the confirmation included (as `terraform apply` holds its state lock
    through its prompt): what is applied is what was confirmed, with no other dream change of keys between."""
    with store.locked():
        before = verify()
        report = RepairReport(
            before, plan_repair(before, prune=prune, remove_plaintext=remove_plaintext, reset_usage=reset_usage)
        )
        if not report.plan.fixes:
            return report
        if not confirm(report.plan):
            report.declined = True
            return report
        needs_stripe = any(fix.action is Action.REBUILD_TIER_CONFIG for fix, _ in report.plan.fixes)
        builder = tier_config_builder() if needs_stripe and tier_config_builder is not None else None
        progress = [0, len(report.plan.fixes)]  # actions done, planned: what an interruption reports

        def track(done: int, total: int) -> None:
            progress[:] = [done, total]
            if on_progress is not None:
                on_progress(done, total)

        try:
            report.applied, report.failed = apply_plan(store, report.plan, build_tier_config=builder, on_progress=track)
        except KeyboardInterrupt:
            raise RepairInterrupted(*progress) from None
        report.after = verify()
        return report
