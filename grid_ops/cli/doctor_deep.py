"""doctor --deep: the bandwidth each node gets from a ring exchange through Ray (run on
the head by grid_ops.runtime.bandwidth), as doctor rows; a node far below the others
is flagged."""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from grid_ops.config import ClusterConfig

# A node whose bandwidth is below this fraction of the median is flagged.
SLOW_FRACTION = 0.5


def bandwidth(cfg: ClusterConfig, nodes: list[str]) -> dict[str, Any]:
    """``{"bandwidth": the measurement (or its error), "rows": doctor rows}``."""
    from grid_ops.cli.draining import on_node
    from grid_ops.errors import GridOpsError

    command = ["python", "-m", "grid_ops.runtime.bandwidth", "--nodes", ",".join(nodes)]
    try:
        found = on_node(cfg, cfg.head.name, command, timeout=300, what="measure bandwidth on")
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
