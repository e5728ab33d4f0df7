"""Training jobs on the lab's Ray cluster: launch, status, logs, results, cancel, list."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Lab

pytestmark = pytest.mark.lab

TRAIN = """
from grid_ops.jobs import report
for epoch in range(1, 4):
    report(epoch=epoch, loss=round(1.0 / epoch, 4))
print("trained three epochs", flush=True)
"""


@pytest.fixture(scope="module")
def cluster(lab: Lab) -> Iterator[Lab]:
    cfg = str(lab.config)
    assert lab.cli("provision", "-c", cfg, timeout=900).returncode == 0
    assert lab.cli("cluster", "start", "-c", cfg, timeout=600).returncode == 0
    yield lab


def _status(lab: Lab, name: str) -> dict[str, Any]:
    proc = lab.cli("job", "status", name, "-c", str(lab.config), "--json")
    assert proc.returncode == 0, proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def _wait(lab: Lab, name: str, states: tuple[str, ...], limit: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + limit
    while True:
        data = _status(lab, name)
        if data["status"] in states or time.monotonic() > deadline:
            return data
        time.sleep(1)


def test_a_job_runs_with_its_workdir_logs_and_reported_metrics(
    cluster: Lab, tmp_path: Path
) -> None:
    cfg = str(cluster.config)
    work = tmp_path / "proj"
    work.mkdir()
    (work / "train.py").write_text(TRAIN)
    proc = cluster.cli("job", "launch", "--name", "train", "--workdir", str(work), "-c", cfg,
                       "--env", "SEED=7", "--", "python", "train.py")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    done = _wait(cluster, "train", ("SUCCEEDED", "FAILED", "STOPPED"))
    assert done["status"] == "SUCCEEDED", done
    assert done["started_at"] <= done["ended_at"] and done["nodes"] == ["node1"]
    logs = cluster.cli("job", "logs", "train", "-c", cfg)
    assert "trained three epochs" in logs.stdout
    res = json.loads(cluster.cli("job", "results", "train", "-c", cfg, "--json").stdout)
    assert [m["epoch"] for m in res["metrics"]] == [1, 2, 3]
    assert res["final"] == {"epoch": 3, "loss": 0.3333}
    assert res["duration_s"] > 0


def test_a_failing_job_ends_failed_with_its_exit_code(cluster: Lab) -> None:
    cfg = str(cluster.config)
    proc = cluster.cli("job", "launch", "--name", "broken", "-c", cfg, "--",
                       "python", "-c", "import sys; print('boom'); sys.exit(3)")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    done = _wait(cluster, "broken", ("SUCCEEDED", "FAILED", "STOPPED"))
    assert done["status"] == "FAILED" and done["exit_code"] == 3


def test_cancel_ends_stopped_and_live_names_are_unique(cluster: Lab) -> None:
    cfg = str(cluster.config)
    assert cluster.cli("job", "launch", "--name", "long", "-c", cfg, "--",
                       "sleep", "600").returncode == 0  # fmt: skip
    assert _wait(cluster, "long", ("RUNNING",))["status"] == "RUNNING"
    again = cluster.cli("job", "launch", "--name", "long", "-c", cfg, "--", "true")
    assert again.returncode == 2
    assert "still running" in again.stderr and "Traceback" not in again.stderr
    cancel = cluster.cli("job", "cancel", "long", "-c", cfg)
    assert cancel.returncode == 0 and "STOPPED" in cancel.stdout
    assert _status(cluster, "long")["status"] == "STOPPED"


def test_job_list_answers_after_a_cluster_restart(cluster: Lab) -> None:
    cfg = str(cluster.config)
    assert cluster.cli("job", "launch", "--name", "orphan", "-c", cfg, "--",
                       "sleep", "600").returncode == 0  # fmt: skip
    assert cluster.cli("cluster", "restart", "-c", cfg, timeout=600).returncode == 0
    proc = cluster.cli("job", "list", "-c", cfg, "--json")
    assert proc.returncode == 0, proc.stderr
    jobs = {j["name"]: j for j in json.loads(proc.stdout)}
    assert jobs["train"]["status"] == "SUCCEEDED" and jobs["train"]["known_to_ray"] is True
    assert jobs["orphan"]["known_to_ray"] is False
    res = json.loads(cluster.cli("job", "results", "train", "-c", cfg, "--json").stdout)
    assert res["final"]["epoch"] == 3  # kept locally


def test_unknown_job_is_a_clear_error(cluster: Lab) -> None:
    proc = cluster.cli("job", "status", "nope", "-c", str(cluster.config))
    assert proc.returncode == 2
    assert "No job named 'nope'" in proc.stderr and "Traceback" not in proc.stderr
