"""`dream kv` through the real CLI: output, exit codes and every error path."""

from __future__ import annotations

import base64
import json
import sqlite3

import pytest

from dreamcli.errors import ExitCode


def test_put_then_get_prints_the_raw_value(dream):
    put = dream("kv", "put", "user:u1:platformId", "plt_1", "--ns", "platform-tokens")
    assert put.exit_code == 0
    assert put.stdout == ""
    assert put.stderr == "wrote 'user:u1:platformId' to platform-tokens (5 bytes)\n"
    got = dream("kv", "get", "user:u1:platformId", "--ns", "platform-tokens")
    assert (got.exit_code, got.stdout) == (0, "plt_1")


def test_namespace_by_id(dream):
    assert dream("kv", "put", "k", "v", "--ns", "a9f3331b0c8b48d58c32896482484208").exit_code == 0
    assert dream("kv", "get", "k", "--ns", "api-tokens").stdout == "v"


def test_binary_value_from_stdin_and_file(dream, tmp_path):
    payload = bytes(range(256))
    assert dream("kv", "put", "bin", "--ns", "api-usage", input=payload).exit_code == 0
    got = dream("kv", "get", "bin", "--ns", "api-usage")
    assert got.stdout_bytes == payload
    source = tmp_path / "blob"
    source.write_bytes(payload[::-1])
    assert dream("kv", "put", "bin2", "--ns", "api-usage", "--file", str(source)).exit_code == 0
    assert dream("kv", "get", "bin2", "--ns", "api-usage").stdout_bytes == payload[::-1]
    as_json = dream.json("kv", "get", "bin", "--ns", "api-usage", "--json")
    assert base64.b64decode(as_json["value_base64"]) == payload


def test_get_json_has_metadata_and_expiration(dream):
    env = {"DREAM_NOW": "1800000000"}
    assert (
        dream("kv", "put", "k", "v", "--ns", "api-tokens", "--metadata", '{"a": 1}', "--ttl", "120", env=env).exit_code
        == 0
    )
    data = dream.json("kv", "get", "k", "--ns", "api-tokens", "--json", env=env)
    assert data == {
        "schemaVersion": 1,
        "key": "k",
        "namespace": "api-tokens",
        "value": "v",
        "metadata": {"a": 1},
        "expiration": 1800000120,
    }
    # the global --json works too
    assert dream.json("--json", "kv", "get", "k", "--ns", "api-tokens", env=env)["value"] == "v"


def test_expired_key_is_not_found(dream):
    dream("kv", "put", "k", "v", "--ns", "api-tokens", "--ttl", "60", env={"DREAM_NOW": "1800000000"})
    result = dream("kv", "get", "k", "--ns", "api-tokens", env={"DREAM_NOW": "1800000060"})
    assert result.exit_code == ExitCode.NOT_FOUND


def test_secret_values_need_reveal(dream):
    dream("kv", "put", "user:u1:secretKey", "sk_live_plain", "--ns", "platform-tokens")
    hidden = dream("kv", "get", "user:u1:secretKey", "--ns", "platform-tokens")
    assert hidden.exit_code == ExitCode.USAGE
    assert "holds a secret; pass --reveal" in hidden.stderr and "sk_live_plain" not in hidden.stdout + hidden.stderr
    bulk = dream.json("kv", "bulk-get", "user:u1:secretKey", "--ns", "platform-tokens", "--json")
    assert bulk["values"]["user:u1:secretKey"]["redacted"] is True
    assert "sk_live_plain" not in json.dumps(bulk)
    shown = dream("kv", "get", "user:u1:secretKey", "--ns", "platform-tokens", "--reveal")
    assert shown.stdout == "sk_live_plain"


def test_delete(dream):
    dream("kv", "put", "k", "v", "--ns", "api-tokens")
    first = dream("kv", "delete", "k", "--ns", "api-tokens")
    assert (first.exit_code, first.stderr) == (0, "deleted 'k' from api-tokens\n")
    again = dream("kv", "delete", "k", "--ns", "api-tokens")
    assert (again.exit_code, again.stderr) == (0, "'k' was not in api-tokens; nothing to delete\n")


def _put_many(dream, n, tmp_path, prefix="k"):
    pairs = [{"key": f"{prefix}{i:03}", "value": str(i)} for i in range(n)]
    source = tmp_path / "pairs.json"
    source.write_text(json.dumps(pairs))
    result = dream("kv", "bulk-put", str(source), "--ns", "api-tokens")
    assert result.exit_code == 0, result.stderr
    return result


def test_list_pages_and_all(dream, tmp_path):
    _put_many(dream, 25, tmp_path)
    page = dream("kv", "list", "--ns", "api-tokens", "--limit", "10")
    assert page.stdout.splitlines() == [f"k{i:03}" for i in range(10)]
    assert "more keys follow: --cursor " in page.stderr
    cursor = page.stderr.rsplit(" ", 1)[1].strip()
    nxt = dream.json("kv", "list", "--ns", "api-tokens", "--limit", "10", "--cursor", cursor, "--json")
    assert [key["name"] for key in nxt["keys"]] == [f"k{i:03}" for i in range(10, 20)]
    assert nxt["list_complete"] is False
    everything = dream("kv", "list", "--ns", "api-tokens", "--all", "--limit", "10")
    assert everything.stdout.splitlines() == [f"k{i:03}" for i in range(25)]
    as_json = dream.json("kv", "list", "--ns", "api-tokens", "--all", "--json", "--prefix", "k02")
    assert as_json == [{"name": f"k{i:03}"} for i in range(20, 25)]


def test_list_all_json_of_nothing_is_an_empty_array(dream, empty_store):
    assert dream.json("kv", "list", "--ns", "api-tokens", "--all", "--json") == []


def test_bulk_put_base64_metadata_and_bulk_get(dream, tmp_path):
    source = tmp_path / "pairs.json"
    source.write_text(
        json.dumps(
            [
                {"key": "a", "value": "1", "metadata": {"m": True}},
                {"key": "b", "value": base64.b64encode(b"\xff\x00").decode(), "base64": True},
            ]
        )
    )
    assert dream("kv", "bulk-put", str(source), "--ns", "api-tokens").stderr == "wrote 2 keys to api-tokens\n"
    got = dream.json("kv", "bulk-get", "a", "b", "zz", "--ns", "api-tokens", "--json")
    assert got["values"]["a"]["value"] == "1" and got["values"]["a"]["metadata"] == {"m": True}
    assert got["values"]["b"]["value_base64"] == base64.b64encode(b"\xff\x00").decode()
    assert got["values"]["zz"] is None
    table = dream("kv", "bulk-get", "a", "zz", "--ns", "api-tokens")
    assert table.stdout == "a\t1\nzz\t(missing)\n"


def test_bulk_put_from_stdin_and_over_10000_pairs(dream):
    pairs = [{"key": f"k{i:05}", "value": "v"} for i in range(10_050)]
    result = dream("kv", "bulk-put", "-", "--ns", "api-usage", input=json.dumps(pairs))
    assert result.exit_code == 0
    assert result.stderr == "wrote 10050 keys to api-usage\n"  # no progress off a terminal: one line
    assert len(dream.json("kv", "list", "--ns", "api-usage", "--all", "--json")) == 10_050


def test_bulk_delete_from_args_and_file(dream, tmp_path):
    _put_many(dream, 5, tmp_path)
    assert dream("kv", "bulk-delete", "k000", "k001", "--ns", "api-tokens", "--yes").exit_code == 0
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps(["k002", "nope"]))
    result = dream("kv", "bulk-delete", "--file", str(keys), "--ns", "api-tokens", "--yes")
    assert (result.exit_code, result.stderr) == (0, "deleted 2 keys from api-tokens\n")
    assert dream("kv", "list", "--ns", "api-tokens").stdout.splitlines() == ["k003", "k004"]


def test_explain_follows_pointers(dream):
    dream("kv", "put", "publishablekey:pk_1:platformId", "plt_1", "--ns", "api-tokens")
    dream("kv", "put", "platform:plt_1:tierConfig", '{"tiers": []}', "--ns", "api-tokens")
    report = dream.json("kv", "explain", "publishablekey:pk_1:platformId", "--json")
    assert report["kind"] == "publishable-key-platform"
    assert report["guide_namespaces"] == ["platform-tokens", "api-tokens"]
    present = {entry["namespace"]: entry["present"] for entry in report["found"]}
    assert present == {"platform-tokens": False, "platform-usage": False, "api-tokens": True, "api-usage": False}
    assert {(t["key"], t["present"]) for t in report["points_to"]} == {
        ("platform:plt_1:userId", False),
        ("platform:plt_1:tierConfig", True),
    }
    table = dream("kv", "explain", "publishablekey:pk_1:platformId")
    assert "publishable-key-platform" in table.stdout and "MISSING" in table.stdout


def test_explain_unknown_and_secret_keys(dream, empty_store):
    unknown = dream.json("kv", "explain", "whatever:this:is", "--json")
    assert unknown["kind"] == "unknown" and unknown["note"] == "not a key of the guide's schema"
    dream("kv", "put", "user:u:secretKey", "sk_live_plain", "--ns", "platform-tokens")
    secret = dream("kv", "explain", "user:u:secretKey")
    assert "sk_live_plain" not in secret.stdout and "(secret)" in secret.stdout


# Bad input: one line, the documented exit code, nothing written.


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (
            ["kv", "get", "k", "--ns", "nope"],
            ExitCode.NOT_FOUND,
            "error: unknown namespace 'nope' (known: platform-tokens",
        ),
        (
            ["kv", "get", "missing", "--ns", "api-tokens"],
            ExitCode.NOT_FOUND,
            "error: key 'missing' not found in api-tokens",
        ),
        (
            ["kv", "put", "k" * 513, "v", "--ns", "api-tokens"],
            ExitCode.USAGE,
            "error: UTF-8 encoded length of 513 exceeds key length limit of 512.",
        ),
        (
            ["kv", "put", "k", "v", "--ns", "api-tokens", "--metadata", "{bad"],
            ExitCode.USAGE,
            "error: --metadata is not valid JSON: Expecting property name",
        ),
        (
            ["kv", "put", "k", "v", "--ns", "api-tokens", "--metadata", json.dumps({"a": "x" * 2000})],
            ExitCode.USAGE,
            "error: Metadata length of 2008 exceeds limit of 1024.",
        ),
        (
            ["kv", "put", "k", "v", "--ns", "api-tokens", "--ttl", "59"],
            ExitCode.USAGE,
            "error: Invalid expiration_ttl of 59. Expiration TTL must be at least 60.",
        ),
        (
            ["kv", "put", "k", "v", "--ns", "api-tokens", "--expiration", "5"],
            ExitCode.USAGE,
            "error: Invalid expiration of 5.",
        ),
        (
            ["kv", "put", "k", "v", "--ns", "api-tokens", "--file", "absent.bin"],
            ExitCode.USAGE,
            "error: give the value as an argument or with --file, not both",
        ),
        (
            ["kv", "put", "k", "--ns", "api-tokens", "--file", "absent.bin"],
            ExitCode.USAGE,
            "error: cannot read --file absent.bin",
        ),
        (["kv", "list", "--ns", "api-tokens", "--limit", "5"], ExitCode.USAGE, "error: Invalid limit of 5."),
        (
            ["kv", "list", "--ns", "api-tokens", "--cursor", "garbage"],
            ExitCode.USAGE,
            "error: Invalid cursor 'garbage'",
        ),
        (
            ["kv", "bulk-get", "--ns", "api-tokens"],
            ExitCode.USAGE,
            "error: no keys: give them as arguments or with --file",
        ),
        (
            ["kv", "bulk-put", "absent.json", "--ns", "api-tokens"],
            ExitCode.USAGE,
            "error: cannot read bulk file absent.json",
        ),
        (
            ["--store", "nosuch:thing", "kv", "list", "--ns", "api-tokens"],
            ExitCode.USAGE,
            "error: unknown store kind 'nosuch'",
        ),
    ],
)
def test_bad_input_is_one_line_with_its_exit_code(dream, empty_store, args, code, message):
    result = dream(*args)
    assert result.exit_code == code
    assert result.stderr.startswith(message), result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert dream("kv", "list", "--ns", "api-tokens").stdout == ""


def test_metadata_too_large_writes_nothing(dream):
    big = json.dumps({"a": "x" * 2000})
    assert dream("kv", "put", "k", "v", "--ns", "api-tokens", "--metadata", big).exit_code == ExitCode.USAGE
    assert dream("kv", "get", "k", "--ns", "api-tokens").exit_code == ExitCode.NOT_FOUND


def test_missing_ns_is_a_usage_error(dream):
    result = dream("kv", "list")
    assert result.exit_code == ExitCode.USAGE and "Missing option '--ns'" in result.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "{not json",
            "error: bulk file pairs.json is not valid JSON: Expecting property name enclosed in double quotes at line 1 column 2",
        ),
        ('{"key": "a"}', "error: bulk file must hold a JSON array"),
        ('[{"key": "a", "value": "1"}, {"key": "b"}]', "error: item 1: key and value must both be strings"),
        ('[{"key": "a", "value": "1", "colour": "red"}]', "error: item 0: unknown field(s) colour"),
        ('[{"key": "a", "value": "@@", "base64": true}]', "error: item 0 ('a'): value is not valid base64"),
        ('[{"key": "ok", "value": "1"}, {"key": "..", "value": "1"}]', "error: item 1 ('..'): Illegal key name"),
        (
            '[{"key": "ok", "value": "1"}, {"key": "t", "value": "1", "expiration_ttl": 10}]',
            "error: item 1 ('t'): Invalid expiration_ttl of 10",
        ),
    ],
)
def test_bad_bulk_files_write_nothing(dream, tmp_path, content, message):
    (tmp_path / "pairs.json").write_text(content)
    result = dream("kv", "bulk-put", "pairs.json", "--ns", "api-tokens")
    assert result.exit_code == ExitCode.USAGE
    assert result.stderr.startswith(message), result.stderr
    assert dream("kv", "list", "--ns", "api-tokens").stdout == ""


def test_corrupt_store_file(dream, tmp_path):
    bad = tmp_path / "corrupt.db"
    bad.write_bytes(b"garbage" * 1000)
    result = dream("--store", str(bad), "kv", "list", "--ns", "api-tokens")
    assert result.exit_code == ExitCode.FAILED
    assert result.stderr == (
        f"error: {bad} is not a dream store (not a SQLite database: another file, or a corrupt store): refused, "
        "nothing changed; move it aside to start a new one\n"
    )
    assert bad.read_bytes() == b"garbage" * 1000


def test_locked_store_file(dream, tmp_path):
    path = tmp_path / "store.db"
    assert dream("kv", "put", "k", "v", "--ns", "api-tokens").exit_code == 0
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        result = dream("kv", "put", "k", "new", "--ns", "api-tokens", env={"DREAM_BUSY_TIMEOUT": "0.2"})
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.exit_code == ExitCode.FAILED
    assert result.stderr == f"error: store {path} is locked by another process (waited 0.2 s); try again\n"
    assert dream("kv", "get", "k", "--ns", "api-tokens").stdout == "v"


def test_store_option_takes_emulator_prefix(dream, tmp_path):
    target = tmp_path / "elsewhere" / "e.db"
    assert dream("--store", f"emulator:{target}", "kv", "put", "k", "v", "--ns", "api-tokens").exit_code == 0
    assert target.exists()


def test_reading_a_store_that_does_not_exist_is_not_found_and_makes_nothing(dream, tmp_path):
    """A CI gate with a typo in --store must fail, not pass on an empty store it made."""
    typo = tmp_path / "typo" / "store.db"
    for args in (
        ["kv", "verify"],
        ["kv", "list", "--ns", "api-tokens"],
        ["customers", "list", "-p", "plt_abc"],
        ["d1", "execute", "--command", "SELECT 1"],
        ["flow", "status"],
    ):
        result = dream("--store", f"emulator:{typo}", *args)
        assert result.exit_code == ExitCode.NOT_FOUND, (args, result.stderr)
        assert f"no store at {typo}" in result.stderr
    assert not (tmp_path / "typo").exists()
    made = dream("--store", f"emulator:{typo}", "kv", "put", "k", "v", "--ns", "api-usage")  # a write makes it
    assert made.exit_code == 0 and typo.exists()


def test_unknown_platform_ids_are_not_found_everywhere(dream):
    dream.json("flow", "run", "--json")
    for args in (
        ["kv", "verify", "--platform", "plt_typo"],
        ["customers", "list", "-p", "plt_typo"],
        ["dashboard", "-p", "plt_typo"],
        ["usage", "show", "-p", "plt_typo"],
    ):
        result = dream(*args)
        assert result.exit_code == ExitCode.NOT_FOUND, (args, result.stdout, result.stderr)
