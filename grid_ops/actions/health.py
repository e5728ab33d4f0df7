"""The health round: probe the nodes (or read the cache), rank them, and, by the policy,
act on what was found. One implementation for 'health', 'health --watch', 'status',
'run', 'doctor', 'metrics', the offload dashboard and the API server's refresher.

The policy is the one switch:

* ``REPORT``: change nothing (doctor, metrics, dashboards);
* ``ENFORCE``: the health gate: drain the nodes found sick and return those found well
  again (facts.quarantine_plan decides; actions.nodes drains, as 'node drain' does);
* ``REPAIR``: the gate, and repair the nodes whose Ray is down (grid_ops.repair decides;
  the restart is 'cluster start --limit NODE''s playbook run): the watch loops.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from grid_ops.actions.progress import QUIET, Progress

if TYPE_CHECKING:
    from pathlib import Path

    from grid_ops.health import NodeHealth
    from grid_ops.model import ClusterModel
    from grid_ops.repair import Policy

REPORT = "report"
ENFORCE = "enforce"
REPAIR = "repair"


@dataclass
class Round:
    """What a round found: the nodes, best first, and whether they came from the cache."""

    nodes: list[NodeHealth]
    cached: bool


def check(
    cluster: ClusterModel,
    path: Path,
    *,
    policy: str = ENFORCE,
    refresh: bool = False,
    any_age: bool = False,
    progress: Progress = QUIET,
) -> Round:
    """One health round. The nodes come from the cache when it is younger than
    health_check.refresh_interval (``any_age``: of any age), else from probing them now
    (``refresh``: always); what is probed is cached. Then ``policy`` acts."""
    from grid_ops import health

    if policy not in (REPORT, ENFORCE, REPAIR):
        raise ValueError(f"unknown health policy {policy!r}")
    found = health.load_cache(cluster, any_age=True) if any_age and not refresh else None
    if found is not None:
        nodes, cached = health.ranked(found), True
    else:
        nodes, cached = health.collect(cluster, refresh)
    if policy != REPORT:
        nodes = enforce(cluster, path, nodes, repair=policy == REPAIR, progress=progress)
    return Round(nodes, cached)


def enforce(
    cluster: ClusterModel,
    path: Path,
    nodes: list[NodeHealth],
    repair: bool = False,
    progress: Progress = QUIET,
) -> list[NodeHealth]:
    """Carry out the round's quarantine plan (and, with ``repair``, its repairs); the
    nodes with their drain state as it now is, ranked again (and cached) when anything
    changed, probed again where a repair ran."""
    from grid_ops import facts, health
    from grid_ops.actions.nodes import drain, undrain
    from grid_ops.errors import GridOpsError

    to_drain, to_lift = facts.quarantine_plan(
        [asdict(n) for n in nodes], cluster.head, cluster.health["quarantine"]
    )
    if repair:
        nodes = repair_round(cluster, path, nodes, progress)
    if not to_drain and not to_lift:
        return nodes
    by_name = {n.name: n for n in nodes}
    head = by_name.get(cluster.head)
    cluster_up = bool(head and head.ray_running)  # else a returned node's Ray stays off
    for name, reason in to_drain.items():
        try:
            answer, _ = drain(cluster, name, reason, evacuate=cluster_up, quarantine=True)
        except GridOpsError as exc:
            progress.warn(f"could not quarantine {name}: {exc.message}")
            continue
        by_name[name].drained = str(answer.get("reason") or reason)
        why = reason.removeprefix(facts.QUARANTINE)
        progress.info(f"{name} is sick and quarantined (Ray: {answer.get('ray')}): {why}")
    for name in to_lift:
        try:
            answer, started = undrain(
                cluster, path, name, only_if=facts.QUARANTINE, restart=cluster_up
            )
        except GridOpsError as exc:
            progress.warn(f"could not return {name} to service: {exc.message}")
            continue
        if answer.get("cleared"):
            by_name[name].drained = None
            if not cluster_up:
                how = " (Ray is not running on the head: 'grid-ops cluster start' starts it)"
            elif started is not None and not started.failed_hosts:
                how = ""
            else:
                how = "; its Ray did not restart: grid-ops cluster start"
            progress.info(f"{name} is well again and back in service{how}")
        elif answer.get("reason"):
            by_name[name].drained = str(answer["reason"])  # an operator drained it since
    ranked = health.ranked(list(by_name.values()))
    health.save_cache(cluster, ranked)
    return ranked


def policy(cluster: ClusterModel) -> Policy:
    """The config's repair settings."""
    from grid_ops.repair import Policy

    check = cluster.config.health_check
    return Policy(check.repair, check.repair_attempts, check.repair_backoff, check.quarantine)


def repair_round(
    cluster: ClusterModel, path: Path, nodes: list[NodeHealth], progress: Progress = QUIET
) -> list[NodeHealth]:
    """Repair what grid_ops.repair plans for this round: restart Ray on a node in service
    whose Ray is down; try a node that repair quarantined again (undrain, restart, and
    quarantine it again if Ray still does not start). Each try is noted and logged. The
    repaired nodes are probed again; the nodes, ranked, with what they now are."""
    from grid_ops import facts, health, repair
    from grid_ops.actions import playbooks
    from grid_ops.actions.nodes import drain, undrain
    from grid_ops.errors import GridOpsError
    from grid_ops.log import logger

    rules = policy(cluster)
    state = repair.load(cluster.id)
    todo = repair.plan([asdict(n) for n in nodes], cluster.head, state, rules, repair.now())
    if todo:
        # The round's probe may be seconds old (the operator may be stopping the
        # cluster): ask the head and those nodes again, and repair only what still holds.
        again = health.probe_all(cluster, [cluster.head, *(name for name, _ in todo)])
        still = repair.plan([asdict(n) for n in again], cluster.head, state, rules, repair.now())
        todo = [item for item in todo if item in still]
    if not todo:
        return nodes
    for name, action in todo:
        progress.info(f"{name}: Ray should run there but does not: repairing (restarting its Ray)")
        started = None
        try:
            if action == repair.LIFT:
                answer, started = undrain(cluster, path, name, only_if=facts.QUARANTINE)
                if not answer.get("cleared"):
                    continue  # an operator's drain since: not ours to lift
            else:
                started = playbooks.start(cluster, path, [name], title=f"repair {name}")
            host = started.hosts.get(name) if started is not None else None
            ok = host is not None and not host.failed and not host.unreachable
            detail = "" if ok else _why(host)
        except GridOpsError as exc:
            ok, detail = False, exc.message
        quarantine = repair.settle(state, name, ok, detail, rules, repair.now(), action)
        repair.save(cluster.id, state)
        failures = state["nodes"].get(name, {}).get("failures", 0)
        if ok:
            logger.info("repair of %s: Ray restarted", name)
            progress.info(f"{name}: repaired (Ray runs again)")
            continue
        logger.warning("repair of %s failed (%s in a row): %s", name, failures, detail)
        progress.warn(f"{name}: repair failed ({failures} in a row): {detail}")
        if quarantine or action == repair.LIFT:
            reason = repair.quarantine_reason(failures, detail)
            try:
                drain(cluster, name, reason, evacuate=True, quarantine=True)
                progress.info(f"{name} is quarantined: {reason.removeprefix(facts.QUARANTINE)}")
            except GridOpsError as exc:
                progress.warn(f"could not quarantine {name}: {exc.message}")
    fresh = health.ranked(health.probe_all(cluster))  # what the repairs changed, seen anew
    health.save_cache(cluster, fresh)
    return fresh


def _why(host: Any) -> str:
    """What the failed start said, in one line."""
    if host is None:
        return "the node was not in the run"
    text = str(host.msg or host.failed_task or "the start failed").strip().splitlines()
    return (text[0] if text else "the start failed")[:300]
