"""Fold the ray_status playbook's facts into one cluster view (pure logic)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from grid_ops import layout

if TYPE_CHECKING:
    from grid_ops.drivers.results import PlaybookResult
    from grid_ops.model import ClusterModel


def summarize(cluster: ClusterModel, result: PlaybookResult) -> dict[str, Any]:
    """``{"head", "address", "nodes": [{"name", "ray", "reachable", "node_id", "ip",
    "resources", "drained"}]}`` (drained: the reason in the node's drain note). ray is
    ``alive`` when the node's raylet runs and the head's GCS has it alive; ``dead`` when
    the GCS knows it but its raylet is gone (or the raylet runs unregistered, e.g. with
    the head down); ``absent`` when neither knows of Ray there. For an unreachable node
    only the GCS view counts."""
    head = cluster.head
    head_facts = result.hosts.get(head)
    gcs = (head_facts.facts.get("grid_ray_cluster") if head_facts else None) or {}
    gcs_nodes: list[dict[str, Any]] = gcs.get("nodes") or []
    head_running = bool(head_facts and head_facts.facts.get("grid_ray_node", {}).get("head"))
    address = None
    if head_facts and head_running:
        address = head_facts.facts.get("grid_ray_head_address")
    rows = []
    for node in cluster.nodes:
        host = result.hosts.get(node.name)
        reachable = bool(host) and not (host.unreachable if host else True)
        facts = host.facts if host else {}
        local = facts.get("grid_ray_node", {})
        # Each node joined Ray naming itself (its grid_node:<name> resource); its raylet's
        # own id, when it runs, tells its live entry from those of earlier starts.
        node_id = local.get("node_id")
        entries = [g for g in gcs_nodes if g.get("name") == node.name]
        alive = [g for g in entries if g.get("alive")]
        if node_id:
            alive = [g for g in alive if g.get("node_id") == node_id]
        if reachable and not local.get("running"):
            alive = []  # the GCS may not have noticed yet; the node itself knows
        if alive:
            state, entry = "alive", alive[0]
        elif entries or local.get("running"):
            state, entry = "dead", (entries[0] if entries else {})
        else:
            state, entry = "absent", {}
        rows.append(
            {
                "name": node.name,
                "role": "head" if node.name == head else "worker",
                "ray": state,
                "reachable": reachable,
                "node_id": entry.get("node_id") or local.get("node_id") or None,
                "ip": entry.get("ip") or (facts.get("grid_node") or {}).get("ssh_ip") or None,
                "resources": {
                    k: v
                    for k, v in entry.get("resources", {}).items()
                    if not k.startswith(layout.NODE_RESOURCE_PREFIX)
                },
                "drained": (facts.get("grid_node") or {}).get("drained") or None,
                "error": (host.msg if host and (host.unreachable or host.failed) else None),
            }
        )
    return {"head": head, "address": address, "nodes": rows}
