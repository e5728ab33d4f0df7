"""grid-ops doctor: every check of every node and of the cluster, as rows that say what
to do (grid_ops.doctor writes the rows); ``deep`` adds each node's bandwidth from a ring
exchange through Ray (run on the head by grid_ops.runtime.bandwidth). Nothing is changed:
the health round it runs only reports."""

from __future__ import annotations

import statistics
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from grid_ops.actions.progress import QUIET, Progress

if TYPE_CHECKING:
    from pathlib import Path

    from grid_ops.model import ClusterModel

# A node whose bandwidth is below this fraction of the median is flagged.
SLOW_FRACTION = 0.5


def run(
    cluster: ClusterModel, path: Path, deep: bool = False, progress: Progress = QUIET
) -> dict[str, Any]:
    """The document 'doctor --json' prints: ``{"cluster", "ok", "checks"}`` (and
    ``"bandwidth"`` when ``deep``)."""
    from grid_ops import doctor as doc
    from grid_ops import lifecycle
    from grid_ops.actions import health
    from grid_ops.model import stamp as stamps

    cluster = cluster
    progress.info(f"checking {len(cluster.nodes)} node(s) of {cluster.name}")
    # a doctor round is a health round that reports: it keeps what it found in the cache
    ranked = health.check(cluster, path, policy=health.REPORT, refresh=True).nodes
    records = [asdict(n) for n in ranked]
    up = [r["name"] for r in records if r["reachable"]]
    states = lifecycle.read_states(cluster, [cluster.node(n) for n in up])
    plan = lifecycle.plan(
        cluster, stamps.stamps(cluster), states, lifecycle.read_applied(cluster.id), full=True
    )
    workers = [n for n in up if n != cluster.head]
    reached = doc.reach(cluster, workers) if cluster.head in up and workers else None
    builds = {n: s.venv_id for n, s in states.items() if s.reachable}
    found = doc.rows(cluster, records, plan.to_json(), reached, str(path), builds)
    document: dict[str, Any] = {"cluster": cluster.name, "ok": True, "checks": found}
    if deep:
        measured = bandwidth(cluster, up)
        found.extend(measured["rows"])
        document["bandwidth"] = measured["bandwidth"]
    document["ok"] = not any(r["status"] == "fail" for r in found)
    return document


def bandwidth(cluster: ClusterModel, nodes: list[str]) -> dict[str, Any]:
    """``{"bandwidth": the measurement (or its error), "rows": doctor rows}``."""
    from grid_ops.actions.nodes import on_node
    from grid_ops.errors import GridOpsError

    command = ["python", "-m", "grid_ops.runtime.bandwidth", "--nodes", ",".join(nodes)]
    try:
        limit = cluster.deadlines.bandwidth
        found = on_node(cluster, cluster.head, command, timeout=limit, what="measure bandwidth on")
    except GridOpsError as exc:
        found = {"error": exc.message}
    return {"bandwidth": found, "rows": rows(found, nodes)}


def rows(found: dict[str, Any], nodes: list[str]) -> list[dict[str, str]]:
    """Doctor rows of a measurement (pure)."""
    from grid_ops.doctor import FAIL, OK, WARN

    if "error" in found:
        return [
            {
                "node": "cluster",
                "check": "bandwidth",
                "status": FAIL,
                "detail": f"the measurement failed: {found['error']}",
                "fix": "check that Ray runs on every node ('grid-ops cluster status'; "
                "'grid-ops cluster start' starts it), then run 'grid-ops doctor --deep' again",
            }
        ]
    speeds = {n: float(v["mib_s"]) for n, v in found["nodes"].items()}
    median = statistics.median(speeds.values())
    out = []
    for name in nodes:
        speed = speeds.get(name)
        if speed is None:
            continue
        slow = len(speeds) > 2 and speed < SLOW_FRACTION * median
        out.append(
            {
                "node": name,
                "check": "bandwidth",
                "status": WARN if slow else OK,
                "detail": f"{speed:.0f} MiB/s pulling {found['mib']} MiB from the next node"
                + (f" (median {median:.0f} MiB/s)" if slow else ""),
                "fix": "check this node's network link (speed, errors, MTU) and load"
                if slow
                else "",
            }
        )
    return out
