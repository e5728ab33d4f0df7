"""Node health: scoring, best-node choice and the facts cache (pure functions over facts).

Score, lower is better: ``cpu_weight * load1 / cpu_count + gpu_weight * GPU memory used
fraction`` (used over total across the node's GPUs; 0 without GPUs), the same meaning as
the earlier tool's. An unreachable node has no score and is never chosen.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from grid_ops.config import ClusterConfig
from grid_ops.fsutil import write_atomic
from grid_ops.paths import state_dir


@dataclass
class NodeHealth:
    """One node's health facts as the CLI shows them."""

    name: str
    reachable: bool
    score: float | None = None
    load1: float | None = None
    cpu_count: int | None = None
    mem_total_bytes: int | None = None
    mem_available_bytes: int | None = None
    disk_free_bytes: int | None = None
    ray_running: bool | None = None
    gpus: list[dict[str, Any]] = field(default_factory=list)
    gpu_processes: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["gpus"] = [
            {
                "index": g.get("index"),
                "name": g.get("name"),
                "memory_total_mib": g.get("memory_total_mib"),
                "memory_used_mib": g.get("memory_used_mib"),
                "utilization_gpu": g.get("utilization_gpu"),
            }
            for g in self.gpus
        ]
        return data


def gpu_memory_used_fraction(gpus: list[dict[str, Any]]) -> float:
    total = sum(float(g.get("memory_total_mib") or 0) for g in gpus)
    used = sum(float(g.get("memory_used_mib") or 0) for g in gpus)
    return used / total if total > 0 else 0.0


def score(facts: dict[str, Any], cpu_weight: float, gpu_weight: float) -> float:
    """cpu_weight x load per core + gpu_weight x GPU memory used fraction."""
    cpus = max(int(facts.get("cpu_count") or 1), 1)
    load = float(facts.get("load1") or 0.0)
    return round(
        cpu_weight * load / cpus + gpu_weight * gpu_memory_used_fraction(facts.get("gpus") or []),
        4,
    )


def from_facts(name: str, facts: dict[str, Any], config: ClusterConfig) -> NodeHealth:
    hc = config.health_check
    return NodeHealth(
        name=name,
        reachable=True,
        score=score(facts, hc.cpu_weight, hc.gpu_weight),
        load1=facts.get("load1"),
        cpu_count=facts.get("cpu_count"),
        mem_total_bytes=facts.get("mem_total_bytes"),
        mem_available_bytes=facts.get("mem_available_bytes"),
        disk_free_bytes=facts.get("disk_free_bytes"),
        ray_running=facts.get("ray_running"),
        gpus=list(facts.get("gpus") or []),
        gpu_processes=list(facts.get("gpu_processes") or []),
        warnings=list(facts.get("warnings") or []),
    )


def unreachable(name: str, error: str) -> NodeHealth:
    return NodeHealth(name=name, reachable=False, error=error)


def ranked(nodes: list[NodeHealth]) -> list[NodeHealth]:
    """Best first; unreachable nodes last (in config order)."""
    up = sorted((n for n in nodes if n.reachable), key=lambda n: (n.score or 0.0, n.name))
    return up + [n for n in nodes if not n.reachable]


def best(nodes: list[NodeHealth]) -> NodeHealth | None:
    """The reachable node with the lowest score, or None."""
    order = ranked(nodes)
    return order[0] if order and order[0].reachable else None


# ---------------------------------------------------------------------------------------
# cache


def cache_file(config: ClusterConfig) -> Path:
    return state_dir() / "health" / f"{config.name}.json"


def load_cache(
    config: ClusterConfig, now: float | None = None, any_age: bool = False
) -> list[NodeHealth] | None:
    """Cached results younger than ``health_check.refresh_interval`` (or of any age) for
    the same nodes."""
    try:
        data = json.loads(cache_file(config).read_text())
    except (OSError, ValueError):
        return None
    age = (now if now is not None else time.time()) - float(data.get("time", 0))
    if not any_age and (age < 0 or age >= config.health_check.refresh_interval):
        return None
    if [n.get("name") for n in data.get("nodes", [])] != [n.name for n in config.nodes]:
        return None
    try:
        return [NodeHealth(**n) for n in data["nodes"]]
    except TypeError:
        return None


def save_cache(config: ClusterConfig, nodes: list[NodeHealth], now: float | None = None) -> None:
    data = {
        "time": now if now is not None else time.time(),
        "nodes": [asdict(n) for n in nodes],
    }
    write_atomic(cache_file(config), json.dumps(data) + "\n", mode=0o600)
