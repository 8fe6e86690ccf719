"""The bounded torture run (bench/torture.py runs it longer): a server under load and every other command on one
store at once, writers SIGKILLed at random; nothing acknowledged lost, nothing corrupt, no WAL deleted under a
process, no 500, revocations and rotations seen by the running server at once."""

from __future__ import annotations

import pytest

from tests.torture import torture_emulator, torture_wrangler

pytestmark = [pytest.mark.socket, pytest.mark.slow]


def held(figures) -> None:
    assert figures.problems() == [], "\n".join(figures.summary())
    # the run really did what it claims to have survived
    assert figures.requests[200] >= 1 and figures.usage_stored == figures.usage
    assert figures.acknowledged and figures.bulk_acknowledged and figures.rotations >= 1
    assert figures.commands["kv verify exit 0"] + figures.commands["kv verify exit 1"] >= 1
    assert figures.triggered and figures.deleted_samples >= 10
    killed = sum(n for name, n in figures.commands.items() if name.endswith("killed"))
    assert killed >= 1, figures.commands  # some writers really were killed


def test_the_emulator_store_under_every_process_at_once(tmp_path):
    figures = torture_emulator(tmp_path, 12.0, connections=8, users=8, kill_chance=0.4, seed=7)
    held(figures)
    assert {"emulator.db", "emulator.db.d1"} <= {name.split("/")[1] for name in figures.integrity}


@pytest.mark.peer("wrangler", "workers")
def test_the_wrangler_store_under_workerd_and_every_command_at_once(tmp_path):
    figures = torture_wrangler(tmp_path, 15.0, connections=4, kill_chance=0.4, seed=7)
    held(figures)
    met_lock = figures.commands["flow run --workers: a workerd KV write met dream's lock"]
    assert figures.commands["flow run --workers exit 0"] + met_lock >= 1  # the loop's flows ran (one passed before)
    assert any("miniflare-KVNamespaceObject" in name for name in figures.integrity)
