"""The distributed memory pool: bytes held in Ray actors on chosen nodes.

One ``PoolStore`` actor per node (named ``pool-<node>`` in the controller's namespace,
pinned to its node) keeps objects in memory within the node's capacity
(``resource_sharing.memory_pool_gb``). The controller keeps the directory (key -> size,
checksum, nodes) and picks nodes; the bytes go straight between the caller and the
stores through Ray's object store. With ``replicas >= 2`` an object outlives the loss of
a node holding it.

From code on the cluster::

    from grid_ops.runtime.pool import MemoryPool
    pool = MemoryPool()
    pool.store("weights", data, replicas=2)
    data = pool.retrieve("weights")

Keys are checked (``check_key``) by the CLI and again by the controller, which is the
trust boundary for every other Ray driver: 1 to 256 characters, letters, digits and
``_ . : / @ + = -``, starting with a letter or digit. This module imports Ray only inside
functions, so the CLI can import the check.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from grid_ops import layout
from grid_ops.runtime.nodes import NodeView, Refused

NAMESPACE = layout.CONTROLLER_NAMESPACE
GET_TIMEOUT = 10.0
MAX_KEY = 256
KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/@+=-]{0,255}")
KEY_HINT = (
    f"A key has 1 to {MAX_KEY} characters: letters, digits and _ . : / @ + = -, "
    "starting with a letter or digit."
)


def key_problem(key: object) -> str | None:
    """Why ``key`` cannot name an object in the pool; None when it can."""
    if not isinstance(key, str):
        return f"the key must be a string, not {type(key).__name__}"
    if not key:
        return "the key must not be empty"
    if len(key) > MAX_KEY:
        return f"the key has {len(key)} characters, more than {MAX_KEY}"
    if KEY.fullmatch(key) is None:
        return f"the key {key[:80]!r} has a character a key cannot have, or starts with one"
    return None


def check_key(key: object) -> str:
    """``key`` when it can name an object in the pool; Refused otherwise."""
    problem = key_problem(key)
    if problem is not None:
        raise Refused(f"Not a memory-pool key: {problem}.", KEY_HINT)
    return str(key)


def store_name(node: str) -> str:
    return f"pool-{node}"


class PoolStore:
    """Objects of one node, in this actor's memory (wrapped by ray.remote on use)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.objects: dict[str, bytes] = {}

    def used(self) -> int:
        return sum(len(v) for v in self.objects.values())

    def put(self, key: str, value: bytes) -> int:
        check_key(key)
        old = len(self.objects.get(key, b""))
        if self.used() - old + len(value) > self.capacity:
            raise MemoryError(f"pool store full: {self.used()} of {self.capacity} bytes in use")
        self.objects[key] = bytes(value)
        return len(value)

    def get(self, key: str) -> bytes:
        return self.objects[key]

    def delete(self, key: str) -> bool:
        return self.objects.pop(key, None) is not None

    def keys(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.objects.items()}

    def resize(self, capacity: int) -> int:
        """A new capacity (resource_sharing.memory_pool_gb changed): what it holds stays,
        and a store above it takes nothing more until it is below."""
        self.capacity = capacity
        return self.used()


def checksum(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def used_by_node(directory: dict[str, dict[str, Any]]) -> dict[str, int]:
    used: dict[str, int] = {}
    for entry in directory.values():
        for node in entry["nodes"]:
            used[node] = used.get(node, 0) + int(entry["size"])
    return used


def choose(
    views: dict[str, NodeView],
    directory: dict[str, dict[str, Any]],
    key: str,
    size: int,
    replicas: int,
    capacity: int,
    first: str | None,
) -> list[str]:
    """The nodes to hold a new object (pure): ``first`` if given, then most room."""
    if replicas < 1:
        raise Refused(f"--replicas must be at least 1, not {replicas}.")
    used = used_by_node({k: v for k, v in directory.items() if k != key})
    room = {n: capacity - used.get(n, 0) for n, v in views.items() if v.alive}
    if size > capacity:
        raise Refused(
            f"The object ({size} bytes) is larger than a node's pool capacity ({capacity} bytes).",
            "Raise resource_sharing.memory_pool_gb in the cluster config, or split it.",
        )
    chosen = []
    if first is not None:
        if room.get(first, -1) < size:
            raise Refused(
                f"Node '{first}' has {max(room.get(first, 0), 0)} bytes of pool room; "
                f"the object has {size}.",
                "Pick another node, or delete objects there first ('memory list-objects').",
            )
        chosen.append(first)
    for node in sorted(room, key=lambda n: (-room[n], n)):
        if len(chosen) >= replicas:
            break
        if node not in chosen and room[node] >= size:
            chosen.append(node)
    if len(chosen) < replicas:
        free = ", ".join(f"{n}: {max(r, 0)} bytes" for n, r in sorted(room.items()))
        raise Refused(
            f"Only {len(chosen)} node(s) have room for {size} bytes; {replicas} replicas "
            f"were asked for.",
            f"Pool room per alive node: {free or 'none'}.",
        )
    return chosen


def actor(node: str) -> Any:
    """The store actor of ``node`` (raises ValueError when it does not exist)."""
    import ray

    return ray.get_actor(store_name(node), namespace=NAMESPACE)


def ensure_actor(view: NodeView, capacity: int) -> Any:
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    try:
        return actor(view.name)
    except ValueError:
        pass
    cls = ray.remote(PoolStore)
    return cls.options(
        name=store_name(view.name),
        namespace=NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
        num_cpus=0,
        max_restarts=0,
        scheduling_strategy=NodeAffinitySchedulingStrategy(view.node_id, soft=False),
    ).remote(capacity)


def put_all(stores: list[Any], key: str, data: Any) -> None:
    """``data`` (bytes or an ObjectRef to them) into every store, in parallel."""
    import ray

    ref = data if isinstance(data, ray.ObjectRef) else ray.put(data)
    try:
        ray.get([s.put.remote(key, ref) for s in stores], timeout=120)
    except ray.exceptions.RayTaskError as exc:
        raise Refused(str(exc.cause if hasattr(exc, "cause") else exc).splitlines()[-1]) from None


def get_first(nodes: list[str], key: str) -> tuple[bytes, str]:
    """The object from the first holder that answers, and that holder's name."""
    import ray

    errors = []
    for node in nodes:
        try:
            ref = actor(node).get.remote(key)
            return ray.get(ref, timeout=GET_TIMEOUT), node
        except Exception as exc:  # the holder's node or actor is gone: try the next
            errors.append(f"{node}: {type(exc).__name__}")
    raise Refused(
        f"Object '{key}' is lost: no node holding it answers ({'; '.join(errors) or 'none'}).",
        "Store it again; use --replicas 2 or more for objects that must outlive a node.",
    )


def holders(nodes: list[str], timeout: float = 5.0) -> dict[str, dict[str, int]]:
    """What each named store really holds (stores that do not answer are left out)."""
    import ray

    refs = {}
    for node in nodes:
        try:
            refs[node] = actor(node).keys.remote()
        except ValueError:
            continue
    out = {}
    for node, ref in refs.items():
        try:
            out[node] = ray.get(ref, timeout=timeout)
        except Exception:  # dead node or actor
            continue
    return out


class MemoryPool:
    """The pool from a driver or task on the cluster (the controller keeps the directory)."""

    def __init__(self) -> None:
        import ray

        self._controller = ray.get_actor(layout.CONTROLLER_ACTOR, namespace=NAMESPACE)

    def store(self, key: str, data: bytes, replicas: int = 1, node: str | None = None) -> list[str]:
        import ray

        check_key(key)
        plan = ray.get(self._controller.pool_plan.remote(key, len(data), replicas, node))
        put_all([actor(n) for n in plan], key, data)
        ray.get(self._controller.pool_commit.remote(key, len(data), checksum(data), plan))
        return list(plan)

    def retrieve(self, key: str) -> bytes:
        import ray

        nodes = ray.get(self._controller.pool_locate.remote(key))
        data, _ = get_first(nodes, key)
        return data

    def delete(self, key: str) -> None:
        import ray

        ray.get(self._controller.call.remote("memory-delete", {"key": key}))

    def list(self) -> list[dict[str, Any]]:
        import ray

        result, _ = ray.get(self._controller.call.remote("memory-list", {}))
        return list(result)
