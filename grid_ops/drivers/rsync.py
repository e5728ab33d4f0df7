"""The sync's rsync command and the reading of its output, for grid-ops' own callers.

The one implementation is the grid_sync role's filter plugin (roles/grid_sync/
filter_plugins/grid_rsync.py): the role's task calls it as Jinja filters, and this module
loads that very file, so the quick path, ``job launch --workdir`` and the playbook build
the same command. Imports nothing heavy.
"""

from __future__ import annotations

import functools
import os

from grid_ops.paths import ansible_root_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def plugin_path() -> str:
    return os.path.join(
        ansible_root_name(), "roles", "grid_sync", "filter_plugins", "grid_rsync.py"
    )


@functools.cache
def _plugin() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("grid_ops._grid_rsync", plugin_path())
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def argv(
    settings: dict[str, Any],
    src: str,
    target: str,
    rsh: str = "",
    delete: bool = False,
    dry_run: bool = False,
    mkpath: bool = False,
) -> list[str]:
    """rsync SRC/ to TARGET/ with the cluster's sync settings (ClusterModel.sync)."""
    result: list[str] = _plugin().argv(settings, src, target, rsh, delete, dry_run, mkpath)
    return result


def source_name(src: str) -> str:
    """The name ``src`` is synced under; '' when it has none of its own."""
    result: str = _plugin().source_name(src)
    return result


def dest(root: str, code_dir: str, src: str) -> str:
    """Where ``src`` lands under a node's root (ValueError: it has no name of its own)."""
    result: str = _plugin().dest(root, code_dir, src)
    return result


def changes(stdout: str) -> list[str]:
    """The itemized lines of rsync's output that change something on the node."""
    result: list[str] = _plugin().changes(stdout)
    return result


def stats(stdout: str) -> dict[str, int]:
    """``{"files_transferred", "bytes_sent"}`` from rsync's ``--stats``."""
    result: dict[str, int] = _plugin().stats(stdout)
    return result
