"""A served store's checkpoints: copied into the file by a thread of their own, the WAL still bounded."""

from __future__ import annotations

from pathlib import Path

from dreamcli.stores.sqlite_file import AUTOCHECKPOINT_PAGES, SERVED_AUTOCHECKPOINT_PAGES, Checkpointer
from emulator.store import open_emulator_store


def test_the_wal_is_copied_in_the_background_and_stays_bounded(tmp_path):
    store = open_emulator_store(tmp_path / "served.db")
    namespace = store.kv("api-tokens")
    file = namespace.file  # type: ignore[attr-defined]
    checkpointer = Checkpointer(file, interval=0.005)
    checkpointer.start()
    try:
        assert file.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == SERVED_AUTOCHECKPOINT_PAGES
        for i in range(12_000):  # one commit each, as API calls make them: ~4 pages a commit
            namespace.put(f"usage:plt_1:user_{i}", '{"usageCount": 1, "plan": "free"}')
        wal = Path(f"{file.path}-wal").stat().st_size
    finally:
        checkpointer.stop()
    assert checkpointer.copied > 0  # the thread copied frames the commits would otherwise have copied
    assert wal < 2 * SERVED_AUTOCHECKPOINT_PAGES * 4096  # restarted, not grown without end
    assert file.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == AUTOCHECKPOINT_PAGES
    assert namespace.count() == 12_000 and file.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    store.close()
