"""The server's one background refresher per cluster: it alone probes the nodes and
calls the head, every ``interval`` seconds, and keeps what it saw; requests read that.
So a page or an API poll never fans out SSH on its own, and 50 clients cost what one
does.

Each round: a health round as 'grid-ops health' runs it (probe, cache, the quarantine
of health_check), the controller's overview (offload, boosts, the memory pool, its
numbers), the jobs (refreshed from Ray Jobs as 'job status' does, with the logs of
those running). Ray's view ('cluster status', an Ansible run of a few seconds) is
refreshed every ``cluster_interval`` seconds. A section that fails keeps its last data
and carries the error, which the API answers with (503 for a cluster that is down).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from grid_ops.actions.progress import QUIET, Progress
from grid_ops.errors import GridOpsError, bug_report
from grid_ops.jobs import TERMINAL

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from grid_ops.model import ClusterModel

SECTIONS = ("health", "cluster", "controller", "jobs")
RECENT_S = 600.0  # a job that ended this recently gets its final logs read by a round
log = logging.getLogger("grid_ops.serve")


@dataclass
class Section:
    """What one part of a round found: its data (the last good one), when, and the
    error of the latest try (None when it worked)."""

    data: Any = None
    at: float | None = None
    error: GridOpsError | None = None


@dataclass
class JobLogs:
    text: str = ""
    final: bool = False  # the job had ended when these were read: they will not grow


@dataclass(eq=False)
class Waiter:
    """A request waiting (in its event loop, holding no thread) for a health part that
    begins after ``asked``."""

    asked: float
    loop: asyncio.AbstractEventLoop
    done: asyncio.Future[None]

    def settle(self) -> None:
        """Wake it, from the refresher's thread (not when its loop has closed)."""
        with contextlib.suppress(RuntimeError):  # the server is stopping
            self.loop.call_soon_threadsafe(_set_done, self.done)


def _set_done(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)


@dataclass
class Refresher:
    cluster: ClusterModel  # built once, when the server starts
    path: Path
    interval: float
    cluster_interval: float
    progress: Progress = QUIET  # what the health round says (the serve command's stderr)
    sections: dict[str, Section] = field(default_factory=lambda: {s: Section() for s in SECTIONS})
    logs: dict[str, JobLogs] = field(default_factory=dict)  # by job name
    rounds: int = 0
    _cluster_due: float = 0.0
    _waiters: list[Waiter] = field(default_factory=list)  # of ?refresh=1 requests
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _wake: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    # -- reading (requests) ---------------------------------------------------------------

    def section(self, name: str) -> Section:
        with self._lock:
            found = self.sections[name]
            return Section(found.data, found.at, found.error)

    def job_logs(self, job_id: str) -> JobLogs | None:
        with self._lock:
            found = self.logs.get(job_id)
            return None if found is None else JobLogs(found.text, found.final)

    async def refreshed(self, timeout: float) -> bool:
        """Ask for a round now and wait until its health part, begun after this call,
        has ended (requests asking at once share it); False when that took longer than
        ``timeout`` seconds. The wait holds no thread: any number of requests may wait
        while others are answered."""
        loop = asyncio.get_running_loop()
        waiter = Waiter(time.monotonic(), loop, loop.create_future())
        with self._lock:
            self._waiters.append(waiter)
        self._wake.set()
        try:
            await asyncio.wait_for(waiter.done, timeout)
            return True
        except TimeoutError:
            return False
        finally:
            with self._lock:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    def note_job(self, record: dict[str, Any]) -> None:
        """Add a job launched through the API to the last round's list (replacing an
        older copy), so requests about it are answered from here until the next round."""
        with self._lock:
            found = self.sections["jobs"]
            rows = [r for r in found.data or [] if r.get("id") != record.get("id")]
            self.sections["jobs"] = Section([*rows, dict(record)], found.at, found.error)

    def kick(self) -> None:
        """Start the next round now (after a change made through the API)."""
        self._wake.set()

    # -- the loop --------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="grid-ops-refresher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def _loop(self) -> None:
        """A round every ``interval`` seconds, start to start (at once after a round
        that took longer, or when kicked)."""
        while not self._stop.is_set():
            started = time.monotonic()
            self.round()
            self._wake.wait(max(0.0, self.interval - (time.monotonic() - started)))
            self._wake.clear()

    def round(self) -> None:
        try:
            began = time.monotonic()
            self._run("health", self._health)
            self._settle(began)
            if time.monotonic() >= self._cluster_due:
                self._cluster_due = time.monotonic() + self.cluster_interval
                self._run("cluster", self._cluster)
            self._run("controller", self._controller)
            self._run("jobs", self._jobs)
        finally:
            with self._lock:
                self.rounds += 1

    def _settle(self, began: float) -> None:
        """Wake the requests waiting for a health part that began at ``began``."""
        with self._lock:
            ready = [w for w in self._waiters if w.asked <= began]
            self._waiters = [w for w in self._waiters if w.asked > began]
        for waiter in ready:
            waiter.settle()

    def _run(self, name: str, work: Callable[[], Any]) -> None:
        started = time.monotonic()
        try:
            data, error = work(), None
        except GridOpsError as exc:
            data, error = None, exc
        except Exception as exc:  # a bug: keep serving, say what broke
            log.exception("refreshing %s failed", name)
            data, error = None, GridOpsError(*bug_report(exc))
        with self._lock:
            section = self.sections[name]
            if error is None:
                self.sections[name] = Section(data, time.time(), None)
            else:
                section.error = error
        log.debug("refreshed %s in %.2f s", name, time.monotonic() - started)

    # -- the parts of a round ----------------------------------------------------------

    def _health(self) -> dict[str, Any]:
        from grid_ops import answers
        from grid_ops.actions import health

        found = health.check(
            self.cluster, self.path, policy=health.REPAIR, refresh=True, progress=self.progress
        )
        return answers.health(found.nodes, cached=False)

    def _cluster(self) -> dict[str, Any]:
        from grid_ops.actions.status import ray_status

        return ray_status(self.cluster, self.path)

    def _controller(self) -> dict[str, Any]:
        from grid_ops.drivers import control

        view, _ = control.call(self.cluster, "overview")
        return dict(view)

    def _jobs(self) -> list[dict[str, Any]]:
        from grid_ops.actions import jobs

        records = jobs.load_all(self.cluster)
        recent = time.time() - RECENT_S
        for record in records:
            with self._lock:
                known = self.logs.get(record["id"])
            if known is not None and known.final:
                continue
            if record.get("status") == "QUEUED":
                continue  # no output yet
            ended = jobs.last_attempt(record).get("ended_at") or 0
            if record.get("status") in TERMINAL and ended < recent:
                continue  # an old job: its logs are read when asked for (once)
            try:
                self.read_logs(record)
            except GridOpsError:  # its logs next round; the list itself is good
                log.debug("reading the logs of job %s failed", record["id"])
        return records

    def read_logs(self, record: dict[str, Any]) -> JobLogs:
        """Read a job's logs now and keep them (by the job's id); final when the job had
        ended before they were read."""
        from grid_ops.actions import jobs

        ended = record.get("status") in TERMINAL
        found = JobLogs(jobs.logs(self.cluster, record), ended)
        with self._lock:
            self.logs[record["id"]] = found
        return JobLogs(found.text, found.final)
