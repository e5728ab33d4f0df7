"""The Ray state of every node: playbooks/ray_status.yml, read by cluster_status."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from grid_ops.actions.progress import QUIET, Progress

if TYPE_CHECKING:
    from pathlib import Path

    from grid_ops.model.config import ClusterConfig


def ray_status(cfg: ClusterConfig, path: Path, progress: Progress = QUIET) -> dict[str, Any]:
    """Every node's Ray (alive, dead, absent), its node id and resources, and the head's
    address: the document 'cluster status --json' prints."""
    from grid_ops.drivers import ansible
    from grid_ops.drivers.cluster_status import summarize

    names = [n.name for n in cfg.nodes]
    with progress.playbook("ray status", names) as view:
        result = ansible.run("ray_status", cfg, on_progress=view, source=str(path))
    return summarize(cfg, result)


def unreachable(data: dict[str, Any]) -> list[str]:
    """The nodes a status could not reach."""
    return [n["name"] for n in data["nodes"] if not n["reachable"]]
