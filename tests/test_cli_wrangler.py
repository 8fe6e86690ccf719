"""The guide's three-worker project on wrangler's local state: doctor, then verify and repair on it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dreamcli.errors import ExitCode
from dreamcli.stores.discovery import strip_jsonc

WORKERS = Path(__file__).resolve().parent.parent / "fixtures" / "workers"


@pytest.fixture
def project(tmp_path):
    target = tmp_path / "workers"
    shutil.copytree(WORKERS, target)
    return target


def test_the_guides_bug_on_wrangler_state(dream, project):
    store = f"wrangler:{project}"
    run = dream("--store", store, "flow", "run", "--fault", "skip-api-replication", "--json")
    assert run.exit_code == ExitCode.FAILED
    report = json.loads(run.stdout)
    assert (project / "front-auth-api" / ".wrangler" / "state" / "v3" / "kv").is_dir()
    found = json.loads(dream("--store", store, "kv", "verify", "--json").stdout)
    assert sorted(f["key"].split(":")[0] for f in found["findings"]) == ["platform", "publishablekey", "secretkey"]
    assert dream("--store", store, "kv", "repair", "--yes").exit_code == 0
    assert dream("--store", store, "kv", "verify").exit_code == 0
    ok = dream("--store", store, "flow", "call", input=report["secretKey"])
    assert ok.exit_code == 0, ok.stderr
    # the repaired keys are where api-multi reads them: its own local state
    assert (project / "api-multi" / ".wrangler" / "state" / "v3" / "kv").is_dir()


def test_kv_commands_on_wrangler_state(dream, project):
    store = f"wrangler:{project}"
    assert dream("--store", store, "kv", "put", "k", "v", "--ns", "api-usage").exit_code == 0
    assert dream("--store", store, "kv", "get", "k", "--ns", "10cc8b9f46f54a6e8d89448f978aaa1f").stdout == "v"
    assert dream("--store", store, "kv", "list", "--ns", "api-usage").stdout == "k\n"
    bad = dream("--store", f"{store},colour=red", "kv", "list", "--ns", "api-usage")
    assert bad.exit_code == ExitCode.FAILED and "unknown wrangler store option 'colour=red'" in bad.stderr
    missing = dream("--store", "wrangler:/nowhere/at/all", "kv", "list", "--ns", "api-usage")
    assert missing.exit_code == ExitCode.NOT_FOUND and "project folder /nowhere/at/all does not exist" in missing.stderr


def test_doctor_finds_what_the_guide_checks_by_hand(dream, project):
    result = dream("doctor", str(project), "--json")
    assert result.exit_code == ExitCode.FAILED
    checks = [(d["check"], d["worker"]) for d in json.loads(result.stdout)["findings"]]
    assert ("separate local state", "api-multi, oauth-api") in checks
    assert ("separate local state", "front-auth-api, oauth-api") in checks
    assert ("dev vars", "oauth-api") in checks


def test_doctor_on_a_healthy_project_and_its_fixes(dream, project):
    for worker, names in {
        "front-auth-api": "CLERK_SECRET_KEY CLERK_PUBLISHABLE_KEY CLERK_WEBHOOK_SECRET STRIPE_SECRET_KEY STRIPE_PRICE_ID STRIPE_WEBHOOK_SECRET FRONTEND_URL",
        "oauth-api": "STRIPE_CLIENT_ID STRIPE_CLIENT_SECRET CLERK_SECRET_KEY CLERK_PUBLISHABLE_KEY FRONTEND_URL",
        "api-multi": "CLERK_SECRET_KEY CLERK_PUBLISHABLE_KEY FRONTEND_URL",
    }.items():
        (project / worker / ".dev.vars").write_text("".join(f"{n}=value-of-{n}\n" for n in names.split()))
        (project / worker / "package.json").write_text(
            json.dumps({"scripts": {"dev": "wrangler dev --persist-to ../.wrangler-shared"}})
        )
    healthy = dream("doctor", str(project))
    assert healthy.exit_code == 0 and healthy.stdout == "3 workers, no findings\n"
    (project / "oauth-api" / ".dev.vars").write_text(
        (project / "oauth-api" / ".dev.vars")
        .read_text()
        .replace("STRIPE_CLIENT_SECRET=value-of-STRIPE_CLIENT_SECRET", "STRIPE_CLIENT_SECRET=rk_test_restricted")
    )
    config = project / "oauth-api" / "wrangler.jsonc"
    config.write_text(
        config.read_text().replace('"a9f3331b0c8b48d58c32896482484208"', '"ffffffffffffffffffffffffffffffff"')
    )
    sick = dream("doctor", str(project), "--json")
    findings = json.loads(sick.stdout)["findings"]
    # a different id is a different namespace: even under one --persist-to its files are apart
    assert {d["check"] for d in findings} == {"namespace ids", "preview ids", "dev vars", "separate local state"}
    assert any("a9f3331b0c8b48d58c32896482484208" in d["fix"] for d in findings)
    assert "rk_test_restricted" not in sick.stdout and "value-of" not in sick.stdout  # names, never values


def test_jsonc_comments_and_trailing_commas():
    text = '{\n  // a comment\n  "a": "not // a comment", /* block */ "b": [1, 2,],\n}'
    assert json.loads(strip_jsonc(text)) == {"a": "not // a comment", "b": [1, 2]}
