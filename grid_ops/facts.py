"""Health facts as plain dicts: a probe's answer read, a node scored, nodes ranked.

Score, lower is better: ``cpu_weight * load1 / cpu_count + gpu_weight * GPU memory used
fraction`` (used over total across the node's GPUs; 0 without GPUs), the same meaning as
the earlier tool's. An unreachable node has no score and is never chosen; a drained one
(its reason in ``drained``) is ranked after every node in service and never chosen; a
sick one (a failed check of severity "sick" in ``checks``) likewise.

Each record carries the node's failed checks (``checks``: check, severity, reason, gpu):
those the node's fact module made (GPUs, Xid, disk; grid_gpu_health) and those only
the whole round can make (``round_checks``: the node's clock against this machine's,
Ray's version against the head's, a raylet gone while the head's runs).

The quick path of ``grid-ops health`` (grid_ops.cli.quick) works on these dicts before
anything heavy loads, so this module imports json only; grid_ops.health wraps the same
records in NodeHealth for the rest of the CLI.
"""

from __future__ import annotations

import json
import os
import time

from grid_ops.layout import QUARANTINE as QUARANTINE  # the gate's drain notes (facts.QUARANTINE)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# The fields of one node's record (grid_ops.health.NodeHealth has exactly these).
FIELDS = (
    "name",
    "reachable",
    "score",
    "load1",
    "cpu_count",
    "python_version",
    "mem_total_bytes",
    "mem_available_bytes",
    "disk_free_bytes",
    "ray_running",
    "ray_version",
    "drained",
    "gpus",
    "gpu_processes",
    "driver_version",
    "cuda_version",
    "clock_offset_s",
    "checks",
    "warnings",
    "error",
)
SICK = "sick"
WARNING = "warning"
# Sick checks that a restart of Ray mends: a watch round repairs such a node (restarts
# its Ray, with backoff) instead of quarantining it, and quarantines it only once the
# repairs keep failing (grid_ops.repair).
REPAIRABLE = frozenset({"ray_down"})
# What `health --json` shows of each GPU.
GPU_FIELDS = ("index", "name", "memory_total_mib", "memory_used_mib", "utilization_gpu")


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


def record(
    name: str, facts: dict[str, Any], cpu_weight: float, gpu_weight: float
) -> dict[str, Any]:
    """A reachable node's record (every field of FIELDS) from the module's facts."""
    return {
        "name": name,
        "reachable": True,
        "score": score(facts, cpu_weight, gpu_weight),
        "load1": facts.get("load1"),
        "cpu_count": facts.get("cpu_count"),
        "python_version": facts.get("python_version"),
        "mem_total_bytes": facts.get("mem_total_bytes"),
        "mem_available_bytes": facts.get("mem_available_bytes"),
        "disk_free_bytes": facts.get("disk_free_bytes"),
        "ray_running": facts.get("ray_running"),
        "ray_version": facts.get("ray_version"),
        "drained": facts.get("drained") or None,
        "gpus": list(facts.get("gpus") or []),
        "gpu_processes": list(facts.get("gpu_processes") or []),
        "driver_version": facts.get("driver_version"),
        "cuda_version": facts.get("cuda_version"),
        "clock_offset_s": None,
        "checks": [c for c in facts.get("checks") or [] if isinstance(c, dict)],
        "warnings": list(facts.get("warnings") or []),
        "error": None,
    }


def sick(rec: dict[str, Any]) -> list[dict[str, Any]]:
    """The node's failed checks of severity sick (keep work off it)."""
    return [c for c in rec.get("checks") or [] if c.get("severity") == SICK]


def quarantined(rec: dict[str, Any]) -> bool:
    """Drained by a health round (not by an operator)."""
    return str(rec.get("drained") or "").startswith(QUARANTINE)


def repairable(rec: dict[str, Any]) -> bool:
    """Sick only for reasons a restart of Ray mends (left to repair, not quarantined)."""
    found = sick(rec)
    return bool(found) and all(c.get("check") in REPAIRABLE for c in found)


def repair_quarantined(rec: dict[str, Any]) -> bool:
    """Quarantined because repairs kept failing: only a repair that works lifts it."""
    reason = str(rec.get("drained") or "")
    return reason.startswith(QUARANTINE) and reason[len(QUARANTINE) :].split(":")[0] in REPAIRABLE


def in_service(rec: dict[str, Any]) -> bool:
    """Reachable, not drained, not sick: work may go there."""
    return bool(rec["reachable"]) and not rec.get("drained") and not sick(rec)


def quarantine_reason(rec: dict[str, Any]) -> str:
    """The drain reason a health round gives a sick node."""
    return QUARANTINE + "; ".join(f"{c['check']}: {c['reason']}" for c in sick(rec))


def quarantine_plan(
    records: list[dict[str, Any]], head: str, enabled: bool
) -> tuple[dict[str, str], list[str]]:
    """What a health round does about sick nodes (pure): ({node: drain reason} to
    quarantine, [nodes] whose quarantine to lift). A sick node not yet drained is
    quarantined; a node a round drained is returned once it answers with no sick check.
    The head is never drained (that would stop the cluster), an operator's drain is never
    lifted, an unreachable node is left as it is; ``enabled`` False: nothing is done. A
    node sick only for a REPAIRABLE check is left to repair (grid_ops.repair), and so is
    one that repair quarantined: a round that merely finds it drained and quiet does
    not lift it."""
    if not enabled:
        return {}, []
    drain: dict[str, str] = {}
    lift: list[str] = []
    for rec in records:
        if not rec["reachable"] or rec["name"] == head:
            continue
        if repairable(rec) or repair_quarantined(rec):
            continue
        if sick(rec) and not rec.get("drained"):
            drain[rec["name"]] = quarantine_reason(rec)
        elif quarantined(rec) and not sick(rec):
            lift.append(rec["name"])
    return drain, lift


def clock_offset(node_time: Any, started: float, ended: float) -> float | None:
    """How far the node's clock (read while the probe ran, between ``started`` and
    ``ended`` by this machine's clock) is off this machine's: 0 inside that interval."""
    if not isinstance(node_time, int | float):
        return None
    if node_time < started:
        return round(node_time - started, 3)
    if node_time > ended:
        return round(node_time - ended, 3)
    return 0.0


def round_checks(records: list[dict[str, Any]], head: str, max_clock_offset: float) -> None:
    """Add the checks only the whole round can make to each reachable record (in place)."""
    by_name = {r["name"]: r for r in records if r["reachable"]}
    top = by_name.get(head)
    for rec in by_name.values():
        offset = rec.get("clock_offset_s")
        if isinstance(offset, int | float) and abs(offset) > max_clock_offset:
            rec["checks"].append(
                _check(
                    "clock",
                    WARNING,
                    f"the clock is {offset:+.1f} s off this machine's "
                    f"(more than {max_clock_offset:g} s): check its time sync (chrony, ntp)",
                )
            )
        if top is None or rec is top:
            continue
        if top.get("ray_version") and rec.get("ray_version") not in (None, top["ray_version"]):
            rec["checks"].append(
                _check(
                    "ray_version",
                    SICK,
                    f"Ray {rec['ray_version']} here, the head runs {top['ray_version']}: "
                    "it cannot join (grid-ops apply installs the cluster's)",
                )
            )
        if top.get("ray_running") and not rec.get("ray_running") and not rec.get("drained"):
            rec["checks"].append(
                _check(
                    "ray_down",
                    SICK,
                    "Ray is not running here while the head's is (it stopped or died): "
                    f"grid-ops cluster start --limit {rec['name']}",
                )
            )


def _check(check: str, severity: str, reason: str) -> dict[str, Any]:
    return {"check": check, "severity": severity, "reason": reason, "gpu": None}


def unreachable(name: str, error: str) -> dict[str, Any]:
    """The record of a node that did not answer: no score, the reason in ``error``."""
    out: dict[str, Any] = dict.fromkeys(FIELDS)
    out.update(
        name=name, reachable=False, gpus=[], gpu_processes=[], checks=[], warnings=[], error=error
    )
    return out


def rank(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Best first; sick, then drained nodes after those in service; unreachable nodes
    last (in their given order)."""
    up = sorted(
        (r for r in records if r["reachable"]),
        key=lambda r: (bool(r.get("drained")), bool(sick(r)), r["score"] or 0.0, r["name"]),
    )
    return up + [r for r in records if not r["reachable"]]


def public(rec: dict[str, Any]) -> dict[str, Any]:
    """One node as ``grid-ops health --json`` shows it."""
    out = dict(rec)
    out["gpus"] = [{k: g.get(k) for k in GPU_FIELDS} for g in rec.get("gpus") or []]
    return out


def probe(
    commands: dict[str, list[str]],
    module: str,
    parallel: int,
    limit: float,
    weights: tuple[float, float],
) -> list[dict[str, Any]]:
    """Run each node's probe command (``commands``: node -> argv) with the fact module
    file on its stdin, ``parallel`` at a time, and read the answers into records, in the
    given order (each with its clock offset). A node that does not answer within
    ``limit`` seconds is unreachable."""
    from grid_ops.drivers import spawn

    jobs: list[tuple[list[str], str | None]] = [(argv, module) for argv in commands.values()]
    records = []
    for name, child in zip(commands, spawn.run_all(jobs, parallel, limit), strict=True):
        if child is None:
            records.append(unreachable(name, timeout_error(limit)))
            continue
        found, error = read_answer(-1 if child.rc is None else child.rc, child.stdout, child.stderr)
        if found is None:
            records.append(unreachable(name, error or "no facts"))
        else:
            rec = record(name, found, *weights)
            rec["clock_offset_s"] = clock_offset(
                found.get("time"), child.wall_started, child.wall_started + child.seconds
            )
            records.append(rec)
    return records


def timeout_error(limit: float) -> str:
    return f"no answer within {limit:g} s"


def read_answer(rc: int, stdout: str, stderr: str) -> tuple[dict[str, Any] | None, str | None]:
    """The probe's facts from its exit code and output, or why there are none."""
    if rc != 0:
        lines = (stderr or stdout).strip().splitlines()
        return None, lines[-1] if lines else f"exit {rc}"
    try:
        facts = json.loads(stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None, f"unreadable facts: {stdout[:200]!r}"
    if not isinstance(facts, dict):
        return None, f"unreadable facts: {stdout[:200]!r}"
    return facts, None


# ---------------------------------------------------------------------------------------
# cache: the latest records of a cluster, under the state dir


def cache_name(cluster: str) -> str:
    from grid_ops.paths import state_dir_name

    return os.path.join(state_dir_name(), "health", f"{cluster}.json")


def read_cache(
    cluster: str,
    node_names: list[str],
    max_age: float,
    now: float | None = None,
    any_age: bool = False,
) -> list[dict[str, Any]] | None:
    """Cached records younger than ``max_age`` seconds (or of any age) for exactly these
    nodes, in config order; None when there are none."""
    try:
        with open(cache_name(cluster), encoding="utf-8") as handle:
            data = json.load(handle)
        age = (now if now is not None else time.time()) - float(data.get("time", 0))
        nodes = data["nodes"]
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None
    if not any_age and (age < 0 or age >= max_age):
        return None
    if (
        not isinstance(nodes, list)
        or [n.get("name") if isinstance(n, dict) else None for n in nodes] != node_names
    ):
        return None
    if any(set(n) != set(FIELDS) for n in nodes):
        return None
    return nodes


def write_cache(cluster: str, records: list[dict[str, Any]], now: float | None = None) -> None:
    from grid_ops.fsutil import write_atomic

    data = {"time": now if now is not None else time.time(), "nodes": records}
    write_atomic(cache_name(cluster), json.dumps(data) + "\n", mode=0o600)
