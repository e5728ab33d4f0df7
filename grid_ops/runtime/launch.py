"""Run one rank of a command per node, torch.distributed style (a Ray job's entrypoint).

``python -m grid_ops.runtime.launch --nodes N [--gpus-per-node G] -- CMD…`` reserves one
bundle per node with a STRICT_SPREAD placement group, then runs CMD once in each bundle
with MASTER_ADDR, MASTER_PORT, WORLD_SIZE, RANK and LOCAL_RANK set. Output lines carry a
``[rank R]`` prefix. The job fails as a whole as soon as one rank fails (the others are
cancelled), with that rank's exit code, or 1 when a node died under a rank.

``--job-env SUBMISSION_ID``: CMD also gets the job's own environment variables (``grid-ops
job launch --env``), taken out of the head's GCS where the submit kept them
(grid_ops.runtime.jobs.take_env: read once, then deleted; never in the job's metadata).
They go to each rank as an argument of its Ray task and into the rank's process
environment, never onto a command line. Without ``--nodes`` this process sets them and
becomes CMD (exec).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Collection
from typing import Any

from grid_ops import layout
from grid_ops.runtime import checkpoints, energy, jobboard
from grid_ops.runtime import nodes as ray_nodes

PLACEMENT_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0
NODE_CHECK = 5.0  # seconds between checks that every rank's node is still alive
STATE_TIMEOUT = 10  # seconds for one answer of Ray's task table


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """In the rank's process: get SIGKILL when the Ray worker running it goes away."""
    import ctypes

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def rank_env(
    job_env: dict[str, str], addr: str, port: int, world: int, rank: int
) -> dict[str, str]:
    """What rank ``rank`` adds to its environment: the job's variables, then the ranks'."""
    return {
        **job_env,
        "MASTER_ADDR": addr,
        "MASTER_PORT": str(port),
        "WORLD_SIZE": str(world),
        "RANK": str(rank),
        "LOCAL_RANK": "0",
    }


def job_dirs(job_id: str, attempt: int, rank: int) -> tuple[dict[str, str], str | None]:
    """On the rank's node, for a queued job: ``GRID_OPS_CHECKPOINT_DIR`` (the job's
    checkpoints under this node's remote root: the same path on every attempt), the job's
    id and attempt, and the file this rank's output is kept in; made private (0700)."""
    root = os.environ.get("GRID_OPS_ROOT")
    if not job_id or not root:
        return {}, None
    checkpoints = layout.job_file(root, job_id, layout.JOB_CHECKPOINTS)
    log = layout.job_file(root, job_id, layout.rank_log(attempt, rank))
    for folder in (checkpoints, os.path.dirname(log)):
        os.makedirs(folder, mode=0o700, exist_ok=True)
    env = {
        "GRID_OPS_CHECKPOINT_DIR": checkpoints,
        "GRID_OPS_JOB_ID": job_id,
        "GRID_OPS_ATTEMPT": str(attempt),
    }
    return env, log


def job_env(submission_id: str) -> dict[str, str]:
    """The variables of job ``submission_id`` (``--job-env``), or {} without one; exits 2
    when they cannot be had (the command never runs without them)."""
    if not submission_id:
        return {}
    from grid_ops.runtime.jobs import take_env

    try:
        return take_env(submission_id, os.environ)
    except Exception as exc:  # none kept, or the GCS does not answer
        what = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"grid-ops: cannot set the job's environment: {what}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


def _exec(command: list[str], env: dict[str, str]) -> int:
    """Become ``command`` with ``env`` added to this process's environment."""
    os.environ.update(env)
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        print(f"grid-ops: cannot run {command[0]!r}: {exc.strerror or exc}", file=sys.stderr)
    return 127


def _code_dir() -> str | None:
    """This node's ``<remote_root>/code`` (Ray runs with GRID_OPS_ROOT set), if it exists."""
    root = os.environ.get("GRID_OPS_ROOT")
    code = os.path.join(root, layout.CODE) if root else ""
    return code if code and os.path.isdir(code) else None


def _in_code_dir() -> bool:
    """Does this job run in the synced code's directory (it has no --workdir)?"""
    code = _code_dir()
    return code is not None and os.path.realpath(os.getcwd()) == os.path.realpath(code)


def _rank(
    command: list[str], env: dict[str, str], rank: int, in_code: bool = False,
    job: tuple[str, int] = ("", 0),
) -> int:  # fmt: skip
    """Run one rank, streaming its output with a rank prefix; its exit code. ``in_code``:
    in this node's synced code directory, as the job's entrypoint on the head. ``job``
    (a queued job's id and attempt): its checkpoint dir is set, and the output is also
    kept in the rank's log on this node (``job_dirs``)."""
    extra, log_path = job_dirs(job[0], job[1], rank)
    with contextlib.ExitStack() as stack:
        log = None
        if log_path:
            log = stack.enter_context(open(log_path, "a", encoding="utf-8", opener=_private))
        proc = subprocess.Popen(
            command,
            cwd=_code_dir() if in_code else None,
            env={**os.environ, **env, **extra},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            preexec_fn=_die_with_parent,
        )
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                print(f"[rank {rank}] {line}", end="", flush=True)
                if log is not None:
                    log.write(line)
                    log.flush()
            return proc.wait()
        except BaseException:  # cancelled: take the rank down with us
            proc.kill()
            raise


def _meter(args: argparse.Namespace, rank: int) -> energy.Meter | None:
    """In a rank's Ray task: the meter of its GPUs' energy, if it can have one (a job
    runs the same without)."""
    try:
        return energy.for_rank(args.job, args.attempt, rank, args.gpus_per_node, args.nvidia_smi)
    except Exception as exc:
        print(f"grid-ops: rank {rank}: no energy reading: {exc}", file=sys.stderr, flush=True)
        return None


def _private(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NOFOLLOW, 0o600)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--nodes", type=int, default=0, help="ranks, one per node (default: run CMD here)"
    )
    parser.add_argument("--gpus-per-node", type=float, default=0)
    parser.add_argument("--cpus-per-node", type=float, default=1)
    parser.add_argument(
        "--on", default="", metavar="NODE,…", help="the grid-ops nodes of the ranks, in order"
    )
    parser.add_argument("--job", default="", help="the queued job's id (its checkpoints, logs)")
    parser.add_argument("--attempt", type=int, default=1)
    parser.add_argument(
        "--nvidia-smi",
        default="",
        metavar="PATH",
        help="the nodes' nvidia-smi for the job's GPU energy (default: the one on PATH)",
    )
    parser.add_argument(
        "--previous",
        default="",
        metavar="NODE,…",
        help="the nodes of the job's previous attempt, by rank (a rank that moved gets its "
        "newest checkpoint copied to its new node first)",
    )
    parser.add_argument(
        "--job-env",
        default="",
        metavar="SUBMISSION_ID",
        help="add this job's variables, kept for it on the head's GCS",
    )
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")
    variables = job_env(args.job_env)
    if args.nodes < 1:
        return _exec(command, variables)
    return _ranks(args, command, variables)


def dead_ranks(placed: dict[Any, str], alive: set[str]) -> list[int]:
    """The ranks whose bundle was placed on a node that is no longer alive (pure)."""
    return sorted(int(i) for i, node in placed.items() if node not in alive)


def drained_ranks(
    placed: dict[Any, str], draining: set[str], waiting: Collection[int]
) -> list[int]:
    """The ``waiting`` ranks whose bundle is on a node Ray is draining (pure)."""
    return sorted(int(i) for i, node in placed.items() if node in draining and int(i) in waiting)


def not_started(ref: Any) -> bool:
    """Whether Ray's task table says the rank of ``ref`` has not started: every attempt
    of its task still pending. False when Ray cannot tell (its state API is down)."""
    from ray.util.state import get_task

    try:
        attempts = get_task(ref, timeout=STATE_TIMEOUT) or []
    except Exception:
        return False
    if not isinstance(attempts, list):
        attempts = [attempts]
    states = [str(getattr(a, "state", "")) for a in attempts]
    return bool(states) and all(s.startswith("PENDING") for s in states)


def _lost(
    ray: Any, placed: dict[Any, str], waiting: dict[int, Any], stalled: Stalled
) -> tuple[list[int], str]:
    """The ``waiting`` ranks (rank: its task's ref) that will never start, and why. A rank
    whose node died before the rank started waits for its bundle for ever (Ray
    reschedules the group; a pinned bundle has nowhere to go); so does one whose node
    was drained before it started (``Stalled``)."""
    alive = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    gone = [r for r in dead_ranks(placed, alive) if r in waiting]
    if gone:
        return gone, f"died: {jobboard.LEFT}"
    drained = stalled.look(placed, ray_nodes.draining_ids(), waiting)
    return drained, f"died: {jobboard.DRAINED}"


class Stalled:
    """Ranks that wait on a drained node. Ray keeps a placed bundle on a node it drains,
    but starts nothing new there, so a rank not yet started when its node was drained
    (the health gate's quarantine, 'grid-ops node drain') would wait for ever. A rank
    found so at two looks in a row (Ray's task table lags by a second) is given up."""

    def __init__(self) -> None:
        self.seen: dict[int, int] = {}

    def look(
        self, placed: dict[Any, str], draining: set[str], waiting: dict[int, Any]
    ) -> list[int]:
        stuck = [r for r in drained_ranks(placed, draining, waiting) if not_started(waiting[r])]
        self.seen = {r: self.seen.get(r, 0) + 1 for r in stuck}
        return sorted(r for r, looks in self.seen.items() if looks >= 2)


def node_names(on: str) -> list[str]:
    """The node names of ``--on`` (comma-separated), in rank order."""
    return [n for n in on.split(",") if n]


def bundles(bundle: dict[str, float], count: int, on: str) -> list[dict[str, float]]:
    """One bundle per rank; with ``on`` (node names), bundle i is pinned to node i by the
    node's ``grid_node:<name>`` resource (a sliver of it: other work may pin there too)."""
    names = node_names(on)
    if names and len(names) != count:
        raise SystemExit(f"grid-ops: --on names {len(names)} node(s) for {count} rank(s)")
    if not names:
        return [dict(bundle) or {"CPU": 0.001} for _ in range(count)]
    return [{**bundle, **layout.pin(name)} for name in names]


def _ranks(args: argparse.Namespace, command: list[str], job_env: dict[str, str]) -> int:
    import ray
    from ray.util.placement_group import (
        placement_group,
        placement_group_table,
        remove_placement_group,
    )
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    ray.init(logging_level="ERROR", log_to_driver=True)
    bundle: dict[str, float] = {"CPU": args.cpus_per_node} if args.cpus_per_node else {}
    if args.gpus_per_node:
        bundle["GPU"] = args.gpus_per_node
    group = placement_group(bundles(bundle, args.nodes, args.on), strategy="STRICT_SPREAD")
    ready, _ = ray.wait([group.ready()], timeout=PLACEMENT_TIMEOUT)
    if not ready:
        alive = sum(1 for n in ray.nodes() if n["Alive"])
        print(
            f"grid-ops: cannot place {args.nodes} rank(s) on distinct nodes with {bundle} each "
            f"({alive} node(s) alive) within {PLACEMENT_TIMEOUT:g} s",
            file=sys.stderr,
            flush=True,
        )
        remove_placement_group(group)
        return 1

    # Where each rank runs, so a failure names its node whatever error Ray reports.
    ips = {n["NodeID"]: n["NodeManagerAddress"] for n in ray.nodes()}
    placed = placement_group_table(group).get("bundles_to_node_id", {})
    where = {int(i): ips.get(node, "?") for i, node in placed.items()}

    def strategy(index: int) -> PlacementGroupSchedulingStrategy:
        return PlacementGroupSchedulingStrategy(
            placement_group=group, placement_group_bundle_index=index
        )

    def endpoint() -> tuple[str, int]:
        return ray.util.get_node_ip_address(), _free_port()

    in_code = _in_code_dir()
    ranks = node_names(args.on)
    pinned = checkpoints.Nodes(ray)
    if args.job and ranks and args.previous:
        checkpoints.restore(pinned, args.job, ranks, node_names(args.previous))

    def one_rank(rank: int, env: dict[str, str]) -> int:
        meter = _meter(args, rank)
        try:
            return _rank(command, env, rank, in_code, (args.job, args.attempt))
        finally:
            if meter is not None:
                meter.stop()

    master_endpoint = ray.remote(num_cpus=0)(endpoint)
    run_rank = ray.remote(max_retries=0)(one_rank)

    stalled = Stalled()
    first = master_endpoint.options(scheduling_strategy=strategy(0)).remote()
    while not ray.wait([first], timeout=NODE_CHECK)[0]:
        gone, reason = _lost(ray, placed, {0: first}, stalled)
        if gone:
            print(f"grid-ops: rank 0 (node {where.get(0, '?')}) {reason}; the job fails",
                  file=sys.stderr, flush=True)  # fmt: skip
            remove_placement_group(group)
            return 1
    addr, port = ray.get(first)
    refs: dict[Any, int] = {}
    for rank in range(args.nodes):
        env = rank_env(job_env, addr, port, args.nodes, rank)  # a task argument, not argv
        ref = run_rank.options(
            num_cpus=args.cpus_per_node,
            num_gpus=args.gpus_per_node or 0,
            scheduling_strategy=strategy(rank),
        ).remote(rank, env)
        refs[ref] = rank
    replicas = checkpoints.Replicator(pinned, args.job, ranks) if args.job and ranks else None
    if replicas is not None:
        replicas.start()
    pending = list(refs)
    code, failure = 0, ""
    while pending:
        done, pending = ray.wait(pending, num_returns=1, timeout=NODE_CHECK)
        if not done:
            gone, reason = _lost(ray, placed, {refs[p]: p for p in pending}, stalled)
            if not gone:
                continue
            rank, rc = gone[0], 1
        else:
            rank = refs[done[0]]
            try:
                rc = int(ray.get(done[0]))
                reason = f"exited {rc}"
            except Exception as exc:  # a node or worker died under the rank
                rc, reason = 1, f"died: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
        if rc != 0:
            failure = f"grid-ops: rank {rank} (node {where.get(rank, '?')}) {reason}"
            print(f"{failure}; stopping the other ranks", file=sys.stderr, flush=True)
            for ref in pending:
                ray.cancel(ref)
            # The job ends only once the other ranks are down (each kills its command).
            ray.wait(pending, num_returns=len(pending), timeout=STOP_TIMEOUT)
            code = rc
            break
    if replicas is not None:
        replicas.stop()
    time.sleep(0.2)
    remove_placement_group(group)
    if failure:
        # Ray's job message quotes only the log's last lines, and output of the other
        # nodes keeps arriving while Ray is up: once it is down, the reason is the last line.
        ray.shutdown()
        print(f"{failure}; the job fails", file=sys.stderr, flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
