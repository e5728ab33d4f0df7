"""apply's pure parts: stamps, reading them back from a real shell, the plan, venv
builds, which processes the Ray stop module kills."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from grid_ops import layout, lifecycle, model
from grid_ops.model import stamp
from grid_ops.model.config import ClusterConfig

FIXTURES = Path(__file__).parent / "fixtures"
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
    assert _read(root) == {
        "stamp": want, "ray_running": False, "drained": None, "venv_id": "", "cluster_id": ""
    }  # fmt: skip
    (root / layout.DRAIN_NOTE).write_text("fan swap\n")
    (root / layout.CLUSTER_ID).write_text("0123456789abcdef\n")
    (root / layout.VENVS / "abc123").mkdir(parents=True)
    (root / layout.VENV).symlink_to(Path(layout.VENVS) / "abc123")
    read = _read(root)
    assert read["drained"] == "fan swap" and read["venv_id"] == "abc123"
    assert read["cluster_id"] == "0123456789abcdef"
    assert not (Path.cwd() / "pwned").exists() and not (tmp_path / "pwned").exists()


def test_a_missing_root_exits_with_the_missing_root_code(tmp_path: Path) -> None:
    proc = subprocess.run(["bash", "-c", stamp.read_command(str(tmp_path / "nope"))], check=False)
    assert proc.returncode == layout.EXIT_MISSING_ROOT


def test_a_node_without_a_stamp_reads_as_none(tmp_path: Path) -> None:
    assert _read(tmp_path) == {
        "stamp": None, "ray_running": False, "drained": None, "venv_id": "", "cluster_id": ""
    }  # fmt: skip


def test_the_stamp_part_that_differs_names_the_work() -> None:
    before = stamp.stamps(_cluster(), runtime="abc")
    upgraded = stamp.stamps(_cluster(ray={"version": "2.61.0"}), runtime="abc")
    assert stamp.differs(upgraded["n2"], before["n2"]) == ["venv"]
    tagged = json.loads(json.dumps(CONFIG))
    tagged["nodes"][1]["tags"] = ["big"]
    retagged = stamp.stamps(_cluster(nodes=tagged["nodes"]), runtime="abc")
    assert stamp.differs(retagged["n2"], before["n2"]) == ["ray"]
    assert stamp.differs(retagged["n3"], before["n3"]) == []
    assert stamp.differs(before["n1"], None) == ["venv", "runtime", "ray"]
    assert stamp.differs(before["n1"], {**before["n1"], "cluster": "other"}) == list(stamp.PARTS)
    assert stamp.differs(before["n1"], before["n1"] | {"ray": {}}) == ["ray"]
    newer = stamp.stamps(_cluster(), runtime="def")
    assert stamp.differs(newer["n1"], before["n1"]) == ["runtime"]
    assert not stamp.restarts(["runtime"]) and stamp.restarts(["runtime", "ray"])


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

    states["n1"] = _state("n1", want["n1"] | {"runtime": "old"})
    plan = lifecycle.plan(cluster, want, states, {})
    assert plan.change == {"n1": ["runtime"]} and not plan.restart_all  # Ray keeps running


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
    plan = lifecycle.plan(cluster, want, states, {"controller": cluster.controller})
    assert plan.unreachable == ["n2"] and plan.drained == {"n3": "repair"}
    assert plan.start == [] and plan.current == ["n1", "n3"] and plan.empty
    # nothing recorded on this machine (another's apply, or 'cluster start' alone): the
    # controller's settings are not known, so an apply hands them in
    assert lifecycle.plan(cluster, want, states, {}).controller
    assert lifecycle.plan(cluster, want, states, {}, full=True).change == {"n1": [], "n3": []}


def _package(root: Path) -> Path:
    """A grid_ops package of both sides, small."""
    for rel in ("__init__.py", "layout.py", "jobs.py", "runtime/drain.py", "cli/app.py",
                "config.py", "server/api.py", "module_utils/grid_manifest.py"):  # fmt: skip
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(f"# {rel}\n")
    (root / "runtime" / "__pycache__").mkdir()
    (root / "runtime" / "__pycache__" / "drain.pyc").write_bytes(b"junk")
    return root


def test_the_runtime_digest_covers_the_node_side_only(tmp_path: Path) -> None:
    from grid_ops.runtime.digest import runtime_digest

    here = str(_package(tmp_path))
    first = runtime_digest(here)
    (tmp_path / "runtime" / "__pycache__" / "drain.pyc").write_bytes(b"other junk")
    (tmp_path / "cli" / "app.py").write_text("# the CLI, edited\n")
    (tmp_path / "config.py").write_text("# the model, edited\n")
    (tmp_path / "server" / "api.py").write_text("# the server, edited\n")
    assert runtime_digest(here) == first  # the operator's side: no node changes
    (tmp_path / "runtime" / "drain.py").write_text("# edited\n")
    assert runtime_digest(here) != first
    second = runtime_digest(here)
    (tmp_path / "jobs.py").write_text("# report(), edited\n")
    assert runtime_digest(here) != second


def test_the_runtime_push_is_the_node_side_and_clears_an_older_whole_push(
    tmp_path: Path,
) -> None:
    """The role's rsync filters (layout.runtime_filters) with real rsync: the node gets
    exactly the files the digest covers; what an older grid-ops pushed (the whole
    package) goes; the node's own __pycache__ stays."""
    import subprocess

    from grid_ops import layout
    from grid_ops.runtime.digest import files, runtime_digest

    source = _package(tmp_path / "src")
    node = tmp_path / "node"
    (node / "cli").mkdir(parents=True)
    (node / "cli" / "old.py").write_text("# an older push\n")
    (node / "config.py").write_text("# an older push\n")
    (node / "__pycache__").mkdir()
    (node / "__pycache__" / "layout.cpython-311.pyc").write_bytes(b"the node's own")

    def push() -> str:
        argv = ["rsync", "-a", "--delete", "--delete-excluded", "--itemize-changes",
                *layout.runtime_filters(), "--", f"{source}/", f"{node}/"]  # fmt: skip
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout

    push()
    pushed = sorted(
        str(p.relative_to(node))
        for p in node.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    )
    assert pushed == sorted(files(str(source)))
    assert not (node / "cli").exists() and not (node / "config.py").exists()
    assert (node / "__pycache__" / "layout.cpython-311.pyc").exists()
    assert runtime_digest(str(node)) == runtime_digest(str(source))
    assert push() == ""  # a second push changes nothing


def _build(root: Path, build: str, requirements: str) -> None:
    base = root / layout.VENVS / build
    (base / "bin").mkdir(parents=True)
    (base / "bin" / "python").write_text("")
    (base / layout.REQUIREMENTS).write_text(f"# a comment\n{requirements}\n")
    (base / layout.BUILD_MARKER).write_text(requirements)


def test_venv_builds_switch_atomically_keep_one_previous_and_roll_back(tmp_path: Path) -> None:
    from grid_ops.runtime import venvs

    root = str(tmp_path)
    legacy = tmp_path / layout.VENV
    (legacy / "bin").mkdir(parents=True)  # a venv from before builds: a real directory
    (legacy / layout.BUILD_MARKER).write_text("ray\n")  # that grid-ops installed (its marker)
    assert venvs.current(root) == venvs.LEGACY
    _build(tmp_path, "aaa", "ray[default]==2.60.0")
    assert venvs.switch(root, "aaa") == {"switched": True, "from": "legacy", "to": "aaa"}
    assert sorted(os.listdir(tmp_path / layout.VENVS)) == ["aaa", "legacy"]
    _build(tmp_path, "bbb", "ray[default]==2.60.0\ntomli==2.4.1")
    venvs.switch(root, "bbb")
    assert venvs.current(root) == "bbb" and venvs.previous(root) == "aaa"
    assert sorted(os.listdir(tmp_path / layout.VENVS)) == ["aaa", "bbb"]  # legacy pruned
    assert os.readlink(tmp_path / layout.VENV) == os.path.join(layout.VENVS, "bbb")
    (tmp_path / layout.VENVS / "ccc").mkdir()  # incomplete: never switched to
    with pytest.raises(venvs.NoBuild):
        venvs.switch(root, "ccc")
    assert venvs.current(root) == "bbb"
    with pytest.raises(venvs.NoBuild):
        venvs.switch(root, "../x")
    env = dict(os.environ, GRID_OPS_ROOT=root)
    for build, rc in (("ccc", 1), ("--if-built ccc", 0)):  # a failed build: stay, or refuse
        proc = subprocess.run(
            [sys.executable, "-m", "grid_ops.runtime.venvs", "switch", *build.split()],
            capture_output=True, text=True, env=env, check=False,
        )  # fmt: skip
        assert proc.returncode == rc, proc.stdout + proc.stderr
    assert json.loads(proc.stdout) == {
        "switched": False, "from": "bbb", "to": "bbb", "missing": "ccc"
    }  # fmt: skip
    assert venvs.current(root) == "bbb"

    stamp_file = tmp_path / layout.STAMP
    stamp_file.parent.mkdir(parents=True, exist_ok=True)
    stamp_file.write_text(json.dumps({"venv": {"requirements": ["new"], "python": "p"}}))
    proc = subprocess.run(
        [sys.executable, "-m", "grid_ops.runtime.venvs", "rollback"],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout) == {"switched": True, "from": "bbb", "to": "aaa"}
    assert venvs.current(root) == "aaa" and venvs.previous(root) == "bbb"
    restamped = json.loads(stamp_file.read_text())
    assert restamped["venv"] == {"requirements": ["ray[default]==2.60.0"], "python": "p"}


@pytest.mark.parametrize(
    ("role", "stopped"),
    [
        (
            "head",
            [
                "python:monitor.py",
                "python:ray.util.client.server",
                "python:dashboard.py",
                "python:log_monitor.py",
                "raylet",
                "ray::DashboardA",
                "ray::RuntimeEnv",
                "ray::IDLE",
                "ray::Controller",
                "gcs_server",  # the GCS last
            ],
        ),
        (
            "worker",
            ["python:log_monitor.py", "raylet", "ray::DashboardA", "ray::RuntimeEnv"],
        ),
    ],
)
def test_the_ray_stop_module_picks_the_processes_ray_stop_would(
    role: str, stopped: list[str]
) -> None:
    """Real process tables of a lab head and worker (Ray 2.60.0, the node user's own):
    grid_ray_stop kills what 'ray stop' would (its raylet, workers, agents, monitors,
    dashboard; the GCS last) and leaves the rest (the dashboard's multiprocessing helpers
    and its forked heads, which 'ray stop' does not match either, go with their parent)."""
    from grid_ops.module_utils import grid_node_os

    table = json.loads((FIXTURES / "ray-processes" / f"{role}.json").read_text())["processes"]
    kinds = [(grid_node_os.ray_kind(p["comm"], p["argv"]), p) for p in table]
    picked = [p for kind, p in sorted(kinds, key=lambda row: row[0]) if kind]

    def label(p: dict[str, Any]) -> str:
        if p["comm"] != "python":
            return str(p["comm"])
        script = next((a for a in p["argv"][1:] if not a.startswith("-")), "")
        return "python:" + os.path.basename(script)

    assert [label(p) for p in picked] == stopped
    assert [label(p) for kind, p in kinds if kind == 2] == (
        ["gcs_server"] if role == "head" else []
    )


FORKSERVER_PARENT = """
import sys, time
from multiprocessing import forkserver
forkserver.ensure_running()  # what Ray's dashboard does for its modules
print("ready", flush=True)
time.sleep(600)
"""


def test_a_killed_dashboards_forkserver_dir_is_removed_and_nothing_else(tmp_path: Path) -> None:
    """Ray's dashboard starts a multiprocessing forkserver whose dir (pymp-*) in the temp
    dir is the dashboard's to remove at exit: SIGKILLed by the stop module, it would stay
    in the node's /tmp, one per stop. A real forkserver here, started by a real parent in
    a temp dir of its own, with a stranger's dir beside it and a user's own file in a
    second forkserver's dir."""
    import signal
    import tempfile

    from grid_ops.module_utils import grid_node_os

    temp = tempfile.mkdtemp(prefix="gofs-")  # short: a socket path has 107 bytes
    try:
        parents = []
        for _ in range(2):
            parent = subprocess.Popen(
                [sys.executable, "-c", FORKSERVER_PARENT],
                env=dict(os.environ, TMPDIR=temp), stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            assert parent.stdout is not None and parent.stdout.readline() == "ready\n"
            parents.append(parent)
        stranger = Path(temp) / "pymp-stranger"
        stranger.mkdir()
        (stranger / "listener-notasocket").write_text("a user's file\n")
        first = grid_node_os.forkserver_sockets([parents[0].pid])
        second = grid_node_os.forkserver_sockets([parents[1].pid])
        assert len(first) == len(second) == 1 and first != second
        assert all(p.startswith(temp + "/pymp-") for p in first + second)
        assert grid_node_os.forkserver_sockets([os.getpid()]) == []  # not this process'
        (Path(second[0]).parent / "notes.txt").write_text("kept\n")  # a file in the way
        for parent in parents:
            parent.send_signal(signal.SIGKILL)
            parent.wait()
        listed = [first[0], second[0], str(stranger / "listener-notasocket")]
        removed = grid_node_os.remove_forkserver_sockets([*listed, "/etc/passwd"])
        assert removed == [str(Path(first[0]).parent)]
        assert sorted(os.listdir(temp)) == sorted([Path(second[0]).parent.name, "pymp-stranger"])
        assert os.listdir(Path(second[0]).parent) == ["notes.txt"]  # kept, with the file
        assert (stranger / "listener-notasocket").read_text() == "a user's file\n"
    finally:
        import shutil

        shutil.rmtree(temp, ignore_errors=True)
