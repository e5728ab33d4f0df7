"""The job queue on the head: the controller owns it, every client (the CLI of any
operator, the API, the dashboard) reads and changes it through the controller.

The queue is one JSON document, ``jobs.json`` in the controller's private state dir,
replaced atomically after each change: queued jobs stay queued across a controller or
head restart, and a running job is looked up again in Ray Jobs when the controller
comes back (adopted while Ray still runs it; its attempt ends "head restarted" when Ray
no longer knows it, which retries it). A job's ``--env`` variables may be secrets: they
are kept beside the queue in ``job-env/<job id>.json`` (0600), never in the queue itself
nor in anything Ray's job API shows, and dropped once the job has ended.

Only running jobs are Ray jobs: the queue holds the rest itself, so 500 queued jobs cost
Ray nothing. Each tick (``tick``) the controller hands in the nodes as Ray sees them;
the board closes the attempts Ray has finished (``jobqueue.after_attempt`` decides what
follows), ends the ones over their timeout, and starts what ``jobqueue.schedule`` says
fits, each rank pinned to its node by the node's ``grid_node:<name>`` resource.

Runs in the controller (a Ray worker on the head); the Ray Jobs side is a ``Runner``
(``runtime.jobs.Runner`` for real; a test may hand in its own).
"""

from __future__ import annotations

import functools
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from grid_ops.fsutil import write_atomic
from grid_ops.runtime import jobqueue as q
from grid_ops.runtime.nodes import Conflicting, Missing, NodeView, Refused
from grid_ops.runtime.private import private_dir

QUEUE_FILE = "jobs.json"
ENV_DIR = "job-env"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
LIVE = (q.QUEUED, q.RUNNING)
# What a client may set when it submits; the board sets the rest.
SPEC_KEYS = (
    "id", "name", "submitter", "priority", "nodes", "gpus_per_node", "cpus_per_node",
    "max_retries", "retry_on_exit", "timeout", "command", "workdir",
)  # fmt: skip
# launch's line for a rank whose worker or node died under it (runtime/launch.py), and
# for one given up because its node was drained before it started there. Why launch
# gives up a rank that never ran, as its line says:
LEFT = "its node left the cluster"
DRAINED = "its node was drained before the rank started there"
RANK_DIED = re.compile(r"grid-ops: rank (\d+) \(node ([^)]*)\) died")
RANK_DRAINED = re.compile(rf"grid-ops: rank (\d+) \(node [^)]*\) died: {re.escape(DRAINED)}")


@dataclass(frozen=True)
class Seen:
    """A Ray job as Ray Jobs reports it."""

    status: str  # PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED
    exit_code: int | None = None
    message: str = ""


class Runner(Protocol):
    """What the board asks of Ray Jobs."""

    def submit(
        self, job: q.Job, submission_id: str, attempt: int, nodes: tuple[str, ...],
        env: dict[str, str],
    ) -> None: ...  # fmt: skip

    def seen(self, submission_id: str) -> Seen | None:
        """The Ray job's state; None when Ray Jobs does not know it (it restarted)."""
        ...

    def stop(self, submission_id: str) -> None: ...

    def energy(self, job_id: str, attempt: int, ranks: int, take: bool = True) -> float | None:
        """The joules the attempt's ranks measured on their GPUs (None: unknown); without
        ``take`` a running attempt's so far, left to grow."""
        ...


def slots(views: Mapping[str, NodeView], running: Iterable[q.Job]) -> list[q.NodeSlot]:
    """The nodes as the scheduler sees them. Free is the smaller of what Ray has free and
    what the queue's running jobs leave (a job just started holds its share before Ray
    has placed it). A dead or drained node is not usable."""
    held: dict[str, tuple[float, float]] = {}
    for job in running:
        for name in job.attempts[-1].nodes if job.attempts else ():
            gpus, cpus = held.get(name, (0.0, 0.0))
            held[name] = (gpus + job.gpus_per_node, cpus + job.cpus_per_node)
    found = []
    for name, view in sorted(views.items()):
        gpus, cpus = float(view.total.get("GPU", 0.0)), float(view.total.get("CPU", 0.0))
        used_gpus, used_cpus = held.get(name, (0.0, 0.0))
        free_gpus = min(float(view.free.get("GPU", 0.0)), gpus - used_gpus)
        free_cpus = min(float(view.free.get("CPU", 0.0)), cpus - used_cpus)
        found.append(
            q.NodeSlot(name, gpus, cpus, max(0.0, free_gpus), max(0.0, free_cpus), view.alive)
        )
    return found


def _message(seen: Seen) -> str:
    lines = [ln for ln in (seen.message or "").strip().splitlines() if ln.strip()]
    return lines[-1][:500] if lines else ""


def cause_of(
    job: q.Job, seen: Seen, views: Mapping[str, NodeView]
) -> tuple[str, int | None, list[str]]:
    """Why the job's running attempt ended, as ``after_attempt`` takes it: the cause,
    the exit code, and the attempt's nodes that are gone: dead in Ray, or named by
    launch's line for a rank that died under it (Ray may not have marked the node dead
    yet). "node_drained" when every such node ran a rank that launch gave up because the
    node was drained before the rank started there (pure)."""
    if seen.status == q.SUCCEEDED:
        return "exited", 0, []
    if job.stop_requested:
        return "stopped", seen.exit_code, []
    message = seen.message or ""
    died = {int(m.group(1)): m.group(2) for m in RANK_DIED.finditer(message)}
    given_up = {int(m.group(1)) for m in RANK_DRAINED.finditer(message)}
    nodes = job.attempts[-1].nodes if job.attempts else ()
    lost = []
    for name in nodes:
        view = views.get(name)
        gone = view is None or not view.node_id or not (view.alive or view.draining)
        if gone or (view is not None and view.ip in died.values()):
            lost.append(name)
    if lost or died:
        # rank i ran pinned to the attempt's node i (launch's --on). Ray ends a drained
        # node's raylet once it is idle, so such a node may be gone from Ray by now.
        drained = {nodes[r] for r in given_up if r < len(nodes)}
        every = bool(given_up) and set(died) <= given_up and set(lost) <= drained
        return ("node_drained" if every else "node_lost"), seen.exit_code, lost
    if seen.status == q.STOPPED:  # stopped outside the queue ('ray job stop')
        return "stopped", seen.exit_code, []
    return "exited", 1 if seen.exit_code is None else seen.exit_code, []


def _ended_at(job: q.Job) -> float:
    last = job.attempts[-1] if job.attempts else None
    return (last.ended_at if last and last.ended_at else None) or job.submitted_at


class Board:
    """The queue: its jobs by id (in submit order), and why each queued one waits."""

    def __init__(self, directory: Path, runner: Runner) -> None:
        self.dir = directory
        self.runner = runner
        self.lock = threading.RLock()
        self.jobs: dict[str, q.Job] = {}
        self.reservation: q.Placement | None = None
        self.problems: list[str] = []  # records that could not be read (kept aside)
        # Ended jobs kept (the oldest ended go first), with their files on the nodes, and
        # for how long at most: the config's execution.job_keep and job_keep_days, set by
        # the controller before each tick (None: nothing is forgotten).
        self.keep: int | None = None
        self.keep_days: float | None = None
        self.head = ""  # the head's name: a shipped workdir lies there
        self.quotas: dict[str, q.Quota] = {}  # by submitter: the config's users' quotas
        # Jobs no longer kept, whose files (jobs/<id>/ under remote_root) are still to be
        # removed from these nodes.
        self.cleanup: dict[str, list[str]] = {}
        self._load()

    # -- the file --------------------------------------------------------------------

    @property
    def path(self) -> Path:
        return self.dir / QUEUE_FILE

    def _load(self) -> None:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            aside = self.path.with_name(f"{QUEUE_FILE}.unreadable-{int(time.time())}")
            os.replace(self.path, aside)
            self.problems.append(f"{self.path} could not be read ({exc}); kept as {aside}")
            return
        rows = data.get("jobs") if isinstance(data, dict) else None
        cleanup = data.get("cleanup") if isinstance(data, dict) else None
        for job_id, names in (cleanup if isinstance(cleanup, dict) else {}).items():
            if JOB_ID.fullmatch(str(job_id)) and isinstance(names, list):
                self.cleanup[str(job_id)] = [str(n) for n in names]
        for index, row in enumerate(rows if isinstance(rows, list) else []):
            try:
                job = q.Job.from_json(row)
            except (TypeError, ValueError) as exc:
                self.problems.append(f"job #{index} of {self.path} skipped: {exc}")
                continue
            self.jobs[job.id] = job

    def _save(self) -> None:
        data = {"jobs": [j.to_json() for j in self.jobs.values()], "cleanup": self.cleanup}
        write_atomic(self.path, json.dumps(data, indent=1) + "\n", mode=0o600)

    def _prune(self, now: float) -> bool:
        """Forget ended jobs beyond ``keep`` (the oldest first) or older than
        ``keep_days``; their files on the nodes go on the cleanup list."""
        if self.keep is None or self.keep_days is None:
            return False
        ended = [j for j in self.jobs.values() if j.status not in LIVE]
        old = now - self.keep_days * 86_400
        gone = ended[: max(0, len(ended) - self.keep)]
        gone += [j for j in ended if j not in gone and _ended_at(j) < old]
        for job in gone:
            del self.jobs[job.id]
            names = {n for a in job.attempts for n in a.nodes}
            if job.workdir and self.head:
                names.add(self.head)
            if names:
                self.cleanup[job.id] = sorted(names)
        return bool(gone)

    def cleaned(self, job_id: str, node: str) -> None:
        """``node`` holds no files of job ``job_id`` any more."""
        with self.lock:
            left = [n for n in self.cleanup.get(job_id, []) if n != node]
            if left:
                self.cleanup[job_id] = left
            else:
                self.cleanup.pop(job_id, None)
            self._save()

    def _env_path(self, job_id: str) -> Path:
        return self.dir / ENV_DIR / f"{job_id}.json"

    def _keep_env(self, job_id: str, env: dict[str, str]) -> None:
        private_dir(self.dir / ENV_DIR)  # made, or closed again, to 0700
        write_atomic(self._env_path(job_id), json.dumps(env), mode=0o600)

    def _env(self, job: q.Job) -> dict[str, str]:
        if not job.has_env:
            return {}
        data = json.loads(self._env_path(job.id).read_text())
        return {str(k): str(v) for k, v in data.items()}

    def _drop_env(self, job: q.Job) -> None:
        if job.has_env:
            self._env_path(job.id).unlink(missing_ok=True)

    # -- what clients ask --------------------------------------------------------------

    def find(self, key: str) -> q.Job:
        """The job of id ``key``, else the newest job named ``key``."""
        with self.lock:
            if key in self.jobs:
                return self.jobs[key]
            named = [j for j in self.jobs.values() if j.name == key]
            if not named:
                known = ", ".join(sorted({j.name for j in self.jobs.values()})[:20])
                raise Missing(f"No job named '{key}'.", f"Known jobs: {known or 'none yet'}.")
            return named[-1]

    def records(self) -> list[q.Job]:
        """Every job, in submit order."""
        with self.lock:
            return list(self.jobs.values())

    def rows(self) -> list[dict[str, Any]]:
        """Every job as a record (``record``), in submit order."""
        return [self.record(job) for job in self.records()]

    def record(self, job: q.Job) -> dict[str, Any]:
        """``job`` as a record (``Job.to_json``); a running attempt's ``energy_j`` is
        what its ranks have measured so far (None until a meter has published)."""
        found = job.to_json()
        running = q.running_attempt(job)
        if running is not None:
            ranks = len(running.nodes) or job.nodes
            found["attempts"][-1]["energy_j"] = self.runner.energy(
                job.id, running.number, ranks, take=False
            )
        return found

    def submit(self, spec: Mapping[str, Any], env: dict[str, str], now: float) -> q.Job:
        """Queue a job. Refused: an unknown or malformed field, a bad name or id, a
        name that a queued or running job has."""
        unknown = sorted(str(k) for k in spec if k not in SPEC_KEYS)
        if unknown:
            raise Refused(f"A job cannot set {', '.join(unknown)}.")
        name, job_id = spec.get("name"), spec.get("id")
        if not isinstance(name, str) or NAME.fullmatch(name) is None:
            raise Refused(f"Job name {str(name)[:80]!r} is not valid.")
        if not isinstance(job_id, str) or JOB_ID.fullmatch(job_id) is None:
            raise Refused(f"Job id {str(job_id)[:80]!r} is not valid.")
        try:
            job = q.Job.from_json(
                {**spec, "submitted_at": now, "status": q.QUEUED, "has_env": bool(env)}
            )
        except ValueError as exc:
            raise Refused(f"The job is not valid: {exc}.") from None
        if not job.command:
            raise Refused("A job needs a command.")
        with self.lock:
            if job.id in self.jobs:
                raise Refused(f"A job with id '{job.id}' exists already.")
            live = [j for j in self.jobs.values() if j.name == name and j.status in LIVE]
            if live:
                raise Conflicting(
                    f"A job named '{name}' is still {live[0].status.lower()}.",
                    f"Pick another name, or stop it with 'grid-ops job cancel {name}'.",
                )
            if env:
                self._keep_env(job.id, env)
            self.jobs[job.id] = replace(job, reason="queued")
            self._save()
            return self.jobs[job.id]

    def cancel(self, key: str) -> q.Job:
        """Stop a job: a queued one ends STOPPED now, a running one once Ray has stopped
        it (the next ticks). An ended job stays as it is."""
        with self.lock:
            job = self.find(key)
            if job.status == q.QUEUED:
                job = replace(job, status=q.STOPPED, reason="cancelled before it started")
                self._drop_env(job)
            elif job.status == q.RUNNING:
                self.runner.stop(job.attempts[-1].submission_id)
                job = replace(job, stop_requested=True, reason="stopping")
            else:
                return job
            self.jobs[job.id] = job
            self._save()
            return job

    def live(self) -> bool:
        """Is there work for a tick: a live job, or ended ones beyond what is kept?"""
        with self.lock:
            ended = sum(1 for j in self.jobs.values() if j.status not in LIVE)
            if self.keep is not None and ended > self.keep:
                return True
            return any(j.status in LIVE for j in self.jobs.values())

    # -- each tick -------------------------------------------------------------------

    def tick(
        self,
        views: Callable[[], Mapping[str, NodeView]],
        now: float,
        reserve_after: float,
        half_life: float = q.DEFAULT_HALF_LIFE,
    ) -> None:
        """Close what ended, end what ran too long, start what fits; save on change.
        ``views`` gives the nodes as Ray sees them; it is asked at most once, and only
        when an attempt ended or a job waits (a tick of running jobs asks Ray Jobs only)."""
        nodes = functools.cache(views)
        with self.lock:
            changed = self._follow(nodes, now)
            changed = self._start(nodes, now, reserve_after, half_life) or changed
            changed = self._prune(now) or changed
            if changed:
                self._save()

    def _follow(self, views: Callable[[], Mapping[str, NodeView]], now: float) -> bool:
        changed = False
        for job in [j for j in self.jobs.values() if j.status == q.RUNNING]:
            sid = job.attempts[-1].submission_id
            seen = self.runner.seen(sid)
            message = ""
            if seen is not None and seen.status not in (q.SUCCEEDED, q.FAILED, q.STOPPED):
                if not q.timed_out(job, now):
                    continue
                self.runner.stop(sid)
            drained = [n for n, v in views().items() if v.draining]
            if seen is None:
                outcome = q.after_attempt(job, "head_restarted", None, now, drained)
            elif seen.status in (q.SUCCEEDED, q.FAILED, q.STOPPED):
                cause, code, lost = cause_of(job, seen, views())
                outcome = q.after_attempt(job, cause, code, now, drained, lost=lost)
                message = _message(seen)
            else:
                outcome = q.after_attempt(job, "timeout", None, now, drained)
            if outcome.ended is not None:
                ended = outcome.ended
                joules = self.runner.energy(job.id, ended.number, len(ended.nodes) or job.nodes)
                ended = replace(ended, message=message or ended.message, energy_j=joules)
                outcome = replace(outcome, ended=ended)
            job = q.apply_outcome(job, outcome)
            if job.status not in LIVE:
                self._drop_env(job)
            self.jobs[job.id] = job
            changed = True
        return changed

    def _start(
        self,
        views: Callable[[], Mapping[str, NodeView]],
        now: float,
        reserve_after: float,
        half_life: float,
    ) -> bool:
        if not any(j.status == q.QUEUED for j in self.jobs.values()):
            self.reservation = None
            return False
        running = [j for j in self.jobs.values() if j.status == q.RUNNING]
        decision = q.schedule(
            self.jobs.values(),
            slots(views(), running),
            now,
            reserve_after,
            half_life,
            self.quotas,
        )
        self.reservation = decision.reservation
        changed = False
        waiting = dict(decision.waiting)
        for start in decision.starts:
            job = self.jobs[start.job_id]
            attempt = len(job.attempts) + 1
            sid = f"{job.id}-{attempt}"
            ranks = q.keep_ranks(job, start.nodes)
            try:
                self.runner.submit(job, sid, attempt, ranks, self._env(job))
            except Exception as exc:  # Ray Jobs refused or is down: it waits, says why
                what = str(exc).strip().splitlines()
                waiting[job.id] = f"could not start on Ray Jobs: {what[-1][:300] if what else exc}"
                continue
            started = q.start_attempt(job, ranks, now)
            last = replace(started.attempts[-1], submission_id=sid)
            self.jobs[job.id] = replace(started, attempts=(*started.attempts[:-1], last))
            changed = True
        for job_id, reason in waiting.items():
            job = self.jobs[job_id]
            if job.status == q.QUEUED and job.reason != reason:
                self.jobs[job_id] = replace(job, reason=reason)
                changed = True
        return changed
