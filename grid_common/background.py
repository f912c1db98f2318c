"""Periodic work inside a node process: one daemon thread running each task on its interval.

Every server process runs its own thread; tasks claim their rows in the database before
acting, so several processes or replicas never do the same work twice. The thread stops when
told (`stop()`, also called when the process exits), together with any other thread the app
hands over with `on_stop` (the domain's registry sender).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from flask import Flask

log = logging.getLogger(__name__)


@dataclass
class Task:
    name: str
    interval_s: float
    run: Callable[[], object]
    next_at: float = 0.0


@dataclass
class Background:
    """The node's periodic tasks; `start()` once per process (gunicorn workers: after fork)."""

    app: Flask
    tasks: list[Task] = field(default_factory=list)
    stoppers: list[Callable[[], object]] = field(default_factory=list)
    _wake: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _pid: int | None = None
    _exit_hook_pid: int | None = None

    def add(self, name: str, interval_s: float, run: Callable[[], object]) -> None:
        self.tasks.append(Task(name, interval_s, run))

    def on_stop(self, stop: Callable[[], object]) -> None:
        """Have `stop()` also call `stop` (for a thread of the app's own, started elsewhere)."""
        self.stoppers.append(stop)

    def wake(self) -> None:
        """Run every task at the next turn of the loop instead of at its interval."""
        for task in self.tasks:
            task.next_at = 0.0
        self._wake.set()

    def start(self) -> None:
        """Start the thread in this process (a no-op if it already runs here)."""
        if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
            return
        self._pid = os.getpid()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="grid-background", daemon=True)
        self._thread.start()
        if self._exit_hook_pid != self._pid:
            # A gunicorn worker exits through sys.exit once it has stopped serving.
            atexit.register(self.stop)
            self._exit_hook_pid = self._pid

    def stop(self, timeout_s: float = 10) -> None:
        """Stop the loop after the task it runs, then every thread handed over by `on_stop`.

        Safe to call in any process, running or not, and more than once.
        """
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._pid == os.getpid():
            self._thread.join(timeout_s)
        self._thread = None
        for stop in self.stoppers:
            try:
                stop()
            except Exception:
                log.exception("stopping a background thread failed")

    def start_in_forked_workers(self) -> None:
        """For a pre-forking server that loaded the app first: start in each forked child."""
        os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        # The parent's thread and its events do not exist in the child: begin afresh.
        self._thread, self._wake, self._stop = None, threading.Event(), threading.Event()
        for task in self.tasks:
            task.next_at = 0.0
        self.start()

    def _run(self, task: Task) -> None:
        try:
            with self.app.app_context():
                task.run()
        except Exception:
            log.exception("background task %s failed", task.name)

    def _loop(self) -> None:
        while self.tasks and not self._stop.is_set():
            now = time.monotonic()
            for task in self.tasks:
                if self._stop.is_set():
                    return
                if task.next_at <= now:
                    task.next_at = now + task.interval_s
                    self._run(task)
            wait = min(t.next_at for t in self.tasks) - time.monotonic()
            self._wake.wait(max(0.0, wait))
            self._wake.clear()
