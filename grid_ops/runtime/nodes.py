"""The cluster's nodes by grid-ops name, with Ray's totals and free resources."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field
from typing import Any

RESOURCE_KEYS = {"cpu": "CPU", "gpu": "GPU", "memory": "memory"}


class Refused(RuntimeError):
    """A request the controller will not carry out; ``hint`` says what to do instead."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


@dataclass
class NodeView:
    name: str
    ip: str
    node_id: str | None = None
    alive: bool = False
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


def _address(host: str, local_ip: str) -> str:
    """A config host as Ray names it: loopback is this node's address, names resolved."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        try:
            ip = ipaddress.ip_address(socket.gethostbyname(host))
        except OSError:
            return host
    return local_ip if ip.is_loopback else str(ip)


def build(
    names: dict[str, str],
    ray_nodes: list[dict[str, Any]],
    free: dict[str, dict[str, float]],
    local_ip: str = "",
) -> dict[str, NodeView]:
    """Match config names (name -> host) to Ray's node table (pure but for DNS names)."""
    views = {name: NodeView(name, _address(host, local_ip)) for name, host in names.items()}
    by_ip: dict[str, dict[str, Any]] = {}
    for node in ray_nodes:
        ip = node.get("NodeManagerAddress", "")
        if node.get("Alive") or ip not in by_ip:
            by_ip[ip] = node
    for view in views.values():
        found = by_ip.get(view.ip)
        if found is None:
            continue
        node = found
        view.node_id = node["NodeID"]
        view.alive = bool(node.get("Alive"))
        view.total = {k: float(v) for k, v in (node.get("Resources") or {}).items()}
        view.free = dict(free.get(view.node_id, {})) if view.alive else {}
    return views


def current(names: dict[str, str]) -> dict[str, NodeView]:
    """The live view (inside the controller, a Ray worker)."""
    import ray
    from ray._private.state import state  # Ray is pinned; this is its own resource view

    local = ray.util.get_node_ip_address()
    return build(names, ray.nodes(), state.available_resources_per_node(), local)


def require(views: dict[str, NodeView], name: str) -> NodeView:
    view = views.get(name)
    if view is None:
        raise Refused(
            f"Unknown node '{name}'.", f"Nodes of this cluster: {', '.join(sorted(views))}."
        )
    if not view.alive:
        raise Refused(
            f"Node '{name}' is not part of the running Ray cluster (dead or not started).",
            "Check it with 'grid-ops cluster status'; 'grid-ops cluster start' repairs it.",
        )
    return view
