"""Many processes on one store at once, writers killed at random (see tests/torture.py for what runs): prints what
was done and what was found, ending "N lost, N corrupt, N deleted-while-open"; exits 1 if anything fell short.

Run: .venv/bin/python bench/torture.py [--seconds 60] [--store emulator|wrangler] [--kill-chance 0.3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.torture import torture_emulator, torture_wrangler  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--store", choices=("emulator", "wrangler"), default="emulator")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--kill-chance", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dream-torture-") as tmp:
        run = torture_emulator if args.store == "emulator" else torture_wrangler
        figures = run(
            Path(tmp), args.seconds, connections=args.connections, kill_chance=args.kill_chance, seed=args.seed
        )
    for line in figures.summary():
        print(line)
    problems = figures.problems()
    for line in problems:
        print("  " + line)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
