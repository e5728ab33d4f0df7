"""Repair: a watch round ('health --watch', the 'serve' refresher) restarts Ray on a node
where it should run but does not (the ``ray_down`` check: the head's Ray runs, the node
is reachable and not drained), with backoff between tries; after
``health_check.repair_attempts`` failed repairs in a row the node is quarantined with the
reason, and only a later repair that works lifts that quarantine.

This module decides (pure functions over health records and the repair state) and keeps
the state: per node, failed repairs in a row and when the next try is due; the latest
events, newest last (``grid-ops health --json`` and the dashboard show them). The state
lives under the state dir, per cluster id, 0600. Carrying a plan out (the restart, the
quarantine) is the health gate's job (grid_ops.actions.health).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Any

from grid_ops import facts

MAX_BACKOFF = 3600.0  # seconds: the longest wait between two tries
EVENTS_KEPT = 50

START = "start"  # the node is in service without Ray: start its Ray (cluster start --limit)
LIFT = "lift"  # repair quarantined it: undrain it and restart its Ray, the next try


@dataclass(frozen=True)
class Policy:
    """What the config says (health_check.repair, repair_attempts, repair_backoff,
    quarantine)."""

    enabled: bool
    attempts: int
    backoff: float
    quarantine: bool


def backoff(failures: int, base: float) -> float:
    """Seconds to wait after ``failures`` failed repairs in a row: base, 2 x base, …"""
    if failures <= 0:
        return 0.0
    return float(min(base * 2.0 ** min(failures - 1, 30), MAX_BACKOFF))


def state_name(cluster: str) -> str:
    from grid_ops.paths import state_dir_name

    return os.path.join(state_dir_name(), "repairs", f"{cluster}.json")


def load(cluster: str) -> dict[str, Any]:
    """The repair state of a cluster ({"nodes": {}, "events": []} when there is none or
    it cannot be read)."""
    try:
        with open(state_name(cluster), encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        data = None
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("nodes"), dict)
        or not isinstance(data.get("events"), list)
    ):
        return {"nodes": {}, "events": []}
    return data


def save(cluster: str, state: dict[str, Any]) -> None:
    from grid_ops.fsutil import write_atomic

    state["events"] = state["events"][-EVENTS_KEPT:]
    write_atomic(state_name(cluster), json.dumps(state) + "\n", mode=0o600)


def plan(
    records: list[dict[str, Any]], head: str, state: dict[str, Any], policy: Policy, now: float
) -> list[tuple[str, str]]:
    """The repairs this round tries: [(node, START or LIFT)], each only once its backoff
    has passed. START: a node in service whose Ray is down while the head's runs. LIFT: a
    node repair quarantined (tried again as long as the head's Ray runs)."""
    if not policy.enabled:
        return []
    by_name = {r["name"]: r for r in records if r["reachable"]}
    top = by_name.get(head)
    if top is None or not top.get("ray_running"):
        return []  # the cluster is down: nothing should run anywhere
    todo = []
    for name, rec in by_name.items():
        if name == head:
            continue
        due = float(state["nodes"].get(name, {}).get("next_at", 0)) <= now
        if facts.repairable(rec) and not rec.get("drained") and due:
            todo.append((name, START))
        elif facts.repair_quarantined(rec) and due:
            todo.append((name, LIFT))
    return todo


def settle(
    state: dict[str, Any],
    name: str,
    ok: bool,
    detail: str,
    policy: Policy,
    now: float,
    action: str = START,
) -> bool:
    """Note how a repair of ``name`` went (in place); True when the node is to be
    quarantined now (the repairs failed ``policy.attempts`` times in a row)."""
    nodes = state["nodes"]
    if ok:
        nodes.pop(name, None)
        failures = 0
    else:
        failures = int(nodes.get(name, {}).get("failures", 0)) + 1
        nodes[name] = {"failures": failures, "next_at": now + backoff(failures, policy.backoff)}
    quarantine = not ok and policy.quarantine and failures >= policy.attempts
    state["events"].append(
        {
            "time": now,
            "node": name,
            "action": "restart Ray" if action == START else "restart Ray, lift the quarantine",
            "ok": ok,
            "failures": failures,
            "detail": detail,
            "quarantined": quarantine,
        }
    )
    return quarantine


def quarantine_reason(failures: int, detail: str) -> str:
    """The drain reason of a node whose repairs kept failing."""
    return f"{facts.QUARANTINE}ray_down: Ray did not start after {failures} repair(s) in a row" + (
        f" ({detail})" if detail else ""
    )


def recent(cluster: str, limit: int = 20) -> list[dict[str, Any]]:
    """The latest repair events, newest last."""
    return list(load(cluster)["events"][-limit:])


def now() -> float:
    return time.time()
