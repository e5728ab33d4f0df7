"""grid-ops cluster start|stop|status|restart: the Ray cluster, driven by playbooks."""

from __future__ import annotations

from typing import Any

import typer

from grid_ops.actions import playbooks
from grid_ops.actions import status as status_action
from grid_ops.actions.status import ray_status
from grid_ops.cli import playbook
from grid_ops.cli.common import ConfigOption, JsonOption, LimitOption, load_cluster
from grid_ops.cli.output import cell, error, out, print_json, safe
from grid_ops.cli.progress import console

app = typer.Typer(help="Start, stop and inspect the Ray cluster.", no_args_is_help=True)


@app.command("start")
def start(
    config: ConfigOption = None, limit: LimitOption = None, json_out: JsonOption = False
) -> None:
    """Start Ray: the head first (waiting for its GCS), then the workers.

    Nodes where Ray already runs are left alone, so on a running cluster this changes
    nothing, and with one worker down it starts only that worker. A drained node
    ('grid-ops node drain') stays off. --limit starts only those nodes (workers join the
    running head).
    """
    cluster, path = load_cluster(config)
    result = playbooks.start(cluster, path, limit, console(json_out))
    playbook.finish(result, json_out, "cluster start")


@app.command("stop")
def stop(
    config: ConfigOption = None, limit: LimitOption = None, json_out: JsonOption = False
) -> None:
    """Stop Ray on every node (or the --limit ones), as each node's user."""
    cluster, path = load_cluster(config)
    result = playbooks.run(
        "ray_stop", cluster, path, title="ray stop", progress=console(json_out), limit=limit
    )
    playbook.finish(result, json_out, "cluster stop")


@app.command("restart")
def restart(config: ConfigOption = None, json_out: JsonOption = False) -> None:
    """Stop Ray everywhere, then start it again (head first), in one playbook run."""
    cluster, path = load_cluster(config)
    result = playbooks.restart(cluster, path, progress=console(json_out))
    playbook.finish(result, json_out, "cluster restart")


@app.command("status")
def status(config: ConfigOption = None, json_out: JsonOption = False) -> None:
    """Show Ray on every node: alive, dead or absent, its node id and resources.

    Exit code 1 when a node cannot be reached.
    """
    cluster, path = load_cluster(config)
    show_status(ray_status(cluster, path, console(json_out)), json_out)


def show_status(data: dict[str, Any], json_out: bool) -> None:
    """The Ray status table (or JSON); exit 1 when a node could not be reached."""
    if json_out:
        print_json(data)
    else:
        print_status(data)
    if report_unreachable(data, json_out):
        raise typer.Exit(1)


def report_unreachable(data: dict[str, Any], json_out: bool) -> bool:
    """Name the nodes the status could not reach (not with --json); True if any."""
    unreachable = status_action.unreachable(data)
    if unreachable and not json_out:
        error(
            f"Could not reach {', '.join(unreachable)}; their Ray state is what the head "
            "reports (or absent).",
            "Check the node (grid-ops ping) and run the status again.",
        )
    return bool(unreachable)


def print_status(data: dict[str, object]) -> None:
    from rich.table import Table

    style = {"alive": "green", "dead": "red", "absent": "dim"}
    address = data["address"] or "(not running)"
    title = f"Ray cluster: head {safe(data['head'])}, address {safe(address)}"
    table = Table(title=title, title_justify="left")
    for col in ("node", "role", "ray", "ip", "CPU", "GPU", "memory GiB", "node id"):
        table.add_column(col)
    for row in data["nodes"]:  # type: ignore[attr-defined]
        res = row["resources"]
        state = row["ray"] if row["reachable"] else f"{row['ray']} (unreachable)"
        if row.get("drained"):
            state += f", drained: {row['drained']}"
        table.add_row(
            cell(row["name"]),
            cell(row["role"]),
            cell(state, style=style.get(row["ray"], "")),
            cell(row["ip"] or ""),
            f"{res['CPU']:g}" if "CPU" in res else "",
            f"{res['GPU']:g}" if "GPU" in res else ("0" if res else ""),
            f"{res['memory'] / 2**30:.1f}" if "memory" in res else "",
            cell((row["node_id"] or "")[:12]),
        )
    out.print(table)
