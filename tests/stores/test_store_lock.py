"""The store lock: dream's changes of several keys are read whole by verify in every other process and thread; a
killed holder never leaves the store locked; the lock's folder is refused when anyone else could have made it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from dreamcli.errors import StoreError
from dreamcli.stores import store_lock
from dreamcli.stores.store_lock import StoreLock
from emulator.store import open_emulator_store

DREAM = str(Path(sys.executable).with_name("dream"))
ROOT = Path(__file__).resolve().parents[2]

# A `keys revoke` that stops between its first write (the index: revoked) and its deletes (the mappings), until told.
PAUSED_REVOKE = textwrap.dedent(
    """
    import dataclasses, sys, time
    from pathlib import Path
    from dreamcli.platform import keys
    from emulator.store import open_emulator_store

    path, platform, pk, paused, release = sys.argv[1:]
    store = open_emulator_store(path)
    api = store.namespaces["api-tokens"]

    class Paused:
        def __getattr__(self, name):
            return getattr(api, name)

        def delete(self, key):
            Path(paused).touch()
            while not Path(release).exists():
                time.sleep(0.02)
            api.delete(key)

    store = dataclasses.replace(store, namespaces={**store.namespaces, "api-tokens": Paused()})
    keys.revoke_key(store, platform, pk, force=True, now=store.clock())
    """
)


def _flowed(tmp_path: Path) -> tuple[Path, dict[str, str], dict]:
    store = tmp_path / "store.db"
    env = {**os.environ, "DREAM_STORE": str(store), "PYTHONPATH": str(ROOT)}
    made = subprocess.run([DREAM, "flow", "run", "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    return store, env, json.loads(made.stdout)


def _revoke_paused(tmp_path: Path, store: Path, flow: dict, env: dict[str, str]) -> tuple[subprocess.Popen, Path]:
    paused, release = tmp_path / "paused", tmp_path / "release"
    script = tmp_path / "paused_revoke.py"
    script.write_text(PAUSED_REVOKE)
    holder = subprocess.Popen(
        [
            sys.executable,
            str(script),
            str(store),
            flow["platformId"],
            flow["publishableKey"],
            str(paused),
            str(release),
        ],
        env=env,
    )
    deadline = time.monotonic() + 60
    while not paused.exists():
        assert holder.poll() is None, "the revoke ended before its pause"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return holder, release


def _stale(document: dict) -> list[str]:
    return [f["key"] for f in document["findings"] if f["class"] == "stale"]


@pytest.mark.slow
def test_verify_in_another_process_waits_for_a_revoke_half_done_and_reads_it_whole(tmp_path):
    store, env, flow = _flowed(tmp_path)
    holder, release = _revoke_paused(tmp_path, store, flow, env)
    try:
        verify = subprocess.Popen(
            [DREAM, "kv", "verify", "--json"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert verify.stderr is not None
        said = verify.stderr.readline()  # blocks until verify says it waits, or ends (an empty line)
        assert verify.poll() is None, f"verify read the store while a revoke was half done: {said}"
        release.touch()
        out, rest = verify.communicate(timeout=60)
        err = said + rest
    finally:
        release.touch()
        holder.wait(timeout=60)
    assert holder.returncode == 0
    assert f"waiting for the emulator store {store}: paused_revoke.py (pid {holder.pid}) is changing it" in err
    document = json.loads(out)
    assert _stale(document) == [], "verify saw the revoke half done"
    assert (verify.returncode, document["findings"]) == (0, [])  # read after it: the pair gone whole, all clean


@pytest.mark.slow
def test_a_revoke_killed_half_way_leaves_no_lock_and_repair_finishes_it(tmp_path):
    store, env, flow = _flowed(tmp_path)
    holder, _ = _revoke_paused(tmp_path, store, flow, env)
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    started = time.monotonic()
    seen = subprocess.run([DREAM, "kv", "verify", "--json"], env=env, capture_output=True, text=True, timeout=60)
    assert time.monotonic() - started < 30 and "waiting for" not in seen.stderr  # the kernel dropped the lock
    assert seen.returncode == 1 and _stale(json.loads(seen.stdout)), "the half-done revoke is reported"
    repaired = subprocess.run([DREAM, "kv", "repair", "--yes"], env=env, capture_output=True, text=True, timeout=60)
    assert repaired.returncode in (0, 1), repaired.stderr
    again = subprocess.run([DREAM, "kv", "verify", "--json"], env=env, capture_output=True, text=True, timeout=60)
    assert _stale(json.loads(again.stdout)) == []


def test_a_writer_waits_for_readers_and_readers_for_a_writer_across_threads(tmp_path):
    lock = StoreLock([tmp_path / "store.db"], "the test store")
    told: list[str] = []
    order: list[str] = []
    reading, waiting = threading.Event(), threading.Event()

    def writer() -> None:
        reading.wait()
        with lock.hold():
            order.append("written")

    def wait_told(message: str) -> None:
        told.append(message)
        waiting.set()

    store_lock.on_wait = wait_told
    try:
        thread = threading.Thread(target=writer)
        thread.start()
        with lock.hold(shared=True), lock.hold(shared=True):  # reentrant; a second reader shares it too
            with StoreLock([tmp_path / "store.db"], "the test store").hold(shared=True):
                pass
            reading.set()
            assert waiting.wait(timeout=30), "the writer did not wait for the reader"
            order.append("read")
        thread.join(timeout=30)
    finally:
        store_lock.on_wait = None
    assert order == ["read", "written"]
    assert told == ["waiting for the test store: another dream process is reading it (verify)"]


def test_exclusive_inside_shared_is_refused_and_shared_inside_exclusive_is_held(tmp_path):
    lock = StoreLock([tmp_path / "a"], "the test store")
    with lock.hold(), lock.hold(shared=True), lock.hold():
        pass
    with lock.hold(shared=True), pytest.raises(RuntimeError, match="exclusive lock wanted inside a shared one"):
        with lock.hold():
            pass


def test_every_spelling_of_a_store_path_is_one_lock(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real", target_is_directory=True)
    assert store_lock.lock_file(tmp_path / "real" / "store.db") == store_lock.lock_file(tmp_path / "link/store.db")
    opened = open_emulator_store(tmp_path / "real" / "store.db")
    try:
        assert opened.lock is not None and opened.lock.places == [str(tmp_path / "real" / "store.db")]
    finally:
        opened.close()


def test_a_lock_folder_anyone_else_could_have_made_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    folder = tmp_path / f"dream-locks-{os.getuid()}"
    folder.mkdir(mode=0o777)
    folder.chmod(0o777)
    with pytest.raises(StoreError, match="not a private folder"):
        store_lock.lock_folder()
    folder.rmdir()
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    folder.symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(StoreError, match="not a private folder"):
        StoreLock([tmp_path / "store.db"], "the test store").hold().__enter__()
    folder.unlink()
    with StoreLock([tmp_path / "store.db"], "the test store").hold():
        assert folder.stat().st_mode & 0o777 == 0o700
        (lock,) = folder.iterdir()
        assert lock.stat().st_mode & 0o777 == 0o600
        assert lock.read_text().startswith(f"{os.getpid()} ")
