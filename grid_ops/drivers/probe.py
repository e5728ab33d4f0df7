"""Health facts over plain OpenSSH: the grid_health module, sent to each node's python3.

Ansible's start-up costs about a second before it touches a host; ``grid-ops health`` is
on the hot path of ``run``, so it sends the very module file the playbook uses straight
to ``python3 -`` on every node in parallel (reusing the multiplexed connections). A node
that does not answer costs at most the probe deadline (ClusterModel.deadlines.probe).

Light on purpose (the resolved model, no config): the quick path and the full CLI both
probe through ``collect``.
"""

from __future__ import annotations

import json
import os
import shlex

from grid_ops import facts, layout
from grid_ops.model import ClusterModel, NodeModel, ensure_control_dir
from grid_ops.paths import ansible_root_name, package_dir_name, state_dir_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def module_path() -> str:
    """The grid_health fact module (the playbooks' own file)."""
    return f"{ansible_root_name()}/roles/grid_facts/library/grid_health.py"


# The module_utils grid_health imports (/proc and nvidia-smi, shared with grid_node_info;
# the GPU checks), in the order they load.
UTILS = ("grid_root", "grid_node_os", "grid_gpu_health")


_HEAD = """\
# grid-ops node program: a script and the module_utils it imports, as one program for
# 'python3 -' (written by grid_ops.drivers.probe; Ansible is not needed on the node).
import sys, types
for _name in ("ansible", "ansible.module_utils"):
    _package = types.ModuleType(_name)
    _package.__path__ = []
    sys.modules[_name] = _package
"""
_UTIL = """\
_utils = types.ModuleType("ansible.module_utils.{name}")
sys.modules[_utils.__name__] = _utils
exec(compile({source!r}, "{name}.py", "exec"), _utils.__dict__)
"""
_MAIN = """\
exec(compile({source!r}, "{name}.py", "exec"), {{"__name__": "__main__"}})
"""


def build_program(name: str, utils: tuple[str, ...], main: str) -> str:
    """The file a node's ``python3 -`` reads to run ``main`` (Python source importing
    ``ansible.module_utils.<util>`` for each of ``utils``, as an Ansible module does):
    made once per version of its sources, under the state dir."""
    import hashlib

    sources = []
    for util in utils:
        path = os.path.join(package_dir_name(), "module_utils", f"{util}.py")
        with open(path, encoding="utf-8") as handle:
            sources.append(handle.read())
    digest = hashlib.sha256("\0".join([*sources, main]).encode()).hexdigest()[:16]
    path = os.path.join(state_dir_name(), "probe", f"{name}-{digest}.py")
    if not os.path.exists(path):
        from grid_ops.fsutil import write_atomic

        program = _HEAD + "".join(
            _UTIL.format(name=util, source=source)
            for util, source in zip(utils, sources, strict=True)
        )
        write_atomic(path, program + _MAIN.format(name=name, source=main), mode=0o600)
    return path


def program_path() -> str:
    """The file the probe sends to each node's ``python3 -``: the grid_health module with
    its module_utils."""
    with open(module_path(), encoding="utf-8") as handle:
        return build_program("grid_health", UTILS, handle.read())


def module_source() -> str:
    """The probe's program (what a node's ``python3 -`` reads)."""
    with open(program_path(), encoding="utf-8") as handle:
        return handle.read()


def module_args(cluster: ClusterModel, node: NodeModel) -> dict[str, Any]:
    """The module's arguments for ``node`` (the role's task passes the same, from the
    inventory's grid_health_args and grid_gpu_count)."""
    return {**cluster_args(cluster), "expected_gpus": node.gpu_count}


def cluster_args(cluster: ClusterModel) -> dict[str, Any]:
    """The module's arguments every node gets."""
    return {
        "remote_root": cluster.remote_root,
        "nvidia_smi_timeout": cluster.deadlines.nvidia_smi,
        "drain_note": layout.DRAIN_NOTE,
        "nvidia_smi": cluster.health["nvidia_smi"],
        "min_disk_free_bytes": cluster.health["min_disk_free_bytes"],
        "venv": layout.VENV,
    }


def argv(cluster: ClusterModel, node: NodeModel) -> list[str]:
    """The command that runs the module (sent on stdin) on ``node``."""
    args = module_args(cluster, node)
    line = (
        f"GRID_OPS_STANDALONE=1 GRID_OPS_ARGS={shlex.quote(json.dumps(args))} "
        f"exec {shlex.quote(cluster.python)} -"
    )
    return node.argv(line)


# Probes started by this process: rounds and nodes (grid-ops serve reports them, so a
# load test can count the SSH fan-out its clients caused).
counts = {"rounds": 0, "nodes": 0}


def records(cluster: ClusterModel, names: list[str] | None = None) -> list[dict[str, Any]]:
    """Health records (grid_ops.facts) of the nodes (all, or ``names``), in config order,
    probed in parallel."""
    ensure_control_dir()
    nodes = [n for n in cluster.nodes if names is None or n.name in names]
    counts["rounds"] += 1
    counts["nodes"] += len(nodes)
    hc = cluster.health
    found = facts.probe(
        {n.name: argv(cluster, n) for n in nodes},
        program_path(),
        hc["max_workers"],
        cluster.deadlines.probe,
        (hc["cpu_weight"], hc["gpu_weight"]),
    )
    facts.round_checks(found, cluster.head, hc["max_clock_offset"])
    return found


def collect(cluster: ClusterModel, refresh: bool) -> tuple[list[dict[str, Any]], bool]:
    """Every node's record, best first, and whether they came from the cache (younger
    than health_check.refresh_interval; ``refresh`` probes anyway)."""
    names = [n.name for n in cluster.nodes]
    cached = None
    if not refresh:
        cached = facts.read_cache(cluster.id, names, cluster.health["refresh_interval"])
    if cached is not None:
        return facts.rank(cached), True
    found = records(cluster)
    facts.write_cache(cluster.id, found)
    return facts.rank(found), False
