"""The counts api-multi reads on every call, in api-usage: each end-user's month (`usage:{owner}:{userId}`) and each
minute's rate bucket (`ratelimit:...`). A value that is not what api-multi writes makes every call of that end-user a
409 CORRUPT_RECORD (refused, never guessed at: see platform.runtime), so verify reports it, and repair deletes it:
a rate bucket at once (it would expire within two minutes anyway), a month only with --reset-corrupt-usage (the
end-user's count then starts again at 0: a decision for the operator)."""

from __future__ import annotations

from collections.abc import Callable

from dreamcli import layout
from dreamcli.platform.replication.findings import Action, Finding, FindingClass, Fix, Need, Phase
from dreamcli.platform.runtime import CorruptRecord, rate_count, usage_record
from dreamcli.stores.ports import Store
from dreamcli.topology import API_USAGE

_CHECKS: dict[layout.KeyKind, Callable[[bytes, str], object]] = {
    layout.KeyKind.END_USER_USAGE: usage_record,
    layout.KeyKind.PLATFORM_RATE_LIMIT: rate_count,
    layout.KeyKind.RATE_LIMIT: rate_count,
}


def usage_findings(store: Store, on_tick: Callable[[], None] | None = None) -> tuple[list[Finding], int]:
    """(the corrupt counts in api-usage, keys read); `on_tick()` every 10,000 keys."""
    findings: list[Finding] = []
    read = 0
    namespace = store.kv(API_USAGE)
    # Each end-user's month, then the rate buckets (both bucket shapes share the first segment).
    for prefix in (layout.prefix(layout.KeyKind.END_USER_USAGE), layout.prefix(layout.KeyKind.RATE_LIMIT)):
        for key, raw in namespace.scan(prefix=prefix):
            read += 1
            if on_tick is not None and read % 10_000 == 0:
                on_tick()
            kind, fields, _, _ = layout.classify(key)
            check = _CHECKS.get(kind)
            if check is None:
                continue
            try:
                check(raw, key)
            except CorruptRecord as exc:
                month = kind is layout.KeyKind.END_USER_USAGE
                findings.append(
                    Finding(
                        FindingClass.CORRUPT,
                        API_USAGE,
                        key,
                        (fields or {}).get("owner") or (fields or {}).get("platformId"),
                        f"{exc.problem}: api-multi refuses this end-user's calls (409 CORRUPT_RECORD)",
                        actual=raw[:120].decode("utf-8", "replace"),
                        fix=Fix(
                            Action.DELETE,
                            API_USAGE,
                            key,
                            Phase.DELETE_OTHER,
                            needs=Need.RESET_CORRUPT_USAGE if month else None,
                        ),
                    )
                )
    return findings, read
