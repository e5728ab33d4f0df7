"""Run a command on one node over plain OpenSSH, output streamed, exit code kept.

Commands run with the node venv's bin first on PATH, RAY_ADDRESS pointing at the head
and Ray's token settings in the environment, so ``ray status`` or a driver script just
work: a user's command in the synced code's directory (``<remote_root>/code``), grid-ops'
own calls in remote_root. Every value is quoted for the remote shell: nothing is
re-interpreted unless the caller asks for a shell command.

ssh without a terminal does not pass a hang-up on, so a local time-out or Ctrl-C would
leave the command running on the node. Each run therefore notes its process group (the
session sshd made for it) in ``<remote_root>/state/run/<id>.pid`` (a 0700 directory of
the node user), and ``stop`` sends that group SIGTERM, then SIGKILL after a grace period.
"""

from __future__ import annotations

import contextlib
import re
import shlex
import subprocess
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from grid_ops import layout, model
from grid_ops.errors import UsageError
from grid_ops.model import ClusterModel, NodeModel
from grid_ops.runtime.jobs import env_problem

MISSING_ROOT = layout.EXIT_MISSING_ROOT
_RUN_ID = re.compile(r"[0-9a-f]{8,64}")


def new_run_id() -> str:
    return uuid.uuid4().hex


def _pid_file(run_id: str) -> str:
    """The note of a run, relative to remote_root (``run_id`` is ours: hex only)."""
    if not _RUN_ID.fullmatch(run_id):
        raise ValueError(f"not a run id: {run_id!r}")
    return f"{layout.RUN_DIR}/{run_id}.pid"


def _cd(target: str, shown: str) -> str:
    """cd to ``target`` (a shell expression), or say ``shown`` is missing and exit 127."""
    message = "grid-ops: %s does not exist on %s; run 'grid-ops provision' first\\n"
    return (
        f"cd -- {target} 2>/dev/null || {{ printf {shlex.quote(message)} "
        f'{shlex.quote(shown)} "$(hostname)" >&2; exit {MISSING_ROOT}; }}; '
    )


def _cd_root(cluster: ClusterModel, node: NodeModel) -> str:
    """cd to the node's remote_root: as the node reported it expanded (recorded by the
    last playbook run), else as the config says it, ``~/`` expanded by the node's shell."""
    root = cluster.remote_root.rstrip("/")
    return _cd(model.root_expr(node.root or root), root)


def environment(cluster: ClusterModel) -> str:
    """``export`` of what every command on a node needs (run in remote_root): the venv
    first on PATH, RAY_ADDRESS, and Ray's token settings when the cluster uses them.

    RAY_ADDRESS is the head's address as this node joined Ray ('cluster start' notes it
    in ``state/ray_address``); before any start, the head's address as the config or
    the last probe knows it."""
    known = cluster.head_address
    parts = [
        'GRID_OPS_ROOT="$PWD"',
        f'PATH="$PWD/{layout.VENV}/bin:$PATH"',
        "RAY_ADDRESS",
    ]
    if cluster.ray["auth"] == "token":
        parts += ["RAY_AUTH_MODE=token", f'RAY_AUTH_TOKEN_PATH="$PWD/{layout.RAY_TOKEN}"']
    else:
        parts.append("RAY_AUTH_MODE=disabled")
    return (
        f"{{ read -r RAY_ADDRESS < {layout.RAY_ADDRESS}; }} 2>/dev/null "
        f"|| RAY_ADDRESS={shlex.quote(known)}; export " + " ".join(parts) + "; "
    )


def remote_script(
    cluster: ClusterModel,
    node: str,
    command: Sequence[str],
    shell: bool = False,
    env: Mapping[str, str] | None = None,
    run_id: str | None = None,
    in_code: bool = False,
) -> str:
    """The shell line ``node`` runs: cd to remote_root, the environment, the command.

    ``in_code``: run in ``<remote_root>/code`` (a user's command) instead of remote_root.
    ``run_id``: note the shell's process group for ``stop`` (the shell then waits for the
    command instead of becoming it, and removes the note when it ends)."""
    body = " ".join(command) if shell else shlex.join(command)
    extra = ""
    for key, value in (env or {}).items():
        problem = env_problem(key, value)
        if problem is not None:
            raise UsageError(f"Cannot pass {key[:80]!r} to the node: {problem}.")
        extra += f"export {key}={shlex.quote(value)}; "
    return (
        _cd_root(cluster, cluster.node(node))
        + environment(cluster)
        + extra
        + _registration(run_id)
        + (_cd(layout.CODE, f"{cluster.remote_root.rstrip('/')}/{layout.CODE}") if in_code else "")
        + f"{'' if shell or run_id else 'exec '}{body}"
    )


def _registration(run_id: str | None) -> str:
    if run_id is None:
        return ""
    pid_file = _pid_file(run_id)
    return (
        f"mkdir -p -m 700 {layout.RUN_DIR} && echo $$ > {pid_file}; "
        f"trap 'rm -f \"$GRID_OPS_ROOT\"/{pid_file}' EXIT; "
    )


def argv(
    cluster: ClusterModel,
    node: str,
    command: Sequence[str],
    shell: bool = False,
    env: Mapping[str, str] | None = None,
    run_id: str | None = None,
    in_code: bool = False,
) -> list[str]:
    """The local argv that runs ``command`` on ``node`` (``env``: extra variables)."""
    script = remote_script(cluster, node, command, shell, env, run_id, in_code)
    return cluster.node(node).argv(script)


def stop(cluster: ClusterModel, node: str, run_id: str) -> None:
    """End the run ``run_id`` on ``node``: SIGTERM to its process group now, SIGKILL
    after the stop_grace deadline if it is still there. Best effort: a node that does not
    answer is left as it is."""
    pid_file = _pid_file(run_id)
    # Only a plain file of ours (not a link) holding a number above 1 is signalled.
    script = (
        _cd_root(cluster, cluster.node(node))
        + f"f={pid_file}; [ -f $f ] && [ ! -L $f ] && [ -O $f ] || exit 0; "
        'p=$(head -c 20 "$f"); rm -f "$f"; '
        'case $p in ""|*[!0-9]*) exit 0;; esac; [ "$p" -gt 1 ] || exit 0; '
        'kill -TERM -- "-$p" 2>/dev/null || exit 0; '
        f"(sleep {cluster.deadlines.stop_grace:g}; "
        'kill -KILL -- "-$p") >/dev/null 2>&1 </dev/null &'
    )
    with contextlib.suppress(subprocess.TimeoutExpired):
        subprocess.run(
            cluster.node(node).argv(script),
            capture_output=True,
            timeout=cluster.deadlines.command,
            check=False,
        )


def reachable(cluster: ClusterModel, node: str) -> bool:
    """Does ``node`` accept an SSH session right now? (Opens the multiplexed master.)"""
    if cluster.node(node).local:
        return True
    model.ensure_control_dir()
    try:
        proc = subprocess.run(
            cluster.node(node).argv("true"),
            capture_output=True,
            timeout=cluster.deadlines.command,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False
    return proc.returncode == 0


@dataclass
class Outcome:
    """How a run ended: the exit code (124 after a time-out), whether the time-out
    fired (the command may exit 124 itself), and the output when it was captured."""

    rc: int
    timed_out: bool = False
    output: str = ""


def run(
    cluster: ClusterModel,
    node: str,
    command: Sequence[str],
    shell: bool = False,
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
) -> Outcome:
    """Run ``command`` on ``node`` with output streamed to ours. A time-out or Ctrl-C
    also stops it on the node."""
    return _run(cluster, node, command, shell, timeout, env, new_run_id(), capture=False)


def capture(
    cluster: ClusterModel,
    node: str,
    command: Sequence[str],
    shell: bool = False,
    timeout: float | None = None,
    run_id: str | None = None,
) -> Outcome:
    """``run`` with stdout and stderr collected in ``Outcome.output``. ``run_id`` lets a
    caller that runs several at once ``stop`` them itself (Ctrl-C reaches only its
    main thread)."""
    return _run(cluster, node, command, shell, timeout, None, run_id or new_run_id(), capture=True)


def _run(
    cluster: ClusterModel,
    node: str,
    command: Sequence[str],
    shell: bool,
    timeout: float | None,
    env: Mapping[str, str] | None,
    run_id: str,
    capture: bool,
) -> Outcome:
    model.ensure_control_dir()
    line = argv(cluster, node, command, shell, env, run_id, in_code=True)
    from grid_ops import log

    log.logger.debug("on %s: %s", node, shlex.join(line))
    proc = subprocess.Popen(
        line,
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.STDOUT if capture else None,
        text=True,
        # a local run gets its own process group, as sshd gives a remote one
        start_new_session=cluster.node(node).local,
    )
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(cluster, node, run_id)
        return Outcome(124, timed_out=True, output=_drain(proc))
    except KeyboardInterrupt:
        stop(cluster, node, run_id)
        _drain(proc)
        raise
    return Outcome(proc.returncode, output=output or "")


def _drain(proc: subprocess.Popen[str]) -> str:
    """Kill the local end and take what it wrote, without waiting on a pipe that
    something else (a process that left the group) may still hold."""
    proc.kill()
    try:
        output, _ = proc.communicate(timeout=2)
    except subprocess.TimeoutExpired:
        if proc.stdout is not None:
            proc.stdout.close()
        proc.wait()
        return ""
    return output or ""
