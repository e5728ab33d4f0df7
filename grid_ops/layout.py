"""Names every side of grid-ops agrees on, in one place (standard library only: the quick
path, the runtime on the nodes and the inventory's group_vars all read these).

The node layout: what grid-ops keeps under remote_root on every node, relative to it.
Synced code has its own directory, so no source directory name can land on the venv,
the state, the jobs or the wheelhouse. ``state`` is private to the node user (0700): the
Ray token, the head's address, run notes and the controller's state live there.

Ray names: each node joins Ray carrying the custom resource ``grid_node:<name>`` (amount
1), so a config node is found in Ray's node table by its own name, whatever address Ray
registered it under and whether or not the head can resolve its host name; the same
resource pins a placement group to the node. The controller is one detached actor.
"""

from __future__ import annotations

from collections.abc import Mapping

VENV = "venv"  # a link to the venv build in use (VENVS/<id>)
VENVS = "venvs"  # venv builds, one per set of requirements (ClusterModel.venv_id)
VENV_PREVIOUS = "state/venv_previous"  # the build used before the current one
BUILD_MARKER = ".grid-ops-installed"  # in a build: its requirements, once installed
CODE = "code"
STATE = "state"
RUN_DIR = "state/run"
RAY_TOKEN = "state/ray_auth_token"
# The head's GCS address (host:port) as this node joined it, written by 'cluster start'.
RAY_ADDRESS = "state/ray_address"
CONTROLLER_STATE = "state/controller"
# What grid-ops last applied to this node (grid_ops.model.stamp), and the drain note: a
# drained node's reason; while it exists Ray is not started there.
STAMP = "state/applied.json"
DRAIN_NOTE = "state/drained"
# The id of the cluster that provisioned the node (grid_ops.identity): apply and reset
# refuse a node of another cluster.
CLUSTER_ID = "state/cluster_id"
LIB = "lib"
# Queued jobs' own files, on every node that runs a rank: JOBS/<job id>/ holds the
# shipped workdir (on the head), the checkpoints (the same path on every attempt) and
# each attempt's per-rank logs (job_file).
JOBS = "jobs"
JOB_WORK = "work"
JOB_CHECKPOINTS = "checkpoints"
JOB_LOGS = "logs"
JOB_REPLICAS = "replicas"  # copies of other nodes' checkpoints (runtime.checkpoints)
WHEELHOUSE = "wheelhouse"
REQUIREMENTS = "requirements.txt"  # in a build
RAY_TEMP = "ray"  # Ray's temp dir (sessions, logs) when remote_root is short enough
# Everything grid-ops may put directly under remote_root. Each is noted in the node's
# manifest (MANIFEST) when grid-ops makes it, and 'reset' removes only what the manifest
# names (grid_ops/module_utils/grid_manifest.py), then remote_root itself if grid-ops made
# it and nothing else is left in it.
TOP_LEVEL = (VENV, VENVS, CODE, STATE, LIB, JOBS, WHEELHOUSE, RAY_TEMP)
# The node's manifest: what grid-ops made there (top-level names, "." for remote_root, the
# short dir's path), written at the moment it makes each. It lives in STATE, which
# grid-ops makes first (and notes) wherever it makes anything.
MANIFEST = "state/created.json"
# What grid-ops keeps in STATE (a node without a manifest: a state dir holding only these
# is grid-ops' own).
STATE_FILES = (
    VENV_PREVIOUS, RUN_DIR, RAY_TOKEN, RAY_ADDRESS, CONTROLLER_STATE, STAMP, DRAIN_NOTE,
    CLUSTER_ID, MANIFEST,
)  # fmt: skip
# In a wheelhouse pushed to a node: what it was downloaded for (roles/grid_venv/library/
# grid_wheelhouse.py's MARKER; a test keeps the two equal).
WHEELHOUSE_MARKER = ".grid-ops-wheelhouse.json"
# The node user's private short dir in the shared temp dir (grid_ops.runtime.private):
# Ray's temp dir and the controller's socket when remote_root is too long for them.
SHARED_TMP = "/tmp"
SHORT_DIR = "grid-ops-{uid}"

# The node side of the grid_ops package: all that is pushed to the nodes as their
# runtime (roles/grid_venv), and all that the runtime's digest in their stamp covers
# (grid_ops.runtime.digest). The operator's side (the CLI, the server, the actions,
# Ansible's driving, the config model) is not: editing it changes no node. What the
# node side imports stays inside it (tests/test_architecture.py checks).
NODE_PACKAGE = (
    "__init__.py", "layout.py", "errors.py", "fsutil.py", "jobs.py", "runtime", "module_utils",
)  # fmt: skip
# Never pushed, never digested, and kept where a node made them.
RUNTIME_EXCLUDE = ("__pycache__", "*.pyc")

# A drain note whose reason starts so is the health gate's quarantine (lifted once the
# node is well again); an operator's drain may not read so (grid_ops.runtime.drain).
QUARANTINE = "quarantine: "

# Bucket bounds (seconds) of the task-duration histogram: the runtime counts into them,
# the metrics exporter names them.
TASK_BUCKETS = (0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)

# Exit codes that cross the ssh connection: the controller client on the head, and a
# remote command whose remote_root (or code dir) is missing; ssh itself exits 255.
EXIT_REFUSED = 1
EXIT_CONTROLLER_DOWN = 3
EXIT_MISSING_ROOT = 127
EXIT_SSH_FAILED = 255

NODE_RESOURCE_PREFIX = "grid_node:"
CONTROLLER_NAMESPACE = "grid_ops_control"
CONTROLLER_ACTOR = "controller"


def node_resource(name: str) -> str:
    """The custom Ray resource that names the config node ``name``."""
    return NODE_RESOURCE_PREFIX + name


NODE_PIN = 0.001  # of a node's grid_node resource: pins work there, leaves room for more


def pin(name: str) -> dict[str, float]:
    """The Ray resources that place a task or bundle on the config node ``name``."""
    return {node_resource(name): NODE_PIN}


def node_name(resources: Mapping[str, object]) -> str | None:
    """The config node a Ray node's resources name (None: not started by grid-ops)."""
    for key in resources:
        if key.startswith(NODE_RESOURCE_PREFIX):
            return key[len(NODE_RESOURCE_PREFIX) :]
    return None


def runtime_filters() -> list[str]:
    """rsync's filter arguments for the runtime push: NODE_PACKAGE and nothing else,
    without RUNTIME_EXCLUDE; what a node holds beyond them (an older grid-ops' push of
    the whole package) is deleted, what it made itself (__pycache__) kept. Used with
    --delete-excluded."""
    protect = [f"--filter=P {p}" for p in RUNTIME_EXCLUDE]
    skip = [f"--exclude={p}" for p in RUNTIME_EXCLUDE]
    take = [f"--include=/{n}" + ("" if n.endswith(".py") else "/") for n in NODE_PACKAGE]
    return [*protect, *skip, *take, "--exclude=/*"]


def job_file(root: str, job_id: str, *parts: str) -> str:
    """``<root>/jobs/<job id>/<parts…>`` (the caller checked ``job_id``: one path part)."""
    return "/".join([root.rstrip("/"), JOBS, job_id, *parts])


def rank_log(attempt: int, rank: int) -> str:
    """A rank's log, relative to its job's directory."""
    return f"{JOB_LOGS}/attempt-{attempt}/rank-{rank}.log"


def as_vars() -> dict[str, object]:
    """The layout and names for the roles (group_vars ``grid_layout``)."""
    return {
        "venv": VENV,
        "venvs": VENVS,
        "venv_previous": VENV_PREVIOUS,
        "build_marker": BUILD_MARKER,
        "code": CODE,
        "state": STATE,
        "run_dir": RUN_DIR,
        "ray_token": RAY_TOKEN,
        "ray_address": RAY_ADDRESS,
        "controller_state": CONTROLLER_STATE,
        "stamp": STAMP,
        "drain_note": DRAIN_NOTE,
        "cluster_id": CLUSTER_ID,
        "runtime_filters": runtime_filters(),
        "lib": LIB,
        "jobs": JOBS,
        "wheelhouse": WHEELHOUSE,
        "requirements": REQUIREMENTS,
        "ray_temp": RAY_TEMP,
        "top_level": list(TOP_LEVEL),
        "manifest": MANIFEST,
        "state_files": list(STATE_FILES),
        "wheelhouse_marker": WHEELHOUSE_MARKER,
        "short_dir": f"{SHARED_TMP}/{SHORT_DIR}",
        "node_resource_prefix": NODE_RESOURCE_PREFIX,
    }
