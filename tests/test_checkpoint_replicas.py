"""A job's checkpoints copied between nodes (runtime.checkpoints): the node side on real
directories, and restore/replication with a stand-in for Ray's pinned tasks that runs each
function in the named node's own remote root. The lab test of the same path is
tests/test_jobs.py (a killed node's rank resumes elsewhere from its replica)."""

from __future__ import annotations

import io
import os
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from grid_ops import layout
from grid_ops.jobs import checkpoint, latest_checkpoint
from grid_ops.runtime import checkpoints as c

JOB = "victim-20261206-abcd"


class Ref:
    def __init__(self, value: Any) -> None:
        self.value = value


class LocalNodes(c.Nodes):
    """Each node is a directory of its own (its remote root); a task runs there at once."""

    def __init__(self, roots: dict[str, Path], alive: list[str] | None = None) -> None:
        self.roots = roots
        self.up = alive if alive is not None else sorted(roots)
        self.calls: list[tuple[str, str]] = []

    def on(self, node: str, function: Callable[..., Any], *args: Any) -> Any:
        if node not in self.up:
            raise RuntimeError(f"{node} is not alive")
        self.calls.append((node, function.__name__))
        values = [a.value if isinstance(a, Ref) else a for a in args]
        old = os.environ.get("GRID_OPS_ROOT")
        os.environ["GRID_OPS_ROOT"] = str(self.roots[node])
        try:
            return Ref(function(*values))
        finally:
            if old is None:
                os.environ.pop("GRID_OPS_ROOT", None)
            else:
                os.environ["GRID_OPS_ROOT"] = old

    def get(self, ref: Any, timeout: float = c.TIMEOUT) -> Any:
        return ref.value

    def alive(self) -> list[str]:
        return list(self.up)


@pytest.fixture
def roots(tmp_path: Path) -> Iterator[dict[str, Path]]:
    found = {name: tmp_path / name / "grid-ops" for name in ("node1", "node2", "node3")}
    for root in found.values():
        root.mkdir(parents=True)
    yield found


def _save(root: Path, step: int, text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A rank on the node of ``root`` saves a checkpoint as a training script does."""
    monkeypatch.setenv("GRID_OPS_CHECKPOINT_DIR", str(root / "jobs" / JOB / "checkpoints"))
    with checkpoint(step) as path:
        Path(path, "state.txt").write_text(text)


def _latest(root: Path, monkeypatch: pytest.MonkeyPatch) -> str | None:
    monkeypatch.setenv("GRID_OPS_CHECKPOINT_DIR", str(root / "jobs" / JOB / "checkpoints"))
    found = latest_checkpoint()
    return Path(found, "state.txt").read_text() if found else None


def test_a_moved_rank_resumes_from_its_replica_when_its_node_is_gone(
    roots: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    nodes = LocalNodes(roots)
    _save(roots["node2"], 1, "rank 1 at step 1", monkeypatch)
    _save(roots["node2"], 2, "rank 1 at step 2", monkeypatch)
    copier = c.Replicator(nodes, JOB, ["node1", "node2"])
    copier.targets = ["node2", "node1"]
    copier.once(1, "node1")
    assert "rank 1: checkpoint step-2 replicated to node1" in capsys.readouterr().err
    copier.once(1, "node1")  # nothing newer: nothing copied, nothing said
    assert capsys.readouterr().err == ""
    replica = roots["node1"] / "jobs" / JOB / "replicas" / "rank-1"
    assert sorted(p.name for p in replica.iterdir()) == ["step-2"]

    nodes.up = ["node1", "node3"]  # node2 is lost; attempt 2 gives rank 1 to node3
    c.restore(nodes, JOB, ["node1", "node3"], ["node1", "node2"])
    assert _latest(roots["node3"], monkeypatch) == "rank 1 at step 2"
    said = capsys.readouterr().err
    assert "rank 1: checkpoint step-2 copied to node3 from node1 (a replica" in said
    assert "rank 0" not in said  # rank 0 kept its node: its own checkpoints are there


def test_a_moved_rank_prefers_its_old_node_while_that_is_up(
    roots: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    nodes = LocalNodes(roots)
    _save(roots["node2"], 1, "replicated", monkeypatch)
    c.Replicator(nodes, JOB, ["node2"]).once(0, "node1")
    _save(roots["node2"], 5, "newer, on the old node only", monkeypatch)
    c.restore(nodes, JOB, ["node3"], ["node2"])
    assert _latest(roots["node3"], monkeypatch) == "newer, on the old node only"


def test_nothing_is_copied_to_a_node_that_has_the_newest_already(
    roots: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shared filesystem: the new node sees the same checkpoints (here: it has them)."""
    nodes = LocalNodes(roots, alive=["node1", "node3"])
    _save(roots["node1"], 3, "rank 0 at step 3", monkeypatch)
    c.Replicator(nodes, JOB, ["node1"]).once(0, "node3")  # node3 holds rank 0's replica
    _save(roots["node3"], 3, "already here", monkeypatch)
    nodes.calls.clear()
    c.restore(nodes, JOB, ["node3"], ["node2"])  # rank 0 moves from the lost node2
    assert ("node3", "unpack") not in nodes.calls
    assert _latest(roots["node3"], monkeypatch) == "already here"


def test_nodes_sharing_a_filesystem_are_seen_as_such(tmp_path: Path) -> None:
    same = tmp_path / "nfs-home" / "grid-ops"
    same.mkdir(parents=True)
    nodes = LocalNodes({"node1": same, "node2": same, "node3": tmp_path / "other"})
    assert c.shared(nodes, JOB, "node1", "node2")
    assert not c.shared(nodes, JOB, "node1", "node3")
    assert list((same / "jobs" / JOB).iterdir()) == []  # the markers are gone


def test_replica_node_is_the_next_rank_or_another_node() -> None:
    assert c.replica_node(["node1", "node2", "node3"], 0, []) == "node2"
    assert c.replica_node(["node1", "node2", "node3"], 2, []) == "node1"
    assert c.replica_node(["node2"], 0, ["node1", "node2", "node3"]) == "node1"
    assert c.replica_node(["node2"], 0, ["node2"]) is None


def test_a_replica_keeps_only_the_newest_and_a_partial_copy_leaves_nothing(
    roots: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRID_OPS_ROOT", str(roots["node1"]))
    for step in (1, 2):
        blob = io.BytesIO()
        with tarfile.open(fileobj=blob, mode="w") as tar:
            data = f"step {step}".encode()
            info = tarfile.TarInfo("state.txt")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        assert c.unpack(JOB, c.REPLICA, 0, (step, blob.getvalue()))[0] == step
    folder = Path(c.folder(JOB, c.REPLICA, 0))
    assert [p.name for p in folder.iterdir()] == ["step-2"]
    with pytest.raises(tarfile.ReadError):
        c.unpack(JOB, c.REPLICA, 0, (3, b"not a tar"))
    assert [p.name for p in folder.iterdir()] == ["step-2"]


def test_a_hostile_archive_or_job_id_writes_nothing_outside_the_job(
    roots: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRID_OPS_ROOT", str(roots["node1"]))
    outside = roots["node1"].parent / "escaped.txt"
    for name, kind in (("../../../escaped.txt", tarfile.REGTYPE), ("link", tarfile.SYMTYPE)):
        blob = io.BytesIO()
        with tarfile.open(fileobj=blob, mode="w") as tar:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = "/etc/passwd" if kind == tarfile.SYMTYPE else ""
            tar.addfile(info, io.BytesIO(b"") if kind == tarfile.REGTYPE else None)
        with pytest.raises(ValueError):
            c.unpack(JOB, c.OWN, 0, (1, blob.getvalue()))
    assert not outside.exists()
    assert list(Path(c.folder(JOB, c.OWN, 0)).iterdir()) == []
    for bad in ("../x", "a/b", "", ".hidden"):
        with pytest.raises(ValueError):
            c.folder(bad, c.OWN, 0)
    with pytest.raises(ValueError):
        c.mark(JOB, "../../x")


class StuckRay:
    """Ray whose tasks never finish: what a busy node looks like to the replicator."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def remote(self, **_: Any) -> Callable[[Callable[..., Any]], Any]:
        ray = self

        class Task:
            def options(self, **_: Any) -> Task:
                return self

            def remote(self, *args: Any) -> object:
                ray.calls.append("remote")
                return object()

        return lambda function: Task()

    def nodes(self) -> list[dict[str, Any]]:
        self.calls.append("nodes")
        return [{"Alive": True, "Resources": layout.pin(n)} for n in ("node1", "node2")]

    def wait(self, refs: list[Any], timeout: float) -> tuple[list[Any], list[Any]]:
        self.calls.append("wait")
        time.sleep(timeout)
        return [], refs

    def get(self, ref: Any, timeout: float) -> Any:
        raise AssertionError("get of a task that never finished")


def test_a_stopped_replicator_lets_go_of_ray_before_stop_returns() -> None:
    """The launcher shuts Ray down right after stop(): a replicator still waiting on a node
    then would call into a shut-down Ray, which ends the job's process with an error."""
    ray = StuckRay()
    copier = c.Replicator(c.Nodes(ray), JOB, ["node1"]).start()
    deadline = time.monotonic() + 30
    while "wait" not in ray.calls and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "wait" in ray.calls  # it waits for node1's marker task
    copier.stop()
    made = len(ray.calls)
    time.sleep(2 * c.SLICE)
    assert not copier._thread.is_alive() and len(ray.calls) == made
