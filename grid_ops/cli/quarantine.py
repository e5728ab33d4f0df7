"""The health gate: after a health round, drain the nodes it found sick and return those
it found well again (facts.quarantine_plan decides; cli.draining does it, as 'node
drain' and 'node undrain' do). Progress and trouble go to stderr, so a --json document
on stdout stays whole."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING

from grid_ops.cli.output import err, info, safe

if TYPE_CHECKING:
    from pathlib import Path

    from grid_ops.config import ClusterConfig
    from grid_ops.health import NodeHealth


def enforce(cfg: ClusterConfig, path: Path, nodes: list[NodeHealth]) -> list[NodeHealth]:
    """Carry out the round's quarantine plan; the nodes with their drain state as it
    now is, ranked again (and cached) when anything changed."""
    from grid_ops import facts, health
    from grid_ops.cli.draining import drain, undrain
    from grid_ops.errors import GridOpsError

    to_drain, to_lift = facts.quarantine_plan(
        [asdict(n) for n in nodes], cfg.head.name, cfg.health_check.quarantine
    )
    if not to_drain and not to_lift:
        return nodes
    by_name = {n.name: n for n in nodes}
    head = by_name.get(cfg.head.name)
    cluster_up = bool(head and head.ray_running)  # else a returned node's Ray stays off
    for name, reason in to_drain.items():
        try:
            answer, _ = drain(cfg, name, reason, evacuate=cluster_up, quarantine=True)
        except GridOpsError as exc:
            err.print(f"[yellow]could not quarantine {safe(name)}: {safe(exc.message)}[/]")
            continue
        by_name[name].drained = str(answer.get("reason") or reason)
        why = reason.removeprefix(facts.QUARANTINE)
        info(f"{name} is sick and quarantined (Ray: {answer.get('ray')}): {why}")
    for name in to_lift:
        try:
            answer, started = undrain(
                cfg, path, name, json_out=True, only_if=facts.QUARANTINE, restart=cluster_up
            )
        except GridOpsError as exc:
            err.print(f"[yellow]could not return {safe(name)} to service: {safe(exc.message)}[/]")
            continue
        if answer.get("cleared"):
            by_name[name].drained = None
            if not cluster_up:
                how = " (Ray is not running on the head: 'grid-ops cluster start' starts it)"
            elif started is not None and not started.failed_hosts:
                how = ""
            else:
                how = "; its Ray did not restart: grid-ops cluster start"
            info(f"{name} is well again and back in service{how}")
        elif answer.get("reason"):
            by_name[name].drained = str(answer["reason"])  # an operator drained it since
    ranked = health.ranked(list(by_name.values()))
    health.save_cache(cfg, ranked)
    return ranked
