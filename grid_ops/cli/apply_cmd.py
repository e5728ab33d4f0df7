"""grid-ops apply (and up, the same): bring the running cluster to its config."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from grid_ops.cli import playbook
from grid_ops.cli.common import ConfigOption, JsonOption, load_config
from grid_ops.cli.output import err, error, info, out, print_json, safe

if TYPE_CHECKING:
    from pathlib import Path

    from grid_ops.config import ClusterConfig
    from grid_ops.lifecycle import Plan
    from grid_ops.model import ClusterModel
    from grid_ops.results import PlaybookResult

CheckOption = Annotated[bool, typer.Option("--check", help="Print the plan and change nothing.")]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Remove nodes without asking first.")]
FullOption = Annotated[
    bool,
    typer.Option("--full", help="Run the playbooks on every node, current or not."),
]
KeepOption = Annotated[
    bool,
    typer.Option("--keep-files", help="On removed nodes, stop Ray but keep grid-ops' files."),
]


def apply(
    config: ConfigOption = None,
    check: CheckOption = False,
    yes: YesOption = False,
    full: FullOption = False,
    keep_files: KeepOption = False,
    json_out: JsonOption = False,
) -> None:
    """Bring the cluster to its config, doing only the difference.

    Reads what was applied to each node (one SSH round trip per node) and plans: new
    nodes are provisioned and join Ray; nodes whose settings changed are provisioned
    again where their venv differs and their Ray restarts (only theirs; the head's
    restarts the cluster); nodes deleted from the config are drained (pool objects
    copied to nodes that stay, shares moved, boosts released), stopped and cleaned up
    (asks first unless --yes; a node that cannot be reached is dropped untouched).
    Nodes already current are not visited. A drained node stays drained.
    """
    from grid_ops import lifecycle, model, stamp

    started = time.monotonic()
    cfg, path = load_config(config)
    cluster = model.of(cfg)
    applied = lifecycle.read_applied(cfg.name)
    removed = lifecycle.removed_configs(
        applied, [n for n in (applied.get("nodes") or {}) if n not in cfg.node_names]
    )
    everyone = _with_removed(cfg, removed)
    whole = model.of(everyone)
    states = lifecycle.read_states(whole, list(whole.nodes))
    plan = lifecycle.plan(cluster, stamp.stamps(cluster), states, applied, full=full)
    report: dict[str, Any] = {"plan": plan.to_json(), "check": check}
    if not json_out:
        _print_plan(cfg, plan, states)
    if check:
        if json_out:
            print_json(report)
        elif plan.empty:
            out.print("Nothing to do: every node is current.")
        else:
            out.print("[dim]--check: nothing was changed.[/]")
        return
    blocked = [n for n in plan.unreachable if n in cfg.node_names]
    if plan.remove and not yes:
        _confirm_removal(plan.remove, json_out)
    if plan.remove:
        report["remove"] = _remove(everyone, path, plan, states, keep_files, json_out)
    results: dict[str, PlaybookResult] = {}
    if plan.restart_all:
        visit = [n for n in cfg.node_names if n not in blocked]
        results["stop"] = playbook.run(
            "ray_stop", cfg, path, title="ray stop", json_out=json_out, limit=visit
        )
        results["scale"] = playbook.run(
            "scale", cfg, path, title="apply", json_out=json_out, limit=visit
        )
    elif plan.visit:
        restart = [n for n, parts in plan.change.items() if parts and n not in plan.drained]
        if restart:
            results["stop"] = playbook.run(
                "ray_stop", cfg, path, title="ray stop (changed nodes)", json_out=json_out,
                limit=restart,
            )  # fmt: skip
        results["scale"] = playbook.run(
            "scale",
            cfg,
            path,
            title="apply",
            json_out=json_out,
            limit=plan.visit,
            extravars=_head_address(cluster, plan.visit),
        )
    scale = results.get("scale")
    if plan.controller and not plan.restart_all and not (scale and cluster.head in scale.hosts):
        report["controller"] = _configure(cfg, cluster, json_out)
    done = [n for n in plan.current]
    if scale:
        done += [n for n in scale.hosts if n not in scale.failed_hosts]
    kept = {
        n: c
        for n, c in zip(plan.remove, removed, strict=False)
        if n in (report.get("remove") or {}).get("failed", [])
    }
    lifecycle.write_applied(cfg, cluster, done, kept)
    report.update({k: v.to_json() for k, v in results.items()})
    report["seconds"] = round(time.monotonic() - started, 3)
    _finish(cfg, plan, results, report, blocked, json_out)


def up(config: ConfigOption = None, json_out: JsonOption = False) -> None:
    """Bring the cluster up: the same as 'grid-ops apply' (provision, start Ray)."""
    apply(config=config, json_out=json_out)


# ---------------------------------------------------------------------------------------


def _with_removed(cfg: ClusterConfig, removed: list[dict[str, Any]]) -> ClusterConfig:
    """``cfg`` with the nodes to remove added back (to reach them one last time)."""
    if not removed:
        return cfg
    from grid_ops.config import NodeConfig

    extra = [NodeConfig.model_validate(n) for n in removed]
    return cfg.model_copy(update={"nodes": [*cfg.nodes, *extra]})


def _head_address(cluster: ClusterModel, visit: list[str]) -> dict[str, Any]:
    """A run without the head: its address as the model knows it (config, else the
    address its SSH connection arrived on when last probed)."""
    if cluster.head in visit:
        return {}
    head = cluster.head_node
    known = head.address or head.ssh_ip
    return {"grid_ray_head_ip": known} if known else {}


def _confirm_removal(names: list[str], json_out: bool) -> None:
    what = ", ".join(names)
    if json_out or not sys.stdin.isatty():
        error(
            f"apply would remove {len(names)} node(s) ({what}): Ray is stopped there and "
            "grid-ops' files are deleted.",
            "Run it again with --yes to go ahead, or with --check to see the whole plan.",
        )
        raise typer.Exit(2)
    if not typer.confirm(f"Remove {what} from the cluster?", default=False):
        err.print("Nothing was changed.")
        raise typer.Exit(1)


def _remove(
    everyone: ClusterConfig,
    path: Path,
    plan: Plan,
    states: dict[str, Any],
    keep_files: bool,
    json_out: bool,
) -> dict[str, Any]:
    """Drain, stop and clean the nodes to remove; drop the unreachable ones untouched.
    The controller evacuates each first (here, so the playbook finds nothing left to
    move; an operator running remove_node.yml by hand has the head do it)."""

    reachable = [n for n in plan.remove if states[n].reachable]
    dropped = [n for n in plan.remove if not states[n].reachable]
    outcome: dict[str, Any] = {"removed": [], "dropped": dropped, "failed": [], "moved": {}}
    for name in dropped:
        outcome["moved"][name] = evacuate(everyone, name)
        if not json_out:
            err.print(
                f"[yellow]{safe(name)} cannot be reached: dropped from the cluster without "
                "being touched (its files and any Ray left there stay).[/]"
            )
    if reachable:
        for name in reachable:
            outcome["moved"][name] = evacuate(everyone, name)
        result = playbook.run(
            "remove_node",
            everyone,
            path,
            title="remove",
            json_out=json_out,
            limit=[everyone.head.name, *reachable],
            extravars={"grid_remove": reachable, "grid_ray_keep_files": keep_files},
        )
        outcome["run"] = result.to_json()
        outcome["failed"] = [n for n in reachable if n in result.failed_hosts]
        outcome["removed"] = [n for n in reachable if n not in result.failed_hosts]
    if not json_out:
        for name, moved in outcome["moved"].items():
            for row in moved if isinstance(moved, list) else []:
                info(f"{name}: {_describe_move(row)}")
    return outcome


def evacuate(cfg: ClusterConfig, name: str) -> list[dict[str, Any]] | dict[str, str]:
    """The controller moves what it keeps on ``name`` elsewhere; what it did."""
    from grid_ops import control
    from grid_ops.errors import GridOpsError

    try:
        moved, _ = control.call(cfg, "evacuate", {"node": name})
        return list(moved.get("moved", []))
    except GridOpsError as exc:
        return {"error": exc.message}


def _describe_move(row: dict[str, Any]) -> str:
    if row.get("kind") == "pool":
        if row.get("state") == "copied":
            return f"pool object '{row['key']}' copied to {', '.join(row.get('to') or [])}"
        return f"pool object '{row['key']}' {row.get('state')}: {row.get('why', '')}"
    if row.get("state") == "moved":
        return f"{row['kind']} {row['id']} moved to {row.get('to')}"
    return f"{row['kind']} {row['id']} released (it was on the removed node)"


def _configure(cfg: ClusterConfig, cluster: ClusterModel, json_out: bool) -> dict[str, Any]:
    """Give the running controller the cluster's new node set (no restart)."""
    from grid_ops import control
    from grid_ops.errors import GridOpsError

    try:
        result, _ = control.call(cfg, "configure", {"settings": cluster.controller})
        return dict(result)
    except GridOpsError as exc:
        if not json_out:
            err.print(
                f"[yellow]The controller did not take the new node set: {safe(exc.message)} "
                "'grid-ops cluster start' starts it with it.[/]"
            )
        return {"error": exc.message}


def _print_plan(cfg: ClusterConfig, plan: Plan, states: dict[str, Any]) -> None:
    rows: list[tuple[str, str]] = []
    for name in plan.add:
        rows.append((name, "add: provision, start Ray"))
    for name, parts in plan.change.items():
        what = {
            ("ray", "venv"): "venv and Ray settings changed: provision, restart Ray",
            ("venv",): "venv changed: provision, restart Ray",
            ("ray",): "Ray settings changed: restart Ray",
            (): "--full: visit",
        }[tuple(sorted(parts))]
        rows.append((name, what))
    for name in plan.start:
        rows.append((name, "Ray not running: start it"))
    for name in plan.remove:
        how = "drain, stop, clean up" if states[name].reachable else "unreachable: drop untouched"
        rows.append((name, f"remove: {how}"))
    for name in plan.unreachable:
        if name in cfg.node_names:
            rows.append((name, f"unreachable: {states[name].error or 'no answer'}"))
    for name, why in plan.drained.items():
        rows.append((name, f"drained ({why}): Ray stays off"))
    if not rows:
        return
    out.print(f"[bold]apply plan for {safe(cfg.name)}[/] ({len(plan.current)} node(s) current):")
    for name, what in rows:
        out.print(f"  {safe(name)}: {safe(what)}")
    if plan.restart_all:
        out.print("  the head changes: the whole cluster's Ray restarts")
    if plan.controller:
        out.print("  the controller takes the new node set")


def _finish(
    cfg: ClusterConfig,
    plan: Plan,
    results: dict[str, PlaybookResult],
    report: dict[str, Any],
    blocked: list[str],
    json_out: bool,
) -> None:
    failed = sorted({n for r in results.values() for n in r.failed_hosts} | set(blocked))
    failed += (report.get("remove") or {}).get("failed", [])
    if json_out:
        print_json(report)
    else:
        for name, result in results.items():
            if name == "scale":
                from grid_ops.cli.progress import print_summary

                print_summary(result)
    if failed:
        if not json_out:
            error(
                f"apply did not finish on {len(failed)} node(s): {', '.join(failed)}.",
                "Nodes that succeeded are applied and kept; fix the cause (grid-ops ping, "
                "grid-ops health) and run 'grid-ops apply' again: it resumes with those nodes.",
            )
        raise typer.Exit(1)
    if not json_out:
        if plan.empty:
            out.print("Nothing to do: every node is current.")
        err.print(f"[green]apply: done in {report['seconds']:.1f} s.[/]")
