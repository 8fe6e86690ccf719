"""dream as an installed tool: the wheel carries what its commands need (the guide's tiers, the D1 migrations, the
verifier Worker), so `dream flow run` works from any folder, and `--help` shows no install path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("installed")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(folder / "wheel")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if built.returncode != 0:
        pytest.skip(f"cannot build the wheel here: {built.stderr[-300:]}")
    wheel = next((folder / "wheel").glob("*.whl"))
    site = folder / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
        check=True,
        timeout=300,
    )
    return site


def run_installed(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The installed dream (its own copy first on the path, the dependencies from this environment)."""
    code = f"import sys; sys.path.insert(0, {str(site)!r}); from dreamcli.cli.app import main; sys.argv[0] = 'dream'; main()"
    env = {name: value for name, value in os.environ.items() if not name.startswith("DREAM_")}
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, timeout=120, env=env
    )


def test_flow_run_from_any_folder(installed, tmp_path):
    where = run_installed(installed, tmp_path, "--version")
    assert where.returncode == 0
    result = run_installed(installed, tmp_path, "flow", "run")
    assert result.returncode == 0, result.stderr
    assert "all 6 steps passed" in result.stderr
    listed = run_installed(installed, tmp_path, "d1", "migrations", "list", "--json")  # the packaged migrations
    assert (
        listed.returncode == 0 and '"0001_customers.sql"' in listed.stdout and '"applied_at": null' not in listed.stdout
    )


def test_help_shows_no_install_path(installed, tmp_path):
    shown = run_installed(installed, tmp_path, "flow", "run", "--help")
    assert shown.returncode == 0
    assert str(installed) not in shown.stdout and "guide.toml" not in shown.stdout
    assert "the guide's free, pro and enterprise" in " ".join(shown.stdout.split())


def test_the_wheel_carries_the_verifier_worker(installed, tmp_path):
    """`--via-worker` deploys dreamcli/data/verifier/index.js: the installed copy has it, where the code looks."""
    code = (
        f"import sys; sys.path.insert(0, {str(installed)!r}); from dreamcli.stores import verifier; "
        "print(verifier.WORKER_SOURCE); print(verifier.WORKER_SOURCE.read_text()[:40])"
    )
    shown = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    path, head = shown.stdout.splitlines()[:2]
    assert path.startswith(str(installed)) and head.startswith("// dream's verifier Worker")


def test_the_wheel_carries_the_inspector_free_worker_runner(installed, tmp_path):
    """`dream dev` runs dreamcli/data/wrangler/dev_worker.cjs: the installed copy has it, where the code looks."""
    code = (
        f"import sys; sys.path.insert(0, {str(installed)!r}); from dreamcli.stores import wrangler_cli; "
        "print(wrangler_cli.DEV_WORKER); print('inspector: false' in wrangler_cli.DEV_WORKER.read_text())"
    )
    shown = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    path, off = shown.stdout.splitlines()[:2]
    assert path.startswith(str(installed)) and off == "True"


def test_the_wheel_carries_the_consoles_pages_and_assets(installed, tmp_path):
    """`dream console` from the installed copy: its templates render and its stylesheet and script are served."""
    assert run_installed(installed, tmp_path, "flow", "run").returncode == 0
    code = (
        f"import sys; sys.path.insert(0, {str(installed)!r})\n"
        "import httpx\n"
        "from dreamcli.cli.context import AppContext\n"
        "from dreamcli.console import pages\n"
        "from dreamcli.console.serve import ConsoleServer\n"
        "print(pages.HERE)\n"
        "run = AppContext(store_spec='.dream/emulator.db')\n"
        "server = ConsoleServer(pages.Console(run.store(), run.vendors(), run.emulated()), port=0)\n"
        "server.start()\n"
        "client = httpx.Client(base_url=server.url)\n"
        "client.get(server.sign_in_url())\n"
        "for path in ('/', '/static/console.css', '/static/console.js', '/static/favicon.svg'):\n"
        "    print(path, client.get(path).status_code)\n"
        "server.stop(); run.close()\n"
    )
    env = {name: value for name, value in os.environ.items() if not name.startswith("DREAM_")}
    shown = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env
    )
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].startswith(str(installed))
    assert lines[1:] == ["/ 200", "/static/console.css 200", "/static/console.js 200", "/static/favicon.svg 200"]
