"""grid-ops node drain|undrain: take a node out of scheduling for maintenance, and back."""

from __future__ import annotations

from typing import Annotated

import typer

from grid_ops.cli import playbook
from grid_ops.cli.common import ConfigOption, JsonOption, load_cluster
from grid_ops.cli.output import err, info, out, print_json, safe

app = typer.Typer(help="Drain a node for maintenance, and return it.", no_args_is_help=True)

NodeArg = Annotated[str, typer.Argument(help="The node's name in the cluster config.")]


@app.command("drain")
def drain(
    node: NodeArg,
    reason: Annotated[
        str,
        typer.Option(
            "--reason",
            "-r",
            help="Why (shown by health and cluster status). It may not start with "
            "'quarantine:', which marks the health gate's own drains (lifted once well).",
        ),
    ] = "maintenance",
    config: ConfigOption = None,
    json_out: JsonOption = False,
) -> None:
    """Take NODE out of scheduling, keeping it in the cluster.

    Ray places nothing new there and lets the node go once its running work is done;
    the controller copies its memory-pool objects to other nodes, moves its shares and
    releases its boosts (each is listed). 'run' and new jobs avoid it; 'health' and
    'cluster status' show it drained with the reason; 'cluster start' and 'apply' leave
    its Ray off. 'grid-ops node undrain NODE' returns it.
    """
    from grid_ops.errors import UsageError

    cluster, _ = load_cluster(config)
    cluster.node(node)
    if node == cluster.head:
        raise UsageError(
            f"{node} is the head: draining it would take the whole cluster down.",
            "Stop the cluster with 'grid-ops cluster stop' for maintenance of the head.",
        )
    from grid_ops.actions.nodes import describe_move
    from grid_ops.actions.nodes import drain as drain_node

    answer, moved = drain_node(cluster, node, reason)
    if json_out:
        print_json({"node": node, **answer, "moved": moved})
        return
    if isinstance(moved, dict):
        why = safe(moved["error"])
        err.print(f"[yellow]The controller did not evacuate {safe(node)}: {why}[/]")
    for row in moved if isinstance(moved, list) else []:
        info(f"{node}: {describe_move(row)}")
    ray = str(answer.get("ray"))
    how = {
        "drained": "Ray places nothing new there and lets it go once its running work is done",
        "not running": "Ray does not run there",
    }.get(ray, f"Ray: {ray}")
    out.print(f"{safe(node)} drained ({safe(answer.get('reason'))}): {safe(how)}.")


@app.command("undrain")
def undrain(node: NodeArg, config: ConfigOption = None, json_out: JsonOption = False) -> None:
    """Return a drained NODE to service: clear its note and start its Ray again."""
    from grid_ops.actions.nodes import undrain as undrain_node
    from grid_ops.cli.progress import console

    cluster, path = load_cluster(config)
    cluster.node(node)
    answer, started = undrain_node(cluster, path, node, console(json_out))
    if started is None:  # nothing was cleared
        if json_out:
            print_json({"node": node, "cleared": False})
        else:
            out.print(f"{safe(node)} is not drained; nothing to do.")
        return
    playbook.finish(started, json_out, f"undrain {node}", extra={"cleared": answer.get("cleared")})
