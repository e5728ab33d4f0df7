"""grid-ops apply (and up, the same): bring the running cluster to its config."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from grid_ops.cli.common import ConfigOption, JsonOption, load_cluster
from grid_ops.cli.output import err, error, info, out, print_json
from grid_ops.cli.progress import console

if TYPE_CHECKING:
    from grid_ops.actions.apply import Applied
    from grid_ops.lifecycle import Plan

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
    from grid_ops.actions import apply as applying

    cluster, path = load_cluster(config, quick_plan=True)
    progress = console(json_out)
    planned = applying.plan(cluster, full=full)
    if not json_out:
        for line in planned.lines():
            out.print(line, markup=False, highlight=False)
    applying.take_foreign(planned, adopt, check, progress)
    if planned.nothing_to_do(check):
        _nothing_to_do(planned.plan, check, applying.seconds(planned), json_out)
        return
    if check:
        if json_out:
            print_json({"plan": planned.plan.to_json(), "check": check})
        else:
            out.print("[dim]--check: nothing was changed.[/]")
        return
    if planned.plan.remove and not yes:
        _confirm_removal(planned.plan.remove, json_out)
    done = applying.carry_out(planned, path, keep_files, full, progress)
    _finish(planned.plan, done, json_out)


def _nothing_to_do(plan: Plan, check: bool, seconds: float, json_out: bool) -> None:
    from grid_ops import lifecycle

    if json_out:
        print_json(lifecycle.noop_document(plan, check, seconds))
        return
    out.print(lifecycle.NOTHING_TO_DO)
    if not check:
        err.print(f"[green]apply: done in {seconds:.1f} s.[/]")


def up(config: ConfigOption = None, json_out: JsonOption = False) -> None:
    """Bring the cluster up: the same as 'grid-ops apply' (provision, start Ray)."""
    apply(config=config, json_out=json_out)


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


def _finish(plan: Plan, done: Applied, json_out: bool) -> None:
    report, results, failed = done.report, done.results, done.failed
    if json_out:
        print_json(report)
    else:
        from grid_ops.cli.progress import print_summary
        from grid_ops.cli.reset_cmd import print_kept

        print_kept((report.get("remove") or {}).get("files") or {})
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
