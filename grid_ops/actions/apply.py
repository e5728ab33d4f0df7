"""apply: bring the running cluster to its config, doing only the difference.

Two steps, so the caller can show the plan and ask before anything changes:
:func:`plan` reads what was applied to each node (one SSH round trip per node) and
plans (grid_ops.lifecycle); :func:`carry_out` does it: evacuates and removes the nodes
deleted from the config, builds new venvs beside the ones in use, then restarts Ray in
one short window where it must, and records what is now applied.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from grid_ops.actions import playbooks
from grid_ops.actions.progress import QUIET, Progress

if TYPE_CHECKING:
    from pathlib import Path

    from grid_ops.drivers.results import PlaybookResult
    from grid_ops.lifecycle import NodeState, Plan
    from grid_ops.model import ClusterModel
    from grid_ops.model.config import ClusterConfig


@dataclass
class Planned:
    """What apply found and means to do."""

    cluster: ClusterModel
    everyone: ClusterModel  # the cluster with the nodes to remove added back
    removed: list[dict[str, Any]]  # the config of each node to remove, as last applied
    applied: dict[str, Any]
    states: dict[str, NodeState]
    plan: Plan
    started: float = field(default_factory=time.monotonic)

    @property
    def blocked(self) -> list[str]:
        """The config's nodes that could not be reached."""
        return [n for n in self.plan.unreachable if n in self.cluster.names]

    def nothing_to_do(self, check: bool) -> bool:
        """Every node is current and the applied state says so (a --check needs only
        the former)."""
        if not self.plan.empty or self.blocked:
            return False
        return check or applied_matches(self.cluster, self.applied)

    def lines(self) -> list[str]:
        """The plan as text, one line per node with something to say."""
        from grid_ops import lifecycle

        return lifecycle.plan_lines(self.cluster, self.plan, self.states, self.cluster.names)


@dataclass
class Applied:
    """What carry_out did: the 'apply --json' document, the playbook runs, and the
    nodes it did not finish on."""

    report: dict[str, Any]
    results: dict[str, PlaybookResult]
    failed: list[str]


def plan(cluster: ClusterModel, full: bool = False) -> Planned:
    """Read every node's stamp (the removed ones' too) and plan; ``full``: visit every
    node, current or not."""
    from grid_ops import lifecycle, model
    from grid_ops.model import stamp as stamps

    started = time.monotonic()
    applied = lifecycle.read_applied(cluster.id)
    removed = lifecycle.removed_configs(
        applied, [n for n in (applied.get("nodes") or {}) if n not in cluster.names]
    )
    # the removed nodes, reached one last time, make another model (of another node set)
    everyone = model.of(_with_removed(cluster.config, removed)) if removed else cluster
    states = lifecycle.read_states(everyone, list(everyone.nodes))
    found = lifecycle.plan(cluster, stamps.stamps(cluster), states, applied, full=full)
    return Planned(cluster, everyone, removed, applied, states, found, started)


def take_foreign(
    planned: Planned, adopt: bool, check: bool = False, progress: Progress = QUIET
) -> None:
    """Nodes that note another cluster's id: refused (a Conflict, nothing changed)
    unless ``adopt``, which notes this cluster's id on them (not when ``check``)."""
    from grid_ops import lifecycle

    plan, cluster = planned.plan, planned.cluster
    if not adopt:
        lifecycle.refuse_foreign(cluster, plan.foreign, "apply")
    if plan.foreign and not check:
        failed = lifecycle.adopt(planned.everyone, sorted(plan.foreign))
        if failed:
            lifecycle.refuse_foreign(cluster, {n: plan.foreign[n] for n in failed}, "adopt")
        progress.info(f"adopted {', '.join(sorted(plan.foreign))} into cluster {cluster.id}")


def seconds(planned: Planned) -> float:
    """Time since the plan began."""
    return time.monotonic() - planned.started


def carry_out(
    planned: Planned,
    path: Path,
    keep_files: bool = False,
    full: bool = False,
    progress: Progress = QUIET,
) -> Applied:
    """Remove, build, restart, verify and record (see the module's docstring)."""
    from grid_ops import lifecycle

    cluster, plan = planned.cluster, planned.plan
    report: dict[str, Any] = {"plan": plan.to_json(), "check": False}
    if plan.remove:
        report["remove"] = _remove(planned, path, keep_files, progress)
    blocked = planned.blocked
    results, report["restarted"], report["window_s"] = _build_and_start(
        path, cluster, plan, blocked, full, progress
    )
    start = results.get("start")
    if plan.controller and not (start and cluster.head in start.hosts):
        report["controller"] = _configure(cluster, progress)
    started_ok = [n for n in start.hosts if n not in start.failed_hosts] if start else []
    behind = _verify(cluster, started_ok) if started_ok else []
    report["not_current"] = behind
    done = [*plan.current, *(n for n in started_ok if n not in behind)]
    kept = {
        n: c
        for n, c in zip(plan.remove, planned.removed, strict=False)
        if n in (report.get("remove") or {}).get("failed", [])
    }
    lifecycle.write_applied(cluster, done, kept)
    report.update({k: v.to_json() for k, v in results.items()})
    report["seconds"] = round(seconds(planned), 3)
    failed = sorted({n for r in results.values() for n in r.failed_hosts} | {*blocked, *behind})
    failed += (report.get("remove") or {}).get("failed", [])
    return Applied(report, results, failed)


def applied_matches(cluster: ClusterModel, applied: dict[str, Any]) -> bool:
    """Does the applied state already record this config's nodes and controller?"""
    nodes = applied.get("nodes") or {}
    return set(nodes) == set(cluster.names) and applied.get("controller") == cluster.controller


def _with_removed(cfg: ClusterConfig, removed: list[dict[str, Any]]) -> ClusterConfig:
    """``cfg`` with the nodes to remove added back (to reach them one last time)."""
    from grid_ops.model.config import NodeConfig

    extra = [NodeConfig.model_validate(n) for n in removed]
    return cfg.model_copy(update={"nodes": [*cfg.nodes, *extra]})


def _build_and_start(
    path: Path,
    cluster: ClusterModel,
    plan: Plan,
    blocked: list[str],
    full: bool,
    progress: Progress,
) -> tuple[dict[str, PlaybookResult], list[str], float | None]:
    """Build, then one short window: stop what restarts, start (and stamp) what changed.

    New venvs are built beside the ones in use while Ray runs (provision); only then
    does Ray stop where it must (the changed nodes; every node when the head changes)
    and start again on the new build, in one run (playbooks/ray_restart.yml). A node
    whose build failed is left as it runs. Returns the runs, the restarted nodes and
    the window (first stop to the end of the start) when any restarted."""
    from grid_ops.model import stamp as stamps

    results: dict[str, PlaybookResult] = {}
    everyone = [n for n in cluster.names if n not in blocked]
    visit = everyone if plan.restart_all else plan.visit
    build = [
        n
        for n in visit
        if n in plan.add
        or {"venv", "runtime"} & set(plan.change.get(n, []))
        or (full and n in plan.change)
    ]
    failed: list[str] = []
    if build:
        results["provision"] = playbooks.run(
            "provision", cluster, path, title="build", progress=progress, limit=build
        )
        failed = results["provision"].failed_hosts
    if plan.restart_all and cluster.head in failed:
        return results, [], None  # the head has no new build: nothing is stopped
    if plan.restart_all:
        # A node whose build failed restarts too, on the build it has: it rejoins the new
        # head, keeps its old stamp and is reported; a rerun builds it again.
        restart = start = everyone
    else:  # a node whose build failed keeps running as it is
        changed = plan.change.items()
        restart = [
            n
            for n, parts in changed
            if stamps.restarts(parts) and n not in plan.drained and n not in failed
        ]
        start = [n for n in visit if n not in failed]
    window_started = time.monotonic()
    if start:
        results["start"] = playbooks.run(
            "ray_restart", cluster, path, title="ray restart" if restart else "ray start",
            progress=progress, limit=start,
            extravars={"grid_ray_apply": True, "grid_ray_restart": restart},
        )  # fmt: skip
    window = round(time.monotonic() - window_started, 3) if restart else None
    return results, restart, window


def _verify(cluster: ClusterModel, names: list[str]) -> list[str]:
    """The nodes (of ``names``) that do not now run what the config gives: stamp, venv
    build, Ray up (unless drained). One more round trip per node."""
    from grid_ops import lifecycle, model
    from grid_ops.model import stamp

    fresh = model.of_cluster_again(cluster)
    want = stamp.stamps(fresh)
    states = lifecycle.read_states(fresh, [fresh.node(n) for n in names])
    behind = []
    for name in names:
        state = states[name]
        if state.drained:
            continue  # Ray stays off there, and nothing is noted
        if (
            not state.reachable
            or stamp.differs(want[name], state.stamp)
            or state.venv_id != fresh.venv_id
            or not (state.ray_running or state.drained)
        ):
            behind.append(name)
    return behind


def _remove(planned: Planned, path: Path, keep_files: bool, progress: Progress) -> dict[str, Any]:
    """Drain, stop and clean the nodes to remove; drop the unreachable ones untouched.
    The controller evacuates each first (here, so the playbook finds nothing left to
    move; an operator running remove_node.yml by hand has the head do it)."""
    from grid_ops.actions.nodes import describe_move, evacuation
    from grid_ops.actions.reset import node_files

    everyone, plan, states = planned.everyone, planned.plan, planned.states
    reachable = [n for n in plan.remove if states[n].reachable]
    dropped = [n for n in plan.remove if not states[n].reachable]
    outcome: dict[str, Any] = {"removed": [], "dropped": dropped, "failed": [], "moved": {}}
    for name in dropped:
        outcome["moved"][name] = evacuation(everyone, name)
        progress.warn(
            f"{name} cannot be reached: dropped from the cluster without being touched "
            "(its files and any Ray left there stay)."
        )
    if reachable:
        for name in reachable:
            outcome["moved"][name] = evacuation(everyone, name)
        result = playbooks.run(
            "remove_node",
            everyone,
            path,
            title="remove",
            progress=progress,
            limit=[everyone.head, *reachable],
            extravars={"grid_remove": reachable, "grid_ray_keep_files": keep_files},
        )
        outcome["run"] = result.to_json()
        outcome["failed"] = [n for n in reachable if n in result.failed_hosts]
        outcome["removed"] = [n for n in reachable if n not in result.failed_hosts]
        # what grid-ops did not make stays on the removed nodes, named (as 'reset' does)
        outcome["files"] = node_files(result)
    for name, moved in outcome["moved"].items():
        for row in moved if isinstance(moved, list) else []:
            progress.info(f"{name}: {describe_move(row)}")
    return outcome


def _configure(cluster: ClusterModel, progress: Progress) -> dict[str, Any]:
    """Give the running controller the cluster's new node set (no restart)."""
    from grid_ops.drivers import control
    from grid_ops.errors import GridOpsError

    try:
        result, _ = control.call(cluster, "configure", {"settings": cluster.controller})
        return dict(result)
    except GridOpsError as exc:
        progress.warn(
            f"The controller did not take the new node set: {exc.message} "
            "'grid-ops cluster start' starts it with it."
        )
        return {"error": exc.message}
