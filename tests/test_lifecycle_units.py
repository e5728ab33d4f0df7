"""apply's pure parts: stamps, reading them back from a real shell, the plan."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from grid_ops import layout, lifecycle, model, stamp
from grid_ops.config import ClusterConfig

CONFIG = {
    "name": "lc",
    "nodes": [
        {"name": "n1", "host": "10.0.0.1", "role": "head"},
        {"name": "n2", "host": "10.0.0.2"},
        {"name": "n3", "host": "10.0.0.3"},
    ],
}


def _cluster(**changes: object) -> model.ClusterModel:
    data = json.loads(json.dumps(CONFIG))
    data.update(changes)
    return model.resolve(ClusterConfig.model_validate(data), recorded=False)


def _read(root: Path) -> dict[str, object]:
    """Run the stamp-reading line in a real shell, as ssh would on the node."""
    proc = subprocess.run(
        ["bash", "-c", stamp.read_command(str(root))],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return stamp.parse_read(proc.stdout)


def test_a_stamp_and_drain_note_read_back_through_a_real_shell(tmp_path: Path) -> None:
    root = tmp_path / "it's $(touch pwned) a root"
    (root / layout.STATE).mkdir(parents=True)
    cluster = _cluster()
    want = stamp.stamps(cluster, runtime="abc")["n2"]
    (root / layout.STAMP).write_text(json.dumps(want))
    assert _read(root) == {"stamp": want, "ray_running": False, "drained": None}
    (root / layout.DRAIN_NOTE).write_text("fan swap\n")
    assert _read(root)["drained"] == "fan swap"
    assert not (Path.cwd() / "pwned").exists() and not (tmp_path / "pwned").exists()


def test_a_missing_root_exits_with_the_missing_root_code(tmp_path: Path) -> None:
    proc = subprocess.run(["bash", "-c", stamp.read_command(str(tmp_path / "nope"))], check=False)
    assert proc.returncode == layout.EXIT_MISSING_ROOT


def test_a_node_without_a_stamp_reads_as_none(tmp_path: Path) -> None:
    assert _read(tmp_path) == {"stamp": None, "ray_running": False, "drained": None}


def test_the_stamp_part_that_differs_names_the_work() -> None:
    before = stamp.stamps(_cluster(), runtime="abc")
    upgraded = stamp.stamps(_cluster(ray={"version": "2.61.0"}), runtime="abc")
    assert stamp.differs(upgraded["n2"], before["n2"]) == ["venv"]
    tagged = json.loads(json.dumps(CONFIG))
    tagged["nodes"][1]["tags"] = ["big"]
    retagged = stamp.stamps(_cluster(nodes=tagged["nodes"]), runtime="abc")
    assert stamp.differs(retagged["n2"], before["n2"]) == ["ray"]
    assert stamp.differs(retagged["n3"], before["n3"]) == []
    assert stamp.differs(before["n1"], None) == ["venv", "ray"]
    assert stamp.differs(before["n1"], {**before["n1"], "cluster": "other"}) == ["venv", "ray"]
    assert stamp.differs(before["n1"], before["n1"] | {"ray": {}}) == ["ray"]


def _state(name: str, have: dict[str, object] | None, running: bool = True) -> lifecycle.NodeState:
    return lifecycle.NodeState(name=name, reachable=True, stamp=have, ray_running=running)


def test_the_plan_adds_changes_starts_and_removes_only_what_differs() -> None:
    cluster = _cluster()
    want = stamp.stamps(cluster, runtime="abc")
    changed = json.loads(json.dumps(want["n2"]))
    changed["ray"]["start"]["num_cpus"] = 4
    states = {
        "n1": _state("n1", want["n1"]),
        "n2": _state("n2", changed),
        "n3": _state("n3", None, running=False),
        "old": _state("old", want["n2"]),
    }
    applied = {"nodes": {"n1": {}, "n2": {}, "old": {}}, "controller": {"nodes": ["n1"]}}
    plan = lifecycle.plan(cluster, want, states, applied)
    assert plan.add == ["n3"] and plan.change == {"n2": ["ray"]} and plan.current == ["n1"]
    assert plan.remove == ["old"] and plan.unreachable == [] and not plan.restart_all
    assert plan.controller and plan.visit == ["n3", "n2"]

    states["n2"] = _state("n2", want["n2"], running=False)
    states["n1"] = _state("n1", changed | {"ray": want["n2"]["ray"]})
    plan = lifecycle.plan(cluster, want, states, {"controller": cluster.controller})
    assert plan.start == ["n2"] and plan.change == {"n1": ["ray"]} and plan.restart_all
    assert not plan.controller and plan.remove == []


def test_an_unreachable_or_drained_node_is_not_started() -> None:
    cluster = _cluster()
    want = stamp.stamps(cluster, runtime="abc")
    states = {
        "n1": _state("n1", want["n1"]),
        "n2": lifecycle.NodeState(name="n2", reachable=False, error="refused"),
        "n3": lifecycle.NodeState(
            name="n3", reachable=True, stamp=want["n3"], ray_running=False, drained="repair"
        ),
    }
    plan = lifecycle.plan(cluster, want, states, {})
    assert plan.unreachable == ["n2"] and plan.drained == {"n3": "repair"}
    assert plan.start == [] and plan.current == ["n1", "n3"] and plan.empty
    assert lifecycle.plan(cluster, want, states, {}, full=True).change == {"n1": [], "n3": []}


def test_the_runtime_digest_follows_the_pushed_files(tmp_path: Path) -> None:
    (tmp_path / "mod.py").write_text("x = 1\n")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "mod.pyc").write_bytes(b"junk")
    first = stamp.runtime_digest(str(tmp_path))
    (tmp_path / "__pycache__" / "mod.pyc").write_bytes(b"other junk")
    assert stamp.runtime_digest(str(tmp_path)) == first  # not pushed, not counted
    (tmp_path / "mod.py").write_text("x = 2\n")
    assert stamp.runtime_digest(str(tmp_path)) != first
