"""A queued job's checkpoints outlive the node that wrote them.

Each rank writes its checkpoints on its own node (``jobs/<id>/checkpoints`` under that
node's remote root, through ``grid_ops.jobs.checkpoint``). While the job runs, its
launcher (``runtime.launch``, the job's driver on the head) copies each rank's newest
complete checkpoint to a second node: the next rank's node, or for a one-node job another
node of the cluster, into ``jobs/<id>/replicas/rank-<r>/``. When a retry gives a rank to a
node that did not run that rank before, the launcher first copies the newest checkpoint
it can find for the rank (the old node's own, if that node is still up; else a replica)
into the new node's checkpoint dir, so ``latest_checkpoint()`` finds it there.

The files travel between the nodes as Ray objects (a task pinned to each node by its
``grid_node:<name>`` resource), never through the operator's machine nor SSH. Where two
nodes share a filesystem (one NFS home), a marker file written by one is seen by the
other: nothing is copied between them.

The node side (``newest``, ``pack``, ``unpack``, ``mark``, ``sees``) runs as Ray tasks;
``Replicator`` and ``restore`` run in the launcher.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import secrets
import shutil
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from grid_ops import layout
from grid_ops.jobs import steps
from grid_ops.runtime.jobboard import JOB_ID

EVERY = 5.0  # seconds between looks for a new checkpoint on each rank's node
TIMEOUT = 600.0  # at most this long for one copy
SLICE = 0.5  # a stoppable wait looks at its stop event this often (seconds)
JOIN = 30.0  # the launcher waits at most this long for the replicator to let go of Ray


class Stopped(Exception):
    """The replicator was stopped while it waited for a node."""


OWN, REPLICA = "own", "replica"  # a rank's checkpoints on its node; a copy elsewhere


# -- on a node (Ray tasks) ----------------------------------------------------------------


def folder(job_id: str, kind: str, rank: int) -> str:
    """On this node: the job's checkpoint dir (``own``) or rank ``rank``'s replicas."""
    root = os.environ.get("GRID_OPS_ROOT")
    if not root or JOB_ID.fullmatch(job_id) is None or rank < 0:
        raise ValueError(f"no checkpoint dir for job {job_id[:80]!r} on this node")
    if kind == OWN:
        return layout.job_file(root, job_id, layout.JOB_CHECKPOINTS)
    return layout.job_file(root, job_id, layout.JOB_REPLICAS, f"rank-{rank}")


def newest(job_id: str, kind: str, rank: int) -> int:
    """The highest complete step in that dir on this node; -1 for none."""
    path = folder(job_id, kind, rank)
    found = steps(path) if os.path.isdir(path) else []
    return found[-1][0] if found else -1


def pack(job_id: str, kind: str, rank: int, above: int) -> tuple[int, bytes] | None:
    """The newest complete checkpoint in that dir if its step is above ``above``: its
    step and its files as an uncompressed tar; None when there is none newer."""
    path = folder(job_id, kind, rank)
    found = steps(path) if os.path.isdir(path) else []
    if not found or found[-1][0] <= above:
        return None
    step, source = found[-1]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(source, arcname=".")
    return step, buffer.getvalue()


def unpack(job_id: str, kind: str, rank: int, data: tuple[int, bytes] | None) -> tuple[int, int]:
    """Put a packed checkpoint into that dir on this node as ``step-<N>`` (whole or not
    at all: unpacked beside it, then renamed), keeping only it among the replicas; its
    step and size, or (-1, 0) when there was nothing to put."""
    if data is None:
        return -1, 0
    step, blob = data
    path = folder(job_id, kind, rank)
    os.makedirs(path, mode=0o700, exist_ok=True)
    partial = tempfile.mkdtemp(prefix=".partial-", dir=path)
    try:
        _extract(blob, partial)
        final = os.path.join(path, f"step-{int(step)}")
        if os.path.isdir(final):
            shutil.rmtree(final)
        os.replace(partial, final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if kind == REPLICA:
        for number, old in steps(path):
            if number != step:
                shutil.rmtree(old, ignore_errors=True)
    return int(step), len(blob)


def _extract(blob: bytes, into: str) -> None:
    """Unpack a checkpoint archive into ``into``: directories and regular files only
    (no links, devices, absolute paths nor '..': nothing lands outside), dirs 0700 and
    files 0600 (0700 if executable). Written here, not by tarfile's extraction filters:
    a node's Python may predate them (Debian 12's 3.11.2)."""
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:") as tar:
        for member in tar:
            parts = [p for p in member.name.split("/") if p not in ("", ".")]
            if member.name.startswith("/") or ".." in parts:
                raise ValueError(f"unsafe path in a checkpoint archive: {member.name[:200]!r}")
            target = os.path.join(into, *parts)
            if member.isdir():
                os.makedirs(target, mode=0o700, exist_ok=True)
                continue
            source = tar.extractfile(member) if member.isfile() else None
            if source is None:
                raise ValueError(f"not a file nor a directory: {member.name[:200]!r}")
            os.makedirs(os.path.dirname(target), mode=0o700, exist_ok=True)
            mode = 0o700 if member.mode & 0o100 else 0o600
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
            with source, os.fdopen(os.open(target, flags, mode), "wb") as out:
                shutil.copyfileobj(source, out)


def _marker(job_id: str, token: str) -> str:
    if not token.isalnum():
        raise ValueError("a marker's token is letters and digits")
    return os.path.join(os.path.dirname(folder(job_id, OWN, 0)), f".shared-{token}")


def mark(job_id: str, token: str) -> None:
    """Leave a marker file in the job's dir (``jobs/<id>``) on this node."""
    marker = _marker(job_id, token)
    os.makedirs(os.path.dirname(marker), mode=0o700, exist_ok=True)
    with open(marker, "w", encoding="utf-8"):
        pass


def sees(job_id: str, token: str, remove: bool) -> bool:
    """Is that marker in the job's dir of this node (its remote root is the marking
    node's: they share a filesystem)?"""
    marker = _marker(job_id, token)
    found = os.path.exists(marker)
    if remove:
        with contextlib.suppress(OSError):
            os.unlink(marker)
    return found


# -- in the launcher ----------------------------------------------------------------------


def _say(line: str) -> None:
    print(f"grid-ops: {line}", file=sys.stderr, flush=True)


def _size(count: int) -> str:
    return f"{count / 2**20:.1f} MiB" if count >= 2**20 else f"{count / 1024:.1f} KiB"


class Nodes:
    """Ray tasks pinned to grid-ops nodes by name (``ray`` is the imported module)."""

    stop: threading.Event | None = None  # set: a wait gives up (``Stopped``)

    def __init__(self, ray: Any) -> None:
        self.ray = ray
        self._remote: dict[Callable[..., Any], Any] = {}

    def until(self, stop: threading.Event) -> Nodes:
        """These nodes, with waits that give up once ``stop`` is set."""
        clone = copy.copy(self)
        clone.stop = stop
        return clone

    def on(self, node: str, function: Callable[..., Any], *args: Any) -> Any:
        """Start ``function(*args)`` on ``node``; its object ref."""
        if function not in self._remote:
            self._remote[function] = self.ray.remote(num_cpus=0, max_retries=0)(function)
        return self._remote[function].options(resources=layout.pin(node)).remote(*args)

    def get(self, ref: Any, timeout: float = TIMEOUT) -> Any:
        deadline = time.monotonic() + timeout
        while self.stop is not None:
            if self.stop.is_set():
                raise Stopped("the job's ranks have ended")
            left = deadline - time.monotonic()
            if left <= 0 or self.ray.wait([ref], timeout=min(SLICE, left))[0]:
                break
        return self.ray.get(ref, timeout=max(deadline - time.monotonic(), 0))

    def alive(self) -> list[str]:
        """The grid-ops nodes Ray has alive, by name."""
        names = []
        for node in self.ray.nodes():
            name = layout.node_name(node.get("Resources") or {}) if node.get("Alive") else None
            if name:
                names.append(name)
        return sorted(names)


def replica_node(ranks: Sequence[str], rank: int, alive: Sequence[str]) -> str | None:
    """Where rank ``rank``'s checkpoints are copied: the next rank's node; for a job of one
    node, the first other node alive; None when there is no other node (pure)."""
    if len(ranks) > 1:
        return ranks[(rank + 1) % len(ranks)]
    others = [n for n in alive if n != ranks[rank]]
    return others[0] if others else None


def shared(nodes: Nodes, job_id: str, one: str, other: str) -> bool:
    """Do nodes ``one`` and ``other`` share the job's dir? (a marker written in it on one
    is in it on the other: the same remote root on a shared filesystem)."""
    token = secrets.token_hex(8)
    nodes.get(nodes.on(one, mark, job_id, token), 60)
    seen = bool(nodes.get(nodes.on(other, sees, job_id, token, False), 60))
    nodes.get(nodes.on(one, sees, job_id, token, True), 60)
    return seen


def restore(nodes: Nodes, job_id: str, ranks: Sequence[str], previous: Sequence[str]) -> None:
    """Before a retry's ranks start: give each rank that moved to another node the newest
    checkpoint found for it (its old node's own if that node is up, else a replica)."""
    alive = nodes.alive()
    for rank, node in enumerate(ranks):
        if rank < len(previous) and previous[rank] == node:
            continue  # the same node as before: its own checkpoints are there
        places = [(n, REPLICA) for n in alive]
        if rank < len(previous) and previous[rank] in alive:
            places.insert(0, (previous[rank], OWN))
        try:
            found = [
                (nodes.get(nodes.on(n, newest, job_id, kind, rank), 60), n, kind)
                for n, kind in places
            ]
            have = nodes.get(nodes.on(node, newest, job_id, OWN, rank), 60)
        except Exception as exc:
            _say(f"rank {rank}: cannot look for its checkpoints ({_first(exc)})")
            continue
        step, source, kind = max(found, default=(-1, "", OWN))
        if step < 0 or step <= have:
            continue  # none anywhere, or the node has it already (a shared filesystem)
        started = time.monotonic()
        try:
            data = nodes.on(source, pack, job_id, kind, rank, have)
            put, size = nodes.get(nodes.on(node, unpack, job_id, OWN, rank, data))
        except Exception as exc:
            _say(f"rank {rank}: cannot copy checkpoint step-{step} from {source} ({_first(exc)})")
            continue
        what = "its own" if kind == OWN else "a replica"
        _say(
            f"rank {rank}: checkpoint step-{put} copied to {node} from {source} ({what}, "
            f"{_size(size)} in {time.monotonic() - started:.1f} s)"
        )


def _first(exc: BaseException) -> str:
    """The first line of what went wrong: a Ray task's own exception, not Ray's wrapper."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        exc = cause
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"[:300]


class Replicator:
    """While the ranks run: every ``EVERY`` seconds copy each rank's newest complete
    checkpoint to its replica node (``replica_node``), unless the two share a filesystem."""

    def __init__(self, nodes: Nodes, job_id: str, ranks: Sequence[str]) -> None:
        self.stopped = threading.Event()
        self.nodes = nodes.until(self.stopped)
        self.job_id = job_id
        self.ranks = list(ranks)
        self.copied = [-1] * len(self.ranks)
        self.targets: list[str | None] = []
        self.failing: set[int] = set()  # ranks whose last copy failed (said once)
        self._thread = threading.Thread(target=self._run, name="grid-replicas", daemon=True)

    def start(self) -> Replicator:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop, and wait until the thread no longer uses Ray: the launcher shuts Ray down
        next, and a Ray call after that ends the job's process with an error."""
        self.stopped.set()
        if self._thread.is_alive():
            self._thread.join(JOIN)
        if self._thread.is_alive():
            _say(f"the checkpoint replicator did not stop within {JOIN:g} s")

    def _run(self) -> None:
        with contextlib.suppress(Stopped):
            self._replicate()

    def _replicate(self) -> None:
        try:
            alive = self.nodes.alive()
        except Exception as exc:
            _say(f"checkpoints are not replicated: {_first(exc)}")
            return
        for rank, node in enumerate(self.ranks):
            if self.stopped.is_set():
                return
            target = replica_node(self.ranks, rank, alive)
            try:
                if target is not None and shared(self.nodes, self.job_id, node, target):
                    target = None  # the same files on both: nothing to copy
            except Stopped:
                raise
            except Exception as exc:
                _say(f"rank {rank}: checkpoints are not replicated to {target} ({_first(exc)})")
                target = None
            self.targets.append(target)
        while not self.stopped.wait(EVERY):
            for rank, target in enumerate(self.targets):
                if target is not None and not self.stopped.is_set():
                    self.once(rank, target)

    def once(self, rank: int, target: str) -> None:
        """Copy rank ``rank``'s newest checkpoint to ``target`` if it is new."""
        try:
            data = self.nodes.on(self.ranks[rank], pack, self.job_id, OWN, rank, self.copied[rank])
            step, size = self.nodes.get(
                self.nodes.on(target, unpack, self.job_id, REPLICA, rank, data)
            )
        except Exception as exc:  # the node is busy or gone: the next round tries again
            if not self.stopped.is_set() and rank not in self.failing:
                _say(f"rank {rank}: checkpoint not replicated to {target} ({_first(exc)})")
            self.failing.add(rank)
            return
        self.failing.discard(rank)
        if step >= 0:
            self.copied[rank] = step
            _say(f"rank {rank}: checkpoint step-{step} replicated to {target} ({_size(size)})")
