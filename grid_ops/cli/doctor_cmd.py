"""grid-ops doctor: every check of every node, each failed row with what to do."""

from __future__ import annotations

from typing import Annotated

import typer

from grid_ops.cli.common import ConfigOption, JsonOption, load_cluster
from grid_ops.cli.output import cell, error, out, print_json, safe

STYLE = {"ok": "green", "warning": "yellow", "fail": "red"}


def doctor(
    config: ConfigOption = None,
    json_out: JsonOption = False,
    deep: Annotated[
        bool,
        typer.Option(
            "--deep",
            help="Also measure each node's transfer bandwidth with a collective through Ray.",
        ),
    ] = False,
) -> None:
    """Check every node and the cluster, and say what to do about each problem.

    Per node: SSH and Python (the same on every node), the venv build and the grid-ops
    runtime against the config's, Ray's version and whether it runs, GPUs and their
    health checks (ECC, remaps, slowdowns, Xid, driver), NVIDIA driver and CUDA versions
    against the other GPU nodes, disk free under remote_root, the clock against this
    machine's, and whether each worker can open the head's GCS port and the ports its
    raylet listens on (the usual reason a worker never joins). Nothing is changed: a
    sick node is reported here, not quarantined ('grid-ops health' does that).

    Exit code 1 if any check fails (warnings do not).
    """
    from grid_ops.actions import doctor as doctor_action
    from grid_ops.cli.progress import console

    cluster, path = load_cluster(config)
    document = doctor_action.run(cluster, path, deep, console(json_out))
    found = document["checks"]
    failed = [r for r in found if r["status"] == "fail"]
    if json_out:
        print_json(document)
    else:
        _table(cluster.name, found)
    if failed:
        if not json_out:
            nodes = sorted({r["node"] for r in failed})
            error(
                f"{len(failed)} check(s) failed on {', '.join(nodes)}.",
                "Each failed row says what to do; run 'grid-ops doctor' again after.",
            )
        raise typer.Exit(1)


def _table(name: str, found: list[dict[str, str]]) -> None:
    from rich.table import Table

    table = Table(title=f"doctor {safe(name)}", title_justify="left")
    for col in ("node", "check", "status", "detail", "fix"):
        table.add_column(col, overflow="fold")
    for row in found:
        status = row["status"]
        table.add_row(
            cell(row["node"]),
            cell(row["check"]),
            f"[{STYLE.get(status, 'white')}]{safe(status)}[/]",
            cell(row["detail"], limit=None),
            cell(row["fix"], limit=None),
        )
    out.print(table)
