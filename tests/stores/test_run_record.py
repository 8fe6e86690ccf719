"""`dream dev` writes down what it starts (.dream/dev.json): when dream and its reaper were both killed, the next run
stops what the earlier one left in the project and removes its private folders, and nothing else; while an earlier
run still runs, a second one is refused."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from dreamcli.errors import UsageError
from dreamcli.platform.devserver import DevPlatform
from dreamcli.stores.wrangler_cli import RunRecord, _alive


def a_dead_pid() -> int:
    done = subprocess.Popen(["true"])
    done.wait()
    return done.pid


def sleeper(cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sleep", "60"], cwd=cwd, start_new_session=True)


def test_what_a_killed_run_left_is_stopped_and_nothing_else(tmp_path, monkeypatch):
    project, elsewhere, temp = tmp_path / "project", tmp_path / "elsewhere", tmp_path / "tmp"
    for folder in (project, elsewhere, temp):
        folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    private = Path(tempfile.mkdtemp(prefix="dream-dev-"))
    not_ours = tmp_path / "keep-me"
    not_ours.mkdir()
    left, unrelated = sleeper(project), sleeper(elsewhere)  # the second stands for a group id reused since
    try:
        record = project / ".dream" / "dev.json"
        record.parent.mkdir()
        record.write_text(
            json.dumps(
                {"dream": a_dead_pid(), "groups": [left.pid, unrelated.pid], "folders": [str(private), str(not_ours)]}
            )
        )
        run = RunRecord(record, project)
        assert run.running() is None
        assert run.clear_leftovers() == (1, 1)
        left.wait(timeout=10)
        assert not _alive(left.pid)
        assert unrelated.poll() is None  # not in the project: left alone
        assert not private.exists() and not_ours.exists()  # only dream's own temporary folder goes
        assert not record.exists()
        assert run.clear_leftovers() == (0, 0)  # nothing recorded any more
    finally:
        for process in (left, unrelated):
            process.kill()
            process.wait()


def test_a_second_dream_dev_on_a_running_ones_project_is_refused(tmp_path):
    project = tmp_path / "project"
    (project / ".dream").mkdir(parents=True)
    fake = tmp_path / "bin" / "dream"  # a running process whose command line is `dream dev ...` all along
    fake.parent.mkdir()
    fake.write_text(f"#!{sys.executable}\nimport time\ntime.sleep(60)\n")  # (a shell may exec `sleep` in its place)
    fake.chmod(0o755)
    running = subprocess.Popen([str(fake), "dev", str(project)])
    try:
        (project / ".dream" / "dev.json").write_text(json.dumps({"dream": running.pid, "groups": [], "folders": []}))
        with pytest.raises(UsageError, match=f"another dream dev \\(process {running.pid}\\) runs"):
            DevPlatform(project, tmp_path / "vendors.db").start()
        assert (project / ".dream" / "dev.json").exists()  # the running one's record is kept
        assert not (tmp_path / "vendors.db").exists()  # nothing was started
    finally:
        running.kill()
        running.wait()


def test_a_record_that_is_not_dreams_is_no_leftover(tmp_path):
    record = tmp_path / "dev.json"
    for text in ("", "not json", "[1, 2]", '{"dream": "x"}', '{"dream": 1, "groups": "abc"}'):
        record.write_text(text)
        run = RunRecord(record, tmp_path)
        assert run.running() is None
        assert run.clear_leftovers() == (0, 0)
