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
