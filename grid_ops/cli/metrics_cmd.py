"""grid-ops metrics: Prometheus exposition of node health and local counters."""

from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING, Annotated, Any

import typer

from grid_ops.cli.common import ConfigOption, load_cluster
from grid_ops.cli.output import err, safe

if TYPE_CHECKING:
    from grid_ops.model import ClusterModel

app = typer.Typer(
    help="Prometheus metrics: node health gauges, run/sync counters. Without a "
    "subcommand, print them once.",
    invoke_without_command=True,
)


def controller_numbers(cluster: ClusterModel) -> dict[str, Any] | None:
    """The controller's metrics, or None when it does not answer (grid_controller_up 0)."""
    from grid_ops.drivers import control
    from grid_ops.errors import GridOpsError

    # a short call, but one that starts a Python on the head: the probe's deadline
    try:
        result, _ = control.call(cluster, "metrics", timeout=cluster.deadlines.probe)
    except GridOpsError:
        return None
    return dict(result)


@app.callback()
def metrics(
    ctx: typer.Context,
    config: ConfigOption = None,
    refresh: Annotated[
        bool,
        typer.Option("--refresh", help="Probe the nodes now instead of using the latest facts."),
    ] = False,
) -> None:
    """Print the metrics in the Prometheus text format, from the latest health facts.

    Gauges: grid_node_up, grid_node_health_score, grid_node_load1,
    grid_node_gpu_memory_used_bytes. Counters: grid_tasks_completed_total{status,source},
    histograms grid_task_duration_seconds{source} (source=run: grid-ops run;
    source=cluster: scheduler tasks) and grid_sync_duration_seconds (sync). From the
    cluster's controller: grid_controller_up, grid_active_tasks, grid_boosts_active,
    grid_memory_pool_bytes{node}.
    """
    if ctx.invoked_subcommand is not None:
        return
    from grid_ops import metrics as m
    from grid_ops.actions import health

    cluster, path = load_cluster(config)
    nodes = health.check(cluster, path, policy=health.REPORT, refresh=refresh, any_age=True).nodes
    sys.stdout.buffer.write(
        m.exposition(cluster.id, [n.to_json() for n in nodes], controller_numbers(cluster))
    )
    sys.stdout.flush()


@app.command("serve")
def serve(
    config: ConfigOption = None,
    bind: Annotated[str, typer.Option("--bind", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", help="Port to listen on.", min=1, max=65535)
    ] = 9108,
    interval: Annotated[
        float, typer.Option("--interval", help="Seconds between health probes.", min=1)
    ] = 30.0,
) -> None:
    """Serve /metrics over HTTP, probing the nodes every --interval seconds."""
    from prometheus_client import start_http_server

    from grid_ops import metrics as m
    from grid_ops.actions import health
    from grid_ops.errors import UsageError

    cluster, path = load_cluster(config)
    collector = m.LiveCollector(cluster.id)

    def refresh() -> None:
        nodes = health.check(cluster, path, policy=health.REPORT, refresh=True).nodes
        collector.nodes = [n.to_json() for n in nodes]
        collector.cluster = controller_numbers(cluster)

    refresh()
    try:
        start_http_server(port, addr=bind, registry=m.registry(collector))
    except OSError as exc:
        raise UsageError(
            f"Cannot listen on {bind}:{port}: {exc.strerror}.", "Pick another --port."
        ) from None
    err.print(
        f"serving metrics on http://{safe(bind)}:{port}/metrics "
        f"(every {interval:g} s; Ctrl-C stops)"
    )
    stop = threading.Event()
    try:
        while not stop.wait(interval):
            refresh()
    except KeyboardInterrupt:
        err.print("[dim]stopped[/]")
