"""Health facts over plain OpenSSH: the grid_health module, sent to each node's python3.

Ansible's start-up costs about a second before it touches a host; ``grid-ops health`` is
on the hot path of ``run``, so it sends the very module file the playbook uses straight
to ``python3 -`` on every node in parallel (reusing multiplexed connections). A node
that does not answer costs at most the SSH connect timeout.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from concurrent.futures import ThreadPoolExecutor

from grid_ops import health, inventory
from grid_ops.config import ClusterConfig, NodeConfig
from grid_ops.paths import ansible_root


def module_source() -> str:
    return (ansible_root() / "roles" / "grid_facts" / "library" / "grid_health.py").read_text()


def _argv(config: ClusterConfig, node: NodeConfig) -> list[str]:
    args = {"remote_root": config.remote_root, "nvidia_smi_timeout": config.health_check.timeout}
    python = config.python_interpreter or "python3"
    line = (
        f"GRID_OPS_STANDALONE=1 GRID_OPS_ARGS={shlex.quote(json.dumps(args))} "
        f"exec {shlex.quote(python)} -"
    )
    if node.connection == "local":
        return ["bash", "-c", line]
    return [*inventory.ssh_command(config, node), inventory.ssh_target(node), line]


def probe(config: ClusterConfig, node: NodeConfig, source: str) -> health.NodeHealth:
    """One node's health facts, or an unreachable entry naming why."""
    limit = config.ssh.connect_timeout + config.health_check.timeout + 5
    try:
        proc = subprocess.run(
            _argv(config, node),
            input=source,
            capture_output=True,
            text=True,
            timeout=limit,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return health.unreachable(node.name, f"no answer within {limit:g} s")
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        reason = lines[-1] if lines else f"exit {proc.returncode}"
        return health.unreachable(node.name, reason)
    try:
        facts = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return health.unreachable(node.name, f"unreadable facts: {proc.stdout[:200]!r}")
    return health.from_facts(node.name, facts, config)


def probe_all(config: ClusterConfig, names: list[str] | None = None) -> list[health.NodeHealth]:
    """Health of the nodes (all, or ``names``), in config order, probed in parallel."""
    inventory.ensure_control_dir()
    nodes = [n for n in config.nodes if names is None or n.name in names]
    source = module_source()
    workers = max(1, min(len(nodes), config.health_check.max_workers))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda n: probe(config, n, source), nodes))
