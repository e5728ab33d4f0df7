"""The job queue's policy, for the queue on the head: which queued job starts where, why
the others wait, whose turn comes next, and what an ended attempt leads to.

Pure: no I/O, no Ray, no clock (the caller passes ``now``), standard library only. The
caller reads the nodes' free capacity, runs the starts this returns, and writes the jobs
back (``Job.to_json``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import MISSING, dataclass, fields, replace
from typing import Any, TypeVar

QUEUED, RUNNING, SUCCEEDED, FAILED, STOPPED = "QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "STOPPED"
STATUSES = (QUEUED, RUNNING, SUCCEEDED, FAILED, STOPPED)
PRIORITIES = ("low", "normal", "high")  # lowest first
CAUSES = ("exited", "node_lost", "node_drained", "head_restarted", "timeout", "stopped")
# How a cause that retries reads in the attempt's reason.
RETRIED_CAUSES = {
    "node_lost": "node lost", "node_drained": "node drained", "head_restarted": "head restarted",
}  # fmt: skip
DEFAULT_HALF_LIFE = 24 * 3600.0
WEEK = 7 * 86_400.0  # a quota's GPU-hours count over the last 7 days
USAGE_KEYS = ("user", "node")
# Free amounts are sums and differences of fractional GPUs, so 0.5 may arrive as
# 0.49999999; an exact comparison would call that too little.
_EPS = 1e-9
_RANK = {p: i for i, p in enumerate(PRIORITIES)}

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class Attempt:
    """One run of a job: where, when, and how it ended (``ended_at`` None while it runs)."""

    number: int
    nodes: tuple[str, ...]
    started_at: float
    ended_at: float | None = None
    exit_code: int | None = None
    reason: str = ""
    submission_id: str = ""  # its Ray job (one per attempt)
    message: str = ""  # what Ray Jobs said of it when it ended
    energy_j: float | None = None  # its GPUs' energy, as its ranks measured it (runtime.energy)

    def __post_init__(self) -> None:
        if self.number < 1:
            raise ValueError(f"attempt number must be 1 or more, not {self.number}")

    def to_json(self) -> dict[str, Any]:
        return _as_json(self)

    @classmethod
    def from_json(cls, data: object, where: str = "attempt") -> Attempt:
        return cls(**_read(data, where, cls))


@dataclass(frozen=True, kw_only=True)
class Job:
    """A job in the queue: what it needs (per node, one rank per node), where it stands,
    its attempts so far, and its retry rules."""

    id: str
    submitter: str
    submitted_at: float
    name: str = ""
    priority: str = "normal"
    nodes: int = 1
    gpus_per_node: float = 0.0
    cpus_per_node: float = 0.0
    status: str = QUEUED
    reason: str = ""  # why it waits (QUEUED), or why it ended
    attempts: tuple[Attempt, ...] = ()
    max_retries: int = 0
    retry_on_exit: tuple[int, ...] = ()
    timeout: float | None = None
    avoid: tuple[str, ...] = ()  # nodes its next attempt may not use
    command: tuple[str, ...] = ()  # what each rank runs (argv)
    workdir: str = ""  # where it runs, relative to the head's remote root ("": synced code)
    has_env: bool = False  # its --env variables are kept beside the queue, never in it
    stop_requested: bool = False  # 'job cancel' of a running job: its attempt is stopping

    def __post_init__(self) -> None:
        problems = []
        if not self.id:
            problems.append("id is empty")
        if self.priority not in PRIORITIES:
            problems.append(f"priority {self.priority!r} is not one of {', '.join(PRIORITIES)}")
        if self.status not in STATUSES:
            problems.append(f"status {self.status!r} is not one of {', '.join(STATUSES)}")
        if self.nodes < 1:
            problems.append(f"nodes must be 1 or more, not {self.nodes}")
        for key in ("gpus_per_node", "cpus_per_node", "submitted_at"):
            value = getattr(self, key)
            if not math.isfinite(value) or (key != "submitted_at" and value < 0):
                problems.append(f"{key} must be a finite number of 0 or more, not {value}")
        if self.max_retries < 0:
            problems.append(f"max_retries must be 0 or more, not {self.max_retries}")
        if self.timeout is not None and not (math.isfinite(self.timeout) and self.timeout > 0):
            problems.append(f"timeout must be above 0, not {self.timeout}")
        if problems:
            raise ValueError(f"job {self.id!r}: " + "; ".join(problems))

    def to_json(self) -> dict[str, Any]:
        return _as_json(self)

    @classmethod
    def from_json(cls, data: object) -> Job:
        """The job a record holds. Keys a record lacks (from an older version) take their
        defaults; an unknown key, a wrong type or a value out of range is a ValueError."""
        return cls(**_read(data, "job", cls))


@dataclass(frozen=True)
class NodeSlot:
    """A node as the scheduler sees it: totals, what is free now, and whether jobs may go
    there (healthy and not drained)."""

    name: str
    gpus: float
    cpus: float
    free_gpus: float
    free_cpus: float
    usable: bool = True


@dataclass(frozen=True)
class Placement:
    """Nodes for a job: where its ranks start (rank i on nodes[i]), or a reservation."""

    job_id: str
    nodes: tuple[str, ...]


@dataclass(frozen=True)
class Decision:
    """One scheduling pass: the jobs to start, in order; why each other queued job waits
    (by id); the nodes held for a starving high-priority job, if any."""

    starts: tuple[Placement, ...]
    waiting: dict[str, str]
    reservation: Placement | None


@dataclass(frozen=True)
class Quota:
    """What one submitter's jobs may hold: GPUs at once, GPU-hours in any ``WEEK``
    (None: no limit)."""

    gpus: float | None = None
    gpu_hours_per_week: float | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Quota:
        data = data or {}
        gpus, hours = data.get("gpus"), data.get("gpu_hours_per_week")
        return cls(None if gpus is None else float(gpus), None if hours is None else float(hours))


@dataclass(frozen=True)
class Outcome:
    """What an ended attempt leads to. ``ended`` is the job's last attempt, closed."""

    status: str
    reason: str
    avoid: tuple[str, ...]
    ended: Attempt | None


# --- fit -------------------------------------------------------------------------------


def _free_for(slot: NodeSlot, job: Job) -> bool:
    return slot.free_gpus + _EPS >= job.gpus_per_node and slot.free_cpus + _EPS >= job.cpus_per_node


def _big_enough(slot: NodeSlot, job: Job) -> bool:
    return slot.gpus + _EPS >= job.gpus_per_node and slot.cpus + _EPS >= job.cpus_per_node


def _distinct(nodes: Iterable[NodeSlot]) -> list[NodeSlot]:
    """Each node name once (the first), since a job's ranks need distinct nodes."""
    seen: dict[str, NodeSlot] = {}
    for slot in nodes:
        seen.setdefault(slot.name, slot)
    return list(seen.values())


def _open_to(job: Job, nodes: Iterable[NodeSlot]) -> list[NodeSlot]:
    return [n for n in _distinct(nodes) if n.usable and n.name not in job.avoid]


def place(job: Job, nodes: Iterable[NodeSlot]) -> list[str] | None:
    """The nodes the job's ranks would start on now, or None when it does not fit."""
    fit = [n for n in _open_to(job, nodes) if _free_for(n, job)]
    if len(fit) < job.nodes:
        return None
    # Best fit: the tightest nodes first, so the emptiest stay whole for bigger jobs.
    fit.sort(key=lambda n: (n.free_gpus, n.name))
    return [n.name for n in fit[: job.nodes]]


def _plural(count: float, noun: str) -> str:
    return f"{count:g} {noun}" + ("" if count == 1 else "s")


def _have(count: int) -> str:
    return "no node has" if count == 0 else "1 node has" if count == 1 else f"{count} nodes have"


def _needs(job: Job) -> str:
    amounts = [
        _plural(amount, unit)
        for amount, unit in ((job.gpus_per_node, "GPU"), (job.cpus_per_node, "CPU"))
        if amount > 0
    ]
    if not amounts:
        return _plural(job.nodes, "node")
    where = "1 node" if job.nodes == 1 else f"each of {job.nodes} nodes"
    return f"{' and '.join(amounts)} on {where}"


def never_fits(job: Job, nodes: Iterable[NodeSlot]) -> str | None:
    """Why the job cannot run on this cluster even when every node is well and idle, or
    None. Counts total capacity, usable nodes or not; the job's avoid list counts too."""
    every = _distinct(nodes)
    if len(every) < job.nodes:
        return f"needs {_plural(job.nodes, 'node')}; the cluster has {len(every)}"
    for need, unit, totals in (
        (job.gpus_per_node, "GPU", [n.gpus for n in every]),
        (job.cpus_per_node, "CPU", [n.cpus for n in every]),
    ):
        if need > 0 and max(totals) + _EPS < need:
            return f"needs {_plural(need, unit)} per node; no node has that many"
    big = [n for n in every if _big_enough(n, job)]
    if len(big) < job.nodes:
        return f"needs {_needs(job)}; {_have(len(big))} that many"
    left = [n for n in big if n.name not in job.avoid]
    if len(left) < job.nodes:
        avoided = ", ".join(sorted(n.name for n in big if n.name in job.avoid))
        return f"needs {_needs(job)}; {_have(len(left))} that many besides its avoided {avoided}"
    return None


def why_waiting(job: Job, nodes: Iterable[NodeSlot]) -> str:
    """Why the job does not start on these nodes now, in words ("fits now" if it does)."""
    nodes = list(nodes)
    never = never_fits(job, nodes)
    if never is not None:
        return never
    open_ = _open_to(job, nodes)
    if len(open_) < job.nodes:
        avoided = any(n.usable and n.name in job.avoid for n in nodes)
        return f"needs {_plural(job.nodes, 'node')}; the cluster has {len(open_)} usable" + (
            " besides its avoided nodes" if avoided else ""
        )
    free = sum(1 for n in open_ if _free_for(n, job))
    if free < job.nodes:
        return f"needs {_needs(job)}; {_have(free)} them free"
    return "fits now"


# --- usage -----------------------------------------------------------------------------


def attempt_gpus(job: Job, attempt: Attempt) -> float:
    """GPUs an attempt holds: each of its ranks' GPUs."""
    return job.gpus_per_node * (len(attempt.nodes) or job.nodes)


def _span(attempt: Attempt, since: float, until: float) -> float:
    """Seconds of ``attempt`` inside [since, until] (an open attempt runs to ``until``)."""
    end = until if attempt.ended_at is None else min(attempt.ended_at, until)
    return max(0.0, end - max(attempt.started_at, since))


def _energy_kwh(attempt: Attempt, since: float, until: float) -> float | None:
    """The part of an ended attempt's measured energy inside [since, until] (in
    proportion to its time there), in kWh; None when it was not measured."""
    if attempt.energy_j is None or attempt.ended_at is None:
        return None
    whole = attempt.ended_at - attempt.started_at
    part = _span(attempt, since, until) / whole if whole > 0 else 1.0
    return attempt.energy_j * part / 3.6e6


def usage_table(
    jobs: Iterable[Job], since: float, until: float, by: str
) -> dict[str, dict[str, Any]]:
    """GPU-hours, CPU-hours, attempts and GPU energy (kWh) within [since, until], by
    submitter (``by`` user) or by node (``by`` node: each rank's share on its node).
    ``energy_kwh`` counts the attempts whose ranks measured it (``energy_measured`` of
    ``attempts``); None when none did (no power readings, or still running)."""
    if by not in USAGE_KEYS:
        raise ValueError(f"usage by {by!r}: use one of {', '.join(USAGE_KEYS)}")
    table: dict[str, dict[str, Any]] = {}
    for job in jobs:
        for attempt in job.attempts:
            hours = _span(attempt, since, until) / 3600
            if hours <= 0:
                continue
            gpus = attempt_gpus(job, attempt)
            cpus = job.cpus_per_node * (len(attempt.nodes) or job.nodes)
            kwh = _energy_kwh(attempt, since, until)
            keys = [job.submitter] if by == "user" else list(attempt.nodes) or ["(unknown)"]
            for key in keys:
                row = table.setdefault(
                    key,
                    {"gpu_hours": 0.0, "cpu_hours": 0.0, "attempts": 0,
                     "energy_kwh": None, "energy_measured": 0},
                )  # fmt: skip
                row["gpu_hours"] += gpus * hours / len(keys)
                row["cpu_hours"] += cpus * hours / len(keys)
                row["attempts"] += 1
                if kwh is not None:
                    row["energy_kwh"] = (row["energy_kwh"] or 0.0) + kwh / len(keys)
                    row["energy_measured"] += 1
    return table


def running_attempt(job: Job) -> Attempt | None:
    """The attempt of ``job`` that runs now, if any (pure)."""
    if job.status == RUNNING and job.attempts and job.attempts[-1].ended_at is None:
        return job.attempts[-1]
    return None


def running_gpus(jobs: Iterable[Job]) -> dict[str, float]:
    """GPUs each submitter's running attempts hold now."""
    held: dict[str, float] = {}
    for job in jobs:
        attempt = running_attempt(job)
        if attempt is not None:
            held[job.submitter] = held.get(job.submitter, 0.0) + attempt_gpus(job, attempt)
    return held


def per_user(jobs: Iterable[Job], now: float) -> dict[str, dict[str, float]]:
    """Each submitter's jobs queued and running, GPUs held now and GPU-hours of the last
    ``WEEK`` (what /metrics shows per user)."""
    jobs = list(jobs)
    held = running_gpus(jobs)
    week = usage_table(jobs, now - WEEK, now, "user")
    out: dict[str, dict[str, float]] = {}
    for job in jobs:
        row = out.setdefault(
            job.submitter,
            {
                "jobs_queued": 0,
                "jobs_running": 0,
                "gpus_running": held.get(job.submitter, 0.0),
                "gpu_hours_week": week.get(job.submitter, {}).get("gpu_hours", 0.0),
            },
        )
        if job.status == QUEUED:
            row["jobs_queued"] += 1
        elif job.status == RUNNING:
            row["jobs_running"] += 1
    return out


def over_quota(job: Job, quota: Quota, held: float, week_hours: float) -> str | None:
    """Why ``job`` may not start under its submitter's ``quota`` (None: it may), given
    the GPUs they hold now and their GPU-hours of the last ``WEEK``."""
    gpus = job.gpus_per_node * job.nodes
    who = job.submitter
    if quota.gpus is not None and gpus > 0 and held + gpus > quota.gpus + _EPS:
        return (
            f"over {who}'s quota: needs {gpus:g} GPU(s), {who}'s jobs hold {held:g} of "
            f"{quota.gpus:g} allowed at once"
        )
    limit = quota.gpu_hours_per_week
    if limit is not None and gpus > 0 and week_hours + _EPS >= limit:
        return (
            f"over {who}'s quota: {week_hours:.2f} of {limit:g} GPU-hours used in the last 7 days"
        )
    return None


# --- order -----------------------------------------------------------------------------


def usage(
    jobs: Iterable[Job], now: float, half_life: float = DEFAULT_HALF_LIFE
) -> dict[str, float]:
    """Each submitter's recent GPU-hours: every attempt's GPU-hours, halved for each
    ``half_life`` seconds since it ended (an attempt still open counts up to ``now``)."""
    if not half_life > 0:
        raise ValueError(f"half_life must be above 0, not {half_life}")
    totals: dict[str, float] = {}
    for job in jobs:
        total = totals.get(job.submitter, 0.0)
        for attempt in job.attempts:
            end = now if attempt.ended_at is None else attempt.ended_at
            hours = max(0.0, end - attempt.started_at) / 3600
            total += attempt_gpus(job, attempt) * hours * 0.5 ** (max(0.0, now - end) / half_life)
        totals[job.submitter] = total
    return totals


def order(queued: Iterable[Job], usage: Mapping[str, float]) -> list[Job]:
    """Queued jobs in the order they are offered the cluster: priority, then the
    submitter's usage (least first), then submit time, then id."""
    return sorted(
        queued,
        key=lambda j: (-_RANK[j.priority], usage.get(j.submitter, 0.0), j.submitted_at, j.id),
    )


# --- schedule --------------------------------------------------------------------------


def _reserve(job: Job, nodes: Iterable[NodeSlot]) -> tuple[str, ...] | None:
    fit = [n for n in _open_to(job, nodes) if _big_enough(n, job)]
    if len(fit) < job.nodes:
        return None
    # By size alone, not by what is free now: the same nodes are held pass after pass, so
    # they drain, rather than the hold moving while backfill refills the nodes it left.
    fit.sort(key=lambda n: (-n.gpus, -n.cpus, n.name))
    return tuple(sorted(n.name for n in fit[: job.nodes]))


def schedule(
    jobs: Iterable[Job],
    nodes: Iterable[NodeSlot],
    now: float,
    reserve_after: float,
    half_life: float = DEFAULT_HALF_LIFE,
    quotas: Mapping[str, Quota] | None = None,
) -> Decision:
    """One pass over the queued jobs in ``order``. ``nodes`` give what is free now (the
    running jobs already hold their share); each start takes its share from a working
    copy, so two starts never share resources. A job that does not fit is passed over.
    A job over its submitter's quota (``quotas`` by submitter) waits, saying so.
    The first high-priority job that has waited over ``reserve_after`` seconds and does
    not fit gets a reservation: later jobs start only on other nodes."""
    jobs = list(jobs)
    free = {n.name: n for n in _distinct(nodes)}
    starts: list[Placement] = []
    waiting: dict[str, str] = {}
    held: Placement | None = None
    quotas = quotas or {}
    holding = running_gpus(jobs)
    week = usage_table(jobs, now - WEEK, now, "user") if quotas else {}
    queued = [j for j in jobs if j.status == QUEUED]
    for job in order(queued, usage(jobs, now, half_life)):
        never = never_fits(job, free.values())
        if never is not None:
            waiting[job.id] = never
            continue
        quota = quotas.get(job.submitter)
        if quota is not None:
            hours = week.get(job.submitter, {}).get("gpu_hours", 0.0)
            over = over_quota(job, quota, holding.get(job.submitter, 0.0), hours)
            if over is not None:
                waiting[job.id] = over
                continue
        others = [n for n in free.values() if held is None or n.name not in held.nodes]
        placement = place(job, others)
        if placement is not None:
            starts.append(Placement(job.id, tuple(placement)))
            gpus = job.gpus_per_node * job.nodes
            holding[job.submitter] = holding.get(job.submitter, 0.0) + gpus
            for name in placement:
                slot = free[name]
                free[name] = replace(
                    slot,
                    free_gpus=slot.free_gpus - job.gpus_per_node,
                    free_cpus=slot.free_cpus - job.cpus_per_node,
                )
            continue
        if held is not None and place(job, free.values()) is not None:
            names = ", ".join(held.nodes)
            waiting[job.id] = f"fits now only on nodes held for job {held.job_id} ({names})"
            continue
        reason = why_waiting(job, free.values())
        if held is None and job.priority == "high" and now - job.submitted_at > reserve_after:
            chosen = _reserve(job, free.values())
            if chosen is not None:
                held = Placement(job.id, chosen)
                reason += f"; {', '.join(chosen)} held for it"
        waiting[job.id] = reason
    return Decision(tuple(starts), waiting, held)


# --- attempts --------------------------------------------------------------------------


def keep_ranks(job: Job, nodes: Iterable[str]) -> tuple[str, ...]:
    """``nodes`` in rank order for the job's next attempt: a node that ran a rank last
    time comes in that rank's order, before new ones, so rank 0 (which usually writes the
    checkpoints, on its node's disk) stays where it was whenever its node is chosen."""
    last = job.attempts[-1].nodes if job.attempts else ()
    chosen = list(nodes)
    return tuple(sorted(chosen, key=lambda n: last.index(n) if n in last else len(last)))


def start_attempt(job: Job, nodes: Iterable[str], now: float) -> Job:
    """The job once its next attempt starts on ``nodes`` (rank i on nodes[i])."""
    attempt = Attempt(number=len(job.attempts) + 1, nodes=tuple(nodes), started_at=now)
    return replace(job, status=RUNNING, reason="", attempts=(*job.attempts, attempt))


def timed_out(job: Job, now: float) -> bool:
    """Whether the job's running attempt has run for its ``timeout`` or longer."""
    if job.timeout is None or job.status != RUNNING or not job.attempts:
        return False
    last = job.attempts[-1]
    return last.ended_at is None and now - last.started_at >= job.timeout


def after_attempt(
    job: Job,
    cause: str,
    exit_code: int | None,
    now: float,
    quarantined: Collection[str] = (),
    *,
    lost: Collection[str] = (),
) -> Outcome:
    """What the job's last attempt ending at ``now`` leads to. ``cause`` is one of CAUSES;
    ``exit_code`` is read for "exited" only. A lost or drained node, a restarted head, or
    an exit code in ``retry_on_exit``, queues the job again while it has retries left,
    avoiding the ``lost`` nodes and the ``quarantined`` ones; any other failure is final."""
    if cause not in CAUSES:
        raise ValueError(f"unknown cause {cause!r}; expected one of {', '.join(CAUSES)}")
    if cause == "exited":
        if exit_code is None:
            raise ValueError('cause "exited" needs an exit code')
        what = f"exited with code {exit_code}"
        final = SUCCEEDED if exit_code == 0 else FAILED
        retry = exit_code != 0 and exit_code in job.retry_on_exit
    elif cause in RETRIED_CAUSES:
        what = RETRIED_CAUSES[cause]
        if lost:
            what += f" ({', '.join(sorted(lost))})"
        final, retry = FAILED, True
    else:
        what, final, retry = cause, STOPPED if cause == "stopped" else FAILED, False
    ended = None
    if job.attempts:
        ended = replace(job.attempts[-1], ended_at=now, exit_code=exit_code, reason=what)
    if not retry:
        return Outcome(final, what, job.avoid, ended)
    done = max(1, len(job.attempts))
    avoid = tuple(sorted({*job.avoid, *lost, *quarantined}))
    if done <= job.max_retries:
        reason = f"attempt {done + 1} of {job.max_retries + 1} queued after {what}"
        return Outcome(QUEUED, reason, avoid, ended)
    return Outcome(
        FAILED, f"{what}; no retries left after {_plural(done, 'attempt')}", avoid, ended
    )


def apply_outcome(job: Job, outcome: Outcome) -> Job:
    """The job with ``outcome`` recorded (its last attempt closed)."""
    attempts = job.attempts if outcome.ended is None else (*job.attempts[:-1], outcome.ended)
    return replace(
        job,
        status=outcome.status,
        reason=outcome.reason,
        avoid=outcome.avoid,
        attempts=attempts,
        stop_requested=False,
    )


# --- records ---------------------------------------------------------------------------


def _as_json(record: Attempt | Job) -> dict[str, Any]:
    return {f.name: _json_value(getattr(record, f.name)) for f in fields(record)}


def _json_value(value: object) -> object:
    if isinstance(value, Attempt):
        return _as_json(value)
    if isinstance(value, tuple):
        return [_json_value(v) for v in value]
    return value


Reader = Callable[[object, str], Any]


def _text(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{where}: expected a string, not {type(value).__name__}")
    return value


def _bool(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{where}: expected true or false, not {type(value).__name__}")
    return value


def _int(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{where}: expected an integer, not {type(value).__name__}")
    return value


def _number(value: object, where: str) -> float:
    # bool is an int to Python, never a count or a time to us
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where}: expected a number, not {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{where}: expected a finite number, not {value}")
    return float(value)


def _optional(read: Callable[[object, str], T]) -> Callable[[object, str], T | None]:
    return lambda value, where: None if value is None else read(value, where)


def _tuple_of(read: Callable[[object, str], T]) -> Callable[[object, str], tuple[T, ...]]:
    def reader(value: object, where: str) -> tuple[T, ...]:
        if not isinstance(value, list):
            raise ValueError(f"{where}: expected a list, not {type(value).__name__}")
        return tuple(read(item, f"{where}[{i}]") for i, item in enumerate(value))

    return reader


def _read(data: object, where: str, cls: type[Attempt | Job]) -> dict[str, Any]:
    """The checked values of a record's keys, read by the types ``cls`` declares; a
    field with no default is required."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected an object, not {type(data).__name__}")
    spec = {f.name: f for f in fields(cls)}
    unknown = sorted(str(k) for k in data if k not in spec)
    if unknown:
        raise ValueError(f"{where}: unknown keys {', '.join(unknown)}")
    missing = [k for k, f in spec.items() if f.default is MISSING and k not in data]
    if missing:
        raise ValueError(f"{where}: missing {', '.join(missing)}")
    return {k: _READERS[str(f.type)](data[k], f"{where}.{k}") for k, f in spec.items() if k in data}


# By the annotations' text (``from __future__ import annotations`` keeps them strings).
_READERS: dict[str, Reader] = {
    "str": _text,
    "bool": _bool,
    "int": _int,
    "float": _number,
    "int | None": _optional(_int),
    "float | None": _optional(_number),
    "tuple[str, ...]": _tuple_of(_text),
    "tuple[int, ...]": _tuple_of(_int),
    "tuple[Attempt, ...]": _tuple_of(Attempt.from_json),
}
