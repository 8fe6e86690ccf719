"""The README's CI recipe, run as CI runs it: bash, no terminal, dream from the install, nothing from the repository."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def recipe() -> str:
    text = (ROOT / "README.md").read_text()
    block = text[text.index("## A CI gate") :]
    return block[block.index("```bash") + len("```bash") : block.index("```", block.index("```bash") + 7)]


def run(script: str, folder: Path) -> subprocess.CompletedProcess[str]:
    bin_dir = str(Path(sys.executable).parent)
    env = {name: value for name, value in os.environ.items() if not name.startswith("DREAM_")}
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    return subprocess.run(
        ["bash", "-c", script],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=300,
    )


def test_the_readme_ci_recipe_fails_on_drift_passes_when_clean_and_stops_on_a_typo(tmp_path):
    script = recipe()
    assert "fixtures" not in script  # a pip-installed copy has none
    broken = run(script, tmp_path)
    assert broken.returncode == 1, broken.stderr
    assert re.search(r"^\d+ findings \{", broken.stdout, re.M) and "replication is broken" in broken.stderr
    (tmp_path / "ci.db").unlink()
    clean = run(script.replace("--drift 0.01", "--drift 0"), tmp_path)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "0 findings {}" in clean.stdout
    # a mistyped store: the documented "not found", one line from dream, no traceback, nothing created
    typo = script.replace("store=emulator:ci.db", "store=emulator:nowhere/ci.db").replace(
        'dream --store "$store" seed', "true # seed"
    )
    stopped = run(typo, tmp_path)
    assert stopped.returncode == 3, stopped.stderr
    assert stopped.stderr.count("\n") == 1 and stopped.stderr.startswith("error: no store at nowhere/ci.db")
    assert "Traceback" not in stopped.stderr and not (tmp_path / "nowhere").exists()
