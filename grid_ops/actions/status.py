"""The Ray state of every node: playbooks/ray_status.yml, read by cluster_status."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from grid_ops.actions.progress import QUIET, Progress

if TYPE_CHECKING:
    from pathlib import Path

    from grid_ops.model import ClusterModel


def ray_status(cluster: ClusterModel, path: Path, progress: Progress = QUIET) -> dict[str, Any]:
    """Every node's Ray (alive, dead, absent), its node id and resources, and the head's
    address: the document 'cluster status --json' prints."""
    from grid_ops.drivers import ansible
    from grid_ops.drivers.cluster_status import summarize

    names = cluster.names
    with progress.playbook("ray status", names) as view:
        result = ansible.run("ray_status", cluster, on_progress=view, source=str(path))
    return summarize(cluster, result)


def unreachable(data: dict[str, Any]) -> list[str]:
    """The nodes a status could not reach."""
    return [n["name"] for n in data["nodes"] if not n["reachable"]]
