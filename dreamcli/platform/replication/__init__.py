"""The replication between platform-tokens (front-auth-api) and api-tokens (api-multi): what must hold
(`findings`), the checks SQLite runs over a snapshot of both (`checker.verify`, `snapshot`), the repair that puts it right
(`repair.run`), and the tier config checked against Stripe (`stripe_check`).

Its names load on first use (PEP 562): a command that needs only the finding classes (every `dream` start builds
`kv verify --class`'s help from them) does not pay for the checker."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dreamcli.platform.replication.checker import verify
    from dreamcli.platform.replication.findings import (
        Action,
        Finding,
        FindingClass,
        Fix,
        Need,
        Phase,
        VerifyResult,
        select,
        shown,
    )
    from dreamcli.platform.replication.repair import (
        Plan,
        RepairError,
        RepairInterrupted,
        RepairReport,
        TierConfigBuilder,
        apply_plan,
        plan_repair,
        run,
    )
    from dreamcli.platform.replication.snapshot import keys_to_read
    from dreamcli.platform.replication.stripe_check import stripe_agreement

_HOMES = {
    "verify": "checker",
    **dict.fromkeys(
        ("Action", "Finding", "FindingClass", "Fix", "Need", "Phase", "VerifyResult", "select", "shown"), "findings"
    ),
    **dict.fromkeys(
        (
            "Plan",
            "RepairError",
            "RepairInterrupted",
            "RepairReport",
            "TierConfigBuilder",
            "apply_plan",
            "plan_repair",
            "run",
        ),
        "repair",
    ),
    "stripe_agreement": "stripe_check",
    "keys_to_read": "snapshot",
}

__all__ = [
    "Action",
    "Finding",
    "FindingClass",
    "Fix",
    "Need",
    "Phase",
    "Plan",
    "RepairError",
    "RepairInterrupted",
    "RepairReport",
    "TierConfigBuilder",
    "VerifyResult",
    "apply_plan",
    "keys_to_read",
    "plan_repair",
    "run",
    "select",
    "shown",
    "stripe_agreement",
    "verify",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
