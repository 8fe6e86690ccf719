"""Property: cursor pagination returns every live key exactly once, in order, while keys come and go."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dreamcli.stores.ports import KVWrite
from emulator.store import open_emulator_store

key_text = st.text(alphabet=st.sampled_from("ab:é😀z0"), min_size=1, max_size=6)
mutation = st.tuples(st.sampled_from(["add", "delete"]), key_text)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    initial=st.sets(key_text, min_size=0, max_size=60),
    mutations=st.lists(st.lists(mutation, max_size=8), max_size=12),
    prefix=st.sampled_from(["", "a", "é", "z0"]),
)
def test_pages_are_exact_under_concurrent_changes(initial, mutations, prefix):
    with tempfile.TemporaryDirectory() as folder:
        store = open_emulator_store(Path(folder) / "p.db")
        ns = store.kv("api-tokens")
        live = set(initial)
        if live:
            ns.bulk_put([KVWrite(key, "v") for key in live])
        untouched = {key for key in live if key.startswith(prefix)}
        seen: list[str] = []
        cursor = None
        step = 0
        while True:
            page = ns.list(prefix=prefix, cursor=cursor, limit=10)
            for entry in page.keys:
                assert entry.name in live, "a listed key was live when its page was read"
                assert entry.name.startswith(prefix)
            seen += [entry.name for entry in page.keys]
            if page.list_complete:
                break
            cursor = page.cursor
            for action, key in mutations[step] if step < len(mutations) else []:
                if action == "add":
                    ns.put(key, "v")
                    live.add(key)
                else:
                    ns.delete(key)
                    live.discard(key)
                    untouched.discard(key)
            step += 1
        store.close()
    encoded = [key.encode("utf-8") for key in seen]
    assert encoded == sorted(set(encoded)), "strictly increasing UTF-8 byte order: no repeats"
    assert untouched <= set(seen), "every key live throughout is returned"
