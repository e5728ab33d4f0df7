"""A queued job's GPU energy, measured where its ranks run.

Each rank of a queued job that holds GPUs starts a ``Meter`` beside its command
(grid_ops.runtime.launch): every ``SAMPLE_S`` it reads ``power.draw`` of the rank's own
GPUs (the ones Ray gave its task) from the node's nvidia-smi (the config's
``health_check.nvidia_smi``, or the one on PATH), adds watts times seconds, and keeps the
running total in the head's GCS under ``key(job, attempt, rank)`` (namespace
``NAMESPACE``), so a rank that is cancelled or dies still leaves what it measured up to
its last sample. When the attempt ends, the job queue on the head sums its ranks'
totals into the attempt's record (``Runner.energy``) and deletes them.

What it is: the energy of the GPUs the rank held, while it ran, at nvidia-smi's
resolution (each reading held until the next). A GPU shared by a fractional request
counts its share (``share``). Where nvidia-smi reports no power (``[N/A]``) or is not
there, nothing is measured and the attempt's energy stays unknown, never zero.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable

from grid_ops.module_utils import grid_node_os as node_os

SAMPLE_S = 2.0
NAMESPACE = b"grid_ops_energy"
SMI_TIMEOUT = 5.0
FIELDS = ("index", "power.draw")


def key(job_id: str, attempt: int, rank: int) -> bytes:
    return f"{job_id}/{attempt}/{rank}".encode()


def watts(rows: Iterable[dict[str, object]], indices: Iterable[int]) -> float | None:
    """The power of GPUs ``indices`` in nvidia-smi's rows (None when one of them is not
    listed or reports no power) (pure)."""
    by_index = {row.get("index"): row.get("power_draw_w") for row in rows}
    total = 0.0
    for index in indices:
        value = by_index.get(index)
        if not isinstance(value, int | float):
            return None
        total += float(value)
    return total


def read_watts(smi: str, indices: list[int]) -> float | None:
    """The power nvidia-smi at ``smi`` reports for GPUs ``indices`` now (None: none)."""
    args = ["--query-gpu=" + ",".join(FIELDS), "--format=csv,noheader,nounits"]
    try:
        rows = node_os.parse_query_gpu(node_os.nvidia_smi(smi, args, SMI_TIMEOUT), FIELDS)
    except Exception:  # a driver gone mid-job: this reading is missing, not the job
        return None
    return watts(rows, indices)


class Meter:
    """Watts times seconds of some GPUs, read every ``period`` on a thread until ``stop``.
    Each reading counts until the next one (or the stop); a missing reading counts
    nothing for its interval. ``publish`` gets the running total (joules) after each
    reading that counted."""

    def __init__(
        self,
        read: Callable[[], float | None],
        publish: Callable[[float], None],
        share: float = 1.0,
        period: float = SAMPLE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.read, self.publish, self.share = read, publish, share
        self.period, self.clock = period, clock
        self.joules = 0.0
        self.measured = False
        self._last: tuple[float, float | None] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="grid-energy", daemon=True)

    def start(self) -> Meter:
        self._thread.start()
        return self

    def sample(self, now: float, power: float | None) -> None:
        """Close the interval since the last reading at ``now``; ``power`` holds from
        now on."""
        if self._last is not None:
            then, held = self._last
            if held is not None:
                self.joules += held * self.share * max(0.0, now - then)
                self.measured = True
        self._last = (now, power)

    def _publish(self) -> None:
        if self.measured:
            # the head's GCS away for a moment: the next reading tells it
            with contextlib.suppress(Exception):
                self.publish(self.joules)

    def _run(self) -> None:
        while True:
            self.sample(self.clock(), self.read())
            self._publish()
            if self._stop.wait(self.period):
                return

    def stop(self) -> float | None:
        """Stop reading; the joules measured (None: no reading counted)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(SMI_TIMEOUT + 1)
        if self._last is not None:
            self.sample(self.clock(), None)
        self._publish()
        return self.joules if self.measured else None


def for_rank(job_id: str, attempt: int, rank: int, gpus: float, smi: str) -> Meter | None:
    """A started meter for this rank's GPUs (in its Ray task), or None: not a queued
    job, no GPUs, or no nvidia-smi on this node."""
    if not job_id or gpus <= 0:
        return None
    path = node_os.locate_nvidia_smi(smi)
    if not path:
        return None
    import ray
    from ray.experimental import internal_kv

    ids = [int(i) for i in ray.get_gpu_ids()]
    if not ids:
        return None
    where = key(job_id, attempt, rank)

    def publish(joules: float) -> None:
        internal_kv._internal_kv_put(where, repr(joules), True, namespace=NAMESPACE)

    share = gpus if gpus < 1 else 1.0  # a fractional request shares its one GPU
    return Meter(lambda: read_watts(path, ids), publish, share).start()


def collect(
    client: object, job_id: str, attempt: int, ranks: int, timeout: float, take: bool = True
) -> float | None:
    """The joules the ranks of an attempt measured, read from the head's GCS through
    ``client`` (a ``GcsClient``); None when no rank measured any. ``take``: an ended
    attempt's totals are deleted there; without it a running attempt's totals so far are
    read and left to grow."""
    total, found = 0.0, False
    for rank in range(ranks):
        where = key(job_id, attempt, rank)
        raw = client.internal_kv_get(where, NAMESPACE, timeout=timeout)  # type: ignore[attr-defined]
        if raw is None:
            continue
        if take:
            client.internal_kv_del(where, False, NAMESPACE, timeout=timeout)  # type: ignore[attr-defined]
        try:
            total += float(bytes(raw).decode())
            found = True
        except ValueError:
            continue
    return total if found else None
