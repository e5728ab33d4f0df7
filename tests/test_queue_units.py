"""The job queue's policy (grid_ops.runtime.jobqueue): fit, reasons, order, fair share,
reservations, retries and the stored record. Pure functions: a small simulated cluster
plays the head's part (start what a pass says, hold the resources, end the attempts)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from grid_ops.runtime.jobqueue import (
    FAILED,
    QUEUED,
    RUNNING,
    STOPPED,
    SUCCEEDED,
    Attempt,
    Decision,
    Job,
    NodeSlot,
    after_attempt,
    apply_outcome,
    never_fits,
    order,
    place,
    schedule,
    start_attempt,
    timed_out,
    usage,
    why_waiting,
)

HOUR = 3600.0
NOW = 1_000_000.0


def job(id: str, submitter: str = "ann", at: float = NOW - 60, **kw: Any) -> Job:
    return Job(id=id, name=f"train-{id}", submitter=submitter, submitted_at=at, **kw)


def slot(name: str, gpus: float, free: float, cpus: float = 16, usable: bool = True) -> NodeSlot:
    return NodeSlot(name, gpus, cpus, free, cpus, usable)


class Cluster:
    """The head's side: what is free is what the RUNNING jobs' attempts do not hold."""

    def __init__(self, gpus: dict[str, float], cpus: float = 16) -> None:
        self.gpus = gpus
        self.cpus = cpus
        self.jobs: dict[str, Job] = {}
        self.started: list[str] = []

    def submit(self, *jobs: Job) -> None:
        self.jobs.update((j.id, j) for j in jobs)

    def held(self, name: str) -> tuple[float, float]:
        running = [
            j for j in self.jobs.values() if j.status == RUNNING and name in j.attempts[-1].nodes
        ]
        return sum(j.gpus_per_node for j in running), sum(j.cpus_per_node for j in running)

    def slots(self) -> list[NodeSlot]:
        out = []
        for name, total in self.gpus.items():
            gpus, cpus = self.held(name)
            out.append(NodeSlot(name, total, self.cpus, total - gpus, self.cpus - cpus))
        return out

    def step(self, now: float, reserve_after: float = 1e9) -> Decision:
        decision = schedule(list(self.jobs.values()), self.slots(), now, reserve_after)
        for start in decision.starts:
            self.jobs[start.job_id] = start_attempt(self.jobs[start.job_id], start.nodes, now)
            self.started.append(start.job_id)
        for name, total in self.gpus.items():  # nothing is ever over-committed
            gpus, cpus = self.held(name)
            assert gpus <= total and cpus <= self.cpus, f"{name} over-committed"
        return decision

    def end(self, job_id: str, now: float, cause: str = "exited", code: int | None = 0) -> None:
        current = self.jobs[job_id]
        self.jobs[job_id] = apply_outcome(current, after_attempt(current, cause, code, now))

    def running(self) -> list[str]:
        return sorted(j.id for j in self.jobs.values() if j.status == RUNNING)


# --- schedule over time ----------------------------------------------------------------


def test_jobs_needing_every_node_run_one_at_a_time() -> None:
    cluster = Cluster({"n1": 2, "n2": 2})
    cluster.submit(*(job(f"j{i}", at=NOW + i, nodes=2, gpus_per_node=2) for i in (1, 2, 3)))
    now = NOW + 10
    for _ in range(3):
        decision = cluster.step(now)
        assert len(decision.starts) == 1
        assert sorted(decision.starts[0].nodes) == ["n1", "n2"]
        assert len(cluster.running()) == 1
        # the others wait, and say for what
        for reason in decision.waiting.values():
            assert reason == "needs 2 GPUs on each of 2 nodes; no node has them free"
        now += HOUR
        cluster.end(cluster.running()[0], now)
    assert cluster.started == ["j1", "j2", "j3"]
    assert {j.status for j in cluster.jobs.values()} == {SUCCEEDED}
    assert cluster.step(now).starts == ()


def test_a_high_priority_job_submitted_last_runs_second() -> None:
    cluster = Cluster({"n1": 1})
    cluster.submit(*(job(f"j{i}", at=NOW + i, gpus_per_node=1) for i in (1, 2, 3)))
    now = NOW + 10
    cluster.step(now)
    cluster.submit(job("urgent", at=now + 1, gpus_per_node=1, priority="high"))
    while cluster.running():
        now += HOUR
        cluster.end(cluster.running()[0], now)
        cluster.step(now)
    assert cluster.started == ["j1", "urgent", "j2", "j3"]


def test_a_stuck_job_does_not_block_the_jobs_behind_it() -> None:
    nodes = [slot("n1", 4, free=1), slot("n2", 4, free=1)]
    first = job("big", at=NOW - 100, gpus_per_node=4, priority="high")  # fits later
    never = job("huge", at=NOW - 90, gpus_per_node=8, priority="high")  # fits never
    small = job("small", at=NOW - 10, gpus_per_node=1, priority="low")
    # reserve_after is not reached: no reservation, so nothing holds the small job back
    decision = schedule([first, never, small], nodes, NOW, reserve_after=HOUR)
    assert [s.job_id for s in decision.starts] == ["small"]
    assert decision.reservation is None
    assert decision.waiting == {
        "big": "needs 4 GPUs on 1 node; no node has them free",
        "huge": "needs 8 GPUs per node; no node has that many",
    }


def test_one_pass_does_not_place_two_jobs_on_the_same_free_gpus() -> None:
    nodes = [slot("n1", 4, free=3), slot("n2", 4, free=1)]
    jobs = [job(f"j{i}", at=NOW + i, gpus_per_node=2) for i in range(3)]
    decision = schedule(jobs, nodes, NOW + 10, reserve_after=HOUR)
    assert [(s.job_id, s.nodes) for s in decision.starts] == [("j0", ("n1",))]
    assert decision.waiting == {
        "j1": "needs 2 GPUs on 1 node; no node has them free",
        "j2": "needs 2 GPUs on 1 node; no node has them free",
    }


def test_cpus_are_a_need_too() -> None:
    nodes = [NodeSlot("n1", 0, 8, 0, 3), NodeSlot("n2", 0, 8, 0, 6)]
    decision = schedule(
        [job("a", cpus_per_node=4, nodes=1), job("b", at=NOW, cpus_per_node=4)], nodes, NOW, HOUR
    )
    assert [(s.job_id, s.nodes) for s in decision.starts] == [("a", ("n2",))]
    assert decision.waiting == {"b": "needs 4 CPUs on 1 node; no node has them free"}


# --- placement and reasons -------------------------------------------------------------


def test_placement_takes_the_tightest_nodes_that_fit_then_name_order() -> None:
    nodes = [
        slot("d", 8, free=8),
        slot("c", 8, free=2),
        slot("b", 8, free=2),
        slot("a", 8, free=1),  # too little free
        slot("e", 8, free=2, usable=False),  # drained
        slot("f", 8, free=2),
    ]
    two = job("two", nodes=2, gpus_per_node=2)
    assert place(two, nodes) == ["b", "c"]
    assert place(job("avoids", nodes=2, gpus_per_node=2, avoid=("b",)), nodes) == ["c", "f"]
    assert place(job("four", nodes=4, gpus_per_node=2), nodes) == ["b", "c", "f", "d"]
    assert place(job("five", nodes=5, gpus_per_node=2), nodes) is None
    # a name listed twice is one node: a job's ranks need distinct nodes
    assert place(two, [slot("x", 4, free=4), slot("x", 4, free=4)]) is None


def test_fractional_gpus_that_add_up_still_fit() -> None:
    free = 1.0 - 0.1 - 0.2 - 0.2  # 0.49999999999999994
    assert place(job("half", gpus_per_node=0.5), [slot("n1", 1, free=free)]) == ["n1"]


def test_why_waiting_says_what_is_missing() -> None:
    needs_two = job("a", nodes=2, gpus_per_node=2)
    assert (
        why_waiting(needs_two, [slot("n1", 4, free=2), slot("n2", 4, free=0)])
        == "needs 2 GPUs on each of 2 nodes; 1 node has them free"
    )
    assert (
        why_waiting(needs_two, [slot("n1", 4, free=4), slot("n2", 4, free=4, usable=False)])
        == "needs 2 nodes; the cluster has 1 usable"
    )
    assert (
        why_waiting(replace_avoid(needs_two, "n2"), [slot("n1", 4, free=4), slot("n2", 4, free=4)])
        == "needs 2 GPUs on each of 2 nodes; 1 node has that many besides its avoided n2"
    )
    assert (
        why_waiting(
            job("b", nodes=3, gpus_per_node=1, cpus_per_node=4),
            [slot("n1", 4, free=0), slot("n2", 4, free=1), slot("n3", 4, free=1)],
        )
        == "needs 1 GPU and 4 CPUs on each of 3 nodes; 2 nodes have them free"
    )
    assert why_waiting(needs_two, [slot("n1", 4, free=2), slot("n2", 4, free=3)]) == "fits now"


def replace_avoid(j: Job, *avoid: str) -> Job:
    return Job.from_json({**j.to_json(), "avoid": list(avoid)})


def test_never_fits_uses_total_capacity_of_every_node() -> None:
    nodes = [slot("n1", 4, free=0), slot("n2", 2, free=2, usable=False)]
    assert never_fits(job("a", nodes=3), nodes) == "needs 3 nodes; the cluster has 2"
    assert (
        never_fits(job("b", gpus_per_node=8), nodes)
        == "needs 8 GPUs per node; no node has that many"
    )
    assert (
        never_fits(job("c", cpus_per_node=32), nodes)
        == "needs 32 CPUs per node; no node has that many"
    )
    assert (
        never_fits(job("d", nodes=2, gpus_per_node=3), nodes)
        == "needs 3 GPUs on each of 2 nodes; 1 node has that many"
    )
    # busy or drained is not never: n1 is full, n2 drained, both big enough
    for fits_later in (job("e", nodes=2, gpus_per_node=2), job("f", gpus_per_node=4)):
        assert never_fits(fits_later, nodes) is None
    assert why_waiting(job("e", nodes=2, gpus_per_node=2), nodes) == (
        "needs 2 nodes; the cluster has 1 usable"
    )


# --- order and fair share --------------------------------------------------------------


def finished(id: str, submitter: str, gpus: float, nodes: int, start: float, end: float) -> Job:
    attempt = Attempt(
        number=1, nodes=tuple(f"n{i}" for i in range(nodes)), started_at=start, ended_at=end
    )
    return job(
        id,
        submitter,
        at=start,
        nodes=nodes,
        gpus_per_node=gpus,
        status=SUCCEEDED,
        attempts=(attempt,),
    )


def test_usage_is_gpu_hours_halved_each_half_life() -> None:
    old = finished("old", "ann", gpus=2, nodes=2, start=NOW - 51 * HOUR, end=NOW - 48 * HOUR)
    running = start_attempt(job("run", "bob", gpus_per_node=1), ["n1"], NOW - HOUR)
    cpu_only = finished("cpu", "cy", gpus=0, nodes=1, start=NOW - 5 * HOUR, end=NOW)
    waiting = job("w", "dee", gpus_per_node=4)
    jobs = [old, running, cpu_only, waiting]
    # 4 GPUs for 3 hours = 12 GPU-hours, 48 h ago: a quarter at 24 h, a sixteenth at 12 h
    assert usage(jobs, NOW) == pytest.approx({"ann": 3.0, "bob": 1.0, "cy": 0.0, "dee": 0.0})
    assert usage(jobs, NOW, half_life=12 * HOUR)["ann"] == pytest.approx(0.75)
    # one submitter's jobs add up
    more = finished("more", "ann", gpus=1, nodes=1, start=NOW - 2 * HOUR, end=NOW)
    assert usage([*jobs, more], NOW)["ann"] == pytest.approx(5.0)
    with pytest.raises(ValueError, match="half_life"):
        usage(jobs, NOW, half_life=0)


def test_the_submitter_with_less_recent_usage_goes_first() -> None:
    ann_job = job("ann-1", "ann", at=NOW - 100, gpus_per_node=1)
    bob_job = job("bob-1", "bob", at=NOW - 50, gpus_per_node=1)
    # ann used 12 GPU-hours two days ago (3.0 now), bob 4 GPU-hours just now
    ann_old = finished("a0", "ann", gpus=4, nodes=1, start=NOW - 51 * HOUR, end=NOW - 48 * HOUR)
    bob_new = finished("b0", "bob", gpus=2, nodes=1, start=NOW - 2 * HOUR, end=NOW)
    jobs = [bob_job, ann_job, ann_old, bob_new]
    one_gpu = [slot("n1", 1, free=1)]
    assert [s.job_id for s in schedule(jobs, one_gpu, NOW, HOUR).starts] == ["ann-1"]
    # the same 12 GPU-hours used just now outweigh bob's 4: bob goes first
    ann_new = finished("a0", "ann", gpus=4, nodes=1, start=NOW - 3 * HOUR, end=NOW)
    jobs = [bob_job, ann_job, ann_new, bob_new]
    assert [s.job_id for s in schedule(jobs, one_gpu, NOW, HOUR).starts] == ["bob-1"]


def test_order_is_priority_then_usage_then_submit_time_then_id() -> None:
    heavy = {"ann": 100.0, "bob": 1.0}
    jobs = [
        job("b-late", "bob", at=20),
        job("a-high", "ann", at=30, priority="high"),
        job("b-low", "bob", at=1, priority="low"),
        job("a-early", "ann", at=5),
        job("b-y", "bob", at=10),
        job("b-x", "bob", at=10),
    ]
    assert [j.id for j in order(jobs, heavy)] == [
        "a-high",
        "b-x",
        "b-y",
        "b-late",
        "a-early",
        "b-low",
    ]
    # a submitter with no usage on record counts as none
    assert [j.id for j in order([*jobs[:2], job("new", "cy", at=99)], heavy)][1] == "new"


# --- reservations ----------------------------------------------------------------------


def reservation_case(waited: float, priority: str = "high") -> Decision:
    nodes = [slot("big", 8, free=2), slot("small", 4, free=1)]
    jobs = [
        job("wide", at=NOW - waited, gpus_per_node=8, priority=priority),
        job("two", at=NOW - 20, gpus_per_node=2),  # fits on big only
        job("one", at=NOW - 10, gpus_per_node=1),  # fits on small too
    ]
    return schedule(jobs, nodes, NOW, reserve_after=HOUR)


def test_a_starving_high_priority_job_holds_nodes_and_others_backfill_elsewhere() -> None:
    decision = reservation_case(waited=2 * HOUR)
    assert decision.reservation is not None
    assert (decision.reservation.job_id, decision.reservation.nodes) == ("wide", ("big",))
    assert [(s.job_id, s.nodes) for s in decision.starts] == [("one", ("small",))]
    assert decision.waiting["two"] == "fits now only on nodes held for job wide (big)"
    assert (
        decision.waiting["wide"] == "needs 8 GPUs on 1 node; no node has them free; big held for it"
    )


@pytest.mark.parametrize(("waited", "priority"), [(HOUR / 2, "high"), (2 * HOUR, "normal")])
def test_no_reservation_before_starving_or_below_high(waited: float, priority: str) -> None:
    decision = reservation_case(waited, priority)
    assert decision.reservation is None
    assert [(s.job_id, s.nodes) for s in decision.starts] == [
        ("two", ("big",)),
        ("one", ("small",)),
    ]


def test_one_reservation_at_a_time_on_the_largest_nodes() -> None:
    nodes = [slot("n1", 4, free=0), slot("n2", 8, free=0), slot("n3", 8, free=1)]
    first = job("first", at=NOW - 3 * HOUR, gpus_per_node=4, priority="high")
    second = job("second", at=NOW - 2 * HOUR, gpus_per_node=4, priority="high")
    decision = schedule([second, first], nodes, NOW, reserve_after=HOUR)
    assert decision.reservation is not None
    # by total size (n2, n3 have 8), then name; what is free now does not move the hold
    assert (decision.reservation.job_id, decision.reservation.nodes) == ("first", ("n2",))
    assert "held" not in decision.waiting["second"]


def test_a_job_that_never_fits_gets_no_reservation() -> None:
    nodes = [slot("n1", 4, free=1)]
    never = job("never", at=NOW - 9 * HOUR, gpus_per_node=16, priority="high")
    small = job("small", at=NOW, gpus_per_node=1)
    decision = schedule([never, small], nodes, NOW, reserve_after=HOUR)
    assert decision.reservation is None
    assert [s.job_id for s in decision.starts] == ["small"]


# --- attempts and retries --------------------------------------------------------------


def running(**kw: Any) -> Job:
    return start_attempt(job("r", nodes=2, **kw), ["n1", "n2"], NOW - HOUR)


def test_the_exit_code_decides_for_an_exited_attempt() -> None:
    retrying = running(max_retries=3, retry_on_exit=(75,))
    ok = after_attempt(retrying, "exited", 0, NOW)
    assert (ok.status, ok.reason) == (SUCCEEDED, "exited with code 0")
    bad = after_attempt(retrying, "exited", 1, NOW, quarantined=["n3"])
    assert (bad.status, bad.reason, bad.avoid) == (FAILED, "exited with code 1", ())
    again = after_attempt(retrying, "exited", 75, NOW, quarantined=["n3"])
    assert (again.status, again.reason, again.avoid) == (
        QUEUED,
        "attempt 2 of 4 queued after exited with code 75",
        ("n3",),
    )
    assert again.ended is not None
    assert (again.ended.number, again.ended.ended_at, again.ended.exit_code) == (1, NOW, 75)
    with pytest.raises(ValueError, match="exit code"):
        after_attempt(retrying, "exited", None, NOW)
    with pytest.raises(ValueError, match="unknown cause"):
        after_attempt(retrying, "crashed", 1, NOW)


@pytest.mark.parametrize("cause", ["timeout", "stopped"])
def test_a_timeout_fails_and_a_stop_stops_without_retry(cause: str) -> None:
    outcome = after_attempt(running(max_retries=5), cause, None, NOW, quarantined=["n1"])
    assert (outcome.status, outcome.reason, outcome.avoid) == (
        FAILED if cause == "timeout" else STOPPED,
        cause,
        (),
    )


def test_a_lost_node_requeues_avoiding_it_until_retries_run_out() -> None:
    cluster = Cluster({"n1": 1, "n2": 1, "n3": 1})
    cluster.submit(job("r", nodes=2, gpus_per_node=1, max_retries=1, avoid=("n9",)))
    (first,) = cluster.step(NOW).starts
    assert first.nodes == ("n1", "n2")
    current = cluster.jobs["r"]
    outcome = after_attempt(current, "node_lost", None, NOW + 10, ["n3"], lost=["n2"])
    assert outcome.status == QUEUED
    assert outcome.avoid == ("n2", "n3", "n9")
    assert outcome.reason == "attempt 2 of 2 queued after node lost (n2)"
    cluster.jobs["r"] = apply_outcome(current, outcome)
    # only n1 is left outside its avoid list: it waits, and says why
    decision = cluster.step(NOW + 20)
    assert decision.starts == ()
    assert decision.waiting["r"] == (
        "needs 1 GPU on each of 2 nodes; 1 node has that many besides its avoided n2, n3"
    )
    # the quarantine is over and the job's record says so (a hand edit)
    cluster.jobs["r"] = replace_avoid(cluster.jobs["r"], "n2")
    (second,) = cluster.step(NOW + 30).starts
    assert second.nodes == ("n1", "n3")
    final = after_attempt(cluster.jobs["r"], "head_restarted", None, NOW + 40)
    assert (final.status, final.reason) == (
        FAILED,
        "head restarted; no retries left after 2 attempts",
    )
    ended = apply_outcome(cluster.jobs["r"], final)
    assert [(a.number, a.nodes, a.reason) for a in ended.attempts] == [
        (1, ("n1", "n2"), "node lost (n2)"),
        (2, ("n1", "n3"), "head restarted"),
    ]


def test_no_retries_means_a_lost_node_fails_the_job() -> None:
    outcome = after_attempt(running(), "node_lost", None, NOW, lost=["n2"])
    assert (outcome.status, outcome.reason) == (
        FAILED,
        "node lost (n2); no retries left after 1 attempt",
    )


def test_a_running_attempt_times_out_at_its_limit() -> None:
    limited = running(timeout=2 * HOUR)  # started an hour before NOW
    assert not timed_out(limited, NOW)
    assert timed_out(limited, NOW + HOUR)
    assert not timed_out(running(), NOW + 100 * HOUR)
    assert not timed_out(job("q", timeout=1.0), NOW)


# --- the stored record -----------------------------------------------------------------


def test_a_job_round_trips_through_json() -> None:
    original = apply_outcome(
        running(gpus_per_node=0.5, cpus_per_node=2, max_retries=2, retry_on_exit=(75, 76)),
        after_attempt(
            running(max_retries=2, retry_on_exit=(75,)), "exited", 75, NOW, quarantined=["n4"]
        ),
    )
    text = json.dumps(original.to_json(), allow_nan=False)
    assert Job.from_json(json.loads(text)) == original
    assert json.loads(text)["attempts"][0]["nodes"] == ["n1", "n2"]


def test_an_older_record_without_the_newer_keys_reads_with_defaults() -> None:
    loaded = Job.from_json({"id": "old", "submitter": "ann", "submitted_at": 5})
    assert (loaded.status, loaded.priority, loaded.nodes, loaded.avoid) == (QUEUED, "normal", 1, ())
    assert loaded.submitted_at == 5.0


GOOD: dict[str, Any] = job("g", nodes=2, gpus_per_node=1).to_json()


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ([], "expected an object"),
        ({k: v for k, v in GOOD.items() if k != "submitter"}, "missing submitter"),
        ({**GOOD, "gpu": 1}, "unknown keys gpu"),
        ({**GOOD, "nodes": "2"}, "job.nodes: expected an integer"),
        ({**GOOD, "nodes": True}, "job.nodes: expected an integer"),
        ({**GOOD, "nodes": 0}, "nodes must be 1 or more"),
        ({**GOOD, "gpus_per_node": -1}, "gpus_per_node must be"),
        ({**GOOD, "gpus_per_node": float("nan")}, "finite"),
        ({**GOOD, "priority": "urgent"}, "priority 'urgent'"),
        ({**GOOD, "status": "DONE"}, "status 'DONE'"),
        ({**GOOD, "timeout": 0}, "timeout must be above 0"),
        ({**GOOD, "max_retries": -1}, "max_retries"),
        ({**GOOD, "avoid": "n1"}, "job.avoid: expected a list"),
        ({**GOOD, "avoid": ["n1", 2]}, r"job.avoid\[1\]: expected a string"),
        ({**GOOD, "retry_on_exit": [1.5]}, "expected an integer"),
        ({**GOOD, "attempts": [{"number": 1, "nodes": ["n1"]}]}, "missing started_at"),
        (
            {**GOOD, "attempts": [{"number": 1, "nodes": [], "started_at": 0, "exit_code": "1"}]},
            r"job.attempts\[0\].exit_code: expected an integer",
        ),
        ({**GOOD, "attempts": [{"number": 0, "nodes": [], "started_at": 0}]}, "1 or more"),
    ],
)
def test_a_malformed_record_is_refused(record: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Job.from_json(record)


def test_the_good_record_of_the_refusals_above_reads() -> None:
    assert Job.from_json(GOOD) == job("g", nodes=2, gpus_per_node=1)


def test_a_retry_keeps_each_surviving_node_in_its_rank() -> None:
    from grid_ops.runtime.jobqueue import keep_ranks, start_attempt

    job = start_attempt(
        Job(id="j", submitter="a", submitted_at=0.0, nodes=3), ("n3", "n1", "n2"), 1
    )
    assert keep_ranks(job, ("n1", "n4", "n3")) == ("n3", "n1", "n4")
    assert keep_ranks(Job(id="k", submitter="a", submitted_at=0.0), ("b", "a")) == ("b", "a")
