"""Boosts and shared allocations: resources held on one node as a Ray placement group.

A boost reserves CPU, GPU or memory on a named node for the head's work; a shared
allocation lets the controller pick the node (the one with most of it free, within
``resource_sharing.max_share_fraction`` of the node). Both are one placement group with a
single bundle pinned to the node through Ray's own ``node:<ip>`` resource, so Ray does the
accounting, and work runs inside them with PlacementGroupSchedulingStrategy.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from typing import Any

from grid_ops import layout
from grid_ops.runtime.nodes import RESOURCE_KEYS, NodeView, Refused, describe, require

PRIORITIES = ("low", "normal", "high", "critical")
PLACE_TIMEOUT = 15.0


def validate(resource: str, amount: float, priority: str) -> str:
    key = RESOURCE_KEYS.get(resource)
    if key is None:
        raise Refused(f"Unknown resource '{resource}'.", "Use one of: cpu, gpu, memory.")
    if not amount > 0:
        raise Refused(f"The amount must be above zero, not {amount:g}.")
    if priority not in PRIORITIES:
        raise Refused(f"Unknown priority '{priority}'.", f"Use one of: {', '.join(PRIORITIES)}.")
    return key


def check_free(view: NodeView, resource: str, amount: float) -> None:
    key = RESOURCE_KEYS[resource]
    free = view.free.get(key, 0.0)
    if amount > free + 1e-9:
        total = view.total.get(key, 0.0)
        raise Refused(
            f"Node '{view.name}' has {describe(resource, free)} free "
            f"(of {describe(resource, total)}); {describe(resource, amount)} was asked for.",
            "Ask for at most what is free, or release a boost or allocation there first.",
        )


def pick_shared_node(
    views: dict[str, NodeView],
    resource: str,
    amount: float,
    fraction: float,
    held: dict[str, float],
) -> NodeView:
    """The alive node with most of ``resource`` free that may share ``amount`` (pure).

    ``held``: what shared allocations already hold per node; a node shares at most
    ``fraction`` of its total.
    """
    key = RESOURCE_KEYS[resource]
    fits = []
    for view in views.values():
        if not view.alive:
            continue
        free = view.free.get(key, 0.0)
        room = fraction * view.total.get(key, 0.0) - held.get(view.name, 0.0)
        if amount <= min(free, room) + 1e-9:
            fits.append(view)
    if not fits:
        offer = ", ".join(
            f"{v.name}: {describe(resource, v.free.get(key, 0.0))} free"
            for v in sorted(views.values(), key=lambda v: v.name)
            if v.alive
        )
        raise Refused(
            f"No node can share {describe(resource, amount)} (each shares at most "
            f"{fraction:.0%} of its total).",
            f"Free now: {offer or 'no node alive'}.",
        )
    return max(sorted(fits, key=lambda v: v.name), key=lambda v: v.free.get(key, 0.0))


def new_id(kind: str) -> str:
    return f"{kind}-{secrets.token_hex(4)}"


def place(record: dict[str, Any], timeout: float = PLACE_TIMEOUT) -> str:
    """Create the record's placement group on its node (pinned by the node's
    ``grid_node:<name>`` resource); its id (hex)."""
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    key = RESOURCE_KEYS[record["resource"]]
    bundle = {key: float(record["amount"]), **layout.pin(record["node"])}
    pg = placement_group(
        [bundle], strategy="STRICT_PACK", name=f"grid-{record['id']}", lifetime="detached"
    )
    ready, _ = ray.wait([pg.ready()], timeout=timeout)
    if not ready:
        remove_placement_group(pg)
        raise Refused(
            f"Ray could not place {describe(record['resource'], record['amount'])} on "
            f"'{record['node']}' within {timeout:g} s.",
            "The node's free resources changed meanwhile; check 'boost status' and retry.",
        )
    return str(pg.id.hex())


def group(pg_hex: str) -> Any:
    from ray._raylet import PlacementGroupID
    from ray.util.placement_group import PlacementGroup

    return PlacementGroup(PlacementGroupID(bytes.fromhex(pg_hex)))


def remove(pg_hex: str | None) -> None:
    if not pg_hex:
        return
    from ray.util.placement_group import remove_placement_group

    with contextlib.suppress(Exception):  # already gone with its node or the cluster
        remove_placement_group(group(pg_hex))


def pg_state(pg_hex: str | None) -> str:
    if not pg_hex:
        return "MISSING"
    from ray.util.placement_group import placement_group_table

    try:
        return str(placement_group_table(group(pg_hex)).get("state") or "MISSING")
    except Exception:
        return "MISSING"


def public(
    record: dict[str, Any],
    views: dict[str, NodeView] | None = None,
    placed: str | None = None,
) -> dict[str, Any]:
    """What ``status`` shows of a reservation. ``placed``: its group's state in Ray.

    States: active; pending (waiting for Ray to place it, e.g. after a restart);
    node-lost (its node left the Ray cluster; Ray places it again when the node returns).
    """
    keys = ("id", "kind", "node", "resource", "amount", "priority", "expires_at", "created_at")
    out = {k: record.get(k) for k in keys}
    out["owner"] = record.get("owner") or ""
    state = record.get("state", "active")
    if state == "active" and views is not None:
        view = views.get(record["node"])
        if view is None or not view.alive:
            state = "node-lost"
        elif placed in ("PENDING", "RESCHEDULING", "MISSING", "REMOVED"):
            state = "pending"
    out["state"] = state
    return out


def expired(record: dict[str, Any], now: float | None = None) -> bool:
    expires = record.get("expires_at")
    return expires is not None and float(expires) <= (now or time.time())


__all__ = ["Refused", "check_free", "pick_shared_node", "place", "require", "validate"]
