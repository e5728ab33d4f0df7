"""Where tasks run: scheduling strategies and a batch executor, on Ray's own primitives.

For code running on the cluster (a driver on a node, or inside a job)::

    from grid_ops.runtime.scheduler import submit, BatchExecutor
    ref = submit(train_step, batch, strategy="load-balanced", resources={"CPU": 1})
    results = BatchExecutor(batch_size=10).map(process, items)   # in order

Strategies: ``local-first`` (this node when it has room), ``best-fit`` (the node whose free
resources fit the request most tightly), ``load-balanced`` (the node with the largest free
share of CPU), ``spread`` (round robin over the nodes that can hold the request: Ray's own
SPREAD lets a burst of small tasks reuse one worker lease, so they all land on one node)
and ``gpu-affinity`` (the node with the most free GPUs; an error if no node has one).
Node choices become NodeAffinitySchedulingStrategy (soft, so Ray may still move a task
when the chosen node fills up); Ray does the scheduling itself. ``boost=`` runs work
inside a boost's placement group, and ``offload=True`` lets the controller move work off
a head under pressure.
"""

from __future__ import annotations

import contextlib
import os
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from grid_ops import layout
from grid_ops.runtime import taskstats
from grid_ops.runtime.nodes import fits

STRATEGIES = ("local-first", "best-fit", "load-balanced", "spread", "gpu-affinity")


class SchedulingError(RuntimeError):
    """No node can take the request under the asked strategy."""


_VIEW_SECONDS = 0.5  # Ray's own view lags about as much; one query serves many submits
_view: tuple[float, dict[str, dict[str, float]], dict[str, dict[str, float]]] = (0.0, {}, {})
_remotes: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
_groups: dict[str, Any] = {}
_bound_cache: dict[tuple[Any, ...], Any] = {}
_local: str | None = None
_turn = 0


def _free_and_totals() -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """Free and total resources per alive node id (Ray's own accounting), briefly cached."""
    global _view
    now = time.monotonic()
    if now - _view[0] > _VIEW_SECONDS:
        import ray
        from ray._private.state import state  # Ray is pinned; this is its own resource view

        free = {n: dict(f) for n, f in state.available_resources_per_node().items()}
        totals = {n["NodeID"]: dict(n["Resources"]) for n in ray.nodes() if n["Alive"]}
        _view = (now, free, totals)
    return _view[1], _view[2]


def choose_node(
    strategy: str,
    need: dict[str, float],
    free: dict[str, dict[str, float]],
    local: str,
    totals: dict[str, dict[str, float]] | None = None,
    turn: int = 0,
) -> str:
    """The node id a strategy picks (pure). ``turn`` counts ``spread``'s placements.

    Nodes with the request free now come first; when the cluster is busy, the nodes that
    could hold it at all (by ``totals``) are candidates, and Ray queues the task there.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; one of: {', '.join(STRATEGIES)}")
    fitting = {n: f for n, f in free.items() if fits(f, need)}
    if not fitting and totals:
        fitting = {n: free.get(n, {}) for n, t in totals.items() if fits(t, need)}
    if strategy == "spread" and fitting:
        return sorted(fitting)[turn % len(fitting)]
    if strategy == "gpu-affinity":
        gpus = {n: f.get("GPU", 0.0) for n, f in fitting.items()
                if (totals or free).get(n, {}).get("GPU", 0.0) > 0}  # fmt: skip
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


def _local_node() -> str:
    global _local
    if _local is None:
        import ray

        _local = str(ray.get_runtime_context().get_node_id())
    return _local


def place(strategy: str, need: dict[str, float]) -> str:
    """The node id ``strategy`` picks for ``need`` now."""
    global _turn
    free, totals = _free_and_totals()
    node = choose_node(strategy, need, free, _local_node(), totals, _turn)
    _turn += 1
    # Count what this process just placed until Ray's view catches up, so a burst of
    # submits spreads by the strategy instead of piling onto one node.
    held = free.setdefault(node, {})
    for key, value in need.items():
        held[key] = held.get(key, 0.0) - value
    return node


def _pin(node: str) -> Any:
    """Prefer ``node``; Ray may run the task elsewhere when it is busy or gone."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return NodeAffinitySchedulingStrategy(node_id=node, soft=True, _spill_on_unavailable=True)


def scheduling_strategy(strategy: str, need: dict[str, float]) -> Any:
    """The Ray scheduling_strategy for ``strategy`` and a resource request."""

    return _pin(place(strategy, need))


def _bound(remote: Any, node: str, need: dict[str, float]) -> Any:
    """``remote.options(...)`` for a node and request, made once and reused."""
    key = (remote, node, tuple(sorted(need.items())))  # holds remote: its id stays its own
    bound = _bound_cache.get(key)
    if bound is not None:
        return bound

    options: dict[str, Any] = {
        "num_cpus": need.get("CPU", 0.0),
        "num_gpus": need.get("GPU", 0.0),
        "scheduling_strategy": _pin(node),
    }
    custom = {k: v for k, v in need.items() if k not in ("CPU", "GPU", "memory")}
    if custom:
        options["resources"] = custom
    if "memory" in need:
        options["memory"] = need["memory"]
    if len(_bound_cache) > 4096:
        _bound_cache.clear()
    bound = _bound_cache[key] = remote.options(**options)
    return bound


def _need(resources: dict[str, float] | None) -> dict[str, float]:
    need = dict(resources or {})
    need.setdefault("CPU", 1.0)
    return need


def _controller() -> Any:
    import ray

    return ray.get_actor(layout.CONTROLLER_ACTOR, namespace=layout.CONTROLLER_NAMESPACE)


def boost_options(boost_id: str, resources: dict[str, float] | None = None) -> dict[str, Any]:
    """Task options that run inside boost ``boost_id`` (its placement group, its node)."""
    import ray
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    from grid_ops.runtime.reservations import group

    info = _groups.get(boost_id)
    if info is None:
        try:
            info = ray.get(_controller().boost_group.remote(boost_id))
        except ValueError:
            raise SchedulingError("no grid-ops controller runs on this cluster") from None
        except ray.exceptions.RayTaskError as exc:
            raise SchedulingError(str(exc).strip().splitlines()[-1]) from None
        _groups[boost_id] = info
    if resources is not None:
        need = dict(resources)
    else:
        key, amount = info["resource"], float(info["amount"])
        need = {"CPU": min(1.0, amount)} if key == "cpu" else {"CPU": 0.0}
        if key == "gpu":
            need["GPU"] = min(1.0, amount)
    options: dict[str, Any] = {
        "num_cpus": need.get("CPU", 0.0),
        "num_gpus": need.get("GPU", 0.0),
        "scheduling_strategy": PlacementGroupSchedulingStrategy(
            placement_group=group(info["pg"]), placement_group_bundle_index=0
        ),
    }
    if "memory" in need:
        options["memory"] = need["memory"]
    return options


def _offload_target(fn: Callable[..., Any], need: dict[str, float]) -> str | None:
    import ray

    try:
        controller = _controller()
    except ValueError:
        return None
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", repr(fn))
    target: str | None = ray.get(controller.offload_target.remote(name, need))
    return target


def _remote(fn: Callable[..., Any]) -> Any:
    """The Ray remote function for ``fn``, made once (and counted for the controller)."""
    if hasattr(fn, "options"):
        return fn
    try:
        return _remotes[fn]
    except (KeyError, TypeError):
        pass
    import ray

    remote = ray.remote(taskstats.tracked(fn))
    with contextlib.suppress(TypeError):  # not weak-referenceable: made again next time
        _remotes[fn] = remote
    return remote


def submit(
    fn: Callable[..., Any],
    *args: Any,
    strategy: str | None = None,
    resources: dict[str, float] | None = None,
    boost: str | None = None,
    offload: bool = False,
    **kwargs: Any,
) -> Any:
    """Run ``fn(*args, **kwargs)`` as a Ray task; its ObjectRef.

    ``strategy`` places it (default ``load-balanced``). ``boost="boost-…"`` runs it inside
    that boost instead; without a strategy, ``$GRID_OPS_BOOST`` (set by ``grid-ops run
    --boost``) does the same. ``offload=True`` lets the controller send it to a worker
    while the head is above its auto-offload thresholds (the decision is recorded).
    """
    if boost is None and strategy is None:
        boost = os.environ.get("GRID_OPS_BOOST") or None
    remote = _remote(fn)
    if boost:
        return remote.options(**boost_options(boost, resources)).remote(*args, **kwargs)
    need = _need(resources)
    target = _offload_target(fn, need) if offload else None
    node = target if target is not None else place(strategy or "load-balanced", need)
    return _bound(remote, node, need).remote(*args, **kwargs)


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
