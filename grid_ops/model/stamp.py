"""What was applied to a node: its stamp, derived from the model, kept on the node.

Each node keeps the stamp of what grid-ops last brought it to (``layout.STAMP`` under
remote_root, written by the grid_lifecycle role at the end of a successful scale or
apply run). ``apply`` reads every node's stamp in one plain-ssh fan-out (one round trip
per node) and runs Ansible only where the stamp differs from the one the config gives.

A stamp has three parts, so the difference says what to do:

* ``venv``: the requirements (Ray pinned, then provision.packages) and the node's Python
  -> a new venv build, then Ray restarts on it;
* ``runtime``: a digest of the grid-ops runtime pushed to the node -> push it again (and
  the head's controller is replaced); Ray keeps running;
* ``ray``: how Ray runs there (role, head, ports, auth, resources, CPUs, GPUs, memory)
  -> restart only that node's Ray (the head's: the whole cluster's).

Standard library only (the quick path may read stamps).
"""

from __future__ import annotations

import json
import os
import shlex

from grid_ops import layout
from grid_ops.model import ClusterModel, NodeModel, root_expr
from grid_ops.runtime.digest import runtime_digest

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

FORMAT = 1
# What 'raylet' is called in the process table (the node's Ray is up when one runs).
RAYLET = "raylet"
_SEPARATOR = "--grid-ops-stamp--"


def node_stamp(cluster: ClusterModel, node: NodeModel) -> dict[str, Any]:
    """The stamp ``node`` carries once the cluster's config is applied to it, but for
    the runtime's digest (the inventory's host var ``grid_stamp``: the rendered
    inventory stays the same while grid-ops' code changes; each grid-ops run passes the
    digest as the extra var ``grid_runtime`` and the role adds it, "" when run by hand)."""
    return {
        "format": FORMAT,
        "cluster": cluster.name,
        "venv": {
            "requirements": list(cluster.requirements),
            "python": cluster.python,
        },
        "ray": {
            "role": node.role,
            "head": cluster.head,
            "settings": {k: cluster.ray[k] for k in sorted(cluster.ray) if k != "version"},
            "address": node.address,
            "start": node.ray_start,
            "gpu_count": node.gpu_count,
        },
    }


def stamps(cluster: ClusterModel, runtime: str | None = None) -> dict[str, dict[str, Any]]:
    """Every node's whole stamp (with the runtime's digest), by name."""
    digest = runtime or runtime_digest()
    return {node.name: {**node_stamp(cluster, node), "runtime": digest} for node in cluster.nodes}


PARTS = ("venv", "runtime", "ray")


def differs(want: dict[str, Any], have: dict[str, Any] | None) -> list[str]:
    """What part of the stamp differs: [] (current), or some of PARTS; a missing or
    foreign stamp differs in all."""
    if not isinstance(have, dict) or have.get("format") != FORMAT:
        return list(PARTS)
    if have.get("cluster") != want["cluster"]:
        return list(PARTS)
    return [part for part in PARTS if _canon(have.get(part)) != _canon(want[part])]


def restarts(parts: list[str]) -> bool:
    """Does a node whose stamp differs in ``parts`` need its Ray restarted?"""
    return "venv" in parts or "ray" in parts


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


# ---------------------------------------------------------------------------------------
# reading a node's stamp over plain ssh


def read_command(root: str) -> str:
    """The shell line that prints, between separator lines: the node's stamp, whether
    this user's raylet runs, the node's drain note, the venv build in use and the id of
    the cluster the node belongs to. ``root``: remote_root as the node expanded it, or
    as the config says it (``~/`` expanded by the node's shell); quoted: data, never
    code."""
    return (
        f"cd -- {root_expr(root)} 2>/dev/null || exit {layout.EXIT_MISSING_ROOT}; "
        f"cat -- {shlex.quote(layout.STAMP)} 2>/dev/null; "
        f"printf '\\n%s\\n' {_SEPARATOR}; "
        f'pgrep -x -U "$(id -u)" {RAYLET} >/dev/null 2>&1 && echo {RAYLET}; '
        f"printf '%s\\n' {_SEPARATOR}; "
        f"cat -- {shlex.quote(layout.DRAIN_NOTE)} 2>/dev/null; "
        f"printf '\\n%s\\n' {_SEPARATOR}; "
        f"readlink -- {shlex.quote(layout.VENV)} 2>/dev/null; "
        f"printf '\\n%s\\n' {_SEPARATOR}; "
        f"head -c 300 -- {shlex.quote(layout.CLUSTER_ID)} 2>/dev/null; exit 0"
    )


def parse_read(stdout: str) -> dict[str, Any]:
    """``{"stamp": dict | None, "ray_running": bool, "drained": str | None, "venv_id":
    str, "cluster_id": str}`` from the output of ``read_command`` (five sections, split
    by separator lines; "" for a node that notes no cluster)."""
    sections: list[list[str]] = [[]]
    for line in stdout.split("\n"):
        if line == _SEPARATOR:
            sections.append([])
        else:
            sections[-1].append(line)
    sections += [[] for _ in range(5 - len(sections))]
    stamp: Any = None
    text = "\n".join(sections[0]).strip()
    if text:
        try:
            stamp = json.loads(text)
        except ValueError:
            stamp = None
    note = "\n".join(sections[2]).strip()
    return {
        "stamp": stamp if isinstance(stamp, dict) else None,
        "ray_running": RAYLET in (line.strip() for line in sections[1]),
        "drained": note or None,
        "venv_id": os.path.basename("".join(sections[3]).strip().rstrip("/")),
        "cluster_id": "".join(sections[4]).strip(),
    }
