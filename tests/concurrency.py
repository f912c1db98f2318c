"""Run one function in several threads at once, for tests of races."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

T = TypeVar("T")


def run_concurrently(
    target: Callable[[T], object], args: Iterable[T], deadline_s: float = 60
) -> int:
    """Call `target(arg)` for every arg, each in its own thread; return how many still run.

    Daemon threads with a deadline: a regression that deadlocks fails the test instead of
    hanging the suite.
    """
    threads = [threading.Thread(target=target, args=(arg,), daemon=True) for arg in args]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + deadline_s
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    return sum(thread.is_alive() for thread in threads)
