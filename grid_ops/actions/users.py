"""The cluster's users: their tokens, who this machine is, and what each used.

The users are the config's ``users:``; their tokens are made on the head, which keeps
only their digests (grid_ops.runtime.users). This machine keeps its own user's token in
the state dir (``paths.user_token_file``, 0600), and every controller call carries it
(grid_ops.drivers.control). Usage is read from the queue's records on the head.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from grid_ops.errors import UsageError

if TYPE_CHECKING:
    from grid_ops.model import ClusterModel

BY = ("user", "node")


def make_token(cluster: ClusterModel, name: str, save: bool = False) -> dict[str, Any]:
    """A new token for user ``name`` (their old one stops working): ``{name, role,
    token, saved}``. ``save``: this machine acts as ``name`` from now on."""
    from grid_ops.drivers import control

    if name not in {u.name for u in cluster.config.users}:
        known = ", ".join(u.name for u in cluster.config.users) or "none"
        raise UsageError(
            f"No user '{name}' in the config.",
            f"Users: {known}. Add them under users: and run 'grid-ops apply'.",
        )
    result, _ = control.call(cluster, "user-token", {"name": name})
    answer = {**dict(result), "saved": None}
    if save:
        answer["saved"] = str(keep(cluster, str(result["token"])))
    return answer


def keep(cluster: ClusterModel, token: str) -> Any:
    """Keep ``token`` as this machine's for ``cluster``; its path."""
    from grid_ops import paths, secretfile

    path = paths.user_token_file(cluster.id)
    secretfile.write(path, token, "your token")
    return path


def login(cluster: ClusterModel, token: str) -> dict[str, Any]:
    """Check ``token`` with the head, then keep it: ``{name, role, saved}``. A token the
    head does not know is refused and nothing is written."""

    token = token.strip()
    if not token or any(c.isspace() for c in token):
        raise UsageError("That is not a token (empty, or with spaces).",
                         "Paste the one line 'grid-ops user token NAME' printed.")  # fmt: skip
    who = check(cluster, token)
    return {**who, "saved": str(keep(cluster, token))}


def check(cluster: ClusterModel, token: str) -> dict[str, Any]:
    """Whose ``token`` is, as the head says: ``{name, role}`` (Forbidden when the head
    does not know it)."""
    from grid_ops.drivers import control

    who, _ = control.call(cluster, "whoami", {}, auth={"token": token})
    return dict(who)


def logout(cluster: ClusterModel) -> bool:
    """Forget this machine's token for ``cluster`` (whether there was one)."""
    from grid_ops import paths

    path = paths.user_token_file(cluster.id)
    existed = path.exists()
    path.unlink(missing_ok=True)
    return existed


def whoami(cluster: ClusterModel) -> dict[str, Any]:
    from grid_ops.drivers import control

    who, _ = control.call(cluster, "whoami", {})
    return dict(who)


def listing(cluster: ClusterModel) -> list[dict[str, Any]]:
    """Each configured user: role, whether a token exists, running GPUs, GPU-hours of
    the last 7 days, quota."""
    from grid_ops.drivers import control

    rows, _ = control.call(cluster, "users", {})
    return [dict(r) for r in rows]


def usage(cluster: ClusterModel, since: float, by: str = "user") -> dict[str, Any]:
    """What the queue's attempts used since ``since`` (epoch seconds), by user or node,
    and who is on the nodes' GPUs now: ``{since, until, by, rows: {key: {gpu_hours,
    cpu_hours, attempts, energy_kwh, energy_measured}}, gpu_processes}``."""
    from grid_ops.drivers import control

    if by not in BY:
        raise UsageError(f"--by {by!r} is not known.", "Use --by user or --by node.")
    result, _ = control.call(cluster, "usage", {"since": since, "by": by})
    return {**dict(result), "gpu_processes": gpu_processes(cluster)}


def gpu_processes(cluster: ClusterModel) -> list[dict[str, Any]] | None:
    """The processes using a GPU on each node as the last health round saw them, each
    with the Unix user running it and whether that is the node's own grid-ops user (the
    queue, 'run') or someone working outside grid-ops. None: no round yet (this reads
    the round's cache and probes nothing)."""
    from grid_ops import health

    found = health.load_cache(cluster, any_age=True)
    if found is None:
        return None
    rows = []
    for node in found:
        own = cluster.node(node.name).user
        for app in node.gpu_processes:
            user = app.get("user")
            rows.append(
                {
                    "node": node.name,
                    "pid": app.get("pid"),
                    "user": user,
                    "process": app.get("process_name"),
                    "gpu_memory_mib": app.get("used_memory_mib"),
                    "outside_grid_ops": bool(user and own and user != own),
                }
            )
    return rows
