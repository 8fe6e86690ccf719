"""Paired measurement, the method every bench here follows: dream and its floor (or anchor) measured in turns, pair
after pair, so that drift on a shared machine (another process, a CPU's clock, the page cache) falls on both halves
of a pair alike; each pair's ratio printed, then the median with its spread (lowest and highest pair).

    from bench.paired import Pairs
    pairs = Pairs("verify / SQL-join floor", "x")
    for _ in range(5):
        pairs.add(verify_seconds, floor_seconds)
    pairs.print()
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Pairs:
    """Ratios of `dream / floor` pair by pair (times: lower is better; throughputs: higher is)."""

    name: str
    unit: str = "s"
    first: str = "dream"  # what the numerator is called in the summary
    second: str = "floor"  # and the denominator
    dream: list[float] = field(default_factory=list)
    floor: list[float] = field(default_factory=list)

    def add(self, dream: float, floor: float) -> float:
        self.dream.append(dream)
        self.floor.append(floor)
        return self.ratios[-1]

    @property
    def ratios(self) -> list[float]:
        return [d / f if f else float("nan") for d, f in zip(self.dream, self.floor, strict=True)]

    def median(self) -> float:
        return statistics.median(self.ratios)

    def line(self) -> str:
        ratios = self.ratios
        return (
            f"{self.name}: median {self.median():.2f}x (spread {min(ratios):.2f}-{max(ratios):.2f}x over "
            f"{len(ratios)} pairs; {self.first} {_figure(statistics.median(self.dream))} {self.unit}, {self.second} "
            f"{_figure(statistics.median(self.floor))} {self.unit})"
        )

    def print(self) -> None:
        print(f"  pairs: {' '.join(f'{r:.2f}x' for r in self.ratios)}")
        print(self.line())


def _figure(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def descendants(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
        for child in children:
            found += [child, *descendants(child)]
    return found
