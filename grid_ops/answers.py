"""The JSON documents grid-ops answers with, built once for the CLI's ``--json`` and for
the REST API (``grid-ops serve``): a shape changed here changes both.

Pure shaping, plus the few reads and actions whose result is such a document (a job's
results, a job's cancel). Nothing here prints.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from grid_ops.health import NodeHealth

RESERVATION_FIELDS = (
    "id", "node", "resource", "amount", "expires_at", "priority", "state", "created_at",
    "owner",
)  # fmt: skip


def job(record: dict[str, Any]) -> dict[str, Any]:
    """One job as ``job status --json`` shows it: the queue's record (what it needs, its
    retry rules, every attempt), with the last attempt's times, exit code, Ray's message
    and submission id at the top, and the GPU energy of all its attempts (joules, a
    running attempt's so far; None when none was measured)."""
    attempts = [dict(a) for a in record.get("attempts") or []]
    last = attempts[-1] if attempts else {}
    measured = [a["energy_j"] for a in attempts if a.get("energy_j") is not None]
    return {
        "name": record["name"],
        "id": record.get("id"),
        "status": record.get("status"),
        "reason": record.get("reason") or "",
        "priority": record.get("priority"),
        "submitter": record.get("submitter"),
        "submitted_at": record.get("submitted_at"),
        "started_at": last.get("started_at"),
        "ended_at": last.get("ended_at"),
        "nodes": record.get("nodes", 1),
        "gpus_per_node": record.get("gpus_per_node"),
        "cpus_per_node": record.get("cpus_per_node"),
        "exit_code": last.get("exit_code"),
        "message": last.get("message") or record.get("reason") or "",
        "submission_id": last.get("submission_id"),
        "attempt": len(attempts),
        "attempts": attempts,
        "energy_j": sum(measured) if measured else None,
        "max_retries": record.get("max_retries"),
        "retry_on_exit": record.get("retry_on_exit") or [],
        "timeout": record.get("timeout"),
        "command": record.get("command") or [],
    }


def reservation(row: dict[str, Any]) -> dict[str, Any]:
    """One boost or shared allocation as ``boost status --json`` shows it."""
    return {k: row.get(k) for k in RESERVATION_FIELDS}


def pool_objects(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The memory pool's objects as ``memory list-objects --json`` shows them."""
    keys = ("key", "size", "nodes", "owner")
    return [{k: r.get(k) for k in keys} for r in rows]


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
