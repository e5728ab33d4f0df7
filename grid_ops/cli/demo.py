"""grid-ops demo: the main job on the embedded default cluster."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from grid_ops.cli.output import info, out

LOCAL_CONFIG = """\
# grid-ops demo cluster: this machine only (no root, so no lab).
name: local
nodes:
  - name: localhost
    host: localhost
    connection: local
"""


def demo(
    nodes: Annotated[int, typer.Option("--nodes", "-n", help="Lab nodes (as root).", min=1)] = 3,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Where to write the demo's cluster config.")
    ] = Path("lab.yaml"),
) -> None:
    """Run the main job end to end on the embedded default cluster.

    As root: bring up a lab of network-namespace SSH nodes and ping them. Otherwise: a
    one-node cluster of this machine (local connection). The lab stays up afterwards for
    you to explore; remove it with 'grid-ops lab down'.
    """
    from grid_ops.cli.ping import ping
    from grid_ops.fsutil import write_atomic

    if os.geteuid() == 0:
        from grid_ops import lab

        info(f"bringing up a lab of {nodes} node(s)")
        lab.up(nodes, output, progress=info)
    else:
        info("not root: using this machine as a one-node cluster")
        write_atomic(output, LOCAL_CONFIG)
    out.print(f"[bold]cluster config:[/] {output}")
    ping(config=output, json_out=False, limit=None)
    out.print(f"Done. Next: grid-ops config validate -c {output}")
