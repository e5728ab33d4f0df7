"""Training jobs on Ray Jobs: the client side (``report()`` for code inside a job is
grid_ops.jobs, on the nodes).

The CLI reaches the head's job server through ``grid_ops.runtime.jobs`` run on the head
over the cluster's SSH settings (the dashboard stays on the head's loopback). What it
learns is also kept under the state dir, so ``job list`` and ``job results`` still answer
after the cluster was restarted.

Job names reach file paths (the records under the state dir), so every command checks
them with ``check_name`` before anything is read or written. ``--env`` values may be
secrets: they go to the head on the SSH connection's stdin, never in an argv (see
``submit_call``).
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grid_ops.jobs import TERMINAL

if TYPE_CHECKING:
    from grid_ops.model import ClusterModel

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
NAME_HINT = "Use 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit."
SUBMISSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
ENV_HINT = (
    "Write it as --env NAME=value; a NAME has letters, digits and '_' and does not start "
    "with a digit."
)

# ---------------------------------------------------------------------------------------
# names and local records


def valid_name(name: object) -> bool:
    """Is ``name`` a job name (also a safe file name: no '/', no '..', no control chars)?"""
    return isinstance(name, str) and NAME.fullmatch(name) is not None


def _shown(text: object, limit: int = 80) -> str:
    """``text`` for an error message: quoted, escaped, cut short."""
    value = str(text)
    return repr(value if len(value) <= limit else value[:limit] + "...")


def check_name(name: object) -> str:
    """``name`` when it is a valid job name; a UsageError (exit 2) otherwise."""
    from grid_ops.errors import UsageError

    if not valid_name(name):
        raise UsageError(f"Job name {_shown(name)} is not valid.", NAME_HINT)
    return str(name)


def _store(cluster: ClusterModel) -> Path:
    """``<state>/jobs/<cluster id>``: every record of this cluster, nothing else."""
    return store_dir(cluster.id)


def store_dir(key: str) -> Path:
    """Where the job records of the cluster kept under ``key`` (its id) lie."""
    from grid_ops.errors import UsageError
    from grid_ops.paths import job_store_dir

    if not valid_name(key):
        raise UsageError(f"Cluster id {_shown(key)} is not valid.", NAME_HINT)
    return job_store_dir(key)


def _inside(store: Path, path: Path) -> bool:
    """Does ``path`` (symbolic links followed) lie directly in ``store``?"""
    return path.resolve().parent == store.resolve()


def _record_path(cluster: ClusterModel, name: str) -> Path:
    """Where job ``name``'s record lives; UsageError for a bad name or a path that
    leads out of the store (e.g. a symbolic link)."""
    from grid_ops.errors import UsageError

    store = _store(cluster)
    path = store / f"{check_name(name)}.json"
    if not _inside(store, path):
        raise UsageError(
            f"The record of job '{name}' ({path}) leads outside {store}.",
            "Remove that file; grid-ops only keeps plain files there.",
        )
    return path


def _valid_record(data: object, name: str) -> bool:
    """A record as ``save`` writes it, for the file ``<name>.json``."""
    return (
        isinstance(data, dict)
        and data.get("name") == name
        and valid_name(name)
        and isinstance(data.get("submission_id"), str)
        and SUBMISSION_ID.fullmatch(data["submission_id"]) is not None
    )


def save(cluster: ClusterModel, record: dict[str, Any]) -> None:
    """Write a job's record: 0600, in the cluster's store made (or closed to) 0700."""
    from grid_ops.fsutil import write_atomic

    path = _record_path(cluster, record["name"])
    _private_store(path.parent)
    write_atomic(path, json.dumps(record, indent=2) + "\n", mode=0o600)


def _private_store(store: Path) -> None:
    """``store`` as a directory of this user that nobody else may enter: made 0700, or
    closed to 0700; UsageError for a link or another user's directory."""
    from grid_ops.errors import UsageError
    from grid_ops.runtime.private import private_dir

    try:
        store.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        private_dir(store)
    except OSError as exc:
        raise UsageError(
            f"The job records' directory {store} cannot be kept private to you: "
            f"{exc.strerror or exc}.",
            "Remove it (a link or another user's directory); grid-ops makes it again.",
        ) from None


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def load(cluster: ClusterModel, name: str) -> dict[str, Any]:
    from grid_ops.errors import NotFound

    data = _read(_record_path(cluster, name))
    if not _valid_record(data, name):
        known = ", ".join(r["name"] for r in load_all(cluster)) or "none yet"
        raise NotFound(f"No job named '{name}'.", f"Known jobs: {known}.")
    record: dict[str, Any] = data
    return record


def load_all(cluster: ClusterModel) -> list[dict[str, Any]]:
    """Every valid record of the cluster; files with a bad name or content are skipped."""
    store = _store(cluster)
    records = []
    for path in sorted(store.glob("*.json")):
        if not valid_name(path.stem) or not _inside(store, path):
            continue
        data = _read(path)
        if _valid_record(data, path.stem):
            records.append(data)
    return sorted(records, key=lambda r: r.get("submitted_at") or 0)


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


def refresh(cluster: ClusterModel, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Update records that are not finished from the head; mark those Ray no longer knows."""
    open_ids = [r["submission_id"] for r in records if r.get("status") not in TERMINAL]
    if not open_ids:
        return records
    try:
        answer = head_call(cluster, "info", "--", *open_ids)
        infos = {j["submission_id"]: j for j in answer["jobs"]}
    except Exception:  # the head is down: keep what we knew, say Ray does not answer
        infos = {}
    for record in records:
        info = infos.get(record["submission_id"])
        if record.get("status") in TERMINAL:
            continue
        if info is None or info.get("status") == "UNKNOWN":
            record["known_to_ray"] = False
        else:
            _apply(record, info)
        save(cluster, record)
    return records


def _apply(record: dict[str, Any], info: dict[str, Any]) -> None:
    record["known_to_ray"] = True
    record["status"] = info["status"]
    record["message"] = info.get("message")
    if info.get("start_time"):
        record["started_at"] = info["start_time"] / 1000.0
    if info.get("end_time"):
        record["ended_at"] = info["end_time"] / 1000.0
    if info.get("exit_code") is not None:
        record["exit_code"] = info["exit_code"]


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


def entrypoint(command: list[str], nodes: int, gpus: float, env_of: str = "") -> list[str]:
    """What Ray Jobs runs: ``command``, through grid_ops.runtime.launch for several ranks
    or to give it the environment variables kept on the head for job ``env_of`` (its
    submission id; only the id is on this line, never a value)."""
    launcher = ["python", "-m", "grid_ops.runtime.launch"]
    launcher += ["--job-env", env_of] if env_of else []
    if nodes > 1:
        return [*launcher, "--nodes", str(nodes), "--gpus-per-node", str(gpus), "--", *command]
    return [*launcher, "--", *command] if env_of else list(command)


def submit_call(
    name: str,
    submission_id: str,
    command: list[str],
    env: dict[str, str],
    gpus: float = 0,
    nodes: int = 1,
    working_dir: str | None = None,
) -> tuple[list[str], str]:
    """The ``grid_ops.runtime.jobs`` arguments that submit a job, and the text for its
    stdin: the environment variables travel there, never among the arguments, and the
    head keeps them for the entrypoint outside the job's metadata (pure)."""
    entry = entrypoint(command, nodes, gpus, submission_id if env else "")
    args = ["submit", "--submission-id", submission_id, "--entrypoint", shlex.join(entry)]
    args += ["--metadata", json.dumps({"grid_ops_name": name})]
    if gpus and nodes == 1:
        args += ["--num-gpus", str(gpus)]
    if working_dir is not None:
        args += ["--working-dir", working_dir]
    if not env:
        return args, ""
    return [*args, "--env-stdin"], json.dumps(env)


def launch(
    cluster: ClusterModel,
    name: str,
    command: list[str],
    workdir: Path | None = None,
    env: dict[str, str] | None = None,
    gpus: float | None = None,
    nodes: int | None = None,
) -> dict[str, Any]:
    """Submit ``command`` to Ray Jobs on the head; returns the new job's record.

    ``nodes`` > 1 runs one rank per node (grid_ops.runtime.launch: STRICT_SPREAD placement
    group, torch.distributed environment variables). ``gpus`` per rank and ``nodes``
    default to the config's execution.default_gpus_per_node and default_nodes.
    """
    from grid_ops import layout
    from grid_ops.errors import Conflict, NotFound, UsageError

    check_name(name)
    variables = check_env(env or {})
    gpus = cluster.config.execution.default_gpus_per_node if gpus is None else gpus
    nodes = cluster.config.execution.default_nodes if nodes is None else nodes
    try:
        previous = load(cluster, name)
    except NotFound:
        previous = None
    if previous is not None:
        refresh(cluster, [previous])
        if previous.get("status") not in TERMINAL and previous.get("known_to_ray", True):
            raise Conflict(
                f"A job named '{name}' is still {previous.get('status', 'live').lower()}.",
                f"Pick another name, or stop it with 'grid-ops job cancel {name}'.",
            )
    if nodes > len(cluster.nodes):
        raise UsageError(
            f"--nodes {nodes} asks for more nodes than the cluster has ({len(cluster.nodes)})."
        )
    submission_id = f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    rel = None
    if workdir is not None:
        rel = f"{layout.JOBS}/{submission_id}"
        _push_workdir(cluster, workdir, rel)
    args, stdin = submit_call(name, submission_id, command, variables, gpus, nodes, rel)
    head_call(cluster, *args, stdin=stdin)
    record = {
        "name": name,
        "submission_id": submission_id,
        "command": command,
        "workdir": str(workdir) if workdir else None,
        "nodes": nodes,
        "status": "PENDING",
        "submitted_at": time.time(),
        "started_at": None,
        "ended_at": None,
        "exit_code": None,
        "known_to_ray": True,
    }
    save(cluster, record)
    return record


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


def outcome(
    cluster: ClusterModel, name: str, final_logs: str | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``job results --json`` of job ``name`` (its reported metrics, the final values,
    the duration), and the record it came from. Reads the logs on the head once more
    while Ray still knows the job (unless ``final_logs``, read after it ended, are
    given); keeps what was found before when it does not."""
    from grid_ops.errors import GridOpsError
    from grid_ops.jobs import results

    record = refresh(cluster, [load(cluster, name)])[0]
    if final_logs is not None and record.get("status") in TERMINAL:
        record["results"] = results(final_logs)
        save(cluster, record)
    elif record.get("known_to_ray", True):
        try:
            logs_text = head_call(cluster, "logs", record["submission_id"])["logs"] or ""
        except GridOpsError:
            if record.get("results") is None:
                raise
            record["known_to_ray"] = False  # e.g. the cluster was restarted: keep what we had
        else:
            record["results"] = results(logs_text)
        save(cluster, record)
    found = record.get("results") or {"metrics": [], "final": {}}
    started, ended = record.get("started_at"), record.get("ended_at")
    return {
        "name": name,
        "status": record.get("status"),
        "metrics": found["metrics"],
        "final": found["final"],
        "duration_s": round(ended - started, 3) if started and ended else None,
        "logs": f"grid-ops job logs {name} (Ray Jobs on {cluster.head})",
    }, record


def cancel(cluster: ClusterModel, name: str) -> dict[str, Any]:
    """Stop job ``name`` on Ray Jobs and wait (up to the job_stop deadline) until it
    has ended; the job as ``job status --json`` shows it then."""
    from grid_ops import answers

    wait = cluster.deadlines.job_stop

    record = load(cluster, name)
    head_call(cluster, "stop", record["submission_id"])
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        refresh(cluster, [record])
        if record.get("status") in TERMINAL:
            break
        time.sleep(0.5)
    return answers.job(record)
