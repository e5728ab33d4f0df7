"""What grid-ops keeps under remote_root on every node, relative to it (standard library
only: the quick path, the runtime and the inventory's group_vars all read these names).

Synced code has its own directory, so no source directory name can land on the venv,
the state, the jobs or the wheelhouse. ``state`` is private to the node user (0700): the
Ray token, run notes and the controller's state live there.
"""

from __future__ import annotations

VENV = "venv"
CODE = "code"
STATE = "state"
RUN_DIR = "state/run"
RAY_TOKEN = "state/ray_auth_token"
CONTROLLER_STATE = "state/controller"
LIB = "lib"
JOBS = "jobs"
WHEELHOUSE = "wheelhouse"


def as_vars() -> dict[str, str]:
    """The layout for the roles (group_vars ``grid_layout``)."""
    return {
        "venv": VENV,
        "code": CODE,
        "state": STATE,
        "run_dir": RUN_DIR,
        "ray_token": RAY_TOKEN,
        "controller_state": CONTROLLER_STATE,
        "lib": LIB,
        "jobs": JOBS,
        "wheelhouse": WHEELHOUSE,
    }
