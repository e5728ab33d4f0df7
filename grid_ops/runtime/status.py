"""Print the cluster's nodes as the head's GCS sees them, as JSON (runs on the head).

``python -m grid_ops.runtime.status --address IP:PORT`` prints
``{"address": …, "nodes": [{"node_id", "ip", "alive", "resources", "name"}]}`` (name:
the config node, from its ``grid_node:<name>`` resource). It asks the GCS
directly (a fraction of a second) rather than starting a full Ray driver.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from grid_ops import layout


def _from_gcs(address: str, timeout: float) -> list[dict[str, Any]]:
    from ray._raylet import GcsClient

    client = GcsClient(address=address)
    nodes = []
    for node_id, info in client.get_all_node_info(timeout=timeout).items():
        nodes.append(
            {
                "node_id": node_id.hex(),
                "ip": info.node_manager_address,
                "alive": info.state == 0,  # GcsNodeInfo.ALIVE
                "resources": dict(info.resources_total),
                "name": layout.node_name(info.resources_total),
            }
        )
    return nodes


def _from_driver(address: str) -> list[dict[str, Any]]:
    import ray

    ray.init(address=address, logging_level="ERROR", log_to_driver=False)
    try:
        return [
            {
                "node_id": n["NodeID"],
                "ip": n["NodeManagerAddress"],
                "alive": bool(n["Alive"]),
                "resources": n.get("Resources", {}),
                "name": layout.node_name(n.get("Resources", {})),
            }
            for n in ray.nodes()
        ]
    finally:
        ray.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--address", required=True, help="GCS address, IP:PORT")
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args(argv)
    try:
        nodes = _from_gcs(args.address, args.timeout)
    except ImportError:
        nodes = _from_driver(args.address)
    except Exception as exc:  # the GCS is down or unreachable: say so, as JSON
        print(json.dumps({"address": args.address, "error": str(exc), "nodes": []}))
        return 1
    nodes.sort(key=lambda n: (not n["alive"], n["ip"]))
    print(json.dumps({"address": args.address, "nodes": nodes}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
