"""grid-ops status: the cluster on one screen: Ray on every node and the latest health."""

from __future__ import annotations

from dataclasses import asdict

import typer

from grid_ops.cli import views
from grid_ops.cli.common import ConfigOption, JsonOption, RefreshOption, load_cluster
from grid_ops.cli.output import out, print_json


def status(
    config: ConfigOption = None,
    json_out: JsonOption = False,
    refresh: RefreshOption = False,
) -> None:
    """Ray's state on every node ('cluster status') and the latest health ('health', from
    its cache unless older than health_check.refresh_interval or --refresh).

    --json prints {"cluster": <cluster status --json>, "health": <health --json>}.
    Exit code 1 if a node is unreachable or sick.
    """
    from grid_ops.actions import health
    from grid_ops.actions.status import ray_status
    from grid_ops.cli.cluster import print_status, report_unreachable
    from grid_ops.cli.progress import console

    cluster, path = load_cluster(config)
    ray = ray_status(cluster, path, console(json_out))
    found = health.check(cluster, path, refresh=refresh, progress=console(json_out))
    nodes, cached = found.nodes, found.cached
    if json_out:
        from grid_ops import answers

        print_json(answers.status(ray, nodes, cached))
    else:
        print_status(ray)
        out.print(
            views.health_table([asdict(n) for n in nodes], views.health_title(cluster.name, cached))
        )
    down = report_unreachable(ray, json_out)
    if views.report_trouble([asdict(n) for n in nodes], json_out) or down:
        raise typer.Exit(1)
