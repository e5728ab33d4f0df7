"""grid-ops node drain|undrain: take a node out of scheduling for maintenance, and back."""

from __future__ import annotations

import json
import subprocess
from typing import Annotated, Any

import typer

from grid_ops.cli import playbook
from grid_ops.cli.common import ConfigOption, JsonOption, load_config
from grid_ops.cli.output import err, info, out, print_json, safe

app = typer.Typer(help="Drain a node for maintenance, and return it.", no_args_is_help=True)

NodeArg = Annotated[str, typer.Argument(help="The node's name in the cluster config.")]


def _on_node(cfg: Any, name: str, command: list[str], timeout: float) -> dict[str, Any]:
    """Run a grid-ops runtime call on the node; its one JSON line."""
    from grid_ops import model, remote
    from grid_ops.errors import GridOpsError

    node = cfg.node(name)
    model.ensure_control_dir()
    try:
        proc = subprocess.run(
            remote.argv(cfg, node, command),
            capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise GridOpsError(f"{name} did not answer in {timeout:g} s.", "Retry.") from None
    try:
        answer: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        last = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        raise GridOpsError(
            f"Could not drain or undrain {name}: {last}",
            "Check the node with 'grid-ops ping' and that it is provisioned.",
        ) from None
    return answer


@app.command("drain")
def drain(
    node: NodeArg,
    reason: Annotated[
        str, typer.Option("--reason", "-r", help="Why (shown by health and cluster status).")
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

    cfg, _ = load_config(config)
    cfg.node(node)
    if node == cfg.head.name:
        raise UsageError(
            f"{node} is the head: draining it would take the whole cluster down.",
            "Stop the cluster with 'grid-ops cluster stop' for maintenance of the head.",
        )
    from grid_ops.cli.evacuation import describe_move, evacuate

    moved = evacuate(cfg, node)
    answer = _on_node(
        cfg,
        node,
        ["python", "-m", "grid_ops.runtime.drain", "set", "--node", node, "--reason", reason],
        timeout=360,
    )
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
    cfg, path = load_config(config)
    cfg.node(node)
    answer = _on_node(cfg, node, ["python", "-m", "grid_ops.runtime.drain", "clear"], timeout=60)
    if not answer.get("cleared"):
        if json_out:
            print_json({"node": node, "cleared": False})
        else:
            out.print(f"{safe(node)} is not drained; nothing to do.")
        return
    from grid_ops import lifecycle, model

    extravars = lifecycle.head_vars(model.of(cfg), [node])
    started = playbook.run(
        "ray_restart", cfg, path, title="ray restart", json_out=json_out, limit=[node],
        extravars=extravars,
    )  # fmt: skip
    playbook.finish(started, json_out, f"undrain {node}", extra={"cleared": answer.get("cleared")})
