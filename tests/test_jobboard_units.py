"""The queue on the head (grid_ops.runtime.jobboard) with a stand-in for Ray Jobs: what
it starts, when, where, and what an ended attempt leads to. The same paths run for real
on the lab in tests/test_queue_lab.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from grid_ops.runtime import jobboard
from grid_ops.runtime.jobboard import Board, Seen
from grid_ops.runtime.nodes import NodeView, Refused


class FakeRay:
    """Ray Jobs as the board sees it: a submit starts a job, the test ends it."""

    def __init__(self) -> None:
        self.state: dict[str, Seen] = {}
        self.where: dict[str, tuple[str, ...]] = {}
        self.stopped: list[str] = []
        self.refuse = ""
        self.joules: dict[tuple[str, int], float] = {}  # what an attempt's ranks measured

    def submit(
        self, job: Any, sid: str, attempt: int, nodes: tuple[str, ...], env: dict[str, str]
    ) -> None:
        if self.refuse:
            raise RuntimeError(self.refuse)
        self.state[sid] = Seen("RUNNING")
        self.where[sid] = nodes

    def seen(self, sid: str) -> Seen | None:
        return self.state.get(sid)

    def stop(self, sid: str) -> None:
        self.stopped.append(sid)
        self.state[sid] = Seen("STOPPED", None, "stopped")

    def energy(self, job_id: str, attempt: int, ranks: int, take: bool = True) -> float | None:
        if take:
            return self.joules.pop((job_id, attempt), None)
        return self.joules.get((job_id, attempt))

    def end(self, sid: str, status: str = "SUCCEEDED", code: int | None = 0, msg: str = "") -> None:
        self.state[sid] = Seen(status, code, msg)

    def running(self) -> list[str]:
        return [s for s, seen in self.state.items() if seen.status == "RUNNING"]


def views(names: tuple[str, ...] = ("n1", "n2", "n3"), cpus: float = 2.0, **dead: bool) -> dict:
    found = {}
    for name in names:
        alive = not dead.get(name, False)
        found[name] = NodeView(
            name, "10.0.0.1", node_id=name, alive=alive,
            total={"CPU": cpus, "GPU": 1.0},
            free={"CPU": cpus, "GPU": 1.0} if alive else {},
        )  # fmt: skip
    return found


def spec(job_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": job_id, "name": job_id, "submitter": "ann", "command": ["train"], **extra}


@pytest.fixture
def ray() -> FakeRay:
    return FakeRay()


@pytest.fixture
def board(tmp_path: Path, ray: FakeRay) -> Board:
    return Board(tmp_path, ray)


def test_jobs_needing_every_node_run_one_after_another_high_priority_second(
    board: Board, ray: FakeRay
) -> None:
    for t, name in enumerate(("a", "b", "c")):
        board.submit(spec(name, nodes=3, gpus_per_node=1.0), {}, float(t))
        board.tick(views, float(t), reserve_after=600)  # the controller ticks on submit
    board.submit(spec("urgent", nodes=3, gpus_per_node=1.0, priority="high"), {}, 3.0)
    order = []
    for now in range(10, 100, 10):
        # Ray's own view: a running job holds every node's GPU
        seen = views()
        for view in seen.values():
            view.free["GPU"] = 0.0 if ray.running() else 1.0
        board.tick(lambda current=seen: current, float(now), reserve_after=600)
        running = ray.running()
        assert len(running) <= 1  # never overlapping
        if running and running[0].rsplit("-", 1)[0] not in order:
            order.append(running[0].rsplit("-", 1)[0])
        elif running:
            ray.end(running[0])
    assert order == ["a", "urgent", "b", "c"]
    assert all(r["status"] == "SUCCEEDED" for r in board.rows())


def test_a_running_attempt_shows_its_energy_so_far_and_an_ended_one_keeps_it(
    board: Board, ray: FakeRay
) -> None:
    board.submit(spec("e", nodes=2, gpus_per_node=1.0, max_retries=1), {}, 0.0)
    board.tick(views, 0.0, reserve_after=600)
    (sid,) = ray.running()
    (before,) = board.rows()  # running, no meter has published yet: unknown
    assert before["attempts"][0]["energy_j"] is None
    ray.joules["e", 1] = 3600.0  # what the ranks' meters have published so far
    assert board.record(board.find("e"))["attempts"][0]["energy_j"] == 3600.0
    assert board.find("e").attempts[0].energy_j is None  # shown, not recorded
    ray.joules["e", 1] = 7200.0
    assert ray.where[sid] == ("n1", "n2")
    ray.end(sid, "FAILED", None)
    board.tick(lambda: views(n2=True), 100.0, reserve_after=600)  # n2 lost: a retry
    first = board.find("e").attempts[0]
    assert first.energy_j == 7200.0 and first.ended_at == 100.0
    (sid,) = ray.running()
    ray.end(sid)  # the retry measured nothing (no power readings): unknown, not zero
    board.tick(lambda: views(n2=True), 200.0, reserve_after=600)
    job = board.find("e")
    assert [a.energy_j for a in job.attempts] == [7200.0, None]
    # kept across a restart of the controller
    assert Board(board.path.parent, ray).find("e").attempts[0].energy_j == 7200.0


def test_a_queued_job_says_why_it_waits(board: Board, ray: FakeRay) -> None:
    board.submit(spec("big", nodes=2, gpus_per_node=1.0), {}, 1.0)
    seen = views()
    seen["n1"].free["GPU"] = seen["n2"].free["GPU"] = 0.0
    board.tick(lambda current=seen: current, 2.0, reserve_after=600)
    (row,) = board.rows()
    assert row["status"] == "QUEUED"
    assert row["reason"] == "needs 1 GPU on each of 2 nodes; 1 node has them free"


def test_a_started_job_holds_its_share_before_ray_shows_it(board: Board, ray: FakeRay) -> None:
    board.submit(spec("one", nodes=3, cpus_per_node=2.0), {}, 1.0)
    board.submit(spec("two", nodes=3, cpus_per_node=2.0), {}, 2.0)
    board.tick(views, 3.0, reserve_after=600)
    board.tick(views, 4.0, reserve_after=600)  # Ray still shows every CPU free
    assert [r["status"] for r in board.rows()] == ["RUNNING", "QUEUED"]


def test_a_lost_node_retries_on_the_others_and_a_plain_failure_does_not(
    board: Board, ray: FakeRay
) -> None:
    board.submit(spec("victim", nodes=2, max_retries=1), {}, 1.0)
    board.submit(spec("plain", nodes=1, max_retries=3), {}, 1.5)
    board.tick(views, 2.0, reserve_after=600)
    first = ray.where["victim-1"]
    ray.end("victim-1", "FAILED", 1, "grid-ops: rank 1 (node 10.0.0.3) died: ActorDied")
    ray.end("plain-1", "FAILED", 3)
    gone = first[1]
    board.tick(lambda: views(**{gone: True}), 3.0, reserve_after=600)
    victim, plain = board.rows()
    assert plain["status"] == "FAILED" and plain["attempts"][0]["exit_code"] == 3
    assert victim["status"] == "RUNNING" and len(victim["attempts"]) == 2
    assert gone not in ray.where["victim-2"] and victim["avoid"] == [gone]
    assert victim["attempts"][0]["reason"] == f"node lost ({gone})"
    assert "died" in victim["attempts"][0]["message"]
    ray.end("victim-2")
    board.tick(lambda: views(**{gone: True}), 4.0, reserve_after=600)
    assert board.find("victim").status == "SUCCEEDED"


def addressed(drained: str = "", dead: str = "") -> dict[str, NodeView]:
    """Three nodes with addresses of their own, one of them drained or dead."""
    return {
        name: NodeView(
            name, f"10.0.0.{i}", node_id=name, alive=name not in (drained, dead),
            draining=name == drained, total={"CPU": 2.0, "GPU": 1.0},
            free={"CPU": 2.0, "GPU": 1.0} if name not in (drained, dead) else {},
        )
        for i, name in enumerate(("n1", "n2", "n3"), 1)
    }  # fmt: skip


def test_a_rank_given_up_on_a_drained_node_reads_node_drained_and_runs_elsewhere(
    board: Board, ray: FakeRay
) -> None:
    """launch gives up a rank whose node was drained before it started there: the queue
    says "node drained", not "node lost", and retries the job avoiding that node."""
    board.submit(spec("d", nodes=2, max_retries=1), {}, 1.0)
    board.tick(addressed, 2.0, reserve_after=600)
    drained = ray.where["d-1"][1]
    ip = addressed()[drained].ip
    line = f"grid-ops: rank 1 (node {ip}) died: {jobboard.DRAINED}"
    ray.end("d-1", "FAILED", 1, f"{line}; stopping the other ranks\n{line}; the job fails")
    board.tick(lambda: addressed(drained=drained), 3.0, reserve_after=600)
    (row,) = board.rows()
    assert row["attempts"][0]["reason"] == f"node drained ({drained})"
    assert row["status"] == "RUNNING" and row["avoid"] == [drained]
    assert drained not in ray.where["d-2"]


def test_a_drain_with_a_rank_that_died_elsewhere_is_a_lost_node() -> None:
    """Only an attempt whose every lost node is named by launch's drained line reads
    "node drained"; a rank that died, or a node that left unnamed, makes it "node
    lost"."""
    from grid_ops.runtime import jobqueue as q

    attempt = q.Attempt(number=1, nodes=("n1", "n2", "n3"), started_at=1.0)
    job = q.Job(id="j", submitter="ann", submitted_at=0.5, nodes=3, attempts=(attempt,))
    given_up = f"grid-ops: rank 1 (node 10.0.0.2) died: {jobboard.DRAINED}; the job fails"
    died = "grid-ops: rank 2 (node 10.0.0.3) died: ActorDiedError: gone"
    both = Seen("FAILED", 1, f"{given_up}\n{died}")
    assert jobboard.cause_of(job, both, addressed(drained="n2")) == (
        "node_lost", 1, ["n2", "n3"],
    )  # fmt: skip
    alone = Seen("FAILED", 1, given_up)
    assert jobboard.cause_of(job, alone, addressed(drained="n2")) == ("node_drained", 1, ["n2"])
    # Ray ends a drained node's raylet once it is idle: gone by now, even from Ray's node
    # table (no address to match the line by), drained all the same
    assert jobboard.cause_of(job, alone, addressed(dead="n2")) == ("node_drained", 1, ["n2"])
    unknown = {**addressed(), "n2": NodeView("n2", "")}
    assert jobboard.cause_of(job, alone, unknown) == ("node_drained", 1, ["n2"])
    # a node that left with no such line is lost
    assert jobboard.cause_of(job, Seen("FAILED", 1, "boom"), addressed(dead="n2")) == (
        "node_lost", 1, ["n2"],
    )  # fmt: skip


def test_a_restarted_head_requeues_running_jobs_and_keeps_queued_ones(
    tmp_path: Path, ray: FakeRay
) -> None:
    board = Board(tmp_path, ray)
    board.submit(spec("run", nodes=3, cpus_per_node=1.0, max_retries=1), {"SEED": "7"}, 1.0)
    board.tick(views, 2.0, reserve_after=600)
    board.submit(spec("wait", nodes=3, cpus_per_node=2.0), {}, 3.0)
    board.tick(views, 4.0, reserve_after=600)
    after = FakeRay()  # Ray Jobs forgot everything; the queue is read back from disk
    again = Board(tmp_path, after)
    assert [j.status for j in again.jobs.values()] == ["RUNNING", "QUEUED"]
    again.tick(views, 5.0, reserve_after=600)
    run = again.find("run")
    assert run.attempts[0].reason == "head restarted" and run.status == "RUNNING"
    assert list(after.state) == ["run-2"]  # attempt 2 started; "wait" still waits for CPUs


def test_a_running_job_that_ray_still_knows_is_adopted(tmp_path: Path, ray: FakeRay) -> None:
    board = Board(tmp_path, ray)
    board.submit(spec("run"), {}, 1.0)
    board.tick(views, 2.0, reserve_after=600)
    again = Board(tmp_path, ray)  # a new controller; Ray Jobs kept running the job
    again.tick(views, 3.0, reserve_after=600)
    assert again.find("run").status == "RUNNING" and len(again.find("run").attempts) == 1
    ray.end("run-1")
    again.tick(views, 4.0, reserve_after=600)
    assert again.find("run").status == "SUCCEEDED"


def test_timeout_stops_the_attempt_and_fails_the_job(board: Board, ray: FakeRay) -> None:
    board.submit(spec("hang", timeout=30.0), {}, 1.0)
    board.tick(views, 2.0, reserve_after=600)
    board.tick(views, 20.0, reserve_after=600)
    assert board.find("hang").status == "RUNNING"
    board.tick(views, 33.0, reserve_after=600)
    job = board.find("hang")
    assert ray.stopped == ["hang-1"] and job.status == "FAILED" and job.reason == "timeout"


def test_cancel_ends_a_queued_job_now_and_a_running_one_once_ray_stopped_it(
    board: Board, ray: FakeRay
) -> None:
    board.submit(spec("run"), {}, 1.0)
    board.tick(views, 2.0, reserve_after=600)
    board.submit(spec("later", nodes=3, cpus_per_node=2.0), {}, 3.0)
    assert board.cancel("later").status == "STOPPED"
    job = board.cancel("run")
    assert job.status == "RUNNING" and job.stop_requested and ray.stopped == ["run-1"]
    board.tick(views, 4.0, reserve_after=600)
    assert board.find("run").status == "STOPPED" and board.find("run").reason == "stopped"


def test_a_refused_start_waits_and_says_why(board: Board, ray: FakeRay) -> None:
    ray.refuse = "ConnectionError: dashboard not up"
    board.submit(spec("one"), {}, 1.0)
    board.tick(views, 2.0, reserve_after=600)
    job = board.find("one")
    assert job.status == "QUEUED" and "could not start on Ray Jobs: Connection" in job.reason
    ray.refuse = ""
    board.tick(views, 3.0, reserve_after=600)
    assert board.find("one").status == "RUNNING"


def test_live_names_are_unique_and_a_name_finds_its_newest_job(board: Board, ray: FakeRay) -> None:
    board.submit(spec("a-1", name="a"), {}, 1.0)
    with pytest.raises(Refused, match="still queued"):
        board.submit(spec("a-2", name="a"), {}, 2.0)
    board.cancel("a")
    board.submit(spec("a-2", name="a"), {}, 3.0)
    assert board.find("a").id == "a-2" and board.find("a-1").status == "STOPPED"
    with pytest.raises(Refused, match="No job named 'zz'"):
        board.find("zz")


def test_ended_jobs_beyond_the_limit_or_too_old_go_and_their_files_are_listed(
    tmp_path: Path, ray: FakeRay
) -> None:
    board = Board(tmp_path, ray)
    board.keep, board.keep_days, board.head = 2, 1.0, "n1"
    for i in range(4):
        board.submit(spec(f"j{i}", workdir="/home/me/proj" if i == 0 else ""), {}, float(i))
        board.tick(views, float(i), reserve_after=600)
        ray.end(f"j{i}-1")
        board.tick(views, float(i) + 0.5, reserve_after=600)
    board.submit(spec("live"), {}, 9.0)
    board.tick(views, 10.0, reserve_after=600)
    again = Board(tmp_path, ray)
    again.keep, again.keep_days = 2, 1.0
    assert [r["id"] for r in again.rows()] == ["j2", "j3", "live"]
    assert set(again.cleanup) == {"j0", "j1"} and "n1" in again.cleanup["j0"]
    for node in list(again.cleanup["j1"]):
        again.cleaned("j1", node)
    assert set(Board(tmp_path, ray).cleanup) == {"j0"}
    again.tick(views, 2 * 86_400.0, reserve_after=600)  # a day later: j2 and j3 too old
    assert [r["id"] for r in again.rows()] == ["live"]


def test_five_hundred_queued_jobs_cost_ray_nothing_until_they_fit(
    tmp_path: Path, ray: FakeRay
) -> None:
    board = Board(tmp_path, ray)
    for i in range(500):
        board.submit(spec(f"q{i}", nodes=3, cpus_per_node=2.0), {}, float(i))
    board.tick(views, 1000.0, reserve_after=600)
    assert len(ray.state) == 1  # one fits; 499 are the queue's alone
    assert len(Board(tmp_path, ray).rows()) == 500


def test_a_checkpoint_appears_only_once_complete_and_the_newest_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from grid_ops import jobs

    monkeypatch.setenv("GRID_OPS_CHECKPOINT_DIR", str(tmp_path / "ckpt"))
    assert jobs.latest_checkpoint() is None
    for step in (1, 2, 10):
        with jobs.checkpoint(step, keep=2) as path:
            (Path(path) / "model.bin").write_text(f"weights {step}")
            assert jobs.latest_checkpoint() != path  # not visible while written
    with pytest.raises(ZeroDivisionError), jobs.checkpoint(11):
        raise ZeroDivisionError  # a rank dying mid-write leaves nothing behind
    latest = jobs.latest_checkpoint()
    assert latest is not None and (Path(latest) / "model.bin").read_text() == "weights 10"
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["step-10", "step-2"]
    monkeypatch.delenv("GRID_OPS_CHECKPOINT_DIR")
    with pytest.raises(RuntimeError, match="not inside a grid-ops queued job"):
        jobs.latest_checkpoint()


def test_a_rank_whose_node_is_gone_is_named_and_launch_says_it_died() -> None:
    from grid_ops.runtime import launch

    placed = {"0": "id-a", "1": "id-b", "2": "id-c"}
    assert launch.dead_ranks(placed, {"id-a", "id-c"}) == [1]
    assert launch.dead_ranks(placed, {"id-a", "id-b", "id-c"}) == []
    line = "grid-ops: rank 1 (node 10.0.0.2) died: its node left the cluster; the job fails"
    assert jobboard.RANK_DIED.search(line).group(2) == "10.0.0.2"  # type: ignore[union-attr]


def test_a_rank_stalled_on_a_drained_node_is_given_up_after_two_looks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ray keeps a placed bundle on a node it drains but starts nothing there: a rank not
    started before its node was drained (the health gate's quarantine) would wait for
    ever. Ray's task table is read through launch.not_started (here: a stand-in; the lab
    meets the same race in tests/test_gpu_lab.py, whose serve quarantines node2)."""
    from grid_ops.runtime import launch

    placed = {0: "id-a", 1: "id-b", 2: "id-c"}
    started = {"r0": True, "r1": False, "r2": False}
    monkeypatch.setattr(launch, "not_started", lambda ref: not started[ref])
    assert launch.drained_ranks(placed, {"id-b", "id-c"}, {0: "r0", 1: "r1"}) == [1]
    stalled = launch.Stalled()
    waiting = {0: "r0", 1: "r1", 2: "r2"}
    assert stalled.look(placed, {"id-a", "id-b"}, waiting) == []  # rank 0 runs: kept
    assert stalled.look(placed, {"id-a", "id-b"}, waiting) == [1]  # the second look
    started["r2"] = True  # id-c drained after rank 2 started: it finishes there
    assert stalled.look(placed, {"id-c"}, waiting) == []
    assert stalled.look(placed, {"id-c"}, waiting) == []
    assert stalled.look(placed, set(), waiting) == []  # the drain lifted: nothing held
    line = (
        "grid-ops: rank 1 (node 10.0.0.2) died: its node was drained before the rank "
        "started there; stopping the other ranks"
    )
    assert jobboard.RANK_DIED.search(line).group(2) == "10.0.0.2"  # type: ignore[union-attr]
