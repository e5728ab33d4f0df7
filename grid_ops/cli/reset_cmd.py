"""grid-ops reset: stop Ray and remove everything grid-ops put on the nodes."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from grid_ops.cli import playbook
from grid_ops.cli.common import ConfigOption, JsonOption, LimitOption, load_config
from grid_ops.cli.output import err, error


def reset(
    config: ConfigOption = None,
    limit: LimitOption = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask first.")] = False,
    adopt: Annotated[
        bool,
        typer.Option(
            "--adopt",
            help="Also reset nodes that another grid-ops cluster provisioned (they note "
            "its id); without it they are refused and nothing is changed.",
        ),
    ] = False,
    json_out: JsonOption = False,
) -> None:
    """Stop Ray and remove everything grid-ops put on the nodes (or on --limit ones).

    Removes the venv, runtime, wheelhouse, synced code, jobs, state (Ray token, drain
    notes, the controller's state) and Ray's temp dir under remote_root, the node user's
    private short dir, then remote_root itself if nothing else is left in it. Asks first
    unless --yes. 'grid-ops apply' builds it all again. A node that another grid-ops
    cluster provisioned (it notes that cluster's id) is refused before anything is
    deleted anywhere, unless --adopt.
    """
    from grid_ops import lifecycle, model

    cfg, path = load_config(config)
    names = limit or cfg.node_names
    for name in names:
        cfg.node(name)
    what = ", ".join(names)
    if not adopt:
        cluster = model.of(cfg)
        states = lifecycle.read_states(cluster, [cluster.node(n) for n in names])
        lifecycle.refuse_foreign(cluster, lifecycle.foreign(cluster, states), "reset")
    if not yes:
        if json_out or not sys.stdin.isatty():
            error(
                f"reset would stop Ray and delete grid-ops' files on {what}.",
                "Run it again with --yes to go ahead.",
            )
            raise typer.Exit(2)
        if not typer.confirm(f"Stop Ray and remove grid-ops from {what}?", default=False):
            err.print("Nothing was changed.")
            raise typer.Exit(1)
    result = playbook.run(
        "reset",
        cfg,
        path,
        title="reset",
        json_out=json_out,
        limit=limit,
        extravars={"grid_facts_adopt": True} if adopt else None,
    )
    lifecycle.forget(cfg.id, [n for n in names if n not in result.failed_hosts])
    playbook.finish(result, json_out, "reset")
