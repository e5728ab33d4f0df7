"""The cluster's nodes by grid-ops name, with Ray's totals and free resources."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from grid_ops import layout

RESOURCE_KEYS = {"cpu": "CPU", "gpu": "GPU", "memory": "memory"}


class Refused(RuntimeError):
    """A request the controller will not carry out; ``hint`` says what to do instead."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


class Missing(Refused):
    """A request naming a reservation or pool object that does not exist (the caller
    answers 'not found')."""


class Denied(Refused):
    """A request of someone who may not make it (not the owner, not an admin, no known
    token): the caller answers 'forbidden'."""


class Conflicting(Refused):
    """A request that clashes with what exists (a live job of that name): the caller
    answers 'conflict'."""


@dataclass
class NodeView:
    name: str
    ip: str
    node_id: str | None = None
    alive: bool = False  # in Ray and open to new work (a draining node is not)
    draining: bool = False  # drained in Ray ('grid-ops node drain', or being removed)
    total: dict[str, float] = field(default_factory=dict)
    free: dict[str, float] = field(default_factory=dict)


def fits(free: dict[str, float], need: dict[str, float]) -> bool:
    """Does ``need`` fit in ``free`` (Ray resource dicts)?"""
    return all(free.get(k, 0.0) + 1e-9 >= v for k, v in need.items())


def describe(resource: str, amount: float) -> str:
    """``2 CPU``, ``1.5 GiB memory``."""
    if resource == "memory":
        return f"{amount / 2**30:.2f} GiB memory"
    return f"{amount:g} {resource.upper()}"


def build(
    names: list[str],
    ray_nodes: list[dict[str, Any]],
    free: dict[str, dict[str, float]],
    draining: set[str] | frozenset[str] = frozenset(),
) -> dict[str, NodeView]:
    """Match config node names to Ray's node table by the ``grid_node:<name>`` resource
    each node joined with (pure). A restarted node's live entry wins over its dead ones.
    A node Ray is draining (its id in ``draining``) counts as not alive: nothing new is
    placed there."""
    views = {name: NodeView(name, "") for name in names}
    found: dict[str, dict[str, Any]] = {}
    for node in ray_nodes:
        name = layout.node_name(node.get("Resources") or {})
        if name in views and (node.get("Alive") or name not in found):
            found[name] = node
    for name, node in found.items():
        view = views[name]
        view.ip = str(node.get("NodeManagerAddress") or "")
        view.node_id = node["NodeID"]
        view.draining = view.node_id in draining
        view.alive = bool(node.get("Alive")) and not view.draining
        view.total = {k: float(v) for k, v in (node.get("Resources") or {}).items()}
        view.free = dict(free.get(view.node_id, {})) if view.alive else {}
    return views


def draining_ids() -> set[str]:
    """The ids of the nodes Ray is draining (in a connected Ray worker or driver)."""
    from ray._private.state import state  # Ray is pinned; this is its own node table

    return {k if isinstance(k, str) else k.hex() for k in state.get_draining_nodes()}


def current(names: list[str]) -> dict[str, NodeView]:
    """The live view (inside the controller, a Ray worker)."""
    import ray
    from ray._private.state import state  # Ray is pinned; this is its own resource view

    return build(names, ray.nodes(), state.available_resources_per_node(), draining_ids())


def require(views: dict[str, NodeView], name: str) -> NodeView:
    view = views.get(name)
    if view is None:
        raise Refused(
            f"Unknown node '{name}'.", f"Nodes of this cluster: {', '.join(sorted(views))}."
        )
    if view.draining:
        raise Refused(
            f"Node '{name}' is drained: nothing new is placed there.",
            f"Pick another node, or return it with 'grid-ops node undrain {name}'.",
        )
    if not view.alive:
        raise Refused(
            f"Node '{name}' is not part of the running Ray cluster (dead or not started).",
            "Check it with 'grid-ops cluster status'; 'grid-ops cluster start' repairs it.",
        )
    return view
