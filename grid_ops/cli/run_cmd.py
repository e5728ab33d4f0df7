"""grid-ops run: a command on the best node (or a named one, or all), exit code kept."""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Annotated

import typer

from grid_ops.cli.common import ConfigOption, load_cluster
from grid_ops.cli.output import err, error, out, safe

if TYPE_CHECKING:
    from pathlib import Path

    from grid_ops.model import ClusterModel, NodeModel


def run(
    command: Annotated[
        list[str],
        typer.Argument(
            help="The command and its arguments (after --), or one quoted command line "
            "(run by the node's shell, as with ssh HOST 'CMD')."
        ),
    ],
    config: ConfigOption = None,
    node: Annotated[
        str | None,
        typer.Option("--node", "-n", help="Run on this node. Default: the best-scored node."),
    ] = None,
    all_nodes: Annotated[
        bool, typer.Option("--all", help="Run on every node; one output section per node.")
    ] = False,
    shell: Annotated[
        bool,
        typer.Option(
            "--shell",
            help="Run COMMAND through the remote shell (pipes, $VARS); implied by one "
            "argument holding whitespace.",
        ),
    ] = False,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            help="Give up after this many seconds and stop the command on the node (exit "
            "124). Default: execution.timeout_seconds of the config (1800).",
            min=0.1,
        ),
    ] = None,
    retries: Annotated[
        int | None,
        typer.Option(
            "--retries",
            help="Unreachable best nodes to skip before giving up (default: "
            "execution.retry_attempts).",
            min=0,
        ),
    ] = None,
    boost: Annotated[
        str | None,
        typer.Option(
            "--boost",
            help="Run as the head's work inside this boost: on the head, with "
            "$GRID_OPS_BOOST set, so tasks it submits through grid_ops.runtime.scheduler "
            "run in the boost's reservation.",
        ),
    ] = None,
) -> None:
    """Run COMMAND on a node: in <remote_root>/code (where 'grid-ops sync' puts code), the
    node venv first on PATH, RAY_ADDRESS and Ray's token settings in the environment.

    Without --node it picks the best-scored node (see 'grid-ops health'); if that node
    cannot be reached, the next best is tried, with backoff. Output streams as it comes
    and grid-ops exits with the command's exit code (--all: non-zero if any node failed).
    Several arguments are passed as given (each quoted for the remote shell); one
    argument that holds whitespace is a command line for the node's shell, as ssh takes
    it (pipes, $VARS, globs, &&); --shell makes any command so. Examples:

        grid-ops run -c cluster.yaml -- python train.py --epochs 3
        grid-ops run "python train.py --epochs 3 && ls checkpoints/*.pt"
    """
    from grid_ops.drivers import remote

    if len(command) == 1 and any(c.isspace() for c in command[0]):
        shell = True  # one quoted command line: the node's shell reads it (ssh's way)
    cluster, path = load_cluster(config)
    if timeout is None:
        timeout = cluster.deadlines.run
    if node and all_nodes:
        from grid_ops.errors import UsageError

        raise UsageError("--node and --all exclude each other.", "Pass one of them.")
    if boost and (node or all_nodes):
        from grid_ops.errors import UsageError

        raise UsageError("--boost runs on the head; it excludes --node and --all.")
    if all_nodes:
        raise typer.Exit(_run_all(cluster, command, shell, timeout))
    env: dict[str, str] = {}
    if boost:
        from grid_ops.drivers.control import find

        record = find(cluster, boost, "boost")
        env["GRID_OPS_BOOST"] = boost
        target = cluster.head_node
        err.print(
            f"[dim]boost {safe(boost)}: {safe(record['resource'])} {record['amount']:g} "
            f"on {safe(record['node'])}[/]"
        )
    elif node:
        target = cluster.node(node)
    else:
        target = _best_reachable(
            cluster,
            path,
            retries if retries is not None else cluster.config.execution.retry_attempts,
        )
    err.print(f"[dim]running on {safe(target.name)}[/]")
    started = time.monotonic()
    outcome = remote.run(cluster, target.name, command, shell=shell, timeout=timeout, env=env)
    rc = outcome.rc
    _record(cluster.id, rc, time.monotonic() - started)
    if outcome.timed_out:
        error(
            f"The command on {target.name} did not finish within {timeout:g} s; "
            "it was stopped there."
        )
    elif rc == 255 and not target.local:
        error(
            f"ssh to {target.name} ({target.host}) failed or the command exited 255.",
            "Check the node with 'grid-ops ping'.",
        )
    raise typer.Exit(rc)


def _record(cluster: str, rc: int, seconds: float) -> None:
    from grid_ops import metrics

    metrics.record_task(cluster, "succeeded" if rc == 0 else "failed", seconds)


def _best_reachable(cluster: ClusterModel, path: Path, retries: int) -> NodeModel:
    """Best-scored node that answers now; skips up to ``retries`` that do not."""
    from dataclasses import asdict

    from grid_ops import facts
    from grid_ops.actions import health
    from grid_ops.cli.progress import console
    from grid_ops.drivers import remote
    from grid_ops.errors import GridOpsError

    ranked = health.check(cluster, path, progress=console()).nodes
    candidates = [cluster.node(n.name) for n in ranked if facts.in_service(asdict(n))]
    if not candidates:
        out_of_service = [n.name for n in ranked if n.drained or facts.sick(asdict(n))]
        raise GridOpsError(
            "No node is reachable and in service, so there is nowhere to run"
            + (f" (drained or sick: {', '.join(out_of_service)})." if out_of_service else "."),
            "Check the nodes with 'grid-ops health --refresh' and 'grid-ops ping'.",
        )
    delay = 0.5
    for attempt, candidate in enumerate(candidates[: retries + 1]):
        if remote.reachable(cluster, candidate.name):
            return candidate
        err.print(f"[yellow]{safe(candidate.name)} does not answer; trying the next best node[/]")
        if attempt < retries:
            time.sleep(delay)
            delay *= 2
    raise GridOpsError(
        f"None of the best {min(len(candidates), retries + 1)} node(s) answered "
        f"({', '.join(c.name for c in candidates[: retries + 1])}).",
        "Check them with 'grid-ops ping', or name a node with --node.",
    )


def _run_all(cluster: ClusterModel, command: list[str], shell: bool, timeout: float | None) -> int:
    from grid_ops.drivers import remote

    run_ids = {n.name: remote.new_run_id() for n in cluster.nodes}

    def one(target: NodeModel) -> tuple[str, int, str]:
        outcome = remote.capture(
            cluster,
            target.name,
            command,
            shell=shell,
            timeout=timeout,
            run_id=run_ids[target.name],
        )
        text = outcome.output
        if outcome.timed_out:
            text += f"(stopped: no result within {timeout:g} s)\n"
        return target.name, outcome.rc, text

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=max(1, len(cluster.nodes))) as pool:
        futures = [pool.submit(one, n) for n in cluster.nodes]
        try:
            results = [f.result() for f in futures]
        except KeyboardInterrupt:  # only this thread sees Ctrl-C: stop every node's run
            with ThreadPoolExecutor(max_workers=max(1, len(cluster.nodes))) as stopper:
                list(
                    stopper.map(
                        lambda n: remote.stop(cluster, n.name, run_ids[n.name]), cluster.nodes
                    )
                )
            raise
    elapsed = time.monotonic() - started
    for _, rc, _ in results:
        _record(cluster.id, rc, elapsed)
    for name, rc, text in results:
        style = "green" if rc == 0 else "red"
        out.print(f"[bold]── {safe(name)}[/] [{style}](exit {rc})[/]")
        sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")
        sys.stdout.flush()
    failed = [name for name, rc, _ in results if rc != 0]
    if failed:
        error(
            f"The command failed on {len(failed)} of {len(results)} node(s): {', '.join(failed)}."
        )
        return 1
    return 0
