"""grid-ops init, grid-ops config validate."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated

import typer

from grid_ops.cli.common import ConfigOption, JsonOption, load_config
from grid_ops.cli.output import cell, out, print_json, safe, warn
from grid_ops.errors import UsageError

app = typer.Typer(help="Check cluster configs.", no_args_is_help=True)


STARTER_ID = "0000000000000000"  # the template's placeholder


def starter_text(cluster_id: str | None = None) -> str:
    """The commented starter config, with a fresh cluster id (or ``cluster_id``)."""
    from grid_ops import identity

    text = resources.files("grid_ops").joinpath("templates/cluster.example.yaml").read_text()
    made = cluster_id or identity.new_id()
    return text.replace(f'cluster_id: "{STARTER_ID}"', f'cluster_id: "{made}"')


def init(
    path: Annotated[Path, typer.Argument(help="Where to write the config.")] = Path("cluster.yaml"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="The same as PATH (as the earlier tool took it)."),
    ] = None,
) -> None:
    """Write a commented starter cluster config to PATH (default ./cluster.yaml)."""
    from grid_ops.fsutil import write_file

    if config is not None:
        path = config
    if path.is_dir():
        raise UsageError(f"{path} is a directory.", "Give a file path, e.g. cluster.yaml.")
    if path.exists() and not force:
        raise UsageError(
            f"{path} already exists.", "Pass --force to overwrite it, or another PATH."
        )
    write_file(path, starter_text())
    shown = safe(path)
    out.print(f"Wrote {shown}. Edit its nodes, then run: grid-ops config validate -c {shown}")


@app.command("validate")
def validate(
    path: Annotated[
        Path | None,
        typer.Argument(help="Config to check (default: -c, $GRID_OPS_CONFIG, ./cluster.yaml)."),
    ] = None,
    config: ConfigOption = None,
    json_out: JsonOption = False,
) -> None:
    """Check a cluster config and print a summary of its nodes, head and GPUs.

    Settings that open the cluster to its network (dashboard beyond loopback, no Ray
    auth), and ssh.config_file entries that run commands on this machine or open the
    way back to it (ProxyCommand, LocalCommand, PermitLocalCommand yes, ForwardAgent,
    RemoteForward, KnownHostsCommand, Match exec; its Include files too; not ProxyJump),
    are valid but warned about on stderr, and listed under "warnings" in --json; old keys
    that are ignored now, likewise under "deprecated".
    """
    cfg, resolved = load_config(path or config)
    if json_out:
        print_json(
            {
                "valid": True,
                "warnings": cfg.warnings(),
                "deprecated": cfg.deprecations,
                "path": str(resolved),
                "name": cfg.name,
                "id": cfg.id,
                "head": cfg.head.name,
                "gpus": sum(n.gpu_count for n in cfg.nodes),
                "nodes": [
                    {
                        "name": n.name,
                        "host": n.host,
                        "port": n.port,
                        "user": n.user,
                        "role": "head" if n.name == cfg.head.name else "worker",
                        "gpu_count": n.gpu_count,
                        "memory_gb": n.memory_gb,
                        "tags": n.tags,
                    }
                    for n in cfg.nodes
                ],
            }
        )
        _warn(cfg.warnings())
        return
    from rich.table import Table

    table = Table(
        title=f"{safe(cfg.name)} (id {safe(cfg.id)}): {safe(resolved)}", title_justify="left"
    )
    for col in ("node", "role", "address", "user", "GPUs", "memory GB", "tags"):
        table.add_column(col, justify="right" if col in ("GPUs", "memory GB") else "left")
    for n in cfg.nodes:
        role = "head" if n.name == cfg.head.name else "worker"
        address = (
            "local" if n.connection == "local" else (f"{n.host}:{n.port}" if n.port else n.host)
        )
        table.add_row(
            cell(n.name),
            f"[bold]{role}[/]" if role == "head" else role,
            cell(address),
            cell(n.user or "(ssh config)"),
            str(n.gpu_count),
            "" if n.memory_gb is None else f"{n.memory_gb:g}",
            cell(", ".join(n.tags)),
        )
    out.print(table)
    gpus = sum(n.gpu_count for n in cfg.nodes)
    out.print(
        f"[green]valid[/]: {len(cfg.nodes)} node(s), head {safe(cfg.head.name)}, {gpus} GPU(s), "
        f"Ray {safe(cfg.ray.version)}"
    )
    _warn(cfg.warnings())


def _warn(warnings: list[str]) -> None:
    for warning in warnings:
        warn(warning)
