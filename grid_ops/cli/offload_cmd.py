"""grid-ops offload: the controller's auto-offload policy, and a live pressure dashboard."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from grid_ops.cli.common import ConfigOption, JsonOption, load_cluster
from grid_ops.cli.output import cell, err, out, print_json, safe

if TYPE_CHECKING:
    from rich.console import Group

    from grid_ops.health import NodeHealth
    from grid_ops.model import ClusterModel

app = typer.Typer(
    help="Move work that allows it off the head while the head is under pressure.",
    no_args_is_help=True,
)


def _pct(value: Any) -> str:
    return "-" if value is None else f"{float(value):.0f}%"


def _print_status(status: dict[str, Any]) -> None:
    state = "[green]enabled[/]" if status["enabled"] else "[yellow]disabled[/]"
    limits = ", ".join(f"{safe(k)} {v:g}%" for k, v in status["thresholds"].items())
    now = ", ".join(f"{safe(k)} {_pct(v)}" for k, v in status["pressure"].items())
    out.print(f"auto-offload {state}; thresholds: {limits}")
    out.print(f"head ({safe(status.get('head'))}) now: {now}")
    for d in status.get("decisions", [])[-5:]:
        out.print(
            f"  {time.strftime('%H:%M:%S', time.localtime(d['time']))} {safe(d['task'])} -> "
            f"{safe(d['node'] or 'kept on head')} ({safe(d['reason'])})"
        )


@app.command("auto")
def auto(
    config: ConfigOption = None,
    enable: Annotated[bool, typer.Option("--enable", help="Turn auto-offload on.")] = False,
    disable: Annotated[bool, typer.Option("--disable", help="Turn auto-offload off.")] = False,
    status: Annotated[bool, typer.Option("--status", help="Show the policy (default).")] = False,
    threshold: Annotated[
        list[str] | None,
        typer.Option(
            "--threshold",
            help="Percent above which the head is under pressure: N (memory) or "
            "cpu=N, memory=N, gpu=N (repeat).",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Enable, disable or show auto-offload.

    While enabled and the head is above a threshold, tasks submitted with
    submit(..., offload=True) go to the least loaded worker; each decision is recorded
    (--status shows the latest). --json: {"enabled", "thresholds", "pressure", "decisions"}.
    """
    from grid_ops.drivers import control
    from grid_ops.errors import UsageError

    if enable and disable:
        raise UsageError("--enable and --disable exclude each other.", "Pass one of them.")
    if threshold and not enable:
        raise UsageError("--threshold goes with --enable.", "Example: --enable --threshold 70.")
    thresholds = control.parse_thresholds(threshold or [])
    cluster, _ = load_cluster(config)
    if enable or disable:
        result, _ = control.call(
            cluster, "offload-set", {"enabled": enable, "thresholds": thresholds}
        )
    else:
        result, _ = control.call(cluster, "offload-status")
    if as_json:
        print_json(result)
    else:
        _print_status(result)


def _dashboard(cluster: ClusterModel, nodes: list[NodeHealth], view: dict[str, Any]) -> Group:
    from rich.console import Group
    from rich.table import Table

    from grid_ops.cli.boost_cmd import amount_text

    status = view["offload"]
    limits = status["thresholds"]

    def mark(value: float | None, limit: float) -> str:
        text = _pct(value)
        return f"[red]{text}[/]" if value is not None and value > limit else text

    nodes_table = Table(
        title=f"pressure on {safe(cluster.name)} at {time.strftime('%H:%M:%S')}",
        title_justify="left",
    )
    for column in ("node", "cpu", "memory", "gpu", "state"):
        nodes_table.add_column(column)
    for node in nodes:
        if not node.reachable:
            nodes_table.add_row(cell(node.name), "-", "-", "-", "[red]unreachable[/]")
            continue
        cpu = 100.0 * (node.load1 or 0.0) / (node.cpu_count or 1)
        mem = None
        if node.mem_total_bytes:
            mem = 100.0 * (1 - (node.mem_available_bytes or 0) / node.mem_total_bytes)
        gpus = [
            float(g["utilization_gpu"]) for g in node.gpus if g.get("utilization_gpu") is not None
        ]
        role = "head" if node.name == status.get("head") else "worker"
        nodes_table.add_row(
            cell(node.name),
            mark(cpu, limits["cpu"]),
            mark(mem, limits["memory"]),
            mark(max(gpus) if gpus else None, limits["gpu"]),
            role,
        )
    state = "[green]enabled[/]" if status["enabled"] else "[yellow]disabled[/]"
    head = ", ".join(
        f"{safe(k)} {_pct(v)} (limit {limits[k]:g}%)" for k, v in status["pressure"].items()
    )
    decisions = Table(title="recent offloads", title_justify="left")
    for column in ("time", "task", "to", "why"):
        decisions.add_column(column)
    for d in status["decisions"][-8:]:
        decisions.add_row(
            time.strftime("%H:%M:%S", time.localtime(d["time"])),
            cell(d["task"]),
            cell(d["node"] or "kept on head"),
            cell(d["reason"]),
        )
    boosts = Table(title="active boosts and allocations", title_justify="left")
    for column in ("id", "node", "resource", "amount", "state"):
        boosts.add_column(column)
    for r in view["reservations"]:
        boosts.add_row(
            cell(r["id"]),
            cell(r["node"]),
            cell(r["resource"]),
            amount_text(r["resource"], r["amount"]),
            cell(r["state"]),
        )
    return Group(f"auto-offload {state}; head now: {head}", nodes_table, decisions, boosts)


@app.command("watch")
def watch(
    config: ConfigOption = None,
    interval: Annotated[
        float, typer.Option("--interval", help="Seconds between refreshes.", min=0.5)
    ] = 2.0,
    rounds: Annotated[
        int,
        typer.Option("--rounds", help="Stop after this many refreshes (0 = until Ctrl-C).", min=0),
    ] = 0,
) -> None:
    """A live dashboard: per-node CPU/memory/GPU pressure against the thresholds, recent
    offload decisions and active boosts. Redraws in place on a terminal; piped, it
    prints one dashboard per refresh."""
    from contextlib import nullcontext

    from rich.live import Live

    from grid_ops.actions import health
    from grid_ops.drivers import control

    cluster, path = load_cluster(config)
    live = Live(console=out, auto_refresh=False) if out.is_terminal else None
    done = 0
    try:
        with live if live is not None else nullcontext():
            while True:
                nodes = health.check(cluster, path, policy=health.REPORT, refresh=True).nodes
                view, _ = control.call(cluster, "overview")
                board = _dashboard(cluster, nodes, view)
                if live is not None:
                    live.update(board, refresh=True)
                else:
                    out.print(board)
                done += 1
                if rounds and done >= rounds:
                    break
                time.sleep(interval)
    except KeyboardInterrupt:
        err.print("[dim]stopped[/]")
