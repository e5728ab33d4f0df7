"""Task counters for the controller's metrics, gathered where tasks run.

``tracked(fn)`` wraps a task function so that its start, end, status and duration are
counted in the worker process; a daemon thread sends the counts to the controller four
times a second while there are any (one actor call per busy worker, nothing per task).
Ray ends a job's workers with its driver, so counts of the last quarter second of a
driver that exits at once can be lost. The controller adds
them up (``Totals``) for grid_active_tasks, grid_tasks_completed_total and
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


def _take() -> dict[str, Any] | None:
    global _pending
    with _lock:
        if not _pending.started and not _pending.count:
            return None
        report, _pending = _pending.to_json(), Totals()
    return report


def _flush_loop() -> None:
    import ray

    controller = None
    while True:
        time.sleep(FLUSH_SECONDS)
        report = _take()
        if report is None:
            continue
        try:
            if controller is None:
                controller = ray.get_actor(
                    layout.CONTROLLER_ACTOR, namespace=layout.CONTROLLER_NAMESPACE
                )
            controller.record_tasks.remote(report)
        except Exception:  # no controller (cluster started without one): counts are dropped
            controller = None


def _started() -> None:
    global _flusher
    with _lock:
        _pending.started += 1
        if _flusher is None:
            _flusher = threading.Thread(target=_flush_loop, name="grid-taskstats", daemon=True)
            _flusher.start()


def _finished(status: str, seconds: float) -> None:
    with _lock:
        _pending.observe(status, seconds)


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
