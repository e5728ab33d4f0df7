"""Where tasks run: scheduling strategies and a batch executor, on Ray's own primitives.

For code running on the cluster (a driver on a node, or inside a job)::

    from grid_ops.runtime.scheduler import submit, BatchExecutor
    ref = submit(train_step, batch, strategy="load-balanced", resources={"CPU": 1})
    results = BatchExecutor(batch_size=10).map(process, items)   # in order

Strategies: ``local-first`` (this node when it has room), ``best-fit`` (the node whose free
resources fit the request most tightly), ``load-balanced`` (the node with the largest free
share of CPU), ``spread`` (Ray's SPREAD) and ``gpu-affinity`` (the node with the most free
GPUs; an error if no node has one). Node choices become NodeAffinitySchedulingStrategy
(soft, so Ray may still move a task when the chosen node fills up); nothing here is a
scheduler of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

STRATEGIES = ("local-first", "best-fit", "load-balanced", "spread", "gpu-affinity")


class SchedulingError(RuntimeError):
    """No node can take the request under the asked strategy."""


def _free_by_node() -> dict[str, dict[str, float]]:
    """Free resources per alive node id (Ray's own accounting)."""
    from ray._private.state import state  # Ray is pinned; this is its own resource view

    return {node_id: dict(free) for node_id, free in state.available_resources_per_node().items()}


def _fits(free: dict[str, float], need: dict[str, float]) -> bool:
    return all(free.get(k, 0.0) + 1e-9 >= v for k, v in need.items())


def choose_node(
    strategy: str,
    need: dict[str, float],
    free: dict[str, dict[str, float]],
    local: str,
    totals: dict[str, dict[str, float]] | None = None,
) -> str | None:
    """The node id a strategy picks (pure; None for ``spread``)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; one of: {', '.join(STRATEGIES)}")
    if strategy == "spread":
        return None
    fitting = {n: f for n, f in free.items() if _fits(f, need)}
    if strategy == "gpu-affinity":
        gpus = {n: f.get("GPU", 0.0) for n, f in fitting.items() if f.get("GPU", 0.0) > 0}
        if not gpus:
            raise SchedulingError("gpu-affinity: no node has a free GPU")
        return max(sorted(gpus), key=lambda n: gpus[n])
    if not fitting:
        raise SchedulingError(f"no node has {need} free")
    if strategy == "local-first":
        return local if local in fitting else sorted(fitting)[0]
    if strategy == "best-fit":

        def slack(node: str) -> float:
            return sum(fitting[node].get(k, 0.0) - v for k, v in need.items())

        return min(sorted(fitting), key=slack)
    totals = totals or {}

    def free_share(node: str) -> float:
        total = totals.get(node, {}).get("CPU") or 1.0
        return fitting[node].get("CPU", 0.0) / total

    return max(sorted(fitting), key=free_share)  # load-balanced


def _totals() -> dict[str, dict[str, float]]:
    import ray

    return {n["NodeID"]: dict(n["Resources"]) for n in ray.nodes() if n["Alive"]}


def scheduling_strategy(strategy: str, need: dict[str, float]) -> Any:
    """The Ray scheduling_strategy for ``strategy`` and a resource request."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    local = ray.get_runtime_context().get_node_id()
    node = choose_node(strategy, need, _free_by_node(), local, _totals())
    if node is None:
        return "SPREAD"
    return NodeAffinitySchedulingStrategy(node_id=node, soft=True)


def _need(resources: dict[str, float] | None) -> dict[str, float]:
    need = dict(resources or {})
    need.setdefault("CPU", 1.0)
    return need


def submit(
    fn: Callable[..., Any],
    *args: Any,
    strategy: str = "load-balanced",
    resources: dict[str, float] | None = None,
    **kwargs: Any,
) -> Any:
    """Run ``fn(*args, **kwargs)`` as a Ray task placed by ``strategy``; its ObjectRef."""
    import ray

    need = _need(resources)
    options: dict[str, Any] = {
        "num_cpus": need.get("CPU", 0.0),
        "num_gpus": need.get("GPU", 0.0),
        "scheduling_strategy": scheduling_strategy(strategy, need),
    }
    custom = {k: v for k, v in need.items() if k not in ("CPU", "GPU", "memory")}
    if custom:
        options["resources"] = custom
    if "memory" in need:
        options["memory"] = need["memory"]
    remote = fn if hasattr(fn, "options") else ray.remote(fn)
    return remote.options(**options).remote(*args, **kwargs)


def _run_batch(fn: Callable[..., Any], items: list[Any]) -> list[Any]:
    return [fn(item) for item in items]


class BatchExecutor:
    """Many small calls grouped into batches, one Ray task per batch, results in order."""

    def __init__(
        self,
        batch_size: int = 10,
        strategy: str = "spread",
        resources: dict[str, float] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.batch_size = batch_size
        self.strategy = strategy
        self.resources = resources

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> list[Any]:
        import ray

        values = list(items)
        batches = [values[i : i + self.batch_size] for i in range(0, len(values), self.batch_size)]
        refs = [
            submit(_run_batch, fn, batch, strategy=self.strategy, resources=self.resources)
            for batch in batches
        ]
        return [result for chunk in ray.get(refs) for result in chunk]
