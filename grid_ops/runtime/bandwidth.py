"""Transfer bandwidth between the cluster's nodes, measured through Ray (runs on the head).

``python -m grid_ops.runtime.bandwidth --nodes A,B,C [--mib 64] [--rounds 3]`` places one
rank per node with a STRICT_SPREAD placement group (each bundle pinned by the node's
``grid_node:<name>`` resource), gives each rank a payload (bytes) in its node's object store,
then runs a ring exchange: in each round every rank pulls its neighbour's payload at the
same time (the all-gather step of a ring all-reduce, over Ray's object manager). Each
node's figure is the median MiB/s of its pulls. Prints one JSON line:
``{"mib": …, "rounds": …, "nodes": {name: {"mib_s": …, "seconds": [...]}}}``.

This measures what Ray's own transfers get between the nodes (TCP through the object
manager). It is not NCCL or gloo: those need torch or cupy on the nodes, which the
offline wheelhouse does not carry.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any

from grid_ops import layout


def measure(names: list[str], mib: int, rounds: int, timeout: float) -> dict[str, Any]:
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    class Rank:
        def __init__(self, name: str, size: int) -> None:
            self.name = name
            self.size = size
            self.payload: Any = None

        def fresh(self) -> list[Any]:
            """A new payload in this node's store (a pulled copy would be local on the
            second pull); in a list, so the caller gets the ref, not the bytes."""
            self.payload = ray.put(b"\x01" * self.size)
            return [self.payload]

        def pull(self, refs: list[Any]) -> float:
            started = time.perf_counter()
            data = ray.get(refs[0])
            seconds = time.perf_counter() - started
            assert len(data) == self.size
            del data
            return seconds

    remote_rank = ray.remote(num_cpus=0)(Rank)
    ray.init(address=os.environ.get("RAY_ADDRESS") or "auto", logging_level="ERROR",
             log_to_driver=False)  # fmt: skip
    group = None
    try:
        bundles = [layout.pin(n) for n in names]
        group = placement_group(bundles, strategy="STRICT_SPREAD")
        ray.get(group.ready(), timeout=timeout)
        ranks = [
            remote_rank.options(
                scheduling_strategy=PlacementGroupSchedulingStrategy(
                    placement_group=group, placement_group_bundle_index=i
                ),
                resources=layout.pin(n),
            ).remote(n, mib * 2**20)
            for i, n in enumerate(names)
        ]
        seconds: dict[str, list[float]] = {n: [] for n in names}
        for _ in range(rounds):
            refs = ray.get([r.fresh.remote() for r in ranks], timeout=timeout)
            pulls = [ranks[i].pull.remote(refs[(i + 1) % len(ranks)]) for i in range(len(ranks))]
            for name, took in zip(names, ray.get(pulls, timeout=timeout), strict=True):
                seconds[name].append(round(float(took), 4))
        nodes = {
            n: {"mib_s": round(mib / statistics.median(s), 1), "seconds": s}
            for n, s in seconds.items()
        }
        return {"mib": mib, "rounds": rounds, "nodes": nodes}
    finally:
        if group is not None:
            remove_placement_group(group)
        ray.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", required=True, help="config node names, comma-separated")
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args(argv)
    names = [n for n in args.nodes.split(",") if n]
    try:
        out = measure(names, args.mib, args.rounds, args.timeout)
    except Exception as exc:  # Ray down, a node missing: say so, as JSON
        text = str(exc).strip().splitlines()
        print(json.dumps({"error": (text[0] if text else type(exc).__name__)[:300]}))
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
