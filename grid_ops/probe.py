"""Health facts over plain OpenSSH: the grid_health module, sent to each node's python3.

Ansible's start-up costs about a second before it touches a host; ``grid-ops health`` is
on the hot path of ``run``, so it sends the very module file the playbook uses straight
to ``python3 -`` on every node in parallel (reusing multiplexed connections). A node
that does not answer costs at most the SSH connect timeout.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from grid_ops import facts, health, inventory
from grid_ops.config import ClusterConfig, NodeConfig
from grid_ops.paths import ansible_root


def module_path() -> Path:
    """The grid_health fact module (the playbooks' own file)."""
    return ansible_root() / "roles" / "grid_facts" / "library" / "grid_health.py"


def module_source() -> str:
    return module_path().read_text()


def argv(config: ClusterConfig, node: NodeConfig) -> list[str]:
    """The command that runs the module (sent on stdin) on ``node``."""
    args = {"remote_root": config.remote_root, "nvidia_smi_timeout": config.health_check.timeout}
    python = config.python_interpreter or "python3"
    line = (
        f"GRID_OPS_STANDALONE=1 GRID_OPS_ARGS={shlex.quote(json.dumps(args))} "
        f"exec {shlex.quote(python)} -"
    )
    if node.connection == "local":
        return ["bash", "-c", line]
    return inventory.ssh_argv(config, node, line)


def time_limit(config: ClusterConfig) -> float:
    """How long one node's probe may take before it counts as unreachable."""
    return config.ssh.connect_timeout + config.health_check.timeout + 5


def probe_all(config: ClusterConfig, names: list[str] | None = None) -> list[health.NodeHealth]:
    """Health of the nodes (all, or ``names``), in config order, probed in parallel."""
    inventory.ensure_control_dir()
    nodes = [n for n in config.nodes if names is None or n.name in names]
    hc = config.health_check
    records = facts.probe(
        {n.name: argv(config, n) for n in nodes},
        str(module_path()),
        hc.max_workers,
        time_limit(config),
        (hc.cpu_weight, hc.gpu_weight),
    )
    return [health.NodeHealth(**r) for r in records]
