"""Where a federated round's time goes on one domain: a stopwatch of named phases.

The worker reports the laps with each round's progress point (`timings`), so the owner, and
`bench/federated.py`, can set them against the round's opening and closing at the network.
"""

from __future__ import annotations

import time


class Stopwatch:
    """Started on creation; `lap(name)` records the seconds since the previous lap."""

    def __init__(self) -> None:
        self.began_at = time.time()  # wall clock, comparable with the network's timestamps
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = round(now - self._last, 4)
        self._last = now

    def report(self) -> dict[str, float]:
        """The laps, and when the watch started (seconds since the epoch)."""
        return {"began_at": round(self.began_at, 4), **self.laps}
