"""grid-ops run: a command on a node, in remote_root, with the node venv on PATH."""

from __future__ import annotations

from typing import Annotated

import typer

from grid_ops.cli.common import ConfigOption, load_config
from grid_ops.cli.output import error


def run(
    command: Annotated[list[str], typer.Argument(help="The command and its arguments (after --).")],
    config: ConfigOption = None,
    node: Annotated[
        str | None, typer.Option("--node", "-n", help="Node to run on. Default: the head.")
    ] = None,
    shell: Annotated[
        bool,
        typer.Option("--shell", help="Run COMMAND through the remote shell (pipes, $VARS)."),
    ] = False,
    timeout: Annotated[
        float | None, typer.Option("--timeout", help="Give up after this many seconds (exit 124).")
    ] = None,
) -> None:
    """Run COMMAND on a node: in remote_root, venv first on PATH, RAY_ADDRESS set.

    Output streams as it comes; grid-ops exits with the command's exit code. Arguments
    are passed as given (quoted for the remote shell) unless --shell is used.
    Example: grid-ops run -c cluster.yaml --node node1 -- ray status
    """
    from grid_ops import remote

    cfg, _ = load_config(config)
    target = cfg.node(node) if node else cfg.head
    rc = remote.run(cfg, target, command, shell=shell, timeout=timeout)
    if rc == 255 and target.connection != "local":
        error(
            f"ssh to {target.name} ({target.host}) failed or the command exited 255.",
            "Check the node with 'grid-ops ping'.",
        )
    elif rc == 124 and timeout:
        error(f"The command on {target.name} did not finish within {timeout:g} s.")
    raise typer.Exit(rc)
