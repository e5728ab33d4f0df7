"""grid-ops doctor: every check of every node, each failed row with what to do."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer

from grid_ops.cli.common import ConfigOption, JsonOption, load_config
from grid_ops.cli.output import cell, error, info, out, print_json, safe

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
    from grid_ops import doctor as doc
    from grid_ops import health, lifecycle, model
    from grid_ops import stamp as stamps

    cfg, path = load_config(config)
    cluster = model.of(cfg)
    info(f"checking {len(cluster.nodes)} node(s) of {cfg.name}")
    ranked = health.ranked(health.probe_all(cfg))
    health.save_cache(cfg, ranked)  # a doctor round is a health round: keep what it found
    records = [asdict(n) for n in ranked]
    up = [r["name"] for r in records if r["reachable"]]
    states = lifecycle.read_states(cluster, [cluster.node(n) for n in up])
    plan = lifecycle.plan(
        cluster, stamps.stamps(cluster), states, lifecycle.read_applied(cfg.id), full=True
    )
    workers = [n for n in up if n != cluster.head]
    reached = doc.reach(cluster, workers) if cluster.head in up and workers else None
    builds = {n: s.venv_id for n, s in states.items() if s.reachable}
    found = doc.rows(cluster, records, plan.to_json(), reached, str(path), builds)
    deep_result = None
    if deep:
        from grid_ops.cli.doctor_deep import bandwidth

        deep_result = bandwidth(cfg, up)
        found.extend(deep_result["rows"])
    failed = [r for r in found if r["status"] == "fail"]
    if json_out:
        document = {"cluster": cfg.name, "ok": not failed, "checks": found}
        if deep_result is not None:
            document["bandwidth"] = deep_result["bandwidth"]
        print_json(document)
    else:
        _table(cfg.name, found)
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
