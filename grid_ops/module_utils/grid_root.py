"""remote_root as a path on the node it names: the one expansion of remote_root in
Python, for the fact modules (grid_node_info, grid_health, as Ansible module_utils), the
health probe, and the operator's own local nodes (grid_ops.model); a remote shell gets
grid_ops.model.root_expr instead. ``os`` only: the quick path may load it.
"""

from __future__ import annotations

import os


def expand_root(root: str) -> str:
    """``root`` with a leading '~' as this user's home."""
    if root == "~" or root.startswith("~/"):
        return os.path.expanduser("~") + root[1:]
    return root
