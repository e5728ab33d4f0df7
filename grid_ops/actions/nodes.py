"""Draining a node and returning it, and evacuating what the controller keeps on it:
one implementation for 'node drain/undrain', 'apply' (a removed node) and the health
gate's quarantine (a drain whose reason starts with facts.QUARANTINE; only the gate
writes such a note, and an operator's reason that would read so is refused: see
grid_ops.runtime.drain)."""

from __future__ import annotations

import json
import subprocess
from typing import TYPE_CHECKING, Any

from grid_ops import model
from grid_ops.actions import playbooks
from grid_ops.actions.progress import QUIET, Progress

if TYPE_CHECKING:
    from pathlib import Path

    from grid_ops.drivers.results import PlaybookResult
    from grid_ops.model import ClusterModel

DRAIN = ["python", "-m", "grid_ops.runtime.drain"]


def on_node(
    cluster: ClusterModel,
    name: str,
    command: list[str],
    timeout: float,
    what: str = "drain or undrain",
) -> dict[str, Any]:
    """Run a grid-ops runtime call on the node; its one JSON line."""
    from grid_ops.drivers import remote
    from grid_ops.errors import GridOpsError

    model.ensure_control_dir()
    try:
        proc = subprocess.run(
            remote.argv(cluster, name, command),
            capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise GridOpsError(f"{name} did not answer in {timeout:g} s.", "Retry.") from None
    try:
        answer: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        last = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        raise GridOpsError(
            f"Could not {what} {name}: {last}",
            "Check the node with 'grid-ops ping' and that it is provisioned.",
        ) from None
    return answer


def evacuation(cluster: ClusterModel, name: str) -> list[dict[str, Any]] | dict[str, str]:
    """The controller moves what it keeps on ``name`` elsewhere; what it did (or
    ``{"error": ...}`` when the controller could not be asked)."""
    from grid_ops.drivers import control
    from grid_ops.errors import GridOpsError

    try:
        moved, _ = control.call(cluster, "evacuate", {"node": name})
        return list(moved.get("moved", []))
    except GridOpsError as exc:
        return {"error": exc.message}


def describe_move(row: dict[str, Any]) -> str:
    """One evacuation row in words."""
    if row.get("kind") == "pool":
        if row.get("state") == "copied":
            return f"pool object '{row['key']}' copied to {', '.join(row.get('to') or [])}"
        return f"pool object '{row['key']}' {row.get('state')}: {row.get('why', '')}"
    if row.get("state") == "moved":
        return f"{row['kind']} {row['id']} moved to {row.get('to')}"
    return f"{row['kind']} {row['id']} released (it was on the removed node)"


def drain(
    cluster: ClusterModel, name: str, reason: str, evacuate: bool = True, quarantine: bool = False
) -> tuple[dict[str, Any], Any]:
    """Evacuate ``name`` (the controller moves its pool copies, shares and boosts; not
    when ``evacuate`` is False: the cluster's Ray is down), write its drain note and drain
    it in Ray. Returns (the node's answer, what moved).

    ``quarantine``: the health gate's drain (its reason is noted as a quarantine, which a
    healthy round lifts). Otherwise an operator's: a reason that reads like a quarantine
    is a UsageError, before anything is moved."""
    from grid_ops.errors import UsageError
    from grid_ops.runtime.drain import reason_problem

    problem = None if quarantine else reason_problem(reason)
    if problem is not None:
        raise UsageError(problem)
    moved = evacuation(cluster, name) if evacuate else []
    command = [*DRAIN, "set", "--node", name, "--reason", reason]
    limit = cluster.deadlines.drain
    answer = on_node(cluster, name, [*command, *(["--quarantine"] if quarantine else [])], limit)
    if "error" in answer:  # the node refused the reason (an older or other caller's check)
        raise UsageError(f"{name} refused the drain: {answer['error']}")
    return answer, moved


def undrain(
    cluster: ClusterModel,
    path: Path,
    name: str,
    progress: Progress = QUIET,
    only_if: str = "",
    restart: bool = True,
) -> tuple[dict[str, Any], PlaybookResult | None]:
    """Clear ``name``'s drain note (``only_if``: only a note whose reason starts so) and,
    when one was cleared and ``restart``, start its Ray again. Returns (the node's
    answer, the restart run or None)."""
    command = [*DRAIN, "clear", *(["--only-if", only_if] if only_if else [])]
    answer = on_node(cluster, name, command, timeout=cluster.deadlines.undrain)
    if not answer.get("cleared") or not restart:
        return answer, None
    started = playbooks.restart(cluster, path, [name], progress, title=f"ray restart {name}")
    return answer, started
