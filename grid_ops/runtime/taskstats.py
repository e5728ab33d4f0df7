"""Task counters for the controller's metrics, gathered where tasks run.

``tracked(fn)`` wraps a task function so that its start, end, status and duration are
counted in the worker process; a daemon thread sends the counts to the controller as a
task ends (at most twenty reports a second per worker, many tasks per report when they
end faster) and four times a second while tasks only run. Ray ends a job's workers with
its driver, so the counts of tasks that ended just before a driver exits at once can be
lost; a driver that waits a second before it exits normally loses none. The controller
adds them up (``Totals``) for grid_active_tasks, grid_tasks_completed_total and
grid_task_duration_seconds.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from typing import Any

from grid_ops import layout

BUCKETS = layout.TASK_BUCKETS
FLUSH_SECONDS = 0.25
MIN_GAP = 0.05  # seconds between two reports of one worker, at least


class Totals:
    """Counts added up from many reports (pure)."""

    def __init__(self) -> None:
        self.started = 0
        self.completed: dict[str, int] = {"succeeded": 0, "failed": 0}
        self.buckets = [0] * len(BUCKETS)
        self.count = 0
        self.sum = 0.0

    def observe(self, status: str, seconds: float) -> None:
        self.completed[status] = self.completed.get(status, 0) + 1
        self.count += 1
        self.sum += seconds
        for i, bound in enumerate(BUCKETS):
            if seconds <= bound:
                self.buckets[i] += 1

    def add(self, report: dict[str, Any]) -> None:
        self.started += int(report.get("started", 0))
        for status, n in (report.get("completed") or {}).items():
            self.completed[status] = self.completed.get(status, 0) + int(n)
        for i, n in enumerate(report.get("buckets") or []):
            if i < len(self.buckets):
                self.buckets[i] += int(n)
        self.count += int(report.get("count", 0))
        self.sum += float(report.get("sum", 0.0))

    def active(self) -> int:
        return max(self.started - sum(self.completed.values()), 0)

    def to_json(self) -> dict[str, Any]:
        return {
            "started": self.started,
            "completed": dict(self.completed),
            "buckets": list(self.buckets),
            "bounds": list(BUCKETS),
            "count": self.count,
            "sum": self.sum,
        }


_lock = threading.Lock()
_pending = Totals()
_flusher: threading.Thread | None = None
_ended = threading.Event()  # a task ended: its count goes out now, not at the next tick


def _take() -> dict[str, Any] | None:
    global _pending
    with _lock:
        if not _pending.started and not _pending.count:
            return None
        report, _pending = _pending.to_json(), Totals()
    return report


class _Controller:
    """Sends reports to the head's controller; its handle is looked up once, before the
    first report is due, so a report costs one actor call."""

    def __init__(self) -> None:
        self._handle: Any = None

    def lookup(self) -> None:
        import ray

        try:
            self._handle = ray.get_actor(
                layout.CONTROLLER_ACTOR, namespace=layout.CONTROLLER_NAMESPACE
            )
        except Exception:  # no controller (cluster started without one): counts are dropped
            self._handle = None

    def __call__(self, report: dict[str, Any]) -> None:
        if self._handle is None:
            self.lookup()
        if self._handle is None:
            return
        try:
            self._handle.record_tasks.remote(report)
        except Exception:
            self._handle = None


def flush_loop(send: Callable[[dict[str, Any]], None], rounds: int | None = None) -> None:
    """Send what was counted: at once when a task ends (``_ended``), else every
    ``FLUSH_SECONDS`` while tasks run (their starts); never two sends closer than
    ``MIN_GAP`` seconds. ``rounds`` bounds the loop (tests); None runs for ever."""
    last = 0.0
    while rounds is None or rounds > 0:
        _ended.wait(FLUSH_SECONDS)
        gap = MIN_GAP - (time.monotonic() - last)
        if gap > 0:
            time.sleep(gap)
        _ended.clear()
        report = _take()
        if report is not None:
            send(report)
            last = time.monotonic()
        if rounds is not None:
            rounds -= 1


def _run_flusher() -> None:
    send = _Controller()
    send.lookup()
    flush_loop(send)


def _started() -> None:
    global _flusher
    with _lock:
        _pending.started += 1
        if _flusher is None:
            _flusher = threading.Thread(target=_run_flusher, name="grid-taskstats", daemon=True)
            _flusher.start()


def _finished(status: str, seconds: float) -> None:
    with _lock:
        _pending.observe(status, seconds)
    _ended.set()


def tracked(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        _started()
        start = time.perf_counter()
        try:
            value = fn(*args, **kwargs)
        except BaseException:
            _finished("failed", time.perf_counter() - start)
            raise
        _finished("succeeded", time.perf_counter() - start)
        return value

    return run
