"""Provisioning the nodes: the venv with the pinned Ray and grid-ops' runtime
(playbooks/provision.yml), skipping the nodes whose stamp says they are current."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from grid_ops.actions import playbooks
from grid_ops.actions.progress import QUIET, Progress

if TYPE_CHECKING:
    from pathlib import Path

    from grid_ops.drivers.results import PlaybookResult
    from grid_ops.model import ClusterModel


@dataclass
class Provisioned:
    """The run (None when every node was current) and the nodes left out as current."""

    result: PlaybookResult | None
    current: list[str] = field(default_factory=list)


def provision(
    cluster: ClusterModel,
    path: Path,
    limit: list[str] | None = None,
    check: bool = False,
    full: bool = False,
    progress: Progress = QUIET,
) -> Provisioned:
    """Provision ``limit`` (all nodes when None). Without ``limit``, ``full`` or
    ``check``, the nodes whose stamp says their venv and runtime are current are not
    visited (one SSH round trip each tells)."""
    current: list[str] = []
    if not (limit or full or check):
        from grid_ops import lifecycle

        cluster = cluster
        states = lifecycle.read_states(cluster, list(cluster.nodes))
        current = lifecycle.provisioned(cluster, states)
        limit = [n for n in cluster.names if n not in current]
        if not limit:
            return Provisioned(None, current)
    result = playbooks.run(
        "provision", cluster, path, title="provision", progress=progress, limit=limit, check=check
    )
    return Provisioned(result, current)
