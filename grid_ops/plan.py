"""Plans for the quick path: what `health` and `sync` need, built once from a valid config.

Validating a config (pydantic) and building the SSH commands costs more than a warm
probe of four nodes. So when the full CLI has loaded a config for `health` or `sync`, it
writes a plan next to its state: the probe command of every node, the rsync settings,
the health weights. grid_ops.quick uses that plan while the config file (path, mtime,
size, inode), $HOME and the code that builds the plan are unchanged, and hands the
command to the full CLI otherwise. Reading a plan imports nothing heavy.
"""

from __future__ import annotations

import contextlib
import json
import os

from grid_ops.paths import state_dir_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

    from grid_ops.config import ClusterConfig

VERSION = 1
_HERE = os.path.dirname(os.path.abspath(__file__))
# The modules whose code decides what goes into a plan.
_BUILDERS = ("config.py", "inventory.py", "plan.py", "probe.py")


def plan_file(config_abs: str) -> str:
    import zlib

    key = zlib.crc32(config_abs.encode())
    return os.path.join(state_dir_name(), "quick", f"{os.path.basename(config_abs)}-{key:08x}.json")


def stamp(config_path: str | Path) -> list[Any] | None:
    """What must be unchanged for a plan of this config to hold (None: no such file)."""
    try:
        st = os.stat(config_path)
        code = [os.stat(os.path.join(_HERE, name)).st_mtime_ns for name in _BUILDERS]
    except OSError:
        return None
    return [VERSION, st.st_mtime_ns, st.st_size, st.st_ino, os.environ.get("HOME", ""), code]


def read(config_path: str) -> dict[str, Any] | None:
    """The plan of this config, or None when there is none or it no longer holds."""
    config_abs = os.path.abspath(config_path)
    current = stamp(config_abs)
    if current is None:
        return None
    try:
        with open(plan_file(config_abs), encoding="utf-8") as handle:
            data: dict[str, Any] = json.load(handle)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("config") != config_abs:
        return None
    return data if data.get("stamp") == current else None


def build(config: ClusterConfig, config_abs: str, at: list[Any]) -> dict[str, Any]:
    """The plan of a validated config (``at``: its stamp, taken before it was read)."""
    import shlex

    from grid_ops import inventory, probe

    nodes = []
    for node in config.nodes:
        local = node.connection == "local"
        nodes.append(
            {
                "name": node.name,
                "host": node.host,
                "user": node.user,
                "local": local,
                "probe": probe.argv(config, node),
                "rsh": "" if local else shlex.join(inventory.ssh_command(config, node)),
                "target": "" if local else f"{inventory.ssh_target(node)}:",
            }
        )
    hc, sync = config.health_check, config.sync
    return {
        "config": config_abs,
        "stamp": at,
        "cluster": config.name,
        "remote_root": config.remote_root,
        "forks": config.forks,
        "health": {
            "cpu_weight": hc.cpu_weight,
            "gpu_weight": hc.gpu_weight,
            "refresh_interval": hc.refresh_interval,
            "max_workers": hc.max_workers,
            "limit": probe.time_limit(config),
            "module": str(probe.module_path()),
        },
        "sync": {
            "exclude": list(sync.exclude_patterns),
            "gitignore": sync.respect_gitignore,
            "checksums": sync.use_checksums,
            "follow_symlinks": sync.follow_symlinks,
        },
        "nodes": nodes,
    }


def write(config: ClusterConfig, config_path: Path, at: list[Any] | None) -> None:
    """Write (or keep) the plan of ``config``, read from ``config_path`` at stamp ``at``."""
    if at is None:
        return
    from grid_ops.fsutil import write_atomic

    config_abs = os.path.abspath(config_path)
    text = json.dumps(build(config, config_abs, at), indent=1) + "\n"
    target = plan_file(config_abs)
    try:
        with open(target, encoding="utf-8") as handle:
            if handle.read() == text:
                return
    except OSError:
        pass
    with contextlib.suppress(OSError):  # only a shortcut: the command itself has worked
        write_atomic(target, text, mode=0o600)


# ---------------------------------------------------------------------------------------
# sync roots: each node's remote_root as the node itself expanded it (from the last sync)


def roots_file(cluster: str) -> str:
    # "-v2": the directory above a synced one is <remote_root>/code since synced code got
    # its own place; notes of the older layout must not be trusted.
    return os.path.join(state_dir_name(), "quick", f"{cluster}-sync-roots-v2.json")


def read_roots(cluster: str) -> dict[str, dict[str, Any]]:
    """``{node: {"host", "user", "remote_root", "root"}}`` as the last playbook sync found
    them (``remote_root`` as the config says it, ``root`` as the node expanded it)."""
    try:
        with open(roots_file(cluster), encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def remember_roots(config: ClusterConfig, dests: dict[str, str], name: str) -> None:
    """Record the absolute remote_root behind each node's ``dests`` (``<root>/<name>``)."""
    from grid_ops.fsutil import write_atomic

    roots = read_roots(config.name)
    before = dict(roots)
    by_name = {n.name: n for n in config.nodes}
    suffix = "/" + name
    for node_name, dest in dests.items():
        node = by_name.get(node_name)
        if node is None or not dest.endswith(suffix) or len(dest) <= len(suffix):
            continue
        roots[node_name] = {
            "host": node.host,
            "user": node.user,
            "remote_root": config.remote_root,
            "root": dest[: -len(suffix)],
        }
    if roots != before:
        with contextlib.suppress(OSError):  # only a shortcut for the next sync
            write_atomic(roots_file(config.name), json.dumps(roots, indent=1) + "\n", mode=0o600)
