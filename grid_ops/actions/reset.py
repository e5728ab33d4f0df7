"""reset: stop Ray and remove what grid-ops made on the nodes (and only that: each
node's manifest says what it made, grid_ops/module_utils/grid_manifest.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from grid_ops.actions import playbooks
from grid_ops.actions.progress import QUIET, Progress

if TYPE_CHECKING:
    from pathlib import Path

    from grid_ops.drivers.results import PlaybookResult
    from grid_ops.model import ClusterModel


@dataclass
class Reset:
    """The run, and per node what was removed and what was kept (and why)."""

    result: PlaybookResult
    files: dict[str, dict[str, Any]]


def check(cluster: ClusterModel, names: list[str], adopt: bool) -> None:
    """Before anything is deleted: the names are the config's nodes, and (unless
    ``adopt``) none notes another cluster's id (a Conflict naming them)."""
    from grid_ops import lifecycle

    for name in names:
        cluster.node(name)
    if not adopt:
        cluster = cluster
        states = lifecycle.read_states(cluster, [cluster.node(n) for n in names])
        lifecycle.refuse_foreign(cluster, lifecycle.foreign(cluster, states), "reset")


def reset(
    cluster: ClusterModel,
    path: Path,
    limit: list[str] | None = None,
    adopt: bool = False,
    progress: Progress = QUIET,
) -> Reset:
    """Reset ``limit`` (every node when None); the applied state forgets the nodes
    that were reset."""
    from grid_ops import lifecycle

    names = limit or cluster.names
    result = playbooks.run(
        "reset",
        cluster,
        path,
        title="reset",
        progress=progress,
        limit=limit,
        extravars={"grid_facts_adopt": True} if adopt else None,
    )
    lifecycle.forget(cluster.id, [n for n in names if n not in result.failed_hosts])
    return Reset(result, node_files(result))


def node_files(result: PlaybookResult) -> dict[str, dict[str, Any]]:
    """Per node, what the reset tasks removed and what they kept and why (the fact
    grid_reset: grid_ops/module_utils/grid_manifest.py's take_back)."""
    files: dict[str, dict[str, Any]] = {}
    for name, host in result.hosts.items():
        done = host.facts.get("grid_reset")
        if isinstance(done, dict):
            files[name] = {
                "removed": list(done.get("removed") or []),
                "kept": list(done.get("kept") or []),
            }
    return files
