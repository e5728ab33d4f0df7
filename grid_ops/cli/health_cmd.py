"""grid-ops health: per-node load, memory, GPUs and a score, best first."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated

import typer

from grid_ops.cli import views
from grid_ops.cli.common import ConfigOption, JsonOption, RefreshOption, load_cluster
from grid_ops.cli.output import err, out, print_json

if TYPE_CHECKING:
    from pathlib import Path

    from rich.table import Table

    from grid_ops.actions.health import Round
    from grid_ops.health import NodeHealth
    from grid_ops.model import ClusterModel


def table(nodes: list[NodeHealth], title: str) -> Table:
    from grid_ops.cli.views import health_table

    return health_table([asdict(n) for n in nodes], title)


def health(
    config: ConfigOption = None,
    json_out: JsonOption = False,
    refresh: RefreshOption = False,
    watch: Annotated[
        float | None,
        typer.Option("--watch", help="Probe again every SECONDS and redraw (Ctrl-C stops).", min=1),
    ] = None,
) -> None:
    """Probe every node (load, memory, disk, Ray, GPUs, the health checks) and rank them.

    Score, lower is better: cpu_weight x load per core
    + gpu_weight x GPU memory used fraction (weights: health_check in the config).
    Results are cached for health_check.refresh_interval seconds.

    Each round runs the passive checks (GPUs found vs the config's gpu_count, the
    driver, uncorrectable ECC, pending row remaps and page retirements, hardware
    slowdowns, persistence mode, Xid events, disk free under remote_root, the clock,
    Ray's version against the head's, a raylet gone). A node failing a "sick" check is
    quarantined (health_check.quarantine, default on): drained as 'node drain' does,
    with the reason, until a later round finds it well; 'node undrain' returns it at
    once. Exit code 1 if a node is unreachable or sick (a worker whose Ray is down while
    the head's runs is sick).

    --watch also repairs (health_check.repair, default on): it restarts Ray on a node
    where it should run but does not, with backoff, and quarantines the node after
    health_check.repair_attempts failed repairs in a row until a repair works.

    Later runs with an unchanged config skip loading the full CLI and the config.
    GRID_OPS_QUICK=0 turns that off.
    """

    cluster, path = load_cluster(config, quick_plan=True)
    if watch is not None:
        _watch(cluster, path, watch)
        return
    from grid_ops.actions import health as health_action
    from grid_ops.cli.progress import console

    found = health_action.check(cluster, path, refresh=refresh, progress=console(json_out))
    show(cluster.name, found, json_out)


def show(cluster: str, found: Round, json_out: bool) -> None:
    """A health round's table (or JSON); exit 1 if a node is unreachable or sick."""
    if json_out:
        from grid_ops import answers

        print_json(answers.health(found.nodes, found.cached))
    else:
        out.print(table(found.nodes, views.health_title(cluster, found.cached)))
    if views.report_trouble([asdict(n) for n in found.nodes], json_out):
        raise typer.Exit(1)


def _watch(cluster: ClusterModel, path: Path, seconds: float) -> None:
    """Redraw in place on a terminal; otherwise print one table per round (for logs)."""
    from contextlib import nullcontext

    from rich.live import Live

    from grid_ops.actions import health
    from grid_ops.cli.progress import console

    live = Live(console=out, auto_refresh=False) if out.is_terminal else None
    try:
        with live if live is not None else nullcontext():
            while True:
                found = health.check(cluster, path, policy=health.REPAIR, refresh=True,
                                     progress=console())  # fmt: skip
                nodes = found.nodes
                view = table(nodes, f"health of {cluster.name} at {time.strftime('%H:%M:%S')}")
                if live is not None:
                    live.update(view, refresh=True)
                else:
                    out.print(view)
                time.sleep(seconds)
    except KeyboardInterrupt:
        err.print("[dim]stopped[/]")
