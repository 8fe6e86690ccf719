"""The guide's three-worker project on wrangler's local state: doctor, then verify and repair on it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dreamcli.errors import ExitCode
from dreamcli.stores.discovery import strip_jsonc
from dreamcli.stores.ports import KVWrite
from tests.conftest import copy_workers

WORKERS = Path(__file__).resolve().parent.parent / "fixtures" / "workers"


@pytest.fixture
def project(tmp_path):
    target = tmp_path / "workers"
    copy_workers(target)
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


def make_healthy(project: Path) -> None:
    """Every .dev.vars name the guide lists (each `NAME=value-of-NAME`), and one shared --persist-to for all."""
    for worker, names in {
        "front-auth-api": "CLERK_SECRET_KEY CLERK_PUBLISHABLE_KEY CLERK_WEBHOOK_SECRET STRIPE_SECRET_KEY STRIPE_PRICE_ID STRIPE_WEBHOOK_SECRET FRONTEND_URL",
        "oauth-api": "STRIPE_CLIENT_ID STRIPE_CLIENT_SECRET CLERK_SECRET_KEY CLERK_PUBLISHABLE_KEY FRONTEND_URL",
        "api-multi": "CLERK_SECRET_KEY CLERK_PUBLISHABLE_KEY FRONTEND_URL",
    }.items():
        (project / worker / ".dev.vars").write_text("".join(f"{n}=value-of-{n}\n" for n in names.split()))
        (project / worker / "package.json").write_text(
            json.dumps({"scripts": {"dev": "wrangler dev --persist-to ../.wrangler-shared"}})
        )


def test_doctor_on_a_healthy_project_and_its_fixes(dream, project):
    make_healthy(project)
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


# The guide's bug as it happens: every worker runs `wrangler dev` in its own folder, so oauth-api's writes to
# CUSTOMER_TOKENS_KV land in oauth-api/.wrangler/state while api-multi reads api-multi/.wrangler/state.

API_TOKENS_ID = "a9f3331b0c8b48d58c32896482484208"


def state(project, worker):
    return project / worker / ".wrangler" / "state"


def strand(project, namespace_id, writer, reader, prefix_filter=lambda key: True):
    """Move keys from the reader's copy into the writer's own copy, as if the writer had written them there."""
    from dreamcli.stores.wrangler import WranglerKVNamespace

    live = WranglerKVNamespace(state(project, reader), namespace_id)
    own = WranglerKVNamespace(state(project, writer), namespace_id)
    moved = [key for key, _ in live.scan() if prefix_filter(key)]
    own.bulk_put([KVWrite(key, live.get(key)) for key in moved])
    live.bulk_delete(moved)  # this namespace object knows no other copy: only the reader's is touched
    return moved


def onboarded(dream, store):
    report = json.loads(dream("--store", store, "flow", "run", "--json").stdout)
    assert report["ok"], report
    return report["secretKey"]


def test_keys_stranded_in_a_writers_own_state_are_found_and_repaired(dream, project):
    store = f"wrangler:{project}"
    secret = onboarded(dream, store)
    moved = strand(project, API_TOKENS_ID, "oauth-api", "api-multi", lambda key: not key.startswith("usage"))
    assert len(moved) == 3  # the secret and publishable mappings and the tier config: api-multi's whole path
    refused = dream("--store", store, "flow", "call", input=secret)
    assert refused.exit_code == ExitCode.FAILED and "Invalid API key" in refused.stderr
    found = dream("kv", "verify", "--json", "--store", store)  # --store after the subcommand, as --json
    assert found.exit_code == ExitCode.FAILED
    stranded = [f for f in json.loads(found.stdout)["findings"] if f["class"] == "stranded"]
    assert sorted(f["key"] for f in stranded) == sorted(moved)
    assert all(
        "oauth-api wrote it into" in f["message"] and "oauth-api/.wrangler/state" in f["message"] for f in stranded
    )
    assert all("api-multi serves api-tokens" in f["message"] for f in stranded)
    assert "(secret)" not in found.stdout or secret not in found.stdout
    repaired = dream("--store", store, "kv", "repair", "--yes", "--json")
    assert repaired.exit_code == 0, repaired.stderr
    actions = json.loads(repaired.stdout)["plan"]["actions"]
    assert [a["key"].split(":")[0] for a in actions] == ["platform", "publishablekey", "secretkey"]  # safe order
    assert dream("--store", store, "kv", "verify").exit_code == 0
    assert dream("--store", store, "flow", "call", input=secret).exit_code == 0
    # a delete reaches every copy: a revoked key is never found "stranded" in oauth-api's copy and brought back
    secret_key = next(key for key in moved if key.startswith("secretkey:"))
    assert dream("--store", store, "kv", "delete", secret_key, "--ns", "api-tokens").exit_code == 0
    from dreamcli.stores.wrangler import WranglerKVNamespace

    assert WranglerKVNamespace(state(project, "oauth-api"), API_TOKENS_ID).get(secret_key) is None
    again = json.loads(dream("--store", store, "kv", "verify", "--json").stdout)
    assert not [f for f in again["findings"] if f["class"] == "stranded"]


def test_a_newer_value_in_a_writers_copy_wins_an_older_one_does_not(dream, project):
    from dreamcli.stores.wrangler import WranglerKVNamespace

    store = f"wrangler:{project}"
    onboarded(dream, store)
    live = WranglerKVNamespace(state(project, "api-multi"), API_TOKENS_ID)
    own = WranglerKVNamespace(state(project, "oauth-api"), API_TOKENS_ID)
    key = next(k for k, _ in live.scan() if k.startswith("platform:"))
    own.put(key, '{"tiers": []}')  # written after the live value: newer
    found = json.loads(dream("--store", store, "kv", "verify", "--json").stdout)["findings"]
    assert [(f["class"], f["key"]) for f in found if f["class"] == "stranded"] == [("stranded", key)]
    assert "holds an older value" in found[0]["message"]
    live.put(key, '{"tiers": []}')  # the same value, written later in the live copy: nothing to do
    found = json.loads(dream("--store", store, "kv", "verify", "--json").stdout)["findings"]
    assert not [f for f in found if f["class"] == "stranded"]


def test_merge_into_one_shared_state(dream, project):
    store = f"wrangler:{project}"
    secret = onboarded(dream, store)
    strand(project, API_TOKENS_ID, "oauth-api", "api-multi", lambda key: not key.startswith("usage"))
    migrations = str(WORKERS.parent.parent / "migrations")
    assert dream("--store", store, "d1", "migrations", "apply", "--dir", migrations).exit_code == 0
    merged = dream("--store", store, "kv", "repair", "--merge-into", ".wrangler-shared", "--json")
    assert merged.exit_code == 0, merged.stderr
    report = json.loads(merged.stdout)
    assert report["copied"]["api-tokens"] >= 3 and report["target"] == str((project / ".wrangler-shared").resolve())
    assert report["devScripts"]["oauth-api"] == "wrangler dev --persist-to ../.wrangler-shared"
    shared = report["store"]
    assert shared == f"wrangler:{project},persist-to=.wrangler-shared"
    assert dream("--store", shared, "flow", "call", input=secret).exit_code == 0
    assert dream("--store", shared, "kv", "verify").exit_code == 0
    counted = dream("--store", shared, "d1", "execute", "--command", "SELECT count(*) AS n FROM customers", "--json")
    assert counted.exit_code == 0 and "copied api-multi's D1 database" in report["d1"]


def test_workers_are_told_apart_by_name_folder_or_bindings_never_by_a_guess(dream, project):
    config = project / "front-auth-api" / "wrangler.toml"
    config.write_text(config.read_text().replace('name = "front-auth-api"', 'name = "dream-front-auth"'))
    by_folder = json.loads(dream("--store", f"wrangler:{project}", "topology", "--json").stdout)
    assert {w["role"]: w["identifiedBy"] for w in by_folder["workers"]}["front-auth-api"] == "folder name"
    (project / "front-auth-api").rename(project / "auth")
    by_bindings = json.loads(dream("--store", f"wrangler:{project}", "topology", "--json").stdout)
    how = {w["role"]: w["identifiedBy"] for w in by_bindings["workers"]}
    assert how["front-auth-api"].startswith("bindings") and how["api-multi"] == "config name"
    live = next(n for n in by_bindings["namespaces"] if n["name"] == "platform-tokens")["copies"][0]
    assert live["worker"] == "front-auth-api" and "/auth/.wrangler/state" in live["file"]
    shutil.copytree(project / "api-multi", project / "api-multi-copy")
    twice = dream("--store", f"wrangler:{project}", "kv", "list", "--ns", "api-tokens")
    assert twice.exit_code == ExitCode.USAGE and "two workers match api-multi" in twice.stderr
    assert "api-multi-copy" in twice.stderr


def test_a_project_without_a_serving_worker_says_what_it_found(dream, project):
    shutil.rmtree(project / "api-multi")
    missing = dream("--store", f"wrangler:{project}", "kv", "list", "--ns", "api-tokens")
    assert missing.exit_code == ExitCode.USAGE
    assert (
        "no worker of" in missing.stderr and "api-multi's TOKENS_KV" in missing.stderr and "oauth-api" in missing.stderr
    )


def test_env_sections_as_wrangler_dev_env(dream, project):
    for worker, config_name in (("api-multi", "wrangler.toml"), ("front-auth-api", "wrangler.toml")):
        config = project / worker / config_name
        text = config.read_text()
        section = text[text.index("[[kv_namespaces]]") :].replace("[[", "[[env.staging.").replace('id = "', 'id = "e')
        config.write_text(text + "\n" + section)
    oauth = project / "oauth-api" / "wrangler.jsonc"
    data = json.loads(strip_jsonc(oauth.read_text()))
    data["env"] = {"staging": {"kv_namespaces": [{**b, "id": "e" + b["id"]} for b in data["kv_namespaces"]]}}
    oauth.write_text(json.dumps(data))
    store = f"wrangler:{project},env=staging"
    topo = json.loads(dream("--store", store, "topology", "--json").stdout)
    api = next(n for n in topo["namespaces"] if n["name"] == "api-tokens")
    assert api["id"] == "e" + API_TOKENS_ID and {c["id"] for c in api["copies"]} == {"e" + API_TOKENS_ID}
    secret = onboarded(dream, store)
    assert dream("--store", store, "flow", "call", input=secret).exit_code == 0
    assert dream("--store", f"wrangler:{project}", "flow", "call", input=secret).exit_code == ExitCode.FAILED
    nowhere = dream("--store", f"wrangler:{project},env=prod", "kv", "list", "--ns", "api-tokens")
    assert nowhere.exit_code == ExitCode.USAGE and "no [env.prod] section" in nowhere.stderr


def test_preview_ids_are_what_wrangler_dev_uses_and_doctor_agrees(dream, project):
    for worker, name, binding in (("api-multi", "wrangler.toml", "TOKENS_KV"),):
        config = project / worker / name
        config.write_text(
            config.read_text().replace(
                f'binding = "{binding}"\nid = "{API_TOKENS_ID}"',
                f'binding = "{binding}"\nid = "{API_TOKENS_ID}"\npreview_id = "p{API_TOKENS_ID}"',
            )
        )
    oauth = project / "oauth-api" / "wrangler.jsonc"
    oauth.write_text(
        oauth.read_text().replace(
            f'"id": "{API_TOKENS_ID}"', f'"id": "{API_TOKENS_ID}", "preview_id": "p{API_TOKENS_ID}"'
        )
    )
    store = f"wrangler:{project}"
    secret = onboarded(dream, store)
    from dreamcli.stores.wrangler import WranglerKVNamespace

    preview = WranglerKVNamespace(state(project, "api-multi"), "p" + API_TOKENS_ID)
    assert sum(1 for _ in preview.scan()) >= 3  # the store wrote where `wrangler dev` reads
    assert not WranglerKVNamespace(state(project, "api-multi"), API_TOKENS_ID).index.exists()
    assert dream("--store", f"{store},production", "flow", "call", input=secret).exit_code == ExitCode.FAILED
    strand(project, "p" + API_TOKENS_ID, "oauth-api", "api-multi", lambda key: not key.startswith("usage"))
    doctor = json.loads(dream("doctor", str(project), "--json").stdout)
    separate = next(
        d for d in doctor["findings"] if d["check"] == "separate local state" and "api-multi" in d["worker"]
    )
    assert "api-multi: 0 keys" in separate["problem"] and "oauth-api: 3 keys" in separate["problem"]
    assert dream("--store", store, "kv", "repair", "--yes").exit_code == 0
    assert dream("--store", store, "flow", "call", input=secret).exit_code == 0


def test_reading_never_creates(dream, project, tmp_path, monkeypatch):
    store = f"wrangler:{project}"
    assert dream("--store", store, "kv", "list", "--ns", "api-tokens").stdout == ""
    d1 = dream("--store", store, "d1", "execute", "--command", "SELECT count(*) FROM customers")
    assert d1.exit_code == ExitCode.NOT_FOUND and "no local D1 database at" in d1.stderr
    assert dream("--store", store, "kv", "verify").exit_code == 0
    assert not list(project.rglob("state"))  # nothing made by reading
    typo = dream("--store", f"{store},persist-to=.wrangler-shard", "kv", "list", "--ns", "api-tokens")
    assert typo.exit_code == ExitCode.NOT_FOUND
    assert f"persist-to folder {(project / '.wrangler-shard').resolve()} does not exist" in typo.stderr
    assert "relative to" in typo.stderr
    monkeypatch.setenv("HOME", str(project.parent))
    home = dream("--store", f"wrangler:~/{project.name}", "topology", "--json")
    assert home.exit_code == 0 and json.loads(home.stdout)["location"] == str(project)
    assert (
        dream(
            "--store", store, "d1", "migrations", "apply", "--dir", str(WORKERS.parent.parent / "migrations")
        ).exit_code
        == 0
    )
    assert list(project.rglob("*.sqlite"))  # a write makes the file, as `wrangler d1 execute --local` does


def test_doctor_json_summary_and_what_fails(dream, project):
    for worker in ("front-auth-api", "oauth-api", "api-multi"):  # one shared state: only warnings are left
        (project / worker / "package.json").write_text(
            json.dumps({"scripts": {"dev": "wrangler dev --persist-to ../.wrangler-shared"}})
        )
    (project / ".wrangler-shared").mkdir()
    warned = dream("doctor", str(project), "--json")
    report = json.loads(warned.stdout)
    assert report["schemaVersion"] == 1 and report["summary"]["errors"] == 0 and report["summary"]["warnings"] == 3
    assert warned.exit_code == 0  # warnings alone break nothing
    assert dream("doctor", str(project), "--strict").exit_code == ExitCode.FAILED


def test_topology_of_the_emulator_store_names_its_files(dream):
    dream.json("flow", "run", "--json")
    report = dream.json("topology", "--json")
    assert report["store"] == "emulator" and [n["name"] for n in report["namespaces"]] == [
        "platform-tokens",
        "platform-usage",
        "api-tokens",
        "api-usage",
    ]
    assert report["d1"][0]["file"].endswith(".sqlite")


def test_doctor_warns_of_a_verifier_kept_deployed(dream, project):
    make_healthy(project)
    kept = Path(".dream") / "verifier-acct.json"
    kept.parent.mkdir()
    kept.write_text(json.dumps({"name": "dream-verify-0a1b2c3d", "url": "https://x", "token": "the-secret-token"}))
    shown = dream("doctor", str(project), "--json")
    assert shown.exit_code == 0  # a warning: it breaks nothing by itself
    (finding,) = json.loads(shown.stdout)["findings"]
    assert (finding["check"], finding["worker"], finding["severity"]) == (
        "verifier",
        "dream-verify-0a1b2c3d",
        "warning",
    )
    assert "wrangler delete --name dream-verify-0a1b2c3d" in finding["fix"] and "the-secret-token" not in shown.stdout
    assert dream("doctor", str(project), "--strict").exit_code == ExitCode.FAILED
