"""The guide's "Invalid API key" as it really happens, with real wrangler 4.86: oauth-api's keys land in the state
`wrangler dev` gives oauth-api, api-multi (the reference worker's: fixtures/workers/api-multi) running under `wrangler
dev` answers 401; `dream kv verify` finds the keys and where they are, `dream kv repair` copies them, and the same
running api-multi answers 200. For each layout: separate folders, preview ids, renamed workers, [env.NAME], and a
shared --persist-to (where there is no bug, and verify says so)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time

import httpx
import pytest

from tests.conftest import copy_workers
from tests.interop.test_wrangler import WRANGLER, wrangler

pytestmark = [
    pytest.mark.socket,
    pytest.mark.peer("wrangler", "workers"),
]

API_TOKENS_ID = "a9f3331b0c8b48d58c32896482484208"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Layout:
    """A copy of the guide's project, arranged one way, and the flags its workers run with."""

    def __init__(self, tmp_path, name):
        self.project = tmp_path / "workers"
        copy_workers(self.project)
        self.folders = {w: w for w in ("front-auth-api", "oauth-api", "api-multi")}
        self.flags: list[str] = []  # what every worker runs with (wrangler dev, wrangler kv)
        self.store_options = ""
        self.kv_flags: list[str] = []  # wrangler kv only
        getattr(self, name.replace("-", "_"))()

    def separate(self):
        pass

    def shared(self):
        (self.project / ".wrangler-shared").mkdir()
        self.flags = ["--persist-to", "../.wrangler-shared"]
        self.store_options = ",persist-to=.wrangler-shared"

    def preview(self):
        for worker, config in (("api-multi", "wrangler.toml"), ("oauth-api", "wrangler.jsonc")):
            path = self.project / worker / config
            text = path.read_text()
            if config.endswith(".toml"):
                text = text.replace(
                    f'id = "{API_TOKENS_ID}"', f'id = "{API_TOKENS_ID}"\npreview_id = "p{API_TOKENS_ID}"'
                )
            else:
                text = text.replace(
                    f'"id": "{API_TOKENS_ID}"', f'"id": "{API_TOKENS_ID}", "preview_id": "p{API_TOKENS_ID}"'
                )
            path.write_text(text)
        self.kv_flags = ["--preview"]

    def renamed(self):
        for old, new, config in (
            ("api-multi", "dream-api", "wrangler.toml"),
            ("oauth-api", "connect", "wrangler.jsonc"),
        ):
            path = self.project / old / config
            path.write_text(path.read_text().replace(f'"{old}"', f'"{new}-worker"'))
            (self.project / old).rename(self.project / new)
            self.folders[old] = new

    def env(self):
        for worker in ("front-auth-api", "api-multi"):
            path = self.project / worker / "wrangler.toml"
            text = path.read_text()
            section = (
                text[text.index("[[kv_namespaces]]") :].replace("[[", "[[env.staging.").replace('id = "', 'id = "e')
            )
            path.write_text(text + "\n" + section)
        path = self.project / "oauth-api" / "wrangler.jsonc"
        from dreamcli.stores.discovery import strip_jsonc

        data = json.loads(strip_jsonc(path.read_text()))
        data["env"] = {"staging": {"kv_namespaces": [{**b, "id": "e" + b["id"]} for b in data["kv_namespaces"]]}}
        path.write_text(json.dumps(data))
        self.flags = ["--env", "staging"]
        self.store_options = ",env=staging"

    def folder(self, worker):
        return self.folders[worker]

    def store(self):
        return f"wrangler:{self.project}{self.store_options}"


def run_wrangler(layout, worker, *args, check=True):
    return wrangler(layout.project, layout.folder(worker), *args, *layout.flags, check=check)


@pytest.mark.parametrize("name", ["separate", "preview", "renamed", "env", "shared"])
def test_from_401_to_verify_to_repair_to_200_under_wrangler_dev(dream, tmp_path, name):
    layout = Layout(tmp_path, name)
    store = layout.store()
    report = json.loads(dream("--store", store, "flow", "run", "--json").stdout)
    assert report["ok"], report
    secret = report["secretKey"]
    # Move api-multi's keys to where oauth-api's own `wrangler dev` writes them, with wrangler itself.
    keys = [line for line in dream("--store", store, "kv", "list", "--ns", "api-tokens").stdout.split() if line]
    pairs = [
        {"key": key, "value": dream("--store", store, "kv", "get", key, "--ns", "api-tokens", "--reveal").stdout}
        for key in keys
    ]
    assert len(pairs) == 3
    bulk = tmp_path / "keys.json"
    bulk.write_text(json.dumps(pairs))
    run_wrangler(
        layout,
        "oauth-api",
        "kv",
        "bulk",
        "put",
        "--local",
        "--binding",
        "CUSTOMER_TOKENS_KV",
        str(bulk),
        *layout.kv_flags,
    )
    if name != "shared":  # with one shared state the write above went to api-multi's copy: nothing to move
        for key in keys:
            run_wrangler(
                layout, "api-multi", "kv", "key", "delete", "--local", "--binding", "TOKENS_KV", key, *layout.kv_flags
            )
    port = free_port()
    server = subprocess.Popen(
        [str(WRANGLER), "dev", "--ip", "127.0.0.1", "--port", str(port), "--log-level", "error", *layout.flags],
        cwd=layout.project / layout.folder("api-multi"),
        env={**os.environ, "WRANGLER_SEND_METRICS": "false", "CI": "1", "NO_COLOR": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        call = f"http://127.0.0.1:{port}/api/whoami"
        auth = {"Authorization": f"Bearer {secret}"}
        deadline = time.monotonic() + 60
        while True:
            try:
                first = httpx.get(call, headers=auth, timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "wrangler dev did not start"
                time.sleep(0.3)
        verified = dream("--store", store, "kv", "verify", "--json")
        findings = json.loads(verified.stdout)["findings"]
        # doctor looks at the same copies, with the same ids, as the store compares
        doctor_flags = ["--env", "staging"] if name == "env" else []
        doctor_flags += ["--persist-to", ".wrangler-shared"] if name == "shared" else []
        doctor = json.loads(dream("doctor", str(layout.project), *doctor_flags, "--json").stdout)
        separate = [
            d for d in doctor["findings"] if d["check"] == "separate local state" and "api-multi" in d["worker"]
        ]
        if name == "shared":
            assert first.status_code == 200 and verified.exit_code == 0 and findings == [] and separate == []
            return
        assert first.status_code == 401 and first.json()["error"] == "Invalid API key"
        assert verified.exit_code == 1
        stranded = [f for f in findings if f["class"] == "stranded"]
        assert sorted(f["key"] for f in stranded) == sorted(keys)
        oauth_state = str(layout.project / layout.folder("oauth-api") / ".wrangler" / "state")
        assert all(oauth_state in f["message"] for f in stranded)
        # doctor counts what the store compares: the same copies, the same ids
        doctor = json.loads(
            dream(
                "doctor",
                str(layout.project),
                *layout.flags[:0],
                *(["--env", "staging"] if name == "env" else []),
                "--json",
            ).stdout
        )
        separate = next(
            d for d in doctor["findings"] if d["check"] == "separate local state" and "api-multi" in d["worker"]
        )
        assert "api-multi: 0 keys" in separate["problem"] and "oauth-api: 3 keys" in separate["problem"]
        assert dream("--store", store, "kv", "repair", "--yes").exit_code == 0
        assert dream("--store", store, "kv", "verify").exit_code == 0
        again = httpx.get(call, headers=auth, timeout=5)  # the same running api-multi
        assert again.status_code == 200, again.text
        assert again.json()["platformId"] == report["platformId"]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
