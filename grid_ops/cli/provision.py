"""grid-ops provision."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from grid_ops.cli import playbook
from grid_ops.cli.common import ConfigOption, JsonOption, LimitOption, load_cluster
from grid_ops.cli.output import err, print_json
from grid_ops.cli.progress import console

if TYPE_CHECKING:
    from grid_ops.actions.provision import Provisioned

CheckOption = Annotated[
    bool, typer.Option("--check", help="Show what would change, with diffs; change nothing.")
]


FullOption = Annotated[
    bool, typer.Option("--full", help="Visit every node, also those 'apply' noted as current.")
]


def provision(
    config: ConfigOption = None,
    limit: LimitOption = None,
    check: CheckOption = False,
    full: FullOption = False,
    json_out: JsonOption = False,
) -> None:
    """Prepare nodes: Python venv under remote_root with the pinned Ray and grid-ops.

    Wheels are downloaded once on this machine into a cache (offline-capable), pushed to
    the nodes with rsync and installed with --no-index. Running it again changes nothing.
    Missing system packages (python3-venv, rsync) are installed only with 'become: true'.
    Nodes whose stamp ('grid-ops apply') says their venv and runtime are current are not
    visited (one SSH round trip each tells); --full or --limit visits them anyway. A new
    venv is built beside the one in use; Ray keeps running on the old one until
    'grid-ops apply' switches to it in one short window (a plain 'cluster restart' keeps
    the build in use, so a rollback stays rolled back).

    Also spelled 'grid-ops cluster install' (the earlier tools' name for it).
    """
    from grid_ops.actions.provision import provision as provision_nodes

    cluster, path = load_cluster(config)
    progress = console(json_out)
    done = provision_nodes(cluster, path, limit, check, full, progress)
    show(done, json_out, check)


def show(done: Provisioned, json_out: bool, check: bool = False) -> None:
    """The provision run's summary (or JSON); exit 1 when a node failed."""
    if done.current and not json_out:
        err.print(
            f"{len(done.current)} node(s) current, not visited ({', '.join(done.current)}); "
            "--full visits them."
        )
    if done.result is None:
        if json_out:
            print_json({"playbook": "provision", "hosts": {}, "current": done.current})
        return
    result = done.result
    playbook.finish(result, json_out, "provision", check=check)
