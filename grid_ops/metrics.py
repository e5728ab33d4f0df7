"""Prometheus metrics: node gauges from the latest health facts, local counters, and the
cluster controller's own numbers.

Counters and histograms (``run`` tasks, ``sync`` durations) outlive the CLI process: each
observation is added to a small JSON file in the state dir, and the exposition is built
from it, so totals only ever grow, as Prometheus expects. Task metrics carry
``source="run"`` (``grid-ops run``) or ``source="cluster"`` (tasks submitted through
grid_ops.runtime.scheduler, counted by the controller); the controller also gives
grid_active_tasks, grid_boosts_active and grid_memory_pool_bytes{node}.
"""

from __future__ import annotations

import json
import math
import os

from grid_ops import facts, layout
from grid_ops.fsutil import write_atomic
from grid_ops.paths import state_dir_name

# Light at import (no typing, no pathlib): the quick path of `grid-ops sync` records its
# durations here.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

TASK_BUCKETS = layout.TASK_BUCKETS
SYNC_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
HISTOGRAMS = {
    "grid_task_duration_seconds": ("Duration of commands run with grid-ops run.", TASK_BUCKETS),
    "grid_sync_duration_seconds": ("Duration of grid-ops sync, per node.", SYNC_BUCKETS),
}


def counters_file(cluster: str) -> str:
    """The counters of the cluster kept under ``cluster`` (its id)."""
    return os.path.join(state_dir_name(), "metrics", f"{cluster}.json")


def _load(cluster: str) -> dict[str, Any]:
    try:
        with open(counters_file(cluster), encoding="utf-8") as handle:
            data: dict[str, Any] = json.load(handle)
    except (OSError, ValueError):
        return {"tasks": {}, "histograms": {}}
    data.setdefault("tasks", {})
    data.setdefault("histograms", {})
    return data


def _observe(data: dict[str, Any], name: str, value: float) -> None:
    _, buckets = HISTOGRAMS[name]
    hist = data["histograms"].setdefault(
        name, {"count": 0, "sum": 0.0, "buckets": [0] * len(buckets)}
    )
    hist["count"] += 1
    hist["sum"] += value
    for i, bound in enumerate(buckets):
        if value <= bound:
            hist["buckets"][i] += 1


def record_task(cluster: str, status: str, seconds: float) -> None:
    """One finished ``grid-ops run`` on the cluster ``cluster`` (its id; status:
    succeeded or failed)."""
    data = _load(cluster)
    data["tasks"][status] = int(data["tasks"].get(status, 0)) + 1
    _observe(data, "grid_task_duration_seconds", seconds)
    write_atomic(counters_file(cluster), json.dumps(data) + "\n", mode=0o600)


def record_sync(cluster: str, seconds: list[float]) -> None:
    """One ``grid-ops sync`` to the cluster ``cluster`` (its id): its duration on each
    node."""
    data = _load(cluster)
    for value in seconds:
        _observe(data, "grid_sync_duration_seconds", value)
    write_atomic(counters_file(cluster), json.dumps(data) + "\n", mode=0o600)


class _Collector:
    """A prometheus-client collector over health facts and the stored counters."""

    def __init__(
        self,
        nodes: list[dict[str, Any]],
        counters: dict[str, Any],
        cluster: dict[str, Any] | None = None,
    ) -> None:
        self.nodes = nodes
        self.counters = counters
        self.cluster = cluster

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        up = GaugeMetricFamily(
            "grid_node_up", "1 if the node answered its last probe.", labels=["node"]
        )
        score = GaugeMetricFamily(
            "grid_node_health_score", "Node score, lower is better.", labels=["node"]
        )
        load = GaugeMetricFamily("grid_node_load1", "1-minute load average.", labels=["node"])
        gpu_used = GaugeMetricFamily(
            "grid_node_gpu_memory_used_bytes", "GPU memory in use.", labels=["node", "gpu"]
        )
        sick = GaugeMetricFamily(
            "grid_node_sick",
            "1 for each health check of severity sick the node failed in its last round.",
            labels=["node", "check"],
        )
        drained = GaugeMetricFamily(
            "grid_node_drained",
            "1 if the node is drained: by=quarantine (a health round) or by=operator.",
            labels=["node", "by"],
        )
        for node in self.nodes:
            name = str(node["name"])
            up.add_metric([name], 1.0 if node.get("reachable") else 0.0)
            if node.get("reachable") and node.get("score") is not None:
                score.add_metric([name], float(node["score"]))
            if node.get("load1") is not None:
                load.add_metric([name], float(node["load1"]))
            for gpu in node.get("gpus") or []:
                used = gpu.get("memory_used_mib")
                if used is not None:
                    gpu_used.add_metric([name, str(gpu.get("index"))], float(used) * 2**20)
            for check in sorted({str(c.get("check")) for c in facts.sick(node)}):
                sick.add_metric([name, check], 1.0)
            if node.get("drained"):
                by = "quarantine" if facts.quarantined(node) else "operator"
                drained.add_metric([name, by], 1.0)
        yield from (up, score, load, gpu_used, sick, drained)
        tasks = CounterMetricFamily(
            "grid_tasks_completed",
            "Finished tasks: grid-ops run (source=run) and scheduler tasks (source=cluster).",
            labels=["status", "source"],
        )
        for status in ("succeeded", "failed"):
            tasks.add_metric([status, "run"], float(self.counters["tasks"].get(status, 0)))
        cluster = self.cluster
        if cluster is not None:
            done = cluster["tasks"]["completed"]
            for status in sorted({"succeeded", "failed", *done}):
                tasks.add_metric([status, "cluster"], float(done.get(status, 0)))
        yield tasks
        for hname, (doc, bounds) in HISTOGRAMS.items():
            stored = self.counters["histograms"].get(hname) or {
                "count": 0,
                "sum": 0.0,
                "buckets": [0] * len(bounds),
            }
            if hname != "grid_task_duration_seconds":
                yield _histogram(hname, doc, bounds, stored)
                continue
            family = HistogramMetricFamily(
                hname, "Task durations: grid-ops run and scheduler tasks.", labels=["source"]
            )
            family.add_metric(["run"], *_buckets(bounds, stored))
            if cluster is not None:
                t = cluster["tasks"]
                family.add_metric(["cluster"], *_buckets(t["bounds"], t))
            yield family
        yield from _controller_families(cluster)


def _buckets(bounds: Any, stored: dict[str, Any]) -> tuple[list[tuple[str, float]], float]:
    """Cumulative buckets as Prometheus wants them, from per-bucket ``le`` counts."""
    buckets = [(_le(b), float(c)) for b, c in zip(bounds, stored["buckets"], strict=True)]
    buckets.append(("+Inf", float(stored["count"])))
    return buckets, float(stored["sum"])


def _histogram(name: str, doc: str, bounds: Any, stored: dict[str, Any]) -> Any:
    from prometheus_client.core import HistogramMetricFamily

    buckets, total = _buckets(bounds, stored)
    return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=total)


def _controller_families(cluster: dict[str, Any] | None) -> Iterator[Any]:
    from prometheus_client.core import GaugeMetricFamily

    yield GaugeMetricFamily(
        "grid_controller_up",
        "1 if the cluster's grid-ops controller answered.",
        value=0.0 if cluster is None else 1.0,
    )
    if cluster is None:
        return
    yield GaugeMetricFamily(
        "grid_active_tasks", "Scheduler tasks running now.", value=float(cluster["active_tasks"])
    )
    yield GaugeMetricFamily(
        "grid_boosts_active", "Live boosts.", value=float(cluster["boosts_active"])
    )
    pool = GaugeMetricFamily(
        "grid_memory_pool_bytes", "Bytes held in the memory pool.", labels=["node"]
    )
    for node, size in sorted(cluster["pool_bytes"].items()):
        pool.add_metric([node], float(size))
    yield pool
    per_user = cluster.get("users") or {}
    families = {
        "jobs_queued": ("grid_user_jobs_queued", "A user's jobs waiting in the queue."),
        "jobs_running": ("grid_user_jobs_running", "A user's jobs running."),
        "gpus_running": ("grid_user_gpus", "GPUs a user's running jobs hold."),
        "gpu_hours_week": (
            "grid_user_gpu_seconds_7d",
            "GPU-seconds of a user's jobs in the last 7 days (what a weekly quota counts).",
        ),
    }
    scale = {"gpu_hours_week": 3600.0}  # Prometheus' base unit is the second
    for key, (name, doc) in families.items():
        family = GaugeMetricFamily(name, doc, labels=["user"])
        for user, row in sorted(per_user.items()):
            family.add_metric([user], float(row.get(key, 0.0)) * scale.get(key, 1.0))
        yield family


def _le(bound: float) -> str:
    return str(int(bound)) + ".0" if math.isclose(bound, int(bound)) else repr(bound)


class LiveCollector(_Collector):
    """For ``metrics serve``: node rows replaced by a refresher, counters read per scrape."""

    def __init__(self, cluster: str) -> None:
        super().__init__([], {})
        self.key = cluster

    def collect(self) -> Iterator[Any]:
        self.counters = _load(self.key)
        return super().collect()


def registry(collector: _Collector) -> Any:
    from prometheus_client import CollectorRegistry

    reg = CollectorRegistry(auto_describe=False)
    reg.register(collector)
    return reg


def exposition(
    key: str, nodes: list[dict[str, Any]], cluster: dict[str, Any] | None = None
) -> bytes:
    """The Prometheus text format for ``nodes`` (health JSON rows), the counters stored
    for the cluster kept under ``key`` (its id) and the controller's numbers (None: it
    did not answer)."""
    from prometheus_client import generate_latest

    return bytes(generate_latest(registry(_Collector(nodes, _load(key), cluster))))
