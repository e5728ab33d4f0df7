"""The cluster's lifecycle on the lab: apply (adopt, no change, remove, re-add), drain and
undrain, reset, a node removed while it cannot be reached."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from grid_ops import layout, model
from grid_ops.model import config
from grid_ops.runtime.private import short_dir_path
from tests.conftest import Lab, grid_ops, lab_node

pytestmark = pytest.mark.lab


def _json(proc: subprocess.CompletedProcess[str]) -> Any:
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stdout.strip(), proc.stderr
    return json.loads(proc.stdout)


def _without(lab: Lab, tmp: Path, name: str) -> Path:
    """The lab's config with node ``name`` deleted."""
    data = yaml.safe_load(lab.config.read_text())
    data["nodes"] = [n for n in data["nodes"] if n["name"] != name]
    path = tmp / f"without-{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _home(name: str) -> Path:
    from grid_ops import lab as lab_mod

    state = lab_mod.load_state()
    assert state is not None
    return state.node(name).home


def _forkserver_dirs(name: str) -> set[str]:
    """The multiprocessing forkserver dirs (pymp-*) of node ``name``'s user in /tmp (lab
    nodes share this machine's /tmp)."""
    import pwd

    from grid_ops import lab as lab_mod

    state = lab_mod.load_state()
    assert state is not None
    uid = pwd.getpwnam(state.node(name).user).pw_uid
    return {p.name for p in Path("/tmp").glob("pymp-*") if p.lstat().st_uid == uid}


def _ray(lab: Lab) -> dict[str, dict[str, Any]]:
    data = _json(lab.cli("cluster", "status", "-c", str(lab.config), "--json"))
    return {n["name"]: n for n in data["nodes"]}


def _runs(lab: Lab) -> set[str]:
    runs = lab.state_dir / "runs"
    return set(os.listdir(runs)) if runs.exists() else set()


@pytest.fixture(scope="module")
def running(lab: Lab) -> Lab:
    lab.start_cluster()
    return lab


def test_apply_adopts_the_running_cluster_then_a_no_change_apply_runs_no_playbook(
    running: Lab,
) -> None:
    lab = running
    cfg = str(lab.config)
    stamps = [_home(name) / "grid-ops" / layout.STAMP for name in lab.nodes]
    # provision then 'cluster start' (the README's two steps) record what apply would
    forkservers = _forkserver_dirs(lab.nodes[0])  # the head's dashboard made one of them
    assert lab.cli("cluster", "stop", "-c", cfg).returncode == 0
    # the stop kills the dashboard, and removes the dir it can no longer remove itself
    assert _forkserver_dirs(lab.nodes[0]) < forkservers
    for path in stamps:
        path.unlink(missing_ok=True)
    assert lab.cli("provision", "-c", cfg, timeout=900).returncode == 0  # Ray down: switches
    assert lab.cli("cluster", "start", "-c", cfg, timeout=600).returncode == 0
    check = _json(lab.cli("apply", "-c", cfg, "--check", "--json"))
    assert check["plan"]["current"] == lab.nodes, check["plan"]
    doctor = _json(lab.cli("doctor", "-c", cfg, "--json", timeout=300))
    runtime = {r["node"]: (r["status"], r["detail"]) for r in doctor["checks"]
               if r["check"] == "runtime"}  # fmt: skip
    assert runtime == dict.fromkeys(lab.nodes, ("ok", "this grid-ops' runtime"))
    # nodes started before stamps existed carry none: adopted (Ray kept running)
    for path in stamps:
        path.unlink()
    first = lab.cli("apply", "-c", cfg, "--json", timeout=900)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    assert _json(first)["start"]["hosts"].keys() == set(lab.nodes)
    assert all(row["ray"] == "alive" for row in _ray(lab).values())

    before = _runs(lab)
    again = lab.cli("apply", "-c", str(lab.config), "--json")
    assert again.returncode == 0, again.stderr
    data = _json(again)
    assert data["plan"]["current"] == lab.nodes
    assert not {"provision", "stop", "start"} & set(data)
    assert _runs(lab) == before  # Ansible did not run at all
    text = lab.cli("apply", "-c", str(lab.config))
    assert "Nothing to do: every node is current." in text.stdout
    # the quick path answered; the full CLI says the same
    slow_env = dict(lab.env(), GRID_OPS_QUICK="0")
    slow = grid_ops("apply", "-c", str(lab.config), "--json", env=slow_env)
    assert {**_json(slow), "seconds": 0} == {**data, "seconds": 0}
    slow_text = grid_ops("apply", "-c", str(lab.config), env=slow_env)
    assert slow_text.stdout == text.stdout
    # provision, the lower-level step, leaves the nodes apply noted as current alone
    provision = _json(lab.cli("provision", "-c", str(lab.config), "--json"))
    assert provision["hosts"] == {} and provision["current"] == lab.nodes
    assert _runs(lab) == before


def test_a_changed_node_setting_restarts_only_that_node(running: Lab, tmp_path: Path) -> None:
    lab = running
    data = yaml.safe_load(lab.config.read_text())
    data["nodes"][1]["tags"] = [*data["nodes"][1].get("tags", []), "big"]
    tagged = tmp_path / "tagged.yaml"
    tagged.write_text(yaml.safe_dump(data))
    plan = _json(lab.cli("apply", "-c", str(tagged), "--check", "--json"))["plan"]
    assert plan["change"] == {"node2": ["ray"]} and not plan["restart_all"]
    before = _ray(lab)
    done = lab.cli("apply", "-c", str(tagged), "--json", timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = _json(done)
    assert report["restarted"] == ["node2"] and set(report["start"]["hosts"]) == {"node2"}
    assert "provision" not in report  # the venv is unchanged: nothing to build
    after = _ray(lab)
    assert after["node2"]["node_id"] != before["node2"]["node_id"]
    assert after["node2"]["resources"].get("tag:big") == 1
    for name in ("node1", "node3"):
        assert after[name]["node_id"] == before[name]["node_id"]
    back = lab.cli("apply", "-c", str(lab.config), "--json", timeout=600)
    assert back.returncode == 0 and set(_json(back)["start"]["hosts"]) == {"node2"}


def test_removing_a_worker_keeps_its_pool_object_and_reports_its_boost(
    running: Lab, tmp_path: Path
) -> None:
    lab = running
    cfg = str(lab.config)
    blob = tmp_path / "blob.bin"
    blob.write_bytes(os.urandom(300_000))
    stored = lab.cli("memory", "store", "lc-obj", str(blob), "--node", "node3", "-c", cfg)
    assert stored.returncode == 0, stored.stderr
    boost = _json(lab.cli("boost", "request", "node3", "cpu", "0.5", "-c", cfg, "--json"))
    smaller = str(_without(lab, tmp_path, "node3"))

    check = lab.cli("apply", "-c", smaller, "--check")
    assert check.returncode == 0, check.stderr
    assert "node3: remove: drain, stop, clean up" in check.stdout
    assert (_home("node3") / "grid-ops" / "venv").is_dir()  # --check changed nothing

    refused = lab.cli("apply", "-c", smaller)  # not a terminal: no question, no removal
    assert refused.returncode == 2
    assert "--yes" in refused.stderr and "Traceback" not in refused.stderr

    removed = lab.cli("apply", "-c", smaller, "--yes", "--json", timeout=900)
    assert removed.returncode == 0, removed.stdout[-3000:] + removed.stderr[-2000:]
    report = _json(removed)["remove"]
    assert report["removed"] == ["node3"]
    moves = {row.get("key") or row.get("id"): row for row in report["moved"]["node3"]}
    assert moves["lc-obj"]["state"] == "copied"
    assert moves[boost["id"]]["state"] == "released"

    back = tmp_path / "back.bin"
    got = lab.cli("memory", "retrieve", "lc-obj", "-o", str(back), "-c", smaller)
    assert got.returncode == 0, got.stderr
    assert back.read_bytes() == blob.read_bytes()
    assert _ray(lab)["node3"]["ray"] != "alive"
    assert not (_home("node3") / "grid-ops").exists()  # nothing of grid-ops is left

    # put back: only node3 is visited, it joins the running cluster, and a job started
    # before keeps running through it
    slow = "import time; print('begin', flush=True); time.sleep(25); print('done', flush=True)"
    job = lab.cli("job", "launch", "--name", "across-apply", "-c", cfg, "--", "python", "-c", slow)
    assert job.returncode == 0, job.stderr
    before = _ray(lab)
    again = lab.cli("apply", "-c", cfg, "--json", timeout=900)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-2000:]
    data = _json(again)
    assert data["plan"]["add"] == ["node3"]
    assert set(data["start"]["hosts"]) == set(data["provision"]["hosts"]) == {"node3"}
    after = _ray(lab)
    assert all(row["ray"] == "alive" for row in after.values())
    for name in ("node1", "node2"):  # nobody else restarted
        assert after[name]["node_id"] == before[name]["node_id"]
    logs = lab.cli("job", "logs", "across-apply", "--follow", "-c", cfg, timeout=300)
    assert "begin" in logs.stdout and "done" in logs.stdout
    assert _json(lab.cli("job", "status", "across-apply", "-c", cfg, "--json"))["status"] == (
        "SUCCEEDED"
    )
    lab.cli("memory", "delete", "lc-obj", "-c", cfg)


def test_drain_and_undrain(running: Lab) -> None:
    lab = running
    cfg = str(lab.config)
    drained = lab.cli("node", "drain", "node2", "--reason", "fan swap", "-c", cfg)
    assert drained.returncode == 0, drained.stdout + drained.stderr
    assert "node2 drained (fan swap)" in drained.stdout

    health = _json(lab.cli("health", "--refresh", "-c", cfg, "--json"))
    rows = {n["name"]: n for n in health["nodes"]}
    assert rows["node2"]["drained"] == "fan swap"
    assert health["nodes"][-1]["name"] == "node2"  # ranked after every node in service
    status = _ray(lab)
    assert status["node2"]["drained"] == "fan swap" and status["node2"]["ray"] != "alive"
    for _ in range(3):
        ran = lab.cli("run", "-c", cfg, "--", "hostname")
        assert ran.returncode == 0 and "node2" not in ran.stdout
    refused = lab.cli("boost", "request", "node2", "cpu", "0.5", "-c", cfg)
    assert refused.returncode != 0 and "node2" in refused.stderr
    plan = _json(lab.cli("apply", "-c", cfg, "--check", "--json"))["plan"]
    assert plan["drained"] == {"node2": "fan swap"} and plan["start"] == []
    head = lab.cli("node", "drain", "node1", "-c", cfg)
    assert head.returncode == 2 and "head" in head.stderr

    back = lab.cli("node", "undrain", "node2", "-c", cfg, timeout=600)
    assert back.returncode == 0, back.stdout[-2000:] + back.stderr[-2000:]
    assert _ray(lab)["node2"]["ray"] == "alive"
    health = _json(lab.cli("health", "--refresh", "-c", cfg, "--json"))
    assert {n["name"]: n["drained"] for n in health["nodes"]}["node2"] is None
    again = lab.cli("node", "undrain", "node2", "-c", cfg)
    assert again.returncode == 0 and "not drained" in again.stdout


TORCH = """
import importlib.metadata as meta
try:
    print("torch", meta.version("torch"))
except meta.PackageNotFoundError:
    print("torch none")
"""
ALLREDUCE = """
import socket
import torch
import torch.distributed as dist

dist.init_process_group("gloo")
value = torch.tensor([float(dist.get_rank() + 1)])
dist.all_reduce(value)
print(f"rank {dist.get_rank()}/{dist.get_world_size()} on {socket.gethostname()} "
      f"sum={value.item()}", flush=True)
dist.destroy_process_group()
"""


def _job(lab: Lab, name: str, cfg: str) -> str:
    """A job through Ray Jobs on the head, run to its end; its log."""
    launched = lab.cli("job", "launch", "--name", name, "-c", cfg, "--", "python", "-c", TORCH)
    assert launched.returncode == 0, launched.stderr
    logs = lab.cli("job", "logs", name, "--follow", "-c", cfg, timeout=300)
    assert logs.returncode == 0, logs.stderr
    status = _json(lab.cli("job", "status", name, "-c", cfg, "--json"))
    assert status["status"] == "SUCCEEDED", logs.stdout
    return logs.stdout


def _gloo_all_reduce(lab: Lab, cfg: str, tmp_path: Path) -> None:
    """Two ranks on two nodes complete a torch.distributed all-reduce over gloo."""
    (tmp_path / "allreduce.py").write_text(ALLREDUCE)
    launch = ["job", "launch", "--name", "allreduce", "--nodes", "2", "-c", cfg]
    proc = lab.cli(*launch, "--workdir", str(tmp_path), "--", "python", "allreduce.py")
    assert proc.returncode == 0, proc.stderr
    follow = lab.cli("job", "logs", "allreduce", "--follow", "-c", cfg, timeout=300)
    logs = lab.cli("job", "logs", "allreduce", "-c", cfg).stdout
    done = _json(lab.cli("job", "status", "allreduce", "-c", cfg, "--json"))
    assert done["status"] == "SUCCEEDED", follow.stdout[-3000:] + logs[-3000:]
    hosts = set()
    for rank in (0, 1):
        line = next(ln for ln in logs.splitlines() if f"[rank {rank}] rank {rank}/2 on " in ln)
        assert line.endswith("sum=3.0")
        hosts.add(line.split(" on ")[1].split()[0])
    assert len(hosts) == 2  # strict spread: one rank per node


def _builds(name: str) -> list[str]:
    return sorted(os.listdir(_home(name) / "grid-ops" / "venvs"))


@pytest.mark.slow
def test_an_upgrade_builds_beside_the_running_venv_and_rolls_back(
    running: Lab, tmp_path: Path
) -> None:
    """An upgrade that adds torch to the nodes (only one Ray version is available
    offline): the new venv is built while Ray runs, one window restarts the cluster on
    it, a two-rank gloo all-reduce runs on it, and rollback returns to the build it
    replaced."""
    lab = running
    cfg = str(lab.config)
    assert "torch none" in _job(lab, "before-upgrade", cfg)
    old = os.readlink(_home("node2") / "grid-ops" / "venv")
    old_node3 = os.readlink(_home("node3") / "grid-ops" / "venv")
    data = yaml.safe_load(lab.config.read_text())
    data.setdefault("provision", {})["packages"] = ["torch==2.13.0"]
    upgraded = tmp_path / "upgraded.yaml"
    upgraded.write_text(yaml.safe_dump(data))

    plan = _json(lab.cli("apply", "-c", str(upgraded), "--check", "--json"))["plan"]
    assert plan["change"] == {n: ["venv"] for n in lab.nodes} and plan["restart_all"]

    # node3's new build fails (a root-owned file where it goes): the others go ahead,
    # node3 runs on, on its old build, and is reported; a rerun resumes with it alone
    new_id = model.of(config.load(upgraded)).venv_id
    blocker = _home("node3") / "grid-ops" / "venvs" / new_id
    blocker.mkdir()
    (blocker / "held").write_text("")
    try:
        failed = lab.cli("apply", "-c", str(upgraded), "--json", timeout=1200)
    finally:
        (blocker / "held").unlink()
        blocker.rmdir()
    assert failed.returncode == 1, failed.stdout[-3000:] + failed.stderr[-2000:]
    report = _json(failed)
    assert report["provision"]["hosts"]["node3"]["failed"] and report["window_s"] > 0
    assert report["not_current"] == ["node3"]
    assert all(row["ray"] == "alive" for row in _ray(lab).values())
    assert os.readlink(_home("node3") / "grid-ops" / "venv") == old_node3
    assert os.readlink(_home("node2") / "grid-ops" / "venv") != old
    resumed = lab.cli("apply", "-c", str(upgraded), "--json", timeout=1200)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-2000:]
    report = _json(resumed)
    assert report["plan"]["change"] == {"node3": ["venv"]} and report["restarted"] == ["node3"]
    assert report["not_current"] == [] and set(report["start"]["hosts"]) == {"node3"}
    assert all(row["ray"] == "alive" for row in _ray(lab).values())
    new = os.readlink(_home("node2") / "grid-ops" / "venv")
    assert new != old and len(_builds("node2")) == 2  # the previous build is kept
    ran = lab.cli("run", "--node", "node3", "-c", str(upgraded), "--", "python", "-c", TORCH)
    assert "torch 2.13.0" in ran.stdout, ran.stdout + ran.stderr
    _gloo_all_reduce(lab, str(upgraded), tmp_path)

    asked = lab.cli("rollback", "-c", str(upgraded))
    assert asked.returncode == 2 and "--yes" in asked.stderr
    back = lab.cli("rollback", "-c", str(upgraded), "--yes", timeout=900)
    assert back.returncode == 0, back.stdout[-3000:] + back.stderr[-2000:]
    assert "next 'grid-ops apply' upgrades again" in back.stdout
    assert os.readlink(_home("node2") / "grid-ops" / "venv") == old
    assert all(row["ray"] == "alive" for row in _ray(lab).values())
    assert "torch none" in _job(lab, "after-rollback", cfg)
    # the config put back: the nodes are current again, nothing runs
    again = _json(lab.cli("apply", "-c", cfg, "--json"))
    assert again["plan"]["current"] == lab.nodes and "start" not in again


@pytest.mark.slow
def test_reset_then_a_killed_node_is_dropped_and_comes_back(running: Lab, tmp_path: Path) -> None:
    lab = running
    cfg = str(lab.config)
    asked = lab.cli("reset", "-c", cfg, "--limit", "node3")
    assert asked.returncode == 2 and "--yes" in asked.stderr
    assert (_home("node3") / "grid-ops").is_dir()
    short = short_dir_path(_uid(lab_node("node3").user))
    made = json.loads((_home("node3") / "grid-ops" / layout.MANIFEST).read_text())["created"]
    reset = lab.cli("reset", "-c", cfg, "--limit", "node3", "--yes", timeout=600)
    assert reset.returncode == 0, reset.stdout[-2000:] + reset.stderr[-2000:]
    assert not (_home("node3") / "grid-ops").exists()
    if str(short) in made:  # made for this cluster's remote_root: gone with it
        assert not short.exists()
    else:  # made by something else the node user ran (or never): kept, and named
        assert not short.exists() or str(short) in " ".join(reset.stdout.split())
    assert _ray(lab)["node3"]["ray"] != "alive"
    assert lab.cli("reset", "-c", cfg, "--limit", "node3", "--yes", "--json").returncode == 0
    # node3 holds nothing of grid-ops now (and runs no Ray): the home-as-remote_root case
    _a_users_own_code_and_lib_survive_reset(lab, tmp_path)

    readd = lab.cli("apply", "-c", cfg, "--json", timeout=900)
    assert readd.returncode == 0, readd.stdout[-2000:] + readd.stderr[-2000:]
    assert set(_json(readd)["start"]["hosts"]) == {"node3"}

    smaller = str(_without(lab, tmp_path, "node3"))
    assert lab.cli("lab", "kill", "node3").returncode == 0
    try:
        dropped = lab.cli("apply", "-c", smaller, "--yes", timeout=600)
        assert dropped.returncode == 0, dropped.stdout[-2000:] + dropped.stderr[-2000:]
        assert "node3 cannot be reached: dropped from the cluster" in dropped.stderr
    finally:
        assert lab.cli("lab", "revive", "node3").returncode == 0
    back = lab.cli("apply", "-c", cfg, "--json", timeout=900)
    assert back.returncode == 0, back.stdout[-2000:] + back.stderr[-2000:]
    assert all(row["ray"] == "alive" for row in _ray(lab).values())


def _uid(user: str) -> int:
    import pwd

    return pwd.getpwnam(user).pw_uid


def _a_users_own_code_and_lib_survive_reset(lab: Lab, tmp: Path) -> None:
    """The attack: remote_root is the node user's home, where they keep their own ``code``
    and ``lib`` from before grid-ops' first provision. reset removes grid-ops' dirs only,
    keeps theirs and names them; a second reset is a no-op."""
    import pwd
    import shutil

    home = _home("node3")
    user = pwd.getpwnam(lab_node("node3").user)
    mine = home / "code" / "mine.txt"
    (home / "lib" / "mypkg").mkdir(parents=True)
    mine.parent.mkdir()
    mine.write_text("my own work\n")
    for path in (home / "code", mine, home / "lib", home / "lib" / "mypkg"):
        os.chown(path, user.pw_uid, user.pw_gid)
    data = yaml.safe_load(lab.config.read_text())
    data.pop("cluster_id", None)  # another cluster (this machine's state of it apart)
    data.update(name="home-root", remote_root=str(home))
    data["nodes"] = [dict(n, role="head") for n in data["nodes"] if n["name"] == "node3"]
    cfg = tmp / "home-root.yaml"
    cfg.write_text(yaml.safe_dump(data))
    try:
        first = lab.cli("provision", "-c", str(cfg), "--json", timeout=900)
        assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-2000:]
        made = json.loads((home / "state" / "created.json").read_text())
        assert made["complete"] is True
        assert {"state", "jobs", "wheelhouse", "venvs", "venv"} <= set(made["created"])
        assert not {"code", "lib", "."} & set(made["created"])
        again = _json(lab.cli("provision", "-c", str(cfg), "--json", timeout=900))
        assert again["hosts"]["node3"]["changed"] == 0, again  # idempotent beside their dirs

        reset = lab.cli("reset", "-c", str(cfg), "--yes", timeout=600)
        assert reset.returncode == 0, reset.stdout[-3000:] + reset.stderr[-2000:]
        assert mine.read_text() == "my own work\n"
        assert (home / "lib" / "mypkg").is_dir() and (home / ".ssh").is_dir()
        for gone in ("state", "jobs", "wheelhouse", "venvs", "venv"):
            assert not os.path.lexists(home / gone), gone
        shown = " ".join(reset.stdout.split())
        assert "kept: not made by grid-ops" in shown, reset.stdout
        for path in (home / "code", home / "lib", home):
            assert f"{path} " in shown, reset.stdout

        second = lab.cli("reset", "-c", str(cfg), "--yes", "--json", timeout=600)
        assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-2000:]
        report = _json(second)
        assert report["hosts"]["node3"]["changed"] == 0
        files = report["files"]["node3"]
        assert files["removed"] == []
        # the node user's shared short dir, if anything else made it, is kept too
        shared = str(short_dir_path(user.pw_uid))
        assert {k["path"] for k in files["kept"]} - {shared} == {
            str(home / "code"),
            str(home / "lib"),
            str(home),
        }
        assert mine.read_text() == "my own work\n"
    finally:
        for own in ("code", "lib"):
            shutil.rmtree(home / own, ignore_errors=True)
