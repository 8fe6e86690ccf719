"""A user's own workers, described rather than rewritten: dream.toml's [workers] section, the contract it changes,
bindings recognised by what they are bound to, wrangler found where the user runs it, and the vendor shim."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dreamcli.errors import ExitCode, NotFound, UsageError
from dreamcli.platform.contract import GUIDE_CONTRACT, contract
from dreamcli.stores.discovery import open_project
from dreamcli.stores.vendor_shim import write_entry
from dreamcli.stores.wrangler_cli import find_wrangler
from dreamcli.workers_config import WorkersConfig, load_workers_config, parse_workers_config
from tests.conftest import GUIDE_WORKERS, copy_workers

TOML = Path("/p/dream.toml")


@pytest.fixture
def guide_set(tmp_path):
    """tests/guide_workers without its installs: recognition reads only the wrangler files and dream.toml."""
    target = tmp_path / "set"
    shutil.copytree(GUIDE_WORKERS, target, ignore=shutil.ignore_patterns("node_modules", ".wrangler*"))
    return target


@pytest.mark.parametrize(
    ("section", "says"),
    [
        ({"front-auth": {}}, "unknown entries front-auth (known: front-auth-api, oauth-api, api-multi, routes)"),
        ({"api-multi": {"port": 0}}, "[workers].api-multi.port must be a port number"),
        ({"api-multi": {"port": True}}, "port must be a port number"),
        ({"api-multi": {"colour": "red"}}, "unknown settings colour (known: folder, port, bindings, d1)"),
        ({"api-multi": {"bindings": {"usage": "X"}}}, "'usage' is none of the namespaces platform-tokens"),
        ({"api-multi": {"bindings": {"api-usage": "not a name"}}}, "must be a binding name"),
        ({"routes": {"checkout": "/billing"}}, 'must be "METHOD /path"'),
        ({"routes": {"checkout": "FETCH /billing"}}, "METHOD one of GET, POST"),
        ({"routes": {"checkout": {"route": "POST /x", "expect": [99]}}}, "expect must be an HTTP status"),
        ({"routes": {"checkout": {"path": "/x"}}}, "unknown settings path (known: route, expect)"),
        ("workers", "[workers] must be a table"),
    ],
)
def test_a_workers_section_that_cannot_be_right_is_refused_naming_what(section, says):
    with pytest.raises(UsageError) as refused:
        parse_workers_config(section, TOML)
    assert says in str(refused.value) and str(TOML) in str(refused.value)


def test_routes_override_the_guides_and_say_where_they_come_from():
    config = parse_workers_config(
        {"routes": {"checkout": "POST /billing/subscribe", "create-products": {"route": "PUT /tiers", "expect": 201}}},
        TOML,
    )
    routes = contract(config)
    assert (routes["checkout"].method, routes["checkout"].path) == ("POST", "/billing/subscribe")
    assert routes["checkout"].expect == (200, 201, 302, 303)  # the guide's, as none was given
    assert (routes["create-products"].route, routes["create-products"].expect) == ("PUT /tiers", (201,))
    assert routes["create-products"].source.startswith("/p/dream.toml (the guide's: POST /create-products;")
    assert routes["authorize"] == next(r for r in GUIDE_CONTRACT if r.step == "authorize")
    with pytest.raises(UsageError, match="has no step 'pay'"):
        contract(parse_workers_config({"routes": {"pay": "POST /pay"}}, TOML))


def test_the_contract_passes_userid_where_the_guide_does_and_says_which_route_dream_assumes():
    routes = {route.step: route for route in GUIDE_CONTRACT}
    assert routes["authorize"].query == ("userId",) and "session" in routes["authorize"].auth
    assert routes["create-products"].body[0] == "userId" and "session" in routes["create-products"].auth
    assert routes["checkout"].source.startswith("dream assumes this route")
    assert all(route.source for route in GUIDE_CONTRACT) and all(route.checks for route in GUIDE_CONTRACT)


def test_explain_lists_every_request_with_dream_tomls_routes(dream, guide_set, tmp_path):
    shown = dream("--store", f"wrangler:{guide_set}", "flow", "run", "--workers", "--explain")
    assert shown.exit_code == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == "1. signup: platform-id  (front-auth-api)"
    assert "   POST http://127.0.0.1:8788/billing/subscribe" in lines
    assert "   POST http://127.0.0.1:8789/tiers" in lines
    assert "   sends:     ?userId=" in lines
    assert f"routes from {guide_set / 'dream.toml'}" in shown.stderr
    assert max(len(line) for line in lines if not line.lstrip().startswith(("source:", "expects:", "called"))) <= 120
    plain = dream("flow", "run", "--workers", "--explain", "--urls", "api-multi=http://127.0.0.1:9999", "--json")
    requests = json.loads(plain.stdout)["requests"]
    assert [r["step"] for r in requests] == [route.step for route in GUIDE_CONTRACT]
    assert requests[-1]["url"] == "http://127.0.0.1:9999/customers"


def test_the_guide_written_set_is_recognised_by_folders_ids_and_what_is_left(guide_set):
    project = open_project(guide_set)
    assert {role: how for role, (_, how) in project.roles.items()} == {
        role: f"folder in {guide_set / 'dream.toml'}" for role in ("front-auth-api", "oauth-api", "api-multi")
    }
    told = {(c.worker, c.namespace): (c.binding, c.how) for copies in project.copies.values() for c in copies}
    assert told[("oauth-api", "platform-tokens")] == ("DEVELOPER_TOKENS", "same id as front-auth-api's TOKENS_KV")
    assert told[("api-multi", "api-tokens")] == ("KEYS", "same id as oauth-api's CUSTOMER_TOKENS_KV")
    assert told[("api-multi", "api-usage")][0] == "END_USER_USAGE"
    assert told[("api-multi", "api-usage")][1].startswith("its only KV binding left")
    assert told[("front-auth-api", "platform-usage")][0] == "DEV_USAGE"
    assert project.live("api-tokens").id == "8e7d6c5b4a39281706f5e4d3c2b1a09f"  # preview_id under wrangler dev
    assert project.live_d1() is not None and project.live_d1().binding == "CUSTOMERS_DB"  # type: ignore[union-attr]


def test_kv_and_doctor_on_the_guide_written_set(dream, guide_set):
    store = f"wrangler:{guide_set}"
    assert dream("--store", store, "kv", "put", "k", "v", "--ns", "api-usage").exit_code == 0
    assert dream("--store", store, "kv", "list", "--ns", "api-usage").stdout == "k\n"
    doctor = json.loads(dream("doctor", str(guide_set), "--json").stdout)
    rows = {(row["worker"], row["binding"]): row for row in doctor["bindings"]}
    assert rows[("api-multi", "END_USER_USAGE")]["is"] == "api-usage"
    assert rows[("api-multi", "CUSTOMERS_DB")]["is"] == "D1 (customers)"
    assert not [f for f in doctor["findings"] if f["check"] == "bindings"]
    shown = dream("doctor", str(guide_set))
    assert "api-multi       END_USER_USAGE       api-usage (by its only KV binding left" in shown.stderr


def test_a_binding_nothing_recognises_is_said_with_the_declaration_that_fixes_it(dream, guide_set):
    config = guide_set / "customers-api" / "wrangler.toml"
    config.write_text(config.read_text() + '\n[[kv_namespaces]]\nbinding = "SESSIONS"\nid = "aa"\n')
    listed = dream("--store", f"wrangler:{guide_set}", "kv", "list", "--ns", "api-usage")
    assert listed.exit_code == ExitCode.USAGE
    assert "none of its bindings was recognised as it (unrecognised: END_USER_USAGE, SESSIONS)" in listed.stderr
    assert '[workers.api-multi] bindings = { api-usage = "BINDING" }' in listed.stderr
    doctor = json.loads(dream("doctor", str(guide_set), "--json").stdout)
    assert [f["problem"][:61] for f in doctor["findings"] if f["check"] == "bindings"] == [
        "none of api-multi's KV bindings was recognised as api-usage ("
    ]
    (guide_set / "dream.toml").write_text(
        (guide_set / "dream.toml")
        .read_text()
        .replace('folder = "customers-api"', 'folder = "customers-api"\nbindings = { api-usage = "END_USER_USAGE" }')
    )
    assert dream("--store", f"wrangler:{guide_set}", "kv", "list", "--ns", "api-usage").exit_code == 0


def test_two_readings_that_disagree_are_refused_with_both(tmp_path):
    project = copy_workers(tmp_path / "workers")
    config = project / "api-multi" / "wrangler.toml"
    # api-multi's TOKENS_KV by name is api-tokens, but the id it binds is the guide's id for... its usage namespace
    config.write_text(
        config.read_text().replace("a9f3331b0c8b48d58c32896482484208", "10cc8b9f46f54a6e8d89448f978aaa1f")
    )
    with pytest.raises(UsageError) as refused:
        open_project(project)
    said = str(refused.value)
    assert "binding name TOKENS_KV says api-tokens but the guide's id for api-usage says api-usage" in said


def test_a_declared_folder_that_holds_no_worker_is_refused(guide_set):
    (guide_set / "dream.toml").write_text('[workers.api-multi]\nfolder = "nowhere"\n')
    with pytest.raises(UsageError, match="folder .*nowhere holds none of the workers found"):
        open_project(guide_set)


def test_dream_toml_is_found_from_the_project_up(guide_set, tmp_path):
    assert load_workers_config(guide_set / "platform").source == guide_set / "dream.toml"
    assert load_workers_config(tmp_path / "elsewhere") == WorkersConfig()


def _fake_wrangler(folder: Path, version: str) -> Path:
    package = folder / "node_modules" / "wrangler"
    (package / "bin").mkdir(parents=True)
    (package / "package.json").write_text(json.dumps({"version": version}))
    (package / "bin" / "wrangler.js").write_text("")
    (folder / "node_modules" / ".bin").mkdir()
    (folder / "node_modules" / ".bin" / "wrangler").symlink_to(package / "bin" / "wrangler.js")
    return folder / "node_modules" / ".bin" / "wrangler"


def test_wrangler_is_found_in_the_workers_own_folder_first_and_its_version_checked(tmp_path, monkeypatch):
    project, worker = tmp_path / "project", tmp_path / "project" / "api"
    worker.mkdir(parents=True)
    at_project = _fake_wrangler(project, "4.20.0")
    assert find_wrangler(project, worker) == at_project  # none in the worker's folder: the project's
    own = _fake_wrangler(worker, "4.86.0")
    assert find_wrangler(project, worker) == own
    old = tmp_path / "old"
    old.mkdir()
    _fake_wrangler(old, "3.114.0")
    with pytest.raises(UsageError, match=r"is wrangler 3\.114\.0; dream runs wrangler 4\.x \(tested with 4\.86\.0\)"):
        find_wrangler(old)
    bare = tmp_path / "bare"
    bare.mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    monkeypatch.setattr("dreamcli.stores.wrangler_cli._CACHE", tmp_path / "no-cache")
    with pytest.raises(NotFound, match=rf"`npm install --save-dev wrangler@4` in {bare}"):
        find_wrangler(bare)


def test_the_vendor_shim_routes_only_the_vendors_hosts_and_keeps_every_export(tmp_path):
    entry = write_entry(
        tmp_path, "api-multi", tmp_path / "src" / "index.ts", {"stripe": "http://127.0.0.1:1", "clerk": "http://c:2"}
    )
    text = entry.read_text()
    assert f'export * from "{tmp_path}/src/index.ts";' in text and "export { default } from" in text
    assert text.index("-vendors.mjs") < text.index("export")  # the shim is evaluated before the worker's modules
    shim = (tmp_path / "api-multi-vendors.mjs").read_text()
    hosts = json.loads(shim.split("const HOSTS = ")[1].split(";\n")[0])
    assert hosts == {
        "api.stripe.com": "http://127.0.0.1:1",
        "connect.stripe.com": "http://127.0.0.1:1",
        "api.clerk.com": "http://c:2",
    }
    assert oct(entry.stat().st_mode & 0o777) == "0o600"


def test_the_emulated_connect_sends_the_developer_to_the_redirect_uri_dream_dev_registers(tmp_path):
    from emulator.app import Emulator

    emulator = Emulator(tmp_path / "vendors.db")
    stripe = emulator.stripe
    client_id = stripe.config()["client_id"]
    assert stripe.oauth_authorize({"client_id": client_id, "state": "s"}).startswith("http://localhost:8789/callback?")
    stripe.set_connect_redirect_uri("http://127.0.0.1:5555/oauth/done")
    again = Emulator(tmp_path / "vendors.db").stripe  # another process reading the same store
    assert again.oauth_authorize({"client_id": client_id, "state": "s"}).startswith("http://127.0.0.1:5555/oauth/done?")
    given = again.oauth_authorize({"client_id": client_id, "redirect_uri": "http://x/cb"})
    assert given.startswith("http://x/cb?")


def test_the_readme_lists_the_contract_the_flow_drives():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    table = readme.split("### The workers' contract")[1].split("\n## ")[0]
    for route in GUIDE_CONTRACT:
        row = next(line for line in table.splitlines() if line.startswith(f"| {route.step} | {route.worker} |"))
        assert f"`{route.method} {route.path}" in row, row


def test_a_failed_request_shows_its_query_names_not_a_connect_code():
    import httpx

    from dreamcli.platform.flow_http import _answer

    request = httpx.Request("GET", "http://127.0.0.1:8789/callback?code=ac_live_secret&state=s3cr3t")
    shown = _answer(httpx.Response(409, text='{"error":"no platform id"}', request=request))
    assert shown == 'GET http://127.0.0.1:8789/callback?code=...&state=... -> 409 {"error":"no platform id"}'
