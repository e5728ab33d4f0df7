"""Run a command on one node over plain OpenSSH, output streamed, exit code kept.

Commands run in the node's remote_root with the node venv's bin first on PATH and
RAY_ADDRESS pointing at the head, so ``ray status`` or a driver script just work.
Arguments are quoted for the remote shell: nothing is re-interpreted unless the caller
asks for a shell command.

ssh without a terminal does not pass a hang-up on, so a local time-out or Ctrl-C would
leave the command running on the node. Each run therefore notes its process group (the
session sshd made for it) in /tmp/grid-ops-run-<id>.pid on the node, and ``stop`` sends
that group SIGTERM, then SIGKILL after a grace period.
"""

from __future__ import annotations

import contextlib
import shlex
import subprocess
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from grid_ops import inventory
from grid_ops.config import ClusterConfig, NodeConfig

MISSING_ROOT = 127
STOP_GRACE_S = 5


def new_run_id() -> str:
    return uuid.uuid4().hex


def _pid_file(run_id: str) -> str:
    return f"/tmp/grid-ops-run-{run_id}.pid"


def _root_expr(root: str) -> str:
    """remote_root for the remote shell: ``~`` expanded by the shell, the rest quoted."""
    if root == "~":
        return "~"
    if root.startswith("~/"):
        return "~/" + shlex.quote(root[2:])
    return shlex.quote(root)


def remote_script(
    config: ClusterConfig,
    command: Sequence[str],
    shell: bool = False,
    env: Mapping[str, str] | None = None,
    run_id: str | None = None,
) -> str:
    """The shell line the node runs: cd to remote_root, venv on PATH, then the command.

    ``run_id``: note the shell's process group for ``stop`` (the shell then waits for the
    command instead of becoming it, and removes the note when it ends)."""
    root = _root_expr(config.remote_root.rstrip("/") or "/")
    head_ip = inventory.node_ip(config, config.head) or config.head.host
    body = " ".join(command) if shell else shlex.join(command)
    return (
        f'cd {root} 2>/dev/null || {{ echo "grid-ops: {config.remote_root} does not exist on '
        f"$(hostname); run 'grid-ops provision' first\" >&2; exit {MISSING_ROOT}; }}; "
        f'export PATH="$PWD/venv/bin:$PATH" '
        f"RAY_ADDRESS={shlex.quote(f'{head_ip}:{config.ray.port}')}"
        + "".join(f" {k}={shlex.quote(v)}" for k, v in (env or {}).items())
        + "; "
        + _registration(run_id)
        + f"{'' if shell or run_id else 'exec '}{body}"
    )


def _registration(run_id: str | None) -> str:
    if run_id is None:
        return ""
    pid_file = _pid_file(run_id)
    return f"echo $$ > {pid_file}; trap 'rm -f {pid_file}' EXIT; "


def argv(
    config: ClusterConfig,
    node: NodeConfig,
    command: Sequence[str],
    shell: bool = False,
    env: Mapping[str, str] | None = None,
    run_id: str | None = None,
) -> list[str]:
    """The local argv that runs ``command`` on ``node`` (``env``: extra variables)."""
    return _on(config, node, remote_script(config, command, shell, env, run_id))


def _on(config: ClusterConfig, node: NodeConfig, script: str) -> list[str]:
    if node.connection == "local":
        return ["bash", "-c", script]
    return [*inventory.ssh_command(config, node), inventory.ssh_target(node), script]


def stop(config: ClusterConfig, node: NodeConfig, run_id: str) -> None:
    """End the run ``run_id`` on ``node``: SIGTERM to its process group now, SIGKILL
    after STOP_GRACE_S seconds if it is still there. Best effort: a node that does not
    answer is left as it is."""
    pid_file = _pid_file(run_id)
    script = (
        f"f={pid_file}; [ -f $f ] || exit 0; p=$(cat $f); rm -f $f; "
        'kill -TERM -- "-$p" 2>/dev/null || exit 0; '
        f'(sleep {STOP_GRACE_S}; kill -KILL -- "-$p") >/dev/null 2>&1 </dev/null &'
    )
    with contextlib.suppress(subprocess.TimeoutExpired):
        subprocess.run(
            _on(config, node, script),
            capture_output=True,
            timeout=config.ssh.connect_timeout + 5,
            check=False,
        )


def reachable(config: ClusterConfig, node: NodeConfig) -> bool:
    """Does ``node`` accept an SSH session right now? (Opens the multiplexed master.)"""
    if node.connection == "local":
        return True
    inventory.ensure_control_dir()
    argv = [*inventory.ssh_command(config, node), inventory.ssh_target(node), "true"]
    try:
        proc = subprocess.run(
            argv, capture_output=True, timeout=config.ssh.connect_timeout + 5, check=False
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
    config: ClusterConfig,
    node: NodeConfig,
    command: Sequence[str],
    shell: bool = False,
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
) -> Outcome:
    """Run ``command`` on ``node`` with output streamed to ours. A time-out or Ctrl-C
    also stops it on the node."""
    return _run(config, node, command, shell, timeout, env, new_run_id(), capture=False)


def capture(
    config: ClusterConfig,
    node: NodeConfig,
    command: Sequence[str],
    shell: bool = False,
    timeout: float | None = None,
    run_id: str | None = None,
) -> Outcome:
    """``run`` with stdout and stderr collected in ``Outcome.output``. ``run_id`` lets a
    caller that runs several at once ``stop`` them itself (Ctrl-C reaches only its
    main thread)."""
    return _run(config, node, command, shell, timeout, None, run_id or new_run_id(), capture=True)


def _run(
    config: ClusterConfig,
    node: NodeConfig,
    command: Sequence[str],
    shell: bool,
    timeout: float | None,
    env: Mapping[str, str] | None,
    run_id: str,
    capture: bool,
) -> Outcome:
    inventory.ensure_control_dir()
    proc = subprocess.Popen(
        argv(config, node, command, shell, env, run_id),
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.STDOUT if capture else None,
        text=True,
        # a local run gets its own process group, as sshd gives a remote one
        start_new_session=node.connection == "local",
    )
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(config, node, run_id)
        return Outcome(124, timed_out=True, output=_drain(proc))
    except KeyboardInterrupt:
        stop(config, node, run_id)
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
