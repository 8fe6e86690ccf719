"""The CLI under a pseudo-terminal, as an operator sees it: progress with a total and an ETA, and Ctrl-C during a
repair saying how much was applied and that running it again finishes the job."""

from __future__ import annotations

import os
import pty
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

DREAM = str(Path(sys.executable).with_name("dream"))


def on_a_terminal(
    args: list[str],
    env: dict[str, str],
    cwd: Path,
    until: bytes | None = None,
    then=None,
    *,
    nice: int = 0,
    stdin_writer: bool = False,
):
    """Run dream with a pty for its stdin/stdout/stderr; optionally act (`then(process)`) once `until` is shown.
    `nice`: dream's scheduling priority below the test's, so on a busy core the test acts before dream runs on.
    SIGINT is given back its default: a test run started in a script's background inherits it ignored, and Ctrl-C
    on a terminal is what is being tested."""

    def child() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if nice:
            os.nice(nice)

    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [DREAM, *args],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=env,
        cwd=cwd,
        preexec_fn=child,
    )
    os.close(follower)
    seen = b""
    acted = False
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            chunk = os.read(leader, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
        if until and not acted and until in seen:
            if stdin_writer:
                process.stdin_fd = leader  # what the user types goes in through the terminal
            then(process)
            acted = True
    process.wait(timeout=60)
    os.close(leader)
    return process.returncode, seen.decode(errors="replace")


@pytest.fixture
def seeded(tmp_path):
    store = tmp_path / "big.db"
    env = {**os.environ, "DREAM_STORE": f"emulator:{store}"}
    subprocess.run(
        [DREAM, "seed", "--platforms", "30000", "--drift", "1.0", "--keys-only"],
        env=env,
        check=True,
        capture_output=True,
    )
    return env


def test_verify_shows_a_total_and_an_eta(seeded, tmp_path):
    code, shown = on_a_terminal(["kv", "verify"], seeded, tmp_path)
    assert code == 1  # the drifted platforms
    assert "/" in shown and "keys (" in shown and "ETA" in shown, shown[-500:]
    # While SQL reads the emulator's file in place (no count to give), the line still moves, with the time spent.
    assert re.search(r"verifying: [\d,]+ keys being read in place by SQL, \d+\.\d s", shown), shown[-500:]
    assert "\x1b[K" in shown  # each redraw erases what a longer line before it left


def test_ctrl_c_during_repair_says_what_was_applied_and_a_rerun_finishes(seeded, tmp_path):
    """Ctrl-C once the first batch is applied. The repair runs at a lower priority than the test, and from a fresh
    copy of the store up to three times: a repair that finished before the key press proves nothing, and on a
    busy core one can (seen on one core beside a CPU hog)."""
    import shutil

    store = Path(seeded["DREAM_STORE"].partition(":")[2])
    shutil.copyfile(store, store.with_name("base.db"))
    for _ in range(3):
        for journal in (store.with_name("big.db-wal"), store.with_name("big.db-shm")):
            journal.unlink(missing_ok=True)  # nothing has the store open now; an old WAL must not meet the copy
        shutil.copyfile(store.with_name("base.db"), store)
        code, shown = on_a_terminal(
            ["kv", "repair", "--yes"],
            seeded,
            tmp_path,
            until=b"applying: ",
            then=lambda p: p.send_signal(signal.SIGINT),
            nice=10,
        )
        if code == 130:
            break
        assert code == 0 and "applied 30000 actions" in shown, shown[-800:]  # it finished before the key press
    assert code == 130, shown[-800:]
    assert "interrupted after " in shown and "again re-verifies and finishes the job" in shown
    finish = subprocess.run([DREAM, "kv", "repair", "--yes"], env=seeded, cwd=tmp_path, capture_output=True, text=True)
    assert finish.returncode == 0, finish.stderr[-500:]
    assert subprocess.run([DREAM, "kv", "verify"], env=seeded, cwd=tmp_path).returncode == 0


@pytest.mark.parametrize("answer", ["ctrl-c", "no", "yes"])
def test_a_question_at_the_terminal_ctrl_c_is_130_no_is_1_yes_goes_ahead(tmp_path, answer):
    env = {**os.environ, "DREAM_STORE": f"emulator:{tmp_path / 'q.db'}"}
    subprocess.run([DREAM, "flow", "run", "--fault", "skip-api-replication"], env=env, capture_output=True)

    def reply(process):
        if answer == "ctrl-c":
            process.send_signal(signal.SIGINT)  # what the terminal sends on Ctrl-C
        else:
            os.write(process.stdin_fd, b"n\n" if answer == "no" else b"y\n")

    code, seen = on_a_terminal(["kv", "repair"], env, tmp_path, until=b"[y/N]: ", then=reply, stdin_writer=True)
    if answer == "ctrl-c":
        assert code == 130 and "interrupted" in seen and "Aborted!" not in seen, seen
    elif answer == "no":
        assert code == 1 and "nothing changed" in seen, seen
    else:
        assert code == 0 and "applied 3 actions" in seen, seen


def test_seed_shows_its_progress_with_a_rate_and_an_eta_several_times(tmp_path):
    env = {**os.environ, "DREAM_STORE": f"emulator:{tmp_path / 'seeded.db'}"}
    code, seen = on_a_terminal(["seed", "--platforms", "20000", "--paying", "0.02"], env, tmp_path)
    assert code == 0, seen
    parts = [part.strip() for line in seen.split("\n") for part in line.split("\r")]
    lines = [part for part in parts if part.startswith("seeding: ")]
    assert len(lines) >= 3 and "/s, ETA" in lines[0] and "20,000/20,000 platforms (100%)" in lines[-1], lines
    assert "60000 end-users" in seen and "20000 developers in Clerk" in seen, seen[-300:]  # the views, as it went


def test_bulk_writes_and_deletes_show_their_progress_on_a_terminal(tmp_path):
    import json

    env = {**os.environ, "DREAM_STORE": f"emulator:{tmp_path / 'store.db'}"}
    pairs = tmp_path / "pairs.json"
    pairs.write_text(json.dumps([{"key": f"k{i:06}", "value": "v"} for i in range(30_000)]))
    code, seen = on_a_terminal(["kv", "bulk-put", str(pairs), "--ns", "api-usage"], env, tmp_path)
    assert code == 0 and "writing: 30,000/30,000 keys (100%)" in seen and "wrote 30000 keys" in seen, seen
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps([f"k{i:06}" for i in range(30_000)]))
    code, seen = on_a_terminal(["kv", "bulk-delete", "--file", str(keys), "--ns", "api-usage", "--yes"], env, tmp_path)
    assert code == 0 and "deleting: 30,000/30,000 keys (100%)" in seen and "deleted 30000 keys" in seen, seen


@pytest.mark.parametrize("columns", [80, 100, 120])
def test_verify_the_repair_plan_and_keys_are_tables_at_ordinary_widths(tmp_path, columns):
    """The guide's bug at 80, 100 and 120 columns: verify's findings (under their platform's title), the repair plan
    and the key pairs are tables; a value too long for the width (a 96-character key) moves to a detail line under
    its row, whole; the table's own lines fit the terminal."""
    import json

    env = {**os.environ, "DREAM_STORE": f"emulator:{tmp_path / 'store.db'}", "NO_COLOR": "1", "COLUMNS": str(columns)}
    made = subprocess.run(
        [DREAM, "flow", "run", "--fault", "skip-api-replication", "--json"], env=env, capture_output=True, text=True
    )
    report = json.loads(made.stdout)
    plt = report["platformId"]
    verify = json.loads(subprocess.run([DREAM, "kv", "verify", "--json"], env=env, capture_output=True).stdout)
    keys = [finding["key"] for finding in verify["findings"]]
    screens = {}
    for name, args in {
        "verify": ["kv", "verify"],
        "plan": ["kv", "repair", "--plan"],
        "keys": ["keys", "list", "-p", plt],
    }.items():
        _, screens[name] = on_a_terminal(args, env, tmp_path)
    for name, header in {
        "verify": r"^[┃ ]*class +[┃ ]*namespace +[┃ ]*problem",
        "plan": r"^[┃ ]*# +[┃ ]*phase +[┃ ]*action +[┃ ]*namespace",
        "keys": r"^[┃ ]*publishable key +[┃ ]*env +",
    }.items():
        text = screens[name].replace("\r", "")
        assert re.search(header, text, re.M), (name, text)
        table = [line for line in text.splitlines() if not line.startswith("    ") and "verifying" not in line]
        assert all(len(line) <= columns for line in table), (name, text)
    for name in ("verify", "plan"):
        assert all(re.search(rf"(^|\s){re.escape(key)}$", screens[name].replace("\r", ""), re.M) for key in keys)
    assert plt in [line.strip() for line in screens["verify"].replace("\r", "").splitlines()]  # its title kept
    assert "…" not in "".join(screens.values())
