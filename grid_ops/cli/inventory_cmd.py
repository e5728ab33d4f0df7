"""grid-ops inventory render."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from grid_ops.cli.common import ConfigOption, JsonOption, load_cluster
from grid_ops.cli.output import out, print_json, safe

app = typer.Typer(help="Ansible inventory from the cluster config.", no_args_is_help=True)


@app.command("render")
def render(
    config: ConfigOption = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Directory to write. Default: inventory/<cluster name>/."
        ),
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """Write hosts.yml and group_vars/ for operators' ansible-playbook runs."""
    from grid_ops.drivers import inventory

    cluster, path = load_cluster(config)
    cfg = cluster.config
    out_dir = output or inventory.default_dir(cfg)
    hosts = inventory.render(cluster, out_dir, source=str(path))
    groups = inventory.groups(cfg)
    if json_out:
        print_json({"hosts_file": str(hosts), "groups": groups})
        return
    shown = safe(hosts)
    out.print(f"Wrote {shown} ({len(cfg.nodes)} hosts; groups: {safe(', '.join(groups))}).")
    out.print(f"Use it directly: ansible-playbook -i {shown} playbooks/ping.yml")
