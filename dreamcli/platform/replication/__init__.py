"""The replication between platform-tokens (front-auth-api) and api-tokens (api-multi): what must hold
(`findings`), the checks SQLite runs over a snapshot of both (`checker.verify`, `snapshot`), the repair that puts it right
(`repair.run`), and the tier config checked against Stripe (`stripe_check`)."""

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
    RepairReport,
    TierConfigBuilder,
    apply_plan,
    plan_repair,
    run,
)
from dreamcli.platform.replication.stripe_check import stripe_agreement

__all__ = [
    "Action",
    "Finding",
    "FindingClass",
    "Fix",
    "Need",
    "Phase",
    "Plan",
    "RepairError",
    "RepairReport",
    "TierConfigBuilder",
    "VerifyResult",
    "apply_plan",
    "plan_repair",
    "run",
    "select",
    "shown",
    "stripe_agreement",
    "verify",
]
