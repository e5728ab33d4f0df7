"""grid-ops reset: stop Ray and remove what grid-ops made on the nodes (and only that)."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from grid_ops.cli import playbook
from grid_ops.cli.common import ConfigOption, JsonOption, LimitOption, load_cluster
from grid_ops.cli.output import cell, err, error, out
from grid_ops.cli.progress import console


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
    """Stop Ray and remove what grid-ops made on the nodes (or on --limit ones).

    Removes the venv, runtime, wheelhouse, synced code, jobs, state (Ray token, drain
    notes, the controller's state) and Ray's temp dir under remote_root, the node user's
    private short dir, then remote_root itself if grid-ops made it and nothing else is
    left in it: each only where the node's manifest (state/created.json) notes that
    grid-ops made it. A directory that was there before grid-ops (your own ~/code beside
    remote_root's) is kept and named, with the reason (--json: "files"). On a node an
    older grid-ops provisioned (no manifest) grid-ops' own markers decide (a venv build's
    marker, the runtime package alone in lib, the wheelhouse's marker, a state dir of
    grid-ops' files only, Ray's sessions); what has none, such as synced code, is kept
    and named: remove it by hand if it is yours to drop. Asks first unless --yes.
    'grid-ops apply' builds it all again. A node that another grid-ops cluster
    provisioned (it notes that cluster's id) is refused before anything is deleted
    anywhere, unless --adopt.
    """
    from grid_ops.actions import reset as resetting

    cluster, path = load_cluster(config)
    names = limit or cluster.names
    resetting.check(cluster, names, adopt)
    what = ", ".join(names)
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
    done = resetting.reset(cluster, path, limit, adopt, console(json_out))
    if not json_out:
        print_kept(done.files)
    playbook.finish(done.result, json_out, "reset", extra={"files": done.files})


def print_kept(files: dict[str, dict[str, Any]]) -> None:
    """The table of what stayed on the nodes, and why (nothing when all went)."""
    from rich.table import Table

    rows = [(node, kept) for node, done in files.items() for kept in done["kept"]]
    if not rows:
        return
    table = Table(title="kept: not made by grid-ops", title_justify="left")
    for column in ("node", "path", "why"):
        table.add_column(column)
    for node, kept in rows:
        table.add_row(cell(node), cell(kept.get("path")), cell(kept.get("reason")))
    out.print(table)
