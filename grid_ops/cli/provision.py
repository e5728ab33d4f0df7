"""grid-ops provision, grid-ops up."""

from __future__ import annotations

from typing import Annotated

import typer

from grid_ops.cli import playbook
from grid_ops.cli.common import ConfigOption, JsonOption, LimitOption, load_config

CheckOption = Annotated[
    bool, typer.Option("--check", help="Show what would change, with diffs; change nothing.")
]


def provision(
    config: ConfigOption = None,
    limit: LimitOption = None,
    check: CheckOption = False,
    json_out: JsonOption = False,
) -> None:
    """Prepare nodes: Python venv under remote_root with the pinned Ray and grid-ops.

    Wheels are downloaded once on this machine into a cache (offline-capable), pushed to
    the nodes with rsync and installed with --no-index. Running it again changes nothing.
    Missing system packages (python3-venv, rsync) are installed only with 'become: true'.
    """
    cfg, path = load_config(config)
    result = playbook.run(
        "provision", cfg, path, title="provision", json_out=json_out, limit=limit, check=check
    )
    playbook.finish(result, json_out, "provision", check=check)
