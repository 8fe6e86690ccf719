"""Start-up: a whole `dream` process against the floor of a Python process that does nothing (`python -c pass`, the
same interpreter and virtual environment), measured side by side in interleaved pairs so drift on a shared machine
pairs out: `dream --help` (goal <= 5x) and `dream kv get` of a missing key on an existing store (goal <= 4x).
Prints each pair's ratio, then the median and its spread; and, for scale, what importing the CLI library alone
costs (`python -c "import typer"`, measured the same way): the part of the start no command of dream can avoid.

    .venv/bin/python bench/startup_bench.py [--pairs 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PYTHON = sys.executable
DREAM = str(Path(sys.executable).with_name("dream"))


def timed(args: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=15)
    pairs = parser.parse_args().pairs
    folder = Path(tempfile.mkdtemp(prefix="dream-startup-"))
    env = {**os.environ, "DREAM_STORE": f"emulator:{folder / 'store.db'}"}
    subprocess.run([DREAM, "kv", "put", "k", "v", "--ns", "api-tokens"], env=env, check=True, capture_output=True)
    cases = {
        "import typer (the CLI library alone)": [PYTHON, "-c", "import typer"],
        "dream --help": [DREAM, "--help"],
        "dream kv get": [DREAM, "kv", "get", "missing", "--ns", "api-tokens"],
    }
    for name, command in cases.items():
        timed(command, env)  # warm the page cache once
        ratios, floors, runs = [], [], []
        for _ in range(pairs):
            floor = timed([PYTHON, "-c", "pass"], env)
            run = timed(command, env)
            floors.append(floor)
            runs.append(run)
            ratios.append(run / floor)
        print(f"{name}: " + " ".join(f"{r:.1f}x" for r in ratios))
        print(
            f"  median {statistics.median(runs) * 1000:.0f} ms vs python -c pass {statistics.median(floors) * 1000:.0f} ms:"
            f" {statistics.median(ratios):.1f}x (spread {min(ratios):.1f}-{max(ratios):.1f}x over {pairs} pairs)"
        )


if __name__ == "__main__":
    main()
