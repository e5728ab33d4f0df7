"""The JSON documents grid-ops answers with, built once for the CLI's ``--json`` and for
the REST API (``grid-ops serve``): a shape changed here changes both.

Pure shaping, plus the few reads and actions whose result is such a document (a job's
results, a job's cancel). Nothing here prints.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from grid_ops.config import ClusterConfig
    from grid_ops.health import NodeHealth

RESERVATION_FIELDS = (
    "id", "node", "resource", "amount", "expires_at", "priority", "state", "created_at",
)  # fmt: skip


def job(record: dict[str, Any]) -> dict[str, Any]:
    """One job as ``job status --json`` shows it."""
    return {
        "name": record["name"],
        "status": record.get("status"),
        "submitted_at": record.get("submitted_at"),
        "started_at": record.get("started_at"),
        "ended_at": record.get("ended_at"),
        "nodes": record.get("nodes", 1),
        "exit_code": record.get("exit_code"),
        "message": record.get("message"),
        "known_to_ray": record.get("known_to_ray", True),
        "submission_id": record.get("submission_id"),
    }


def reservation(row: dict[str, Any]) -> dict[str, Any]:
    """One boost or shared allocation as ``boost status --json`` shows it."""
    return {k: row.get(k) for k in RESERVATION_FIELDS}


def pool_objects(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The memory pool's objects as ``memory list-objects --json`` shows them."""
    return [{"key": r["key"], "size": r["size"], "nodes": r["nodes"]} for r in rows]


def health(nodes: list[NodeHealth], cached: bool) -> dict[str, Any]:
    """``health --json``: every node's facts, ranked, and whether they came from the cache."""
    return {"nodes": [n.to_json() for n in nodes], "cached": cached}


def status(ray: dict[str, Any], nodes: list[NodeHealth], cached: bool) -> dict[str, Any]:
    """``status --json``: the Ray view ('cluster status') beside the health."""
    return {"cluster": ray, "health": health(nodes, cached)}


def node(name: str, ray: dict[str, Any] | None, nodes: list[dict[str, Any]]) -> dict[str, Any]:
    """One node: its health record and its row of the Ray view (None when not known)."""
    facts = next((n for n in nodes if n["name"] == name), None)
    row = next((r for r in (ray or {}).get("nodes", []) if r["name"] == name), None)
    return {"name": name, "health": facts, "ray": row}


def job_results(
    config: ClusterConfig, name: str, final_logs: str | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``job results --json`` of job ``name`` (its reported metrics, the final values,
    the duration), and the record it came from. Reads the logs on the head once more
    while Ray still knows the job (unless ``final_logs``, read after it ended, are
    given); keeps what was found before when it does not."""
    from grid_ops import jobs
    from grid_ops.errors import GridOpsError

    record = jobs.refresh(config, [jobs.load(config, name)])[0]
    if final_logs is not None and record.get("status") in jobs.TERMINAL:
        record["results"] = jobs.results(final_logs)
        jobs.save(config, record)
    elif record.get("known_to_ray", True):
        try:
            logs_text = jobs.head_call(config, "logs", record["submission_id"])["logs"] or ""
        except GridOpsError:
            if record.get("results") is None:
                raise
            record["known_to_ray"] = False  # e.g. the cluster was restarted: keep what we had
        else:
            record["results"] = jobs.results(logs_text)
        jobs.save(config, record)
    found = record.get("results") or {"metrics": [], "final": {}}
    started, ended = record.get("started_at"), record.get("ended_at")
    return {
        "name": name,
        "status": record.get("status"),
        "metrics": found["metrics"],
        "final": found["final"],
        "duration_s": round(ended - started, 3) if started and ended else None,
        "logs": f"grid-ops job logs {name} (Ray Jobs on {config.head.name})",
    }, record


def job_cancel(config: ClusterConfig, name: str, wait: float = 30) -> dict[str, Any]:
    """Stop job ``name`` on Ray Jobs and wait (up to ``wait`` s) until it has ended;
    the job as ``job status --json`` shows it then."""
    from grid_ops import jobs

    record = jobs.load(config, name)
    jobs.head_call(config, "stop", record["submission_id"])
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        jobs.refresh(config, [record])
        if record.get("status") in jobs.TERMINAL:
            break
        time.sleep(0.5)
    return job(record)
