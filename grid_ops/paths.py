"""Where grid-ops keeps its state and where it finds its playbooks and roles.

Light on purpose (os only; pathlib on first use): the quick path of ``grid-ops health``
and ``grid-ops sync`` (grid_ops.cli.quick) reads the state dir before anything heavy loads.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path

_PACKAGE_DIR = os.path.dirname(os.path.realpath(__file__))


def package_dir_name() -> str:
    """The directory of the grid_ops package."""
    return _PACKAGE_DIR


def state_dir_name() -> str:
    """The user's grid-ops state dir: ``$GRID_OPS_STATE_DIR``, else XDG state home."""
    explicit = os.environ.get("GRID_OPS_STATE_DIR")
    if explicit:
        return os.path.expanduser(explicit)
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return os.path.join(os.path.expanduser(base), "grid-ops")


def state_dir() -> Path:
    """``state_dir_name()`` as a Path."""
    from pathlib import Path

    return Path(state_dir_name())


def serve_token_file(key: str) -> Path:
    """Where 'grid-ops serve' keeps the cluster's bearer token (grid_ops.server.token)."""
    return state_dir() / "serve" / f"{key}.token"


def user_token_file(cluster_id: str) -> Path:
    """Where this machine keeps its user's token for a cluster ('grid-ops user login')."""
    return state_dir() / "tokens" / f"{cluster_id}.token"


def ansible_root_name() -> str:
    """The directory holding ``playbooks/``, ``roles/`` and ``ansible.cfg``.

    A source checkout (editable install) uses the repository root, so operators and
    grid-ops run the very same files; a wheel install uses the copy packed into it.
    """
    checkout = os.path.dirname(_PACKAGE_DIR)
    if os.path.isdir(os.path.join(checkout, "playbooks")) and os.path.isfile(
        os.path.join(checkout, "ansible.cfg")
    ):
        return checkout
    return os.path.join(_PACKAGE_DIR, "_ansible")


def ansible_root() -> Path:
    """``ansible_root_name()`` as a Path."""
    from pathlib import Path

    return Path(ansible_root_name())


def playbook_path(name: str) -> Path:
    """Absolute path of ``playbooks/<name>.yml``."""
    return ansible_root() / "playbooks" / f"{name}.yml"


def default_config_name() -> str:
    """``$GRID_OPS_CONFIG`` if set, else ``cluster.yaml`` (in the current directory)."""
    return os.environ.get("GRID_OPS_CONFIG") or "cluster.yaml"


def default_config_path() -> Path:
    """``default_config_name()`` as a Path."""
    from pathlib import Path

    return Path(default_config_name())
