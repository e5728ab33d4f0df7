"""Running one of the project's playbooks on the cluster: the one call every use case
that drives Ansible makes (grid_ops.drivers.ansible.run with the progress of the caller)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from grid_ops.actions.progress import QUIET, Progress

if TYPE_CHECKING:
    from pathlib import Path

    from grid_ops.drivers.results import PlaybookResult
    from grid_ops.model import ClusterModel


def run(
    playbook: str,
    cluster: ClusterModel,
    path: Path,
    *,
    title: str,
    progress: Progress = QUIET,
    limit: list[str] | None = None,
    check: bool = False,
    extravars: dict[str, Any] | None = None,
) -> PlaybookResult:
    """Run ``playbook`` on the cluster (``limit``: those nodes only); its result."""
    from grid_ops.drivers import ansible

    names = limit or cluster.names
    with progress.playbook(title, names) as view:
        return ansible.run(
            playbook,
            cluster,
            limit=limit,
            extravars=extravars,
            check=check,
            on_progress=view,
            source=str(path),
        )


def start(
    cluster: ClusterModel,
    path: Path,
    limit: list[str] | None = None,
    progress: Progress = QUIET,
    title: str = "ray start",
) -> PlaybookResult:
    """Start Ray (the head first); with ``limit`` only those nodes, joining the head."""
    return _ray("ray_start", cluster, path, limit, progress, title)


def restart(
    cluster: ClusterModel,
    path: Path,
    limit: list[str] | None = None,
    progress: Progress = QUIET,
    title: str = "ray restart",
) -> PlaybookResult:
    """Stop Ray, then start it again (head first); ``limit``: those nodes, joining the head."""
    return _ray("ray_restart", cluster, path, limit, progress, title)


def _ray(
    playbook: str,
    cluster: ClusterModel,
    path: Path,
    limit: list[str] | None,
    progress: Progress,
    title: str,
) -> PlaybookResult:
    """A Ray start or restart (the head's address is in the inventory, run or not)."""
    return run(playbook, cluster, path, title=title, progress=progress, limit=limit)
