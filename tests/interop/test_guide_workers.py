"""A worker set written from the guide alone (tests/guide_workers: TypeScript and JavaScript, Hono, wrangler.toml and
wrangler.jsonc, config and folder names that are not the guide's, renamed bindings with ids of their own, each worker
with its own wrangler install and local state, two routes named otherwise) runs unchanged under `dream dev`: its
Stripe and Clerk calls go to the real hosts in its code and reach dream's emulated vendors, the flow drives the
contract with the routes dream.toml declares, and the guide's bug on it is found and repaired on the running
api-multi."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.conftest import GUIDE_WORKERS, copy_guide_workers
from tests.interop.test_dev import Dev, dream, flow, processes_under, repair_then_call

pytestmark = [pytest.mark.socket, pytest.mark.peer("guide-workers")]


def test_guide_written_workers_pass_the_whole_flow_through_dream_dev(tmp_path):
    project = copy_guide_workers(tmp_path / "workers")
    # the user's own .dev.vars holds keys for the real vendors: dream dev's test keys replace them
    (project / "platform" / ".dev.vars").write_text("STRIPE_SECRET_KEY=sk_test_the_users_real_key\n")
    dev = Dev(tmp_path, "shared", copy=lambda target: target)
    try:
        used = [line for line in dev.lines if line.startswith("wrangler ")]
        for folder, role in (("platform", "front-auth-api"), ("connect", "oauth-api"), ("customers-api", "api-multi")):
            # each worker runs the wrangler its own folder has
            assert any(f"/{folder}/node_modules/.bin/wrangler ({role})" in line for line in used), used
        run = flow(dev, tmp_path)
        assert run.returncode == 0, run.stdout + run.stderr
        report = json.loads(run.stdout)
        assert all(step["ok"] for step in report["steps"]) and len(report["steps"]) == 8, report
        assert "POST /webhook/stripe" in report["steps"][1]["wrote"][0]
        explained = dream(
            tmp_path, "flow", "run", "--workers", "--explain", "--urls", dev.urls, "--store", dev.store, "--json"
        )
        requests = {r["step"]: r for r in json.loads(explained.stdout)["requests"]}
        assert (requests["checkout"]["method"], requests["checkout"]["path"]) == ("POST", "/billing/subscribe")
        assert requests["create-products"]["path"] == "/tiers" and requests["create-products"]["expect"] == [201]
        assert requests["create-products"]["source"].startswith(str(project / "dream.toml"))
        assert requests["authorize"]["query"] == ["userId"]
        api = dev.urls.split("api-multi=")[1]
        call = httpx.post(
            f"{api}/api/data",
            headers={"Authorization": f"Bearer {report['secretKey']}", "X-User-Id": "u1", "X-User-Plan": "free"},
        )
        assert call.status_code == 200 and call.json()["usage"]["usageCount"] == 1
    finally:
        dev.stop()
    assert dev.process.returncode == 0
    assert processes_under(dev.project) == []
    assert not list((project / "platform").glob("*entry*")), "dream's shim is never written in the user's folder"


def test_the_guides_bug_on_guide_written_workers_found_and_repaired_on_the_running_api_multi(tmp_path):
    dev = Dev(tmp_path, "api-multi-apart", copy=copy_guide_workers)
    try:
        run = flow(dev, tmp_path)
        assert run.returncode == 1
        report = json.loads(run.stdout)
        steps = {s["phase"]: s for s in report["steps"]}
        assert all(steps[p]["ok"] for p in ("signup", "pay", "connect", "tiers", "credentials")), report["steps"]
        assert not steps["api call"]["ok"] and "Invalid API key" in steps["api call"]["detail"]
        assert "api-data (api-multi POST /api/data) checks:" in steps["api call"]["detail"]
        verify = dream(tmp_path, "--store", dev.store, "kv", "verify", "--json")
        findings = json.loads(verify.stdout)["findings"]
        stranded = [f for f in findings if f["class"] == "stranded"]
        assert len(stranded) == 3 and all(f["namespace"] == "api-tokens" for f in stranded)
        assert all("api-multi's KEYS" in f["message"] for f in stranded)  # the renamed binding, recognised by its id
        repair_then_call(dev, tmp_path, report["secretKey"])
    finally:
        dev.stop()
    assert processes_under(dev.project) == []


def test_the_guide_written_set_is_what_it_claims():
    """The set differs from fixtures/workers along every axis the issue names (a test of the fixture itself)."""
    configs = sorted(p.name for p in GUIDE_WORKERS.glob("*/wrangler.*"))
    assert configs == ["wrangler.jsonc", "wrangler.toml", "wrangler.toml"]
    sources = sorted(p.suffix for p in GUIDE_WORKERS.glob("*/src/index.*"))
    assert sources == [".js", ".ts", ".ts"]
    for folder in ("platform", "connect", "customers-api"):
        package = json.loads((GUIDE_WORKERS / folder / "package.json").read_text())
        assert "wrangler" in package["devDependencies"] and "hono" in package["dependencies"]
        assert (GUIDE_WORKERS / folder / "node_modules" / ".bin" / "wrangler").exists()
    code = "".join(p.read_text() for p in GUIDE_WORKERS.glob("*/src/index.*"))
    assert "STRIPE_API_BASE" not in code and "CLERK_API_URL" not in code  # written for the real vendors' hosts
    assert not Path(GUIDE_WORKERS / "front-auth-api").exists()  # no folder carries a guide role's name
