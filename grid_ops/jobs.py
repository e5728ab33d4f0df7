"""For code inside a training job, on any node: ``report(epoch=1, loss=0.5)`` prints one
marked line to the job's log; 'grid-ops job results' reads those lines back (with
``results``). ``checkpoint(step)`` and ``latest_checkpoint()`` keep a queued job's
checkpoints where its next attempt finds them. The names every side of a job agrees on
(``TERMINAL``) are here too.

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


# --- checkpoints -------------------------------------------------------------------------
# A queued job gets GRID_OPS_CHECKPOINT_DIR on every rank: the same path on every attempt
# (under the rank's node's remote root). A checkpoint is a directory ``step-<N>`` in it,
# written through ``checkpoint(N)`` so that it appears only once complete (a rename):
# a rank killed mid-write leaves no half checkpoint for the next attempt to read.

CHECKPOINT_ENV = "GRID_OPS_CHECKPOINT_DIR"
_STEP = "step-"


def checkpoint_dir() -> str:
    """This job's checkpoint directory (made if missing); RuntimeError outside a job."""
    import os

    path = os.environ.get(CHECKPOINT_ENV)
    if not path:
        raise RuntimeError(f"{CHECKPOINT_ENV} is not set: not inside a grid-ops queued job")
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def steps(folder: str) -> list[tuple[int, str]]:
    """The complete checkpoints in ``folder``: (step, path), the lowest step first."""
    import os

    found = []
    for name in os.listdir(folder):
        number = name[len(_STEP) :]
        if name.startswith(_STEP) and number.isdigit():
            found.append((int(number), os.path.join(folder, name)))
    return sorted(found)


def latest_checkpoint() -> str | None:
    """The newest complete checkpoint's directory (the highest step), or None."""
    found = steps(checkpoint_dir())
    return found[-1][1] if found else None


class checkpoint:
    """``with checkpoint(step) as path:`` write the checkpoint's files into ``path``; on
    leaving the block without an error it becomes ``step-<step>`` at once (a rename),
    and ``keep`` newest checkpoints stay (older ones are removed)."""

    def __init__(self, step: int, keep: int = 3) -> None:
        import os

        if step < 0:
            raise ValueError(f"step must be 0 or more, not {step}")
        self.folder = checkpoint_dir()
        self.final = os.path.join(self.folder, f"{_STEP}{step}")
        self.keep = keep
        self.path = ""

    def __enter__(self) -> str:
        import tempfile

        self.path = tempfile.mkdtemp(prefix=".partial-", dir=self.folder)
        return self.path

    def __exit__(self, kind: object, value: object, trace: object) -> None:
        import os
        import shutil

        if kind is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            return
        if os.path.isdir(self.final):  # the same step again (e.g. a retried attempt)
            shutil.rmtree(self.final)
        os.replace(self.path, self.final)
        for _, old in steps(self.folder)[: -self.keep] if self.keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
