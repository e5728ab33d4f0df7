"""grid-ops rollback: back to the venv build the nodes used before the last upgrade."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from grid_ops.actions import playbooks
from grid_ops.cli import playbook
from grid_ops.cli.common import ConfigOption, JsonOption, load_cluster
from grid_ops.cli.output import err, error, out, print_json, safe
from grid_ops.cli.progress import console


def rollback(
    config: ConfigOption = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask first.")] = False,
    json_out: JsonOption = False,
) -> None:
    """Switch every node back to its previous venv build and restart Ray on it.

    An upgrade ('grid-ops apply' after changing ray.version or provision.packages) keeps
    the build it replaced; this stops Ray, points each node's venv back at that build
    and starts Ray again (head first). Put the config back as well, or the next apply
    upgrades again. Asks first unless --yes.
    """
    from grid_ops import lifecycle

    cluster, path = load_cluster(config)
    if not yes:
        if json_out or not sys.stdin.isatty():
            error(
                "rollback restarts Ray on every node (on the venv build each used before).",
                "Run it again with --yes to go ahead.",
            )
            raise typer.Exit(2)
        if not typer.confirm("Restart the cluster on the previous venv builds?", default=False):
            err.print("Nothing was changed.")
            raise typer.Exit(1)
    result = playbooks.run("rollback", cluster, path, title="rollback", progress=console(json_out))
    states = lifecycle.read_states(cluster, list(cluster.nodes))
    builds = {name: state.venv_id for name, state in states.items()}
    on_config = sorted(n for n, b in builds.items() if b == cluster.venv_id)
    if json_out:
        print_json({**result.to_json(), "venv": builds, "config_venv": cluster.venv_id})
    elif not result.failed_hosts:
        for name, build in builds.items():
            out.print(f"  {safe(name)}: venv build {safe(build or 'none')}")
        if len(on_config) < len(builds):
            out.print(
                "The config still asks for the newer requirements: put ray.version and "
                "provision.packages back, or the next 'grid-ops apply' upgrades again."
            )
    playbook.finish(result, json_out, "rollback", quiet=True)
    if not json_out:
        err.print(f"[green]rollback: done on {len(result.hosts)} node(s).[/]")
