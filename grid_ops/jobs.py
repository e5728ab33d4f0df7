"""For code inside a training job, on any node: ``report(epoch=1, loss=0.5)`` prints one
marked line to the job's log; 'grid-ops job results' reads those lines back (with
``results``). The names every side of a job agrees on (``TERMINAL``) are here too.

Runs on the nodes (it is part of the runtime grid-ops pushes): the standard library only.
"""

from __future__ import annotations

import json
import time
from typing import Any

REPORT_PREFIX = "GRID_OPS_REPORT "
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


def report(**metrics: Any) -> None:
    """Record metrics from inside a job, e.g. ``report(epoch=1, loss=0.5)``."""
    line = json.dumps({"time": round(time.time(), 3), **metrics}, default=str)
    print(REPORT_PREFIX + line, flush=True)


def parse_reports(logs: str) -> list[dict[str, Any]]:
    """Every ``report()`` a job's log holds, in order."""
    found = []
    for line in logs.splitlines():
        index = line.find(REPORT_PREFIX)
        if index < 0:
            continue
        try:
            value = json.loads(line[index + len(REPORT_PREFIX) :])
        except ValueError:
            continue
        if isinstance(value, dict):
            found.append(value)
    return found


def results(logs: str) -> dict[str, Any]:
    """``{"metrics": [...], "final": {...}}``: each report, and the last value of each key."""
    metrics = parse_reports(logs)
    final: dict[str, Any] = {}
    for row in metrics:
        final.update({k: v for k, v in row.items() if k != "time"})
    return {"metrics": metrics, "final": final}
