"""`dream d1` through the real CLI."""

from __future__ import annotations

import sqlite3

from dreamcli.errors import ExitCode


def test_execute_with_params_and_json(dream):
    assert (
        dream("d1", "execute", "--command", "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, n INTEGER)").exit_code
        == 0
    )
    inserted = dream.json(
        "d1", "execute", "-c", "INSERT INTO t (name, n) VALUES (?, ?)", "--param", "ann", "--param", "42", "--json"
    )
    assert inserted[0]["meta"]["changes"] == 1 and inserted[0]["meta"]["last_row_id"] == 1
    rows = dream.json("d1", "execute", "-c", "SELECT name, n FROM t WHERE n = ?", "--param", "42", "--json")
    assert rows[0]["results"] == [{"name": "ann", "n": 42}]
    table = dream("d1", "execute", "-c", "SELECT name, n FROM t")
    assert "ann" in table.stdout and "42" in table.stdout
    assert table.stderr.startswith("1 row, 0 changes")


def test_execute_file_runs_a_batch(dream, tmp_path):
    script = tmp_path / "s.sql"
    script.write_text("CREATE TABLE a (x TEXT); INSERT INTO a VALUES ('1;2'); -- comment; here\nSELECT x FROM a;")
    results = dream.json("d1", "execute", "--file", str(script), "--json")
    assert len(results) == 3 and results[2]["results"] == [{"x": "1;2"}]


def test_failed_batch_rolls_back(dream):
    dream("d1", "execute", "-c", "CREATE TABLE a (x TEXT UNIQUE)")
    result = dream("d1", "execute", "-c", "INSERT INTO a VALUES ('1'); INSERT INTO a VALUES ('1')")
    assert result.exit_code == ExitCode.USAGE
    assert result.stderr == "error: UNIQUE constraint failed: a.x: SQLITE_CONSTRAINT_UNIQUE (statement 2 of 2)\n"
    assert dream.json("d1", "execute", "-c", "SELECT count(*) AS n FROM a", "--json")[0]["results"] == [{"n": 0}]


def test_d1_errors(dream, empty_store):
    cases = [
        (["d1", "execute"], ExitCode.USAGE, "error: give exactly one of --command or --file\n"),
        (["d1", "execute", "-c", "  ;; "], ExitCode.USAGE, "error: no SQL statement to run\n"),
        (["d1", "execute", "-c", "SELECT * FROM nope"], ExitCode.USAGE, "error: no such table: nope: SQLITE_ERROR\n"),
        (
            ["d1", "execute", "-c", "SELECT 1; SELECT ?", "--param", "1"],
            ExitCode.USAGE,
            "error: --param binds one statement; got 2 statements\n",
        ),
        (["d1", "execute", "-c", "SELECT * FROM _dream_kv"], ExitCode.USAGE, None),
        (
            ["d1", "migrations", "list", "--dir", "nowhere"],
            ExitCode.NOT_FOUND,
            "error: migrations folder nowhere does not exist\n",
        ),
    ]
    for args, code, message in cases:
        result = dream(*args)
        assert result.exit_code == code, (args, result.stderr)
        if message is not None:
            assert result.stderr == message
        assert "Traceback" not in result.stderr


def test_migrations_apply_like_wrangler(dream, tmp_path, empty_store):
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "0001_first.sql").write_text("CREATE TABLE one (x);")
    (folder / "0002_second.sql").write_text("CREATE TABLE two (x); INSERT INTO two VALUES (1);")
    pending = dream.json("d1", "migrations", "list", "--dir", str(folder), "--json")["migrations"]
    assert pending == [{"name": "0001_first.sql", "applied_at": None}, {"name": "0002_second.sql", "applied_at": None}]
    applied = dream("d1", "migrations", "apply", "--dir", str(folder))
    assert applied.stderr == "applied 0001_first.sql\napplied 0002_second.sql\n"
    assert applied.stdout == "2 migrations applied\n"
    again = dream("d1", "migrations", "apply", "--dir", str(folder))
    assert again.stderr == "no migrations to apply\n"
    listed = dream.json("d1", "migrations", "list", "--dir", str(folder), "--json")["migrations"]
    assert all(entry["applied_at"] for entry in listed)
    from dreamcli.topology import GUIDE_TOPOLOGY
    from emulator.schema import d1_path

    conn = sqlite3.connect(d1_path(tmp_path / "store.db", GUIDE_TOPOLOGY.database.id))
    rows = conn.execute("SELECT id, name FROM d1_migrations ORDER BY id").fetchall()
    assert rows == [(1, "0001_first.sql"), (2, "0002_second.sql")]


def test_failed_migration_leaves_no_trace(dream, tmp_path):
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "0001_ok.sql").write_text("CREATE TABLE ok (x);")
    (folder / "0002_bad.sql").write_text("CREATE TABLE half (x); INSERT INTO missing VALUES (1);")
    result = dream("d1", "migrations", "apply", "--dir", str(folder))
    assert result.exit_code == ExitCode.USAGE
    assert "error: migration 0002_bad.sql failed and was rolled back: no such table: missing" in result.stderr
    tables = dream.json("d1", "execute", "-c", "SELECT name FROM sqlite_master WHERE name IN ('ok', 'half')", "--json")
    assert tables[0]["results"] == [{"name": "ok"}]
    assert [
        m["name"]
        for m in dream.json("d1", "migrations", "list", "--dir", str(folder), "--json")["migrations"]
        if m["applied_at"]
    ] == ["0001_ok.sql"]


def test_project_migrations_apply(dream):
    result = dream("d1", "migrations", "apply")
    assert result.exit_code == 0 and "applied 0001_customers.sql" in result.stderr
    assert dream.json("d1", "execute", "-c", "SELECT count(*) AS n FROM customers", "--json")[0]["results"] == [
        {"n": 0}
    ]
