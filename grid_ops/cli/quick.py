"""The console entry point: a dispatcher that answers `health`, a no-change `sync` and a
no-change `apply` without loading the full CLI, by calling the same functions it does.

`grid-ops health`, `sync` and `apply` are run often, in loops and before every job, and
the work they do on a warm cluster (one probe, rsync or stamp read per node over open SSH
connections) takes tens of milliseconds: less than loading Typer, Rich and pydantic. So
when the command line is one grid_ops.cli.argspec knows and the config's resolved model is
cached for the file's current content (grid_ops.model: written by the full CLI when it
last loaded that config for these commands), this module only dispatches:

- health: grid_ops.drivers.probe.collect on the model (the full CLI's own call), the same JSON,
  the same table.
- apply: grid_ops.lifecycle reads every node's stamp (one round trip each) and plans; when
  nothing is to be done it prints what the full CLI prints, else the full CLI carries
  the plan out (reading the stamps again).
- sync: the rsync command of grid_ops.drivers.rsync (the role's own filter plugin) as a dry run
  on every node. If nothing would move (or --dry-run was asked), grid_ops.drivers.results prints
  the same document the full CLI does; if something would move, a node's root is not
  recorded yet, or an rsync fails, the full CLI runs playbooks/sync.yml.

Anything else, and $GRID_OPS_QUICK=0, goes straight to the full CLI. An error of the
quick path itself is reported as the full CLI reports one, never swallowed.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from grid_ops.model import ClusterModel


def main() -> None:
    """Console entry point."""
    code = None
    if os.environ.get("GRID_OPS_QUICK", "1") != "0":
        try:
            code = attempt(sys.argv[1:])
        except KeyboardInterrupt:
            sys.stderr.write("error: Interrupted.\n")
            sys.exit(130)
    if code is not None:
        # Done: leave without the interpreter's clean-up (a few ms, nothing of ours to
        # close: the output is flushed, the children reaped, the files written whole).
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except OSError:
            code = code or 1
        os._exit(code)
    from grid_ops.cli import main as full

    full()


def attempt(args: list[str]) -> int | None:
    """The exit code of a command done here, or None to hand it to the full CLI."""
    from grid_ops.cli import argspec

    commands = {"health": _health, "sync": _sync, "apply": _apply}
    if not args or args[0] not in commands:
        return None
    opts = argspec.parse(argspec.COMMANDS[args[0]], args[1:])
    if opts is None:
        return None
    try:
        from grid_ops import model, paths

        cluster = model.load_cache(opts.get("config") or paths.default_config_name())
        if cluster is None:
            return None
        report = commands[args[0]](cluster, opts)
        if report is None:
            return None
        return report()
    except BrokenPipeError:  # the reader went away (`| head`): nothing more to say
        return 1
    except OSError as exc:
        _error(
            f"{args[0]} could not finish ({exc}).",
            "Check that the state dir is writable, or run it with GRID_OPS_QUICK=0.",
        )
        return 1
    except Exception as exc:  # a bug: one paragraph, as the full CLI says it
        if os.environ.get("GRID_OPS_DEBUG"):
            raise
        from grid_ops.errors import bug_report

        _error(*bug_report(exc))
        return 1


def _error(message: str, hint: str) -> None:
    """An error paragraph without Rich (which may be what failed), control characters
    made visible."""
    from grid_ops.cli.sanitize import clean

    sys.stderr.write(f"error: {clean(message, lines=True)} {clean(hint)}\n")


def _print_json(data: Any) -> None:
    import json

    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def _health(cluster: ClusterModel, opts: dict[str, Any]) -> Callable[[], int] | None:
    from grid_ops import facts
    from grid_ops.drivers import probe

    ranked, from_cache = probe.collect(cluster, bool(opts.get("refresh")))
    if any(facts.quarantine_plan(ranked, cluster.head, cluster.health["quarantine"])):
        return None  # a node to quarantine or return: the full CLI does it (from the cache)

    def report() -> int:
        from grid_ops.cli import views

        if opts.get("json_out"):
            _print_json({"nodes": [facts.public(r) for r in ranked], "cached": from_cache})
        else:
            from grid_ops.cli.output import out

            out.print(views.health_table(ranked, views.health_title(cluster.name, from_cache)))
        return 1 if views.report_trouble(ranked, bool(opts.get("json_out"))) else 0

    return report


def _sync(cluster: ClusterModel, opts: dict[str, Any]) -> Callable[[], int] | None:
    from grid_ops import layout, model
    from grid_ops.drivers import rsync, spawn
    from grid_ops.drivers.results import HostResult, PlaybookResult, sync_document, sync_row

    src = os.path.realpath(os.path.expanduser(opts.get("src") or "."))
    if not os.path.isdir(src) or not rsync.source_name(src):
        return None  # the full CLI explains
    wanted = opts.get("node")
    nodes = [n for n in cluster.nodes if wanted is None or n.name in wanted]
    if wanted is not None and len(nodes) != len(set(wanted)):
        return None  # a name the cluster lacks: the full CLI explains
    if any(n.local or not n.root for n in nodes):
        return None  # the playbook syncs local nodes and learns roots it has not seen
    dry_run = bool(opts.get("dry_run"))
    jobs: list[tuple[list[str], str | None]] = []
    dests = {}
    for node in nodes:
        dests[node.name] = rsync.dest(str(node.root), layout.CODE, src)
        argv = rsync.argv(
            cluster.sync, src, node.dest_prefix + dests[node.name], node.rsh,
            delete=bool(opts.get("delete")), dry_run=True,
        )  # fmt: skip
        jobs.append((argv, None))
    model.ensure_control_dir()
    procs = spawn.run_all(jobs, cluster.sync["parallel"], limit=cluster.deadlines.sync_check)
    hosts: dict[str, HostResult] = {}
    rows: dict[str, dict[str, Any]] = {}
    for node, proc, (argv, _) in zip(nodes, procs, jobs, strict=True):
        if proc is None or proc.rc != 0:
            return None  # the playbook reports it properly
        changed = bool(rsync.changes(proc.stdout))
        if changed and not dry_run:
            return None  # something to move: the playbook moves it
        hosts[node.name] = HostResult(node.name, ok=1, changed=int(changed))
        stats = rsync.stats(proc.stdout)
        rows[node.name] = sync_row(stats, round(proc.seconds, 3), dests[node.name], argv)

    def report() -> int:
        if opts.get("json_out"):
            result = PlaybookResult("sync", 0, "successful", hosts, None, 0.0)
            _print_json(sync_document(result, rows, playbook_ran=False))
        else:
            from grid_ops.cli.output import out
            from grid_ops.cli.views import sync_table

            out.print(sync_table(src, rows, dry_run))
            if not dry_run:
                sys.stderr.write(f"up to date on {len(rows)} node(s): nothing to move.\n")
        if not dry_run:
            from grid_ops import metrics

            metrics.record_sync(cluster.id, [r["seconds"] for r in rows.values()])
        return 0

    return report


def _apply(cluster: ClusterModel, opts: dict[str, Any]) -> Callable[[], int] | None:
    import time

    from grid_ops import lifecycle
    from grid_ops.model import stamp

    started = time.monotonic()
    applied = lifecycle.read_applied(cluster.id)
    names = [n.name for n in cluster.nodes]
    check = bool(opts.get("check"))
    if not check and (
        set(applied.get("nodes") or {}) != set(names)
        or applied.get("controller") != cluster.controller
    ):
        return None  # nodes to remove, or a state to record: the full CLI does it
    states = lifecycle.read_states(cluster, list(cluster.nodes))
    plan = lifecycle.plan(cluster, stamp.stamps(cluster), states, applied)
    if not plan.empty or plan.unreachable or plan.foreign:
        return None  # work to do (or a node to explain or refuse): the full CLI

    def report() -> int:
        seconds = time.monotonic() - started
        if opts.get("json_out"):
            _print_json(lifecycle.noop_document(plan, check, seconds))
            return 0
        lines = lifecycle.plan_lines(cluster, plan, states, names)
        sys.stdout.write("".join(f"{line}\n" for line in [*lines, lifecycle.NOTHING_TO_DO]))
        if not check:
            sys.stderr.write(f"apply: done in {seconds:.1f} s.\n")
        return 0

    return report
