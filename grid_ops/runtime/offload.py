"""Auto-offload: when the head is under pressure, work that allows it goes to a worker.

The controller samples the head's CPU (from /proc/stat over the check interval), memory
(/proc/meminfo: used = total - available) and GPU utilisation (nvidia-smi, when present)
as percentages; memory and GPUs are read by the nodes' own parser (grid_node_os).
``decide`` compares them to the thresholds (pure); every offload decision is recorded
with when, which task, why and where it went.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from grid_ops.module_utils import grid_node_os as node_os

DEFAULT_THRESHOLDS = {"cpu": 80.0, "memory": 70.0, "gpu": 90.0}
KEEP_DECISIONS = 200


def _cpu_times() -> tuple[float, float]:
    with open("/proc/stat") as handle:
        fields = [float(x) for x in handle.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
    return sum(fields), idle


def memory_percent() -> float:
    total, available = node_os.parse_meminfo(node_os.read("/proc/meminfo"))
    return 100.0 * (total - available) / total if total else 0.0


class Sampler:
    """CPU use between two calls of ``sample``, plus memory and GPU now. ``nvidia_smi``
    gives health_check.nvidia_smi ("" for the one on PATH) at each sample: settings an
    apply hands to the running controller take effect at the next one."""

    def __init__(self, nvidia_smi: Callable[[], str] = str) -> None:
        self.nvidia_smi = nvidia_smi
        self._last = _cpu_times()
        self.values: dict[str, float | None] = {"cpu": 0.0, "memory": 0.0, "gpu": None}
        self.at = 0.0

    def sample(self) -> dict[str, float | None]:
        total, idle = _cpu_times()
        d_total, d_idle = total - self._last[0], idle - self._last[1]
        self._last = (total, idle)
        cpu = 100.0 * (1.0 - d_idle / d_total) if d_total > 0 else 0.0
        self.values = {
            "cpu": round(cpu, 1),
            "memory": round(memory_percent(), 1),
            "gpu": node_os.gpu_utilization(configured=self.nvidia_smi()),
        }
        self.at = time.time()
        return self.values


def over(pressure: dict[str, float | None], thresholds: dict[str, float]) -> list[str]:
    """The reasons the head is under pressure (pure): ``["memory 82% > 70%"]``."""
    reasons = []
    for name in ("cpu", "memory", "gpu"):
        value, limit = pressure.get(name), thresholds.get(name)
        if value is not None and limit is not None and value > limit:
            reasons.append(f"{name} {value:.0f}% > {limit:g}%")
    return reasons


def least_loaded(
    candidates: dict[str, dict[str, float]], totals: dict[str, dict[str, float]]
) -> str | None:
    """Of ``{name: free}``, the one with the largest free share of CPU (pure)."""
    if not candidates:
        return None

    def share(name: str) -> float:
        return candidates[name].get("CPU", 0.0) / (totals.get(name, {}).get("CPU") or 1.0)

    return max(sorted(candidates), key=share)


def policy(enabled: bool, thresholds: dict[str, float] | None = None) -> dict[str, Any]:
    return {"enabled": enabled, "thresholds": {**DEFAULT_THRESHOLDS, **(thresholds or {})}}
