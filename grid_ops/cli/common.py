"""Options and helpers shared by the commands that need a cluster config."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from grid_ops.paths import default_config_path

if TYPE_CHECKING:
    from grid_ops.model import ClusterModel
    from grid_ops.model.config import ClusterConfig

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
RefreshOption = Annotated[
    bool,
    typer.Option(
        "--refresh",
        help="Probe every node now instead of using health facts younger than "
        "health_check.refresh_interval.",
    ),
]
LimitOption = Annotated[
    list[str] | None,
    typer.Option("--limit", "-l", help="Only this node (repeat for several).", show_default=False),
]


def config_path(path: Path | None) -> Path:
    return path if path is not None else default_config_path()


def load_config(path: Path | None) -> tuple[ClusterConfig, Path]:
    """Load and validate the cluster config (errors exit 2 with the field named), for a
    command that only reads the config (``config show``, ``inventory``)."""
    cluster, resolved = load_cluster(path)
    return cluster.config, resolved


def load_cluster(path: Path | None, quick_plan: bool = False) -> tuple[ClusterModel, Path]:
    """Load and validate the cluster config (errors exit 2 with the field named) and
    resolve it: the one model of this command, which the actions and drivers get.

    ``quick_plan``: also keep the resolved model, keyed by the file's content, so that
    grid_ops.cli.quick answers the next call of this command without loading the config.
    """
    import os

    from grid_ops import model
    from grid_ops.model import config

    resolved = config_path(path)
    config_abs = os.path.abspath(resolved)
    raw = model.read_config_bytes(config_abs) if quick_plan else None  # before loading
    cfg = config.load(resolved)
    from grid_ops import log

    log.configure(cfg.logging.level, cfg.logging.format)
    static = model.resolve(cfg, recorded=False)
    if raw is not None:
        model.save_cache(static, config_abs, model.cache_key(raw, config_abs))
    if cfg.deprecations:
        from grid_ops.cli.output import warn

        for line in cfg.deprecations:
            warn(line)
    return model.with_recorded(static), resolved
