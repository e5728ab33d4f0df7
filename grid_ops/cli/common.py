"""Options and helpers shared by the commands that need a cluster config."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from grid_ops.paths import default_config_path

if TYPE_CHECKING:
    from grid_ops.config import ClusterConfig

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Cluster config YAML. Default: $GRID_OPS_CONFIG, else ./cluster.yaml.",
        show_default=False,
    ),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print one JSON document on stdout instead of a table.")
]
LimitOption = Annotated[
    list[str] | None,
    typer.Option("--limit", "-l", help="Only this node (repeat for several).", show_default=False),
]


def config_path(path: Path | None) -> Path:
    return path if path is not None else default_config_path()


def load_config(path: Path | None, quick_plan: bool = False) -> tuple[ClusterConfig, Path]:
    """Load and validate the cluster config (errors exit 2 with the field named).

    ``quick_plan``: also write the plan that lets grid_ops.quick answer the next call of
    this command without loading the config again.
    """
    from grid_ops import config

    resolved = config_path(path)
    if not quick_plan:
        return config.load(resolved), resolved
    from grid_ops import plan

    at = plan.stamp(resolved)  # before reading: a file changed meanwhile gets a new stamp
    cfg = config.load(resolved)
    plan.write(cfg, resolved, at)
    return cfg, resolved
