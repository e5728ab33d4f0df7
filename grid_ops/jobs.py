"""Training jobs on Ray Jobs: the client side, plus ``report()`` for code inside a job.

The CLI reaches the head's job server through ``grid_ops.runtime.jobs`` run on the head
over the cluster's SSH settings (the dashboard stays on the head's loopback). What it
learns is also kept under the state dir, so ``job list`` and ``job results`` still answer
after the cluster was restarted. Inside a job, ``report(epoch=1, loss=0.5)`` prints one
marked line to the job's log; ``job results`` reads those lines back.

This module is also imported on the nodes (by jobs calling ``report``): keep its
top-level imports to the standard library.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from grid_ops.config import ClusterConfig

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


# ---------------------------------------------------------------------------------------
# local records


def _store(config: ClusterConfig) -> Path:
    from grid_ops.paths import state_dir

    return state_dir() / "jobs" / config.name


def save(config: ClusterConfig, record: dict[str, Any]) -> None:
    from grid_ops.fsutil import write_atomic

    write_atomic(_store(config) / f"{record['name']}.json", json.dumps(record, indent=2) + "\n")


def load(config: ClusterConfig, name: str) -> dict[str, Any]:
    from grid_ops.errors import UsageError

    try:
        data: dict[str, Any] = json.loads((_store(config) / f"{name}.json").read_text())
    except (OSError, ValueError):
        known = ", ".join(r["name"] for r in load_all(config)) or "none yet"
        raise UsageError(f"No job named '{name}'.", f"Known jobs: {known}.") from None
    return data


def load_all(config: ClusterConfig) -> list[dict[str, Any]]:
    records = []
    for path in sorted(_store(config).glob("*.json")):
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return sorted(records, key=lambda r: r.get("submitted_at") or 0)


# ---------------------------------------------------------------------------------------
# talking to the head


def head_call(config: ClusterConfig, *args: str, timeout: float = 120) -> dict[str, Any]:
    """Run ``grid_ops.runtime.jobs ARGS`` on the head; its JSON answer."""
    from grid_ops import remote
    from grid_ops.errors import GridOpsError

    command = ["python", "-m", "grid_ops.runtime.jobs"]
    command += ["--dashboard-port", str(config.ray.dashboard_port), *args]
    argv = remote.argv(config, config.head, command)
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise GridOpsError(
            f"The head ({config.head.name}) did not answer in {timeout:g} s."
        ) from None
    try:
        data: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise GridOpsError(
            f"Could not reach Ray Jobs on the head ({config.head.name}): "
            f"{detail[-1] if detail else f'exit {proc.returncode}'}.",
            "Is the cluster provisioned and started? Try 'grid-ops cluster status'.",
        ) from None
    if "error" in data:
        raise GridOpsError(
            f"Ray Jobs on the head ({config.head.name}) refused: {data['error']}.",
            "Check that Ray runs there ('grid-ops cluster status'; 'grid-ops cluster start').",
        )
    return data


def refresh(config: ClusterConfig, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Update records that are not finished from the head; mark those Ray no longer knows."""
    open_ids = [r["submission_id"] for r in records if r.get("status") not in TERMINAL]
    if not open_ids:
        return records
    try:
        infos = {j["submission_id"]: j for j in head_call(config, "info", *open_ids)["jobs"]}
    except Exception:  # the head is down: keep what we knew, say Ray does not answer
        infos = {}
    for record in records:
        info = infos.get(record["submission_id"])
        if record.get("status") in TERMINAL:
            continue
        if info is None or info.get("status") == "UNKNOWN":
            record["known_to_ray"] = False
        else:
            _apply(record, info)
        save(config, record)
    return records


def _apply(record: dict[str, Any], info: dict[str, Any]) -> None:
    record["known_to_ray"] = True
    record["status"] = info["status"]
    record["message"] = info.get("message")
    if info.get("start_time"):
        record["started_at"] = info["start_time"] / 1000.0
    if info.get("end_time"):
        record["ended_at"] = info["end_time"] / 1000.0
    if info.get("exit_code") is not None:
        record["exit_code"] = info["exit_code"]


def launch(
    config: ClusterConfig,
    name: str,
    command: list[str],
    workdir: Path | None = None,
    env: dict[str, str] | None = None,
    gpus: float = 0,
    nodes: int = 1,
) -> dict[str, Any]:
    """Submit ``command`` to Ray Jobs on the head; returns the new job's record.

    ``nodes`` > 1 runs one rank per node (grid_ops.runtime.launch: STRICT_SPREAD placement
    group, torch.distributed environment variables).
    """
    from grid_ops import inventory
    from grid_ops.errors import UsageError

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", name):
        raise UsageError(
            f"Job name '{name}' is not valid.", "Use letters, digits, '.', '_' and '-'."
        )
    try:
        previous = load(config, name)
    except UsageError:
        previous = None
    if previous is not None:
        refresh(config, [previous])
        if previous.get("status") not in TERMINAL and previous.get("known_to_ray", True):
            raise UsageError(
                f"A job named '{name}' is still {previous.get('status', 'live').lower()}.",
                f"Pick another name, or stop it with 'grid-ops job cancel {name}'.",
            )
    if nodes > len(config.nodes):
        raise UsageError(
            f"--nodes {nodes} asks for more nodes than the cluster has ({len(config.nodes)})."
        )
    entry = list(command)
    if nodes > 1:
        entry = ["python", "-m", "grid_ops.runtime.launch", "--nodes", str(nodes)]
        entry += ["--gpus-per-node", str(gpus), "--", *command]
    submission_id = f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    args = ["submit", "--submission-id", submission_id, "--entrypoint", shlex.join(entry)]
    args += ["--env", json.dumps(env or {}), "--metadata", json.dumps({"grid_ops_name": name})]
    if gpus and nodes == 1:
        args += ["--num-gpus", str(gpus)]
    if workdir is not None:
        rel = f"jobs/{submission_id}"
        _push_workdir(config, workdir, rel, inventory)
        args += ["--working-dir", rel]
    head_call(config, *args)
    record = {
        "name": name,
        "submission_id": submission_id,
        "command": command,
        "workdir": str(workdir) if workdir else None,
        "nodes": nodes,
        "status": "PENDING",
        "submitted_at": time.time(),
        "started_at": None,
        "ended_at": None,
        "exit_code": None,
        "known_to_ray": True,
    }
    save(config, record)
    return record


def _push_workdir(config: ClusterConfig, workdir: Path, rel: str, inventory: Any) -> None:
    from grid_ops.errors import GridOpsError, UsageError

    if not workdir.is_dir():
        raise UsageError(f"--workdir {workdir} is not a directory.")
    head = config.head
    root = config.remote_root.rstrip("/")
    if head.connection == "local":
        dest = str(Path(root).expanduser() / rel) + "/"
        rsh: list[str] = []
    else:
        dest = f"{inventory.ssh_target(head)}:{root}/{rel}/"
        inventory.ensure_control_dir()
        rsh = ["-e", shlex.join(inventory.ssh_command(config, head))]
    excludes = [f"--exclude={p}" for p in config.sync.exclude_patterns]
    argv = ["rsync", "-a", "--mkpath", *excludes, *rsh, f"{workdir}/", dest]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise GridOpsError(
            f"Could not copy {workdir} to the head: {proc.stderr.strip()[-300:]}.",
            "Check 'grid-ops ping' and that the head is provisioned.",
        )
