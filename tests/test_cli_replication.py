"""`dream kv verify` and `dream kv repair` through the CLI, starting with the guide's own bug."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dreamcli.errors import ExitCode
from dreamcli.platform.secrets import hash_secret


def test_the_guides_bug_found_repaired_and_the_call_succeeds(dream):
    run = dream("flow", "run", "--fault", "skip-api-replication", "--json")
    assert run.exit_code == ExitCode.FAILED
    report = json.loads(run.stdout)
    secret, pk, plt = report["secretKey"], report["publishableKey"], report["platformId"]
    failed = dream("flow", "call", input=secret)
    assert failed.exit_code == ExitCode.FAILED
    assert failed.stderr == (
        f"error: Invalid API key: API key not found or expired "
        f"(api-tokens has no secretkey:{hash_secret(secret)}:publishableKey)\n"
    )

    verify = dream("kv", "verify", "--json")
    assert verify.exit_code == ExitCode.FAILED
    findings = json.loads(verify.stdout)["findings"]
    assert {(f["class"], f["namespace"], f["key"]) for f in findings} == {
        ("missing", "api-tokens", f"secretkey:{hash_secret(secret)}:publishableKey"),
        ("missing", "api-tokens", f"publishablekey:{pk}:platformId"),
        ("missing", "api-tokens", f"platform:{plt}:tierConfig"),
    }
    assert all(f["platform"] == plt for f in findings) and secret not in verify.stdout

    refused = dream("kv", "repair")  # no terminal, no --yes: a script never changes data by accident
    assert refused.exit_code == ExitCode.USAGE and "refused without --yes" in refused.stderr
    plan = dream("kv", "repair", "--plan", "--json")  # the plan only: exit 0, on stdout
    assert plan.exit_code == 0 and len(json.loads(plan.stdout)["plan"]["actions"]) == 3
    assert dream("kv", "verify").exit_code == ExitCode.FAILED  # nothing applied
    repaired = dream("kv", "repair", "--yes")
    assert repaired.exit_code == 0, repaired.stderr
    assert "applied 3 actions; verify now finds 0" in repaired.stderr
    assert dream("kv", "verify").exit_code == 0
    ok = dream("flow", "call", input=secret)
    assert ok.exit_code == 0 and ok.stdout == f"ok\t{pk}\t{plt}\tfree,pro,enterprise\n"
    # the rebuilt tier config is the one the flow wrote (from Stripe, its source)
    config = json.loads(dream("kv", "get", f"platform:{plt}:tierConfig", "--ns", "api-tokens").stdout)
    assert [(t["name"], t["limit"], t["price"], t["features"]) for t in config["tiers"]] == [
        ("free", 100, 0, "Community support"),
        ("pro", 10000, 29, "Email support"),
        ("enterprise", None, 99, "Dedicated support"),
    ]
    again = dream("kv", "repair", "--yes")
    assert again.exit_code == 0 and "nothing to repair" in again.stderr


def test_verify_of_a_clean_flow_and_filters(dream):
    data = dream.json("flow", "run", "--json")
    clean = dream("kv", "verify")
    assert (
        clean.exit_code == 0 and clean.stdout == "" and clean.stderr.startswith("clean: 12 keys checked")
    )  # a note, not data: stderr
    dream("kv", "delete", f"publishablekey:{data['publishableKey']}:platformId", "--ns", "api-tokens")
    only = json.loads(dream("kv", "verify", "--class", "stale", "--json").stdout)
    assert only["findings"] == [] and only["clean"] is True
    other = dream("kv", "verify", "--platform", "plt_other", "--json")  # a typo is not "clean"
    assert other.exit_code == ExitCode.NOT_FOUND and "no platform plt_other" in other.stderr
    mine = dream("kv", "verify", "--platform", data["platformId"])
    assert mine.exit_code == ExitCode.FAILED and data["platformId"] in mine.stdout and "missing" in mine.stdout
    bad = dream("kv", "verify", "--class", "weird")
    assert bad.exit_code == ExitCode.USAGE and "unknown class 'weird'" in bad.stderr


def test_orphans_need_prune_and_plaintext_needs_its_flag(dream):
    data = dream.json("flow", "run", "--json", "--mimic-plaintext-secret")
    dream("kv", "put", "publishablekey:pk_live_ghost:platformId", data["platformId"], "--ns", "api-tokens")
    found = json.loads(dream("kv", "verify", "--json").stdout)["findings"]
    assert {(f["class"], f["key"]) for f in found} == {
        ("orphaned", "publishablekey:pk_live_ghost:platformId"),
        ("insecure", f"user:{data['userId']}:secretKey"),
    }
    insecure = next(f for f in found if f["class"] == "insecure")
    assert insecure["expected"] is None and insecure["actual"] is None and data["secretKey"] not in json.dumps(found)
    partial = dream("kv", "repair", "--yes")
    assert partial.exit_code == ExitCode.FAILED and "deletes only with --prune" in partial.stderr
    full = dream("kv", "repair", "--yes", "--prune", "--remove-plaintext-secrets")
    assert full.exit_code == 0, full.stderr
    assert dream("kv", "verify").exit_code == 0
    assert dream("flow", "call", input=data["secretKey"]).exit_code == 0


def test_corrupt_values_are_reported_not_guessed(dream):
    data = dream.json("flow", "run", "--json")
    dream("kv", "put", f"user:{data['userId']}:products", "{not json", "--ns", "platform-tokens")
    result = dream("kv", "repair", "--yes")
    assert result.exit_code == ExitCode.FAILED
    assert "reported, not guessed at" in result.stderr
    assert dream("kv", "get", f"user:{data['userId']}:products", "--ns", "platform-tokens").stdout == "{not json"


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP"])
def test_verify_killed_by_a_signal_leaves_no_snapshot_behind(tmp_path, sig):
    """SIGTERM (a kill) or SIGHUP (the terminal closed) mid-verify: its snapshot of the token namespaces is removed
    (up to 121 MB each, secrets included), the run ends as interrupted (130)."""
    import signal
    import subprocess
    import sys
    import time

    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {**os.environ, "DREAM_STORE": str(tmp_path / "big.db"), "TMPDIR": str(temp)}
    dream = str(Path(sys.executable).with_name("dream"))
    subprocess.run([dream, "seed", "--platforms", "30000", "--keys-only"], env=env, check=True, capture_output=True)
    verify = subprocess.Popen([dream, "kv", "verify"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60  # a guard against a hang only
    while not list(temp.glob("dream-verify-*")) and verify.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert list(temp.glob("dream-verify-*")), "verify finished before its snapshot was seen"
    verify.send_signal(getattr(signal, sig))
    _, err = verify.communicate(timeout=60)
    assert verify.returncode == 130, err
    left = list(temp.glob("dream-verify-*"))  # named, with what is in them, if any is left
    assert left == [], (verify.pid, [sorted(p.name for p in f.iterdir()) for f in left])


def test_verify_imports_no_logging_whose_fork_handlers_would_swallow_a_signal(tmp_path, dream):
    """logging registers fork handlers; a Ctrl-C or SIGHUP landing in the parent's one as verify forks its snapshot
    builder is printed as "Exception ignored" and lost (verify then ran to the end, exit 0: seen once on this
    machine). verify's process must not import it."""
    import subprocess
    import sys

    assert dream("flow", "run").exit_code == 0
    code = (
        "import sys\n"
        f"sys.argv = ['dream', '--store', {str(tmp_path / 'store.db')!r}, 'kv', 'verify']\n"
        "from dreamcli.cli.app import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('logging' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False", out.stdout + out.stderr


def test_verify_clears_the_snapshots_killed_runs_left(tmp_path, dream, monkeypatch, empty_store):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = tmp_path / "dream-verify-999999999-abc"  # no such process
    alive = tmp_path / f"dream-verify-{os.getpid()}-def"  # a run still going
    for folder in (dead, alive):
        folder.mkdir()
        (folder / "scan.sqlite").write_bytes(b"copies of the token namespaces")
    assert dream("kv", "verify").exit_code == 0
    assert not dead.exists() and alive.exists()


def test_machine_formats_are_one_table_a_csv_reader_takes(dream):
    """Verify and the repair plan piped as csv/tsv: one header, every record the same fields, notes on stderr."""
    import csv
    import io

    for _ in range(3):
        assert dream("flow", "run", "--fault", "skip-api-replication").exit_code == ExitCode.FAILED
    found = dream("kv", "verify", "--format", "csv")
    rows = list(csv.reader(io.StringIO(found.stdout)))
    assert rows[0] == ["platform", "class", "namespace", "key", "problem", "expected", "actual"]
    assert len(rows) == 1 + 9 and all(len(row) == 7 for row in rows) and rows.count(rows[0]) == 1
    assert len({row[0] for row in rows[1:]}) == 3 and "9 findings" in found.stderr
    plan = dream("kv", "repair", "--plan", "--format", "tsv")
    lines = [line.split("\t") for line in plan.stdout.splitlines()]
    assert lines[0] == ["#", "phase", "action", "namespace", "key", "because"]
    assert len(lines) == 1 + 9 and all(len(line) == 6 for line in lines)


def test_repair_without_a_terminal_or_yes_is_refused_with_exit_2_as_the_readme_says(dream):
    assert dream("flow", "run", "--fault", "skip-api-replication").exit_code == ExitCode.FAILED
    refused = dream("kv", "repair")
    assert refused.exit_code == ExitCode.USAGE and "refused without --yes" in refused.stderr
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert "with no terminal to ask and no `--yes` it is refused, exit 2" in readme


def test_corrupt_counts_in_api_usage_found_and_repaired_as_the_operator_decides(dream):
    """A usage record or rate bucket that is not what api-multi writes makes each of that end-user's calls a 409:
    verify reports both; repair deletes the bucket, and the month only with --reset-corrupt-usage."""
    plt = dream.json("flow", "run", "--json")["platformId"]
    month, bucket, fine = f"usage:{plt}:user_a", f"ratelimit:{plt}:user_b:29000000", f"usage:{plt}:user_c"
    dream("kv", "put", month, '{"usageCount": "12"}', "--ns", "api-usage")
    dream("kv", "put", bucket, "abc", "--ns", "api-usage")
    dream("kv", "put", fine, '{"usageCount": 3, "plan": "free"}', "--ns", "api-usage")
    verify = dream("kv", "verify", "--json")
    assert verify.exit_code == ExitCode.FAILED
    report = json.loads(verify.stdout)
    found = {(f["class"], f["namespace"], f["key"], f["platform"], f["repair"]["needs"]) for f in report["findings"]}
    assert found == {
        ("corrupt", "api-usage", month, plt, "reset-corrupt-usage"),
        ("corrupt", "api-usage", bucket, plt, None),
    }
    assert report["summary"]["keys_scanned"] == 12 + 3  # the 12 token keys of a clean flow, and the three counts
    assert dream("kv", "verify", "--no-usage").exit_code == 0  # the token namespaces alone are clean

    repaired = dream("kv", "repair", "--yes", "--json")
    assert repaired.exit_code == ExitCode.FAILED  # the month is left: it needs the operator's word
    after = json.loads(repaired.stdout)
    assert after["applied"] == 1 and after["after"]["findings"] == 1
    assert [(s["key"], s["why"]) for s in after["plan"]["skipped"]] == [
        (month, "a corrupt month is deleted (its count starts at 0) only with --reset-corrupt-usage")
    ]
    assert dream("kv", "get", bucket, "--ns", "api-usage").exit_code == ExitCode.NOT_FOUND
    assert dream("kv", "repair", "--yes", "--reset-corrupt-usage").exit_code == 0
    assert dream("kv", "get", month, "--ns", "api-usage").exit_code == ExitCode.NOT_FOUND
    assert json.loads(dream("kv", "get", fine, "--ns", "api-usage").stdout)["usageCount"] == 3  # untouched
    assert dream("kv", "verify").exit_code == 0


@pytest.mark.parametrize("count", [0, 1, 3])
def test_verify_json_is_streamed_byte_for_byte_as_one_document(capsys, count):
    """verify --json writes its findings one by one (100,000 at a million platforms tripled its memory as one
    string), and the bytes are those of the whole document dumped at once."""
    from dreamcli.cli.context import print_json, print_json_streamed

    items = [{"class": "missing", "key": f"k{i}", "nested": {"a": [1, "é"]}, "none": None} for i in range(count)]
    head = {"clean": count == 0, "summary": {"findings": count, "by_class": {"missing": count}}}
    print_json({**head, "findings": items})
    whole = capsys.readouterr().out
    print_json_streamed(head, "findings", iter(items))
    assert capsys.readouterr().out == whole
