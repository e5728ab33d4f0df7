"""Node health for the CLI: NodeHealth records, best-node choice and the facts cache.

Scoring, ranking and the cache itself live in grid_ops.facts (plain dicts, light enough
for the quick path); this module wraps them in NodeHealth for the commands.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grid_ops import facts
from grid_ops.facts import gpu_memory_used_fraction, score

if TYPE_CHECKING:
    from grid_ops.model import ClusterModel

__all__ = ["NodeHealth", "best", "gpu_memory_used_fraction", "ranked", "score"]


@dataclass
class NodeHealth:
    """One node's health facts as the CLI shows them (the fields of facts.FIELDS)."""

    name: str
    reachable: bool
    score: float | None = None
    load1: float | None = None
    cpu_count: int | None = None
    python_version: str | None = None
    mem_total_bytes: int | None = None
    mem_available_bytes: int | None = None
    disk_free_bytes: int | None = None
    ray_running: bool | None = None
    ray_version: str | None = None
    drained: str | None = None
    gpus: list[dict[str, Any]] = field(default_factory=list)
    gpu_processes: list[dict[str, Any]] = field(default_factory=list)
    driver_version: str | None = None
    cuda_version: str | None = None
    clock_offset_s: float | None = None
    checks: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return facts.public(asdict(self))


def ranked(nodes: list[NodeHealth]) -> list[NodeHealth]:
    """Best first; unreachable nodes last (in config order)."""
    return [NodeHealth(**r) for r in facts.rank([asdict(n) for n in nodes])]


def best(nodes: list[NodeHealth]) -> NodeHealth | None:
    """The reachable node in service (not drained, not sick) with the lowest score, or
    None."""
    order = ranked(nodes)
    return order[0] if order and facts.in_service(asdict(order[0])) else None


def probe_all(cluster: ClusterModel, names: list[str] | None = None) -> list[NodeHealth]:
    """Health of the nodes (all, or ``names``), in config order, probed now."""
    from grid_ops import log
    from grid_ops.drivers import probe

    found = [NodeHealth(**r) for r in probe.records(cluster, names)]
    for node in found:
        log.logger.debug(
            "health of %s: %s", node.name,
            f"score {node.score}, checks {[c['check'] for c in node.checks]}"
            if node.reachable else f"unreachable: {node.error}",
        )  # fmt: skip
    return found


def collect(cluster: ClusterModel, refresh: bool) -> tuple[list[NodeHealth], bool]:
    """Health of every node, ranked; from the cache unless stale or ``refresh``."""
    from grid_ops.drivers import probe

    found, cached = probe.collect(cluster, refresh)
    return [NodeHealth(**r) for r in found], cached


def cache_file(cluster: ClusterModel) -> Path:
    return Path(facts.cache_name(cluster.id))


def load_cache(
    cluster: ClusterModel, now: float | None = None, any_age: bool = False
) -> list[NodeHealth] | None:
    """Cached results younger than ``health_check.refresh_interval`` (or of any age) for
    the same nodes."""
    records = facts.read_cache(
        cluster.id,
        cluster.names,
        cluster.health["refresh_interval"],
        now=now,
        any_age=any_age,
    )
    return None if records is None else [NodeHealth(**r) for r in records]


def save_cache(cluster: ClusterModel, nodes: list[NodeHealth], now: float | None = None) -> None:
    facts.write_cache(cluster.id, [asdict(n) for n in nodes], now=now)
