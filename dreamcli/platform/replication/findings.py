"""What verify reports and repair acts on: classes of findings, the fix each carries, its phase and what it needs."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any

from dreamcli.layout import KeyKind


class FindingClass(StrEnum):
    MISSING = "missing"
    STALE = "stale"
    ORPHANED = "orphaned"
    DANGLING = "dangling"
    CORRUPT = "corrupt"
    INSECURE = "insecure"
    # a key a writing worker's local copy holds that the serving worker's copy lacks, or holds older (wrangler's
    # local state: one copy per worker folder unless they share --persist-to)
    STRANDED = "stranded"


class Action(StrEnum):
    PUT = "put"
    DELETE = "delete"
    REBUILD_TIER_CONFIG = "rebuild-tier-config"


class Phase(IntEnum):
    """Apply order: de-authenticate first, authenticate last (see repair.plan_repair)."""

    DELETE_SECRET = 0
    DELETE_OTHER = 1
    PLATFORM_TOKENS = 2
    TIER_CONFIG = 3
    API_PUBLISHABLE = 4
    API_SECRET = 5
    PLAINTEXT = 6


class Need(StrEnum):
    """The option a fix waits for: it changes what the operator may not have meant to change."""

    PRUNE = "prune"
    REMOVE_PLAINTEXT_SECRETS = "remove-plaintext-secrets"
    RESET_CORRUPT_USAGE = "reset-corrupt-usage"


@dataclass(frozen=True)
class Fix:
    action: Action
    namespace: str
    key: str
    phase: Phase
    value: str | None = None
    needs: Need | None = None
    user_id: str | None = None  # for tier config rebuilds
    expiration: int | None = None  # for puts of a pair in its grace period
    data: bytes | None = None  # the exact bytes to put (a stranded value, copied as it is), else `value`
    metadata: Any = None  # the metadata to put with it
    copy: str | None = None  # wrangler's local state: put into this worker's own copy, not the live one
    # the key (same namespace) whose value this put copies: a store whose secrets arrive sealed copies it there
    source: str | None = None


@dataclass(frozen=True)
class Finding:
    cls: FindingClass
    namespace: str
    key: str
    platform: str | None
    message: str
    expected: str | None = None
    actual: str | None = None
    fix: Fix | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "class": str(self.cls),
            "namespace": self.namespace,
            "key": self.key,
            "platform": self.platform,
            "message": self.message,
            "expected": self.expected,
            "actual": self.actual,
            "repair": None
            if self.fix is None
            else {"action": str(self.fix.action), "needs": None if self.fix.needs is None else str(self.fix.needs)},
        }


@dataclass
class VerifyResult:
    findings: list[Finding] = field(default_factory=list)
    keys_scanned: int = 0

    @property
    def clean(self) -> bool:
        return not self.findings

    def by_class(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for finding in self.findings:
            counts[str(finding.cls)] = counts.get(str(finding.cls), 0) + 1
        return counts

    def as_json(self, *, findings: bool = True) -> dict[str, Any]:
        """The document; without `findings`, all but the list (for a caller that streams it)."""
        document: dict[str, Any] = {
            "clean": self.clean,
            "summary": {"keys_scanned": self.keys_scanned, "findings": len(self.findings), "by_class": self.by_class()},
        }
        if findings:
            document["findings"] = [finding.as_json() for finding in self.findings]
        return document


def shown(kind: KeyKind | None, value: str | None) -> str | None:
    """A value as a report may show it: secrets never, Stripe tokens by account only, long values cut."""
    if value is None:
        return None
    if kind is KeyKind.USER_SECRET_KEY:
        return "(secret)"
    if kind in (KeyKind.USER_STRIPE_TOKEN, KeyKind.PLATFORM_STRIPE_TOKEN):
        try:
            return f"{{stripeUserId: {json.loads(value).get('stripeUserId')}, accessToken: (secret)}}"
        except (json.JSONDecodeError, AttributeError):
            return "(unreadable token)"
    return value if len(value) <= 120 else value[:117] + "..."


def select(result: VerifyResult, *, platform: str | None = None, classes: list[str] | None = None) -> VerifyResult:
    findings = [
        f
        for f in result.findings
        if (platform is None or f.platform == platform) and (not classes or str(f.cls) in classes)
    ]
    return VerifyResult(findings, result.keys_scanned)
