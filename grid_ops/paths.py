"""Where grid-ops keeps its state and where it finds its playbooks and roles."""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def state_dir() -> Path:
    """The user's grid-ops state dir: ``$GRID_OPS_STATE_DIR``, else XDG state home."""
    explicit = os.environ.get("GRID_OPS_STATE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base).expanduser() / "grid-ops"


def ansible_root() -> Path:
    """The directory holding ``playbooks/``, ``roles/`` and ``ansible.cfg``.

    A source checkout (editable install) uses the repository root, so operators and
    grid-ops run the very same files; a wheel install uses the copy packed into it.
    """
    checkout = _PACKAGE_DIR.parent
    if (checkout / "playbooks").is_dir() and (checkout / "ansible.cfg").is_file():
        return checkout
    return _PACKAGE_DIR / "_ansible"


def playbook_path(name: str) -> Path:
    """Absolute path of ``playbooks/<name>.yml``."""
    return ansible_root() / "playbooks" / f"{name}.yml"


def default_config_path() -> Path:
    """``$GRID_OPS_CONFIG`` if set, else ``./cluster.yaml``."""
    return Path(os.environ.get("GRID_OPS_CONFIG") or "cluster.yaml")
