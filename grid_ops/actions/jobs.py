"""Training jobs: the operator's side of the job queue on the head (``report()`` for code
inside a job is grid_ops.jobs, on the nodes).

The queue lives on the head, owned by the controller (grid_ops.runtime.jobboard): every
command here is a controller call over the cluster's SSH settings, so two operators'
machines see the same jobs. ``launch`` queues and returns at once; the head starts the
job when its ranks fit. A job's output is read from Ray Jobs on the head while Ray knows
the attempt, else from each rank's log kept on its own node.

Job names reach the head's files and the nodes' paths only as checked ids (``check_name``
here, and the queue's own check). ``--env`` values may be secrets: they go to the head on
the SSH connection's stdin, never in an argv.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grid_ops.jobs import TERMINAL

if TYPE_CHECKING:
    from grid_ops.model import ClusterModel

NAME_HINT = "Use 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit."
ENV_HINT = (
    "Write it as --env NAME=value; a NAME has letters, digits and '_' and does not start "
    "with a digit."
)

# ---------------------------------------------------------------------------------------
# names


def valid_name(name: object) -> bool:
    """Is ``name`` a job name (also a safe file name: no '/', no '..', no control chars)?"""
    from grid_ops.runtime.jobboard import NAME  # the queue's own check

    return isinstance(name, str) and NAME.fullmatch(name) is not None


def _shown(text: object, limit: int = 80) -> str:
    """``text`` for an error message: quoted, escaped, cut short."""
    value = str(text)
    return repr(value if len(value) <= limit else value[:limit] + "...")


def check_key(key: object) -> str:
    """``key`` when it can name a job: its name or its id; a UsageError otherwise."""
    from grid_ops.errors import UsageError
    from grid_ops.runtime.jobboard import JOB_ID

    if not isinstance(key, str) or JOB_ID.fullmatch(key) is None:
        raise UsageError(f"Job name {_shown(key)} is not valid.", NAME_HINT)
    return key


def check_name(name: object) -> str:
    """``name`` when it is a valid job name; a UsageError (exit 2) otherwise."""
    from grid_ops.errors import UsageError

    if not valid_name(name):
        raise UsageError(f"Job name {_shown(name)} is not valid.", NAME_HINT)
    return str(name)


# ---------------------------------------------------------------------------------------
# talking to the head


def head_argv(cluster: ClusterModel, args: list[str]) -> list[str]:
    """The local argv that runs ``grid_ops.runtime.jobs ARGS`` on the head (pure)."""
    from grid_ops.drivers import remote

    command = ["python", "-m", "grid_ops.runtime.jobs"]
    command += ["--dashboard-port", str(cluster.ray["dashboard_port"]), *args]
    return remote.argv(cluster, cluster.head, command)


def head_call(
    cluster: ClusterModel, *args: str, timeout: float | None = None, stdin: str = ""
) -> dict[str, Any]:
    """Run ``grid_ops.runtime.jobs ARGS`` on the head, ``stdin`` on its standard input
    (the SSH connection: not visible in any process list); its JSON answer."""
    from grid_ops.errors import Unavailable

    timeout = timeout or cluster.deadlines.head_call

    argv = head_argv(cluster, list(args))
    try:
        proc = subprocess.run(
            argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise Unavailable(f"The head ({cluster.head}) did not answer in {timeout:g} s.") from None
    try:
        data: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise Unavailable(
            f"Could not reach Ray Jobs on the head ({cluster.head}): "
            f"{detail[-1] if detail else f'exit {proc.returncode}'}.",
            "Is the cluster provisioned and started? Try 'grid-ops cluster status'.",
        ) from None
    if "error" in data:
        raise Unavailable(
            f"Ray Jobs on the head ({cluster.head}) refused: {data['error']}.",
            "Check that Ray runs there ('grid-ops cluster status'; 'grid-ops cluster start').",
        )
    return data


def parse_env(items: list[str]) -> dict[str, str]:
    """``--env NAME=value`` options as a mapping, checked: a UsageError names a bad one.

    Values are never repeated in an error message (they may be secrets)."""
    from grid_ops.errors import UsageError
    from grid_ops.runtime.jobs import ENV_NAME

    variables: dict[str, str] = {}
    for number, item in enumerate(items, 1):
        key, sep, value = item.partition("=")
        if not sep:
            what = _shown(item) if ENV_NAME.fullmatch(item) else f"#{number}"
            raise UsageError(f"--env {what} is not NAME=value.", ENV_HINT)
        variables[key] = value
    return check_env(variables)


def check_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` when every name and value can go into a job's environment; else UsageError."""
    from grid_ops.errors import UsageError
    from grid_ops.runtime.jobs import env_problem

    for key, value in env.items():
        if not key:
            raise UsageError("--env has an empty NAME (e.g. '=value').", ENV_HINT)
        problem = env_problem(key, value)
        if problem is not None:
            raise UsageError(f"--env: {problem}.", ENV_HINT)
    return dict(env)


def _push_workdir(cluster: ClusterModel, workdir: Path, rel: str) -> None:
    """Copy ``workdir`` to ``<remote_root>/<rel>`` on the head: the sync's own rsync
    command (its excludes and .gitignore), into a directory it makes."""
    from grid_ops import model
    from grid_ops.drivers import rsync
    from grid_ops.errors import GridOpsError, UsageError

    if not workdir.is_dir():
        raise UsageError(f"--workdir {workdir} is not a directory.")
    head = cluster.head_node
    # The node's own expansion of remote_root when recorded; else rsync's remote shell
    # expands a leading ~/ (a local head: this machine's home).
    root = head.root or cluster.remote_root.rstrip("/")
    model.ensure_control_dir()
    argv = rsync.argv(cluster.sync, str(workdir), head.dest_prefix + f"{root}/{rel}", head.rsh,
                      mkpath=True)  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise GridOpsError(
            f"Could not copy {workdir} to the head: {proc.stderr.strip()[-300:]}.",
            "Check 'grid-ops ping' and that the head is provisioned.",
        )


def new_id(name: str) -> str:
    """A fresh job id: its name, the time, and a random suffix (two operators may queue
    the same name in the same second)."""
    return f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def job_spec(
    cluster: ClusterModel,
    name: str,
    command: list[str],
    workdir: Path | None = None,
    gpus: float | None = None,
    nodes: int | None = None,
    *,
    cpus: float = 1.0,
    priority: str = "normal",
    max_retries: int | None = None,
    retry_on_exit: tuple[int, ...] = (),
    timeout: float | None = None,
) -> dict[str, Any]:
    """What the head's queue is asked to hold for a new job, checked (pure but for the
    fresh id). ``gpus`` per rank, ``nodes`` and ``max_retries`` default to the config's
    execution.default_gpus_per_node, default_nodes and job_max_retries."""
    from grid_ops.errors import UsageError
    from grid_ops.runtime.jobqueue import PRIORITIES

    check_name(name)
    execution = cluster.config.execution
    gpus = execution.default_gpus_per_node if gpus is None else gpus
    nodes = execution.default_nodes if nodes is None else nodes
    retries = execution.job_max_retries if max_retries is None else max_retries
    if priority not in PRIORITIES:
        raise UsageError(f"--priority {priority!r} is not one of {', '.join(PRIORITIES)}.")
    if nodes > len(cluster.nodes):
        raise UsageError(
            f"--nodes {nodes} asks for more nodes than the cluster has ({len(cluster.nodes)})."
        )
    return {
        "id": new_id(name),
        "name": name,
        "priority": priority,
        "nodes": nodes,
        "gpus_per_node": float(gpus),
        "cpus_per_node": float(cpus),
        "max_retries": retries,
        "retry_on_exit": list(retry_on_exit),
        "timeout": timeout,
        "command": list(command),
        "workdir": str(workdir) if workdir is not None else "",
    }


def launch(
    cluster: ClusterModel,
    spec: dict[str, Any],
    env: dict[str, str] | None = None,
    workdir: Path | None = None,
) -> dict[str, Any]:
    """Queue the job ``spec`` (from ``job_spec``) on the head; returns the job's record at
    once: QUEUED, or RUNNING when it fitted straight away. ``workdir`` is copied to the
    job's own dir on the head first; ``env`` goes on the SSH connection's stdin."""
    from grid_ops import layout
    from grid_ops.drivers import control

    variables = check_env(env or {})
    if workdir is not None:
        _push_workdir(cluster, workdir, f"{layout.JOBS}/{spec['id']}/{layout.JOB_WORK}")
    payload = json.dumps(variables).encode() if variables else None
    record, _ = control.call(cluster, "job-submit", {"job": spec}, payload=payload)
    return dict(record)


def load(cluster: ClusterModel, name: str) -> dict[str, Any]:
    """Job ``name`` (its newest, by that name) as the head's queue holds it."""
    from grid_ops.drivers import control

    record, _ = control.call(cluster, "job-get", {"name": check_key(name)})
    return dict(record)


def load_all(cluster: ClusterModel) -> list[dict[str, Any]]:
    """Every job the head's queue holds, in submit order."""
    from grid_ops.drivers import control

    answer, _ = control.call(cluster, "job-list")
    return [dict(r) for r in answer["jobs"]]


def last_attempt(record: dict[str, Any]) -> dict[str, Any]:
    attempts = record.get("attempts") or []
    return dict(attempts[-1]) if attempts else {}


def wait(cluster: ClusterModel, name: str, limit: float) -> dict[str, Any]:
    """Job ``name`` once it has ended, or as it stands after ``limit`` seconds."""
    deadline = time.monotonic() + limit
    record = load(cluster, name)
    while record.get("status") not in TERMINAL and time.monotonic() < deadline:
        time.sleep(1)
        record = load(cluster, record["id"])
    return record


def rank_logs(cluster: ClusterModel, record: dict[str, Any]) -> str:
    """The last attempt's output as each rank's node kept it, ranks named: what
    ``job logs`` shows once Ray Jobs no longer knows the attempt (e.g. after a restart)."""
    from grid_ops import layout
    from grid_ops.drivers import remote

    attempt = last_attempt(record)
    parts = []
    job_id = check_key(record["id"])  # the head's answer, checked before it makes a path
    for rank, node in enumerate(attempt.get("nodes") or []):
        rel = f"{layout.JOBS}/{job_id}/{layout.rank_log(int(attempt['number']), rank)}"
        try:
            proc = subprocess.run(
                remote.argv(cluster, node, ["cat", "--", rel]),
                capture_output=True, text=True, errors="replace",
                timeout=cluster.deadlines.head_call, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            parts.append(f"[rank {rank}] (grid-ops: {node} did not answer)\n")
            continue
        if proc.returncode != 0:
            parts.append(f"[rank {rank}] (grid-ops: no log on {node})\n")
            continue
        parts.extend(f"[rank {rank}] {line}\n" for line in proc.stdout.splitlines())
    return "".join(parts)


def logs(cluster: ClusterModel, record: dict[str, Any]) -> str:
    """The job's output: from Ray Jobs on the head while it knows the last attempt
    (with launch's own lines), else from the ranks' logs on their nodes."""
    from grid_ops.errors import GridOpsError

    sid = last_attempt(record).get("submission_id")
    if not sid:
        return ""
    try:
        text: str = head_call(cluster, "logs", sid)["logs"] or ""
    except GridOpsError:
        return rank_logs(cluster, record)
    return text


def outcome(
    cluster: ClusterModel, name: str, final_logs: str | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``job results --json`` of job ``name`` (its reported metrics, the final values,
    the duration), and its record; ``final_logs``: its output, read already."""
    from grid_ops.jobs import results

    record = load(cluster, name)
    text = final_logs if final_logs is not None else logs(cluster, record)
    found = results(text)
    attempt = last_attempt(record)
    started, ended = attempt.get("started_at"), attempt.get("ended_at")
    return {
        "name": name,
        "status": record.get("status"),
        "metrics": found["metrics"],
        "final": found["final"],
        "duration_s": round(ended - started, 3) if started and ended else None,
        "logs": f"grid-ops job logs {name}",
    }, record


def cancel(cluster: ClusterModel, name: str) -> dict[str, Any]:
    """Stop job ``name`` (queued: at once; running: wait up to the job_stop deadline
    until it has ended); the job as ``job status --json`` shows it then."""
    from grid_ops import answers
    from grid_ops.drivers import control

    record, _ = control.call(cluster, "job-cancel", {"name": check_key(name)})
    deadline = time.monotonic() + cluster.deadlines.job_stop
    while record.get("status") not in TERMINAL and time.monotonic() < deadline:
        time.sleep(0.5)
        record, _ = control.call(cluster, "job-get", {"name": record["id"]})
    return answers.job(record)
