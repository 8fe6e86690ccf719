"""Staying under Cloudflare's API rate limit instead of running into it: 1,200 requests per 5 minutes per token,
and past it every call is refused for 5 minutes (developers.cloudflare.com/fundamentals/api/reference/limits).

A `Pacer` keeps the send times of the last window and waits before a request that would exceed the budget (the
documented quota less a margin, for the operator's other tools on the same token). Cloudflare's `Ratelimit` header
(`"default";r=REMAINING;t=RESET`) and `Ratelimit-Policy` (`"...";q=QUOTA;w=WINDOW`) correct it as answers come:
a policy replaces the documented one, and a remaining quota at the margin waits for the reset."""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping

DOCUMENTED_QUOTA = 1200
DOCUMENTED_WINDOW_S = 300.0
MARGIN = 50  # requests left for the token's other users

_ITEM = re.compile(r"(\w+)=(\d+)")


def parse_items(header: str) -> dict[str, int]:
    """`"default";r=50;t=30` -> {"r": 50, "t": 30} (the first list item; unknown parameters ignored)."""
    first = header.split(",", 1)[0]
    return {name: int(value) for name, value in _ITEM.findall(first)}


class Pacer:
    def __init__(
        self,
        quota: int = DOCUMENTED_QUOTA,
        window_s: float = DOCUMENTED_WINDOW_S,
        *,
        margin: int = MARGIN,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.quota, self.window_s, self.margin = quota, window_s, margin
        self.clock, self.sleep = clock, sleep
        self.sent: deque[float] = deque()
        self.waited = 0.0  # seconds spent pacing, for reports
        self._reset_at: float | None = None  # Cloudflare said the quota is spent until then
        self._lock = threading.Lock()

    @property
    def reserve(self) -> int:
        return min(self.margin, self.quota // 10)

    @property
    def budget(self) -> int:
        return max(1, self.quota - self.reserve)

    def before(self) -> None:
        """Wait, if need be, so this request stays within the budget; then count it. Threads share one pacer."""
        with self._lock:
            self._before()

    def _before(self) -> None:
        now = self.clock()
        if self._reset_at is not None and now < self._reset_at:
            self._wait(self._reset_at - now)
            now = self.clock()
        self._reset_at = None
        while self.sent and self.sent[0] <= now - self.window_s:
            self.sent.popleft()
        if len(self.sent) >= self.budget:
            self._wait(self.sent[0] + self.window_s - now)
            now = self.clock()
            while self.sent and self.sent[0] <= now - self.window_s:
                self.sent.popleft()
        self.sent.append(now)

    def after(self, headers: Mapping[str, str]) -> None:
        """Learn from an answer's rate-limit headers."""
        with self._lock:
            self._after(headers)

    def _after(self, headers: Mapping[str, str]) -> None:
        policy = parse_items(headers.get("ratelimit-policy", ""))
        if "q" in policy and "w" in policy and policy["w"] > 0:
            self.quota, self.window_s = policy["q"], float(policy["w"])
        state = parse_items(headers.get("ratelimit", ""))
        if "r" in state and "t" in state and state["r"] <= self.reserve:
            self._reset_at = self.clock() + state["t"]

    def seconds_for(self, requests: int) -> float:
        """How long `requests` more take at the budget, from a standing start (an estimate for a long scan)."""
        windows = max(0, requests - self.budget) / self.budget
        return windows * self.window_s

    def _wait(self, seconds: float) -> None:
        if seconds > 0:
            self.waited += seconds
            self.sleep(seconds)
