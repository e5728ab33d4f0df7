"""Run a command on one node over plain OpenSSH, output streamed, exit code kept.

Commands run in the node's remote_root with the node venv's bin first on PATH and
RAY_ADDRESS pointing at the head, so ``ray status`` or a driver script just work.
Arguments are quoted for the remote shell: nothing is re-interpreted unless the caller
asks for a shell command.
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Mapping, Sequence

from grid_ops import inventory
from grid_ops.config import ClusterConfig, NodeConfig

MISSING_ROOT = 127


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
) -> str:
    """The shell line the node runs: cd to remote_root, venv on PATH, then the command."""
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
        f"{'' if shell else 'exec '}{body}"
    )


def argv(
    config: ClusterConfig,
    node: NodeConfig,
    command: Sequence[str],
    shell: bool = False,
    env: Mapping[str, str] | None = None,
) -> list[str]:
    """The local argv that runs ``command`` on ``node`` (``env``: extra variables)."""
    script = remote_script(config, command, shell, env)
    if node.connection == "local":
        return ["bash", "-c", script]
    return [*inventory.ssh_command(config, node), inventory.ssh_target(node), script]


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


def run(
    config: ClusterConfig,
    node: NodeConfig,
    command: Sequence[str],
    shell: bool = False,
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    """Run ``command`` on ``node`` with output streamed to ours; returns its exit code."""
    inventory.ensure_control_dir()
    try:
        return subprocess.run(argv(config, node, command, shell, env), timeout=timeout).returncode
    except subprocess.TimeoutExpired:
        return 124
