"""Evacuating a node through the controller (before it is removed or drained), and the
words for what moved: one implementation for 'apply' and 'node drain'."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from grid_ops.config import ClusterConfig


def evacuate(cfg: ClusterConfig, name: str) -> list[dict[str, Any]] | dict[str, str]:
    """The controller moves what it keeps on ``name`` elsewhere; what it did."""
    from grid_ops import control
    from grid_ops.errors import GridOpsError

    try:
        moved, _ = control.call(cfg, "evacuate", {"node": name})
        return list(moved.get("moved", []))
    except GridOpsError as exc:
        return {"error": exc.message}


def describe_move(row: dict[str, Any]) -> str:
    if row.get("kind") == "pool":
        if row.get("state") == "copied":
            return f"pool object '{row['key']}' copied to {', '.join(row.get('to') or [])}"
        return f"pool object '{row['key']}' {row.get('state')}: {row.get('why', '')}"
    if row.get("state") == "moved":
        return f"{row['kind']} {row['id']} moved to {row.get('to')}"
    return f"{row['kind']} {row['id']} released (it was on the removed node)"
