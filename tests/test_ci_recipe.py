"""The README's CI recipe, run as CI runs it: bash, no terminal, dream from the install."""

from __future__ import annotations

import os
import re
import shutil
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


def test_the_readme_ci_recipe_fails_on_drift_and_passes_when_clean(tmp_path):
    shutil.copytree(
        ROOT / "fixtures", tmp_path / "fixtures", ignore=shutil.ignore_patterns("node_modules", ".wrangler*")
    )
    for worker, names in {
        "front-auth-api": "CLERK_SECRET_KEY CLERK_PUBLISHABLE_KEY CLERK_WEBHOOK_SECRET STRIPE_SECRET_KEY STRIPE_PRICE_ID STRIPE_WEBHOOK_SECRET FRONTEND_URL",
        "oauth-api": "STRIPE_CLIENT_ID STRIPE_CLIENT_SECRET CLERK_SECRET_KEY CLERK_PUBLISHABLE_KEY FRONTEND_URL",
        "api-multi": "CLERK_SECRET_KEY CLERK_PUBLISHABLE_KEY FRONTEND_URL",
    }.items():
        (tmp_path / "fixtures" / "workers" / worker / ".dev.vars").write_text(
            "".join(f"{n}=x\n" for n in names.split())
        )
    script = recipe()
    broken = run(script, tmp_path)
    assert broken.returncode == 1, broken.stderr
    assert re.search(r"^\d+ findings \{", broken.stdout, re.M) and "replication is broken" in broken.stderr
    (tmp_path / "ci.db").unlink()
    clean = run(script.replace("--drift 0.01", "--drift 0"), tmp_path)
    assert "\n0 findings {}\n" in clean.stdout, clean.stdout + clean.stderr
    # doctor: the sample workers keep separate local state, which it reports (exit 1), as the recipe wants
    assert clean.returncode == 1 and "separate local state" in (tmp_path / "doctor.json").read_text()
