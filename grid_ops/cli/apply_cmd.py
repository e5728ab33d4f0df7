"""grid-ops apply (and up, the same): bring the running cluster to its config."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from grid_ops.actions import playbooks
from grid_ops.cli.common import ConfigOption, JsonOption, load_config
from grid_ops.cli.output import err, error, info, out, print_json, safe
from grid_ops.cli.progress import console

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
AdoptOption = Annotated[
    bool,
    typer.Option(
        "--adopt",
        help="Take over nodes that another grid-ops cluster provisioned (they note its "
        "id); without it such nodes are refused and nothing is changed.",
    ),
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
    adopt: AdoptOption = False,
    json_out: JsonOption = False,
) -> None:
    """Bring the cluster to its config, doing only the difference.

    Reads what was applied to each node (one SSH round trip per node) and plans: new
    nodes are provisioned and join Ray; nodes whose settings changed are provisioned
    again where their venv differs and their Ray restarts (only theirs; the head's
    restarts the cluster); nodes deleted from the config are drained (pool objects
    copied to nodes that stay, shares moved, boosts released), stopped and cleaned up
    (asks first unless --yes; a node that cannot be reached is dropped untouched).
    Nodes already current are not visited. A drained node stays drained. A node that
    another cluster provisioned (it notes that cluster's id) is refused before anything
    changes, unless --adopt.
    """
    from grid_ops import lifecycle, model
    from grid_ops import stamp as stamps

    started = time.monotonic()
    cfg, path = load_config(config, quick_plan=True)
    cluster = model.of(cfg)
    applied = lifecycle.read_applied(cfg.id)
    removed = lifecycle.removed_configs(
        applied, [n for n in (applied.get("nodes") or {}) if n not in cfg.node_names]
    )
    everyone = _with_removed(cfg, removed)
    whole = model.of(everyone)
    states = lifecycle.read_states(whole, list(whole.nodes))
    plan = lifecycle.plan(cluster, stamps.stamps(cluster), states, applied, full=full)
    report: dict[str, Any] = {"plan": plan.to_json(), "check": check}
    if not json_out:
        _print_plan(cfg, cluster, plan, states)
    if not adopt:
        lifecycle.refuse_foreign(cluster, plan.foreign, "apply")
    if plan.foreign and not check:
        failed = lifecycle.adopt(whole, sorted(plan.foreign))
        if failed:
            lifecycle.refuse_foreign(cluster, {n: plan.foreign[n] for n in failed}, "adopt")
        info(f"adopted {', '.join(sorted(plan.foreign))} into cluster {cluster.id}")
    blocked = [n for n in plan.unreachable if n in cfg.node_names]
    if plan.empty and not blocked and (check or applied_matches(cfg, cluster, applied)):
        _nothing_to_do(plan, check, time.monotonic() - started, json_out)
        return
    if check:
        if json_out:
            print_json(report)
        else:
            out.print("[dim]--check: nothing was changed.[/]")
        return
    if plan.remove and not yes:
        _confirm_removal(plan.remove, json_out)
    if plan.remove:
        report["remove"] = _remove(everyone, path, plan, states, keep_files, json_out)
    results, report["restarted"], report["window_s"] = _carry_out(
        cfg, path, cluster, plan, blocked, full, json_out
    )
    start = results.get("start")
    if plan.controller and not (start and cluster.head in start.hosts):
        report["controller"] = _configure(cfg, cluster, json_out)
    started_ok = [n for n in start.hosts if n not in start.failed_hosts] if start else []
    behind = _verify(cluster, started_ok, plan) if started_ok else []
    report["not_current"] = behind
    done = [*plan.current, *(n for n in started_ok if n not in behind)]
    kept = {
        n: c
        for n, c in zip(plan.remove, removed, strict=False)
        if n in (report.get("remove") or {}).get("failed", [])
    }
    lifecycle.write_applied(cfg, cluster, done, kept)
    report.update({k: v.to_json() for k, v in results.items()})
    report["seconds"] = round(time.monotonic() - started, 3)
    _finish(cfg, plan, results, report, [*blocked, *behind], json_out)


def applied_matches(cfg: ClusterConfig, cluster: ClusterModel, applied: dict[str, Any]) -> bool:
    """Does the applied state already record this config's nodes and controller?"""
    nodes = applied.get("nodes") or {}
    return set(nodes) == set(cfg.node_names) and applied.get("controller") == cluster.controller


def _nothing_to_do(plan: Plan, check: bool, seconds: float, json_out: bool) -> None:
    from grid_ops import lifecycle

    if json_out:
        print_json(lifecycle.noop_document(plan, check, seconds))
        return
    out.print(lifecycle.NOTHING_TO_DO)
    if not check:
        err.print(f"[green]apply: done in {seconds:.1f} s.[/]")


def _carry_out(
    cfg: ClusterConfig,
    path: Path,
    cluster: ClusterModel,
    plan: Plan,
    blocked: list[str],
    full: bool,
    json_out: bool,
) -> tuple[dict[str, PlaybookResult], list[str], float | None]:
    """Build, then one short window: stop what restarts, start (and stamp) what changed.

    New venvs are built beside the ones in use while Ray runs (provision); only then
    does Ray stop where it must (the changed nodes; every node when the head changes)
    and start again on the new build, in one run (playbooks/ray_restart.yml). A node
    whose build failed is left as it runs. Returns the runs, the restarted nodes and
    the window (first stop to the end of the start) when any restarted."""
    from grid_ops import lifecycle
    from grid_ops import stamp as stamps

    results: dict[str, PlaybookResult] = {}
    everyone = [n for n in cfg.node_names if n not in blocked]
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
            "provision", cfg, path, title="build", progress=console(json_out), limit=build
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
            "ray_restart", cfg, path, title="ray restart" if restart else "ray start",
            progress=console(json_out), limit=start,
            extravars={
                "grid_ray_apply": True, "grid_ray_restart": restart,
                **lifecycle.head_vars(cluster, start),
            },
        )  # fmt: skip
    window = round(time.monotonic() - window_started, 3) if restart else None
    return results, restart, window


def _verify(cluster: ClusterModel, names: list[str], plan: Plan) -> list[str]:
    """The nodes (of ``names``) that do not now run what the config gives: stamp, venv
    build, Ray up (unless drained). One more round trip per node."""
    from grid_ops import lifecycle, model, stamp

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
    from grid_ops.actions.nodes import describe_move
    from grid_ops.actions.nodes import evacuation as evacuate
    from grid_ops.cli.reset_cmd import node_files, print_kept

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
        result = playbooks.run(
            "remove_node",
            everyone,
            path,
            title="remove",
            progress=console(json_out),
            limit=[everyone.head.name, *reachable],
            extravars={"grid_remove": reachable, "grid_ray_keep_files": keep_files},
        )
        outcome["run"] = result.to_json()
        outcome["failed"] = [n for n in reachable if n in result.failed_hosts]
        outcome["removed"] = [n for n in reachable if n not in result.failed_hosts]
        # what grid-ops did not make stays on the removed nodes, named (as 'reset' does)
        outcome["files"] = node_files(result)
        if not json_out:
            print_kept(outcome["files"])
    if not json_out:
        for name, moved in outcome["moved"].items():
            for row in moved if isinstance(moved, list) else []:
                info(f"{name}: {describe_move(row)}")
    return outcome


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


def _print_plan(
    cfg: ClusterConfig, cluster: ClusterModel, plan: Plan, states: dict[str, Any]
) -> None:
    from grid_ops import lifecycle

    for line in lifecycle.plan_lines(cluster, plan, states, cfg.node_names):
        out.print(line, markup=False, highlight=False)


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
        from grid_ops.cli.progress import print_summary

        for name in ("provision", "start"):
            if name in results:
                print_summary(results[name])
        if report.get("window_s") is not None:
            info(f"Ray was down on the restarted nodes for {report['window_s']:.1f} s.")
    if failed:
        if not json_out:
            error(
                f"apply did not finish on {len(failed)} node(s): {', '.join(failed)}.",
                "Nodes that succeeded are applied and kept; fix the cause (grid-ops ping, "
                "grid-ops health) and run 'grid-ops apply' again: it resumes with those nodes "
                "(a node whose new venv did not build keeps running the one it had).",
            )
        raise typer.Exit(1)
    if not json_out:
        if plan.empty:
            from grid_ops import lifecycle

            out.print(lifecycle.NOTHING_TO_DO)
        err.print(f"[green]apply: done in {report['seconds']:.1f} s.[/]")
