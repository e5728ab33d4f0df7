"""grid-ops doctor: on a well lab all green; a dead node, a blocked head port, a sick GPU
node named with the fix; --deep measures a bandwidth per node through Ray. The rows'
logic (pure) is checked beside it on records shaped as the probe makes them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from grid_ops import doctor, facts, model
from grid_ops.actions import doctor as doctor_deep
from grid_ops.model import config
from tests.conftest import Lab

LAB_YAML = """
name: lab
remote_root: ~/grid-ops
nodes:
  - {name: node1, host: 10.231.0.11, user: gridlab1}
  - {name: node2, host: 10.231.0.12, user: gridlab2, gpu_count: 1}
  - {name: node3, host: 10.231.0.13, user: gridlab3, gpu_count: 1}
"""


def _cluster(tmp_path: Path) -> model.ClusterModel:
    path = tmp_path / "lab.yaml"
    path.write_text(LAB_YAML)
    return model.resolve(config.load(path), recorded=False)


def _rec(name: str, **values: Any) -> dict[str, Any]:
    rec = facts.record(
        name,
        {"load1": 0.1, "cpu_count": 2, "python_version": "3.11.2", "ray_running": True,
         "ray_version": "2.60.0", "disk_free_bytes": 80 * 2**30},
        1.0, 3.0,
    )  # fmt: skip
    rec["clock_offset_s"] = 0.0
    rec.update(values)
    return rec


def _by(rows: list[dict[str, str]]) -> dict[tuple[str, str], dict[str, str]]:
    return {(r["node"], r["check"]): r for r in rows}


def test_rows_of_a_cluster_with_one_of_each_problem(tmp_path: Path) -> None:
    cluster = _cluster(tmp_path)
    gpu = {"index": 0, "name": "NVIDIA H100 80GB HBM3"}
    sick = {"check": "ecc_uncorrectable", "severity": "sick", "reason": "GPU 0: 3 errors",
            "gpu": 0}  # fmt: skip
    records = [
        _rec("node1"),
        _rec(
            "node2",
            python_version="3.12.1",
            gpus=[gpu],
            driver_version="580.159.04",
            cuda_version="13.0",
            checks=[sick],
            drained="quarantine: ecc",
        ),
        facts.unreachable("node3", "ssh: connect to host 10.231.0.13 port 22: refused"),
    ]
    plan = {"add": [], "change": {"node2": ["runtime"]}, "unreachable": []}
    reached = {
        "head": "10.231.0.11",
        "ports": {6379: "GCS", 40001: "raylet"},
        "raylet": True,
        "workers": {"node2": {6379: "[Errno 113] No route to host", 40001: None}},
    }
    builds = {"node1": cluster.venv_id, "node2": cluster.venv_id}
    rows = _by(doctor.rows(cluster, records, plan, reached, "lab.yaml", builds))
    assert rows[("node3", "ssh")]["status"] == "fail"
    assert "grid-ops ping -c lab.yaml" in rows[("node3", "ssh")]["fix"]
    assert not [k for k in rows if k[0] == "node3" and k[1] != "ssh"]  # nothing else is known
    assert rows[("node2", "python")]["status"] == "fail"
    assert rows[("node2", "runtime")]["status"] == "warning"
    assert rows[("node2", "venv")]["status"] == "ok"
    assert rows[("node2", "ecc_uncorrectable")]["status"] == "fail"
    assert "nvidia-smi -r" in rows[("node2", "ecc_uncorrectable")]["fix"]
    assert rows[("node2", "drained")]["status"] == "warning"
    port = rows[("node2", "head ports")]
    assert port["status"] == "fail"
    assert port["detail"] == "cannot reach 10.231.0.11 on 6379 (GCS): [Errno 113] No route to host"
    assert "never joins" in port["fix"]
    assert {r["status"] for k, r in rows.items() if k[0] == "node1"} == {"ok"}


def test_a_worker_whose_ray_died_is_one_failed_row(tmp_path: Path) -> None:
    cluster = _cluster(tmp_path)
    records = [_rec("node1"), _rec("node2", ray_running=False), _rec("node3")]
    facts.round_checks(records, "node1", max_clock_offset=5.0)
    rows = doctor.rows(cluster, records, None, None, "c.yaml")
    mine = [r for r in rows if r["node"] == "node2" and r["check"] in ("ray", "ray_down")]
    assert [(r["check"], r["status"]) for r in mine] == [("ray_down", "fail")]  # no "ok" beside
    assert mine[0]["fix"] == "grid-ops cluster start -c c.yaml --limit node2"
    assert [r["node"] for r in rows if r["status"] == "fail"] == ["node2"]  # doctor exits 1


def test_rows_when_the_heads_ray_is_down_and_drivers_differ(tmp_path: Path) -> None:
    cluster = _cluster(tmp_path)
    gpu = {"index": 0, "name": "H100"}
    records = [
        _rec("node1", ray_running=False),
        _rec("node2", gpus=[gpu], driver_version="580.159.04", cuda_version="13.0"),
        _rec("node3", gpus=[gpu], driver_version="575.57.08", cuda_version="12.9"),
    ]
    records.append(_rec("node4"))  # not in the config: ignored
    reached = {"head": "10.231.0.11", "ports": {}, "raylet": False, "workers": {}}
    rows = _by(doctor.rows(cluster, records, None, reached, "c.yaml"))
    assert rows[("node2", "head ports")]["status"] == "warning"
    assert rows[("node2", "head ports")]["fix"] == "grid-ops cluster start -c c.yaml"
    # two GPU nodes, two drivers: a tie goes to the first in config order
    assert rows[("node3", "driver")]["detail"] == (
        "NVIDIA driver 575.57.08, most GPU nodes have 580.159.04"
    )
    assert ("node2", "driver") not in rows and rows[("node3", "cuda")]["status"] == "warning"


def test_deep_rows_flag_a_slow_node() -> None:
    speeds = {"node1": 900.0, "node2": 1000.0, "node3": 200.0}
    found = {"mib": 64, "rounds": 3, "nodes": {n: {"mib_s": v} for n, v in speeds.items()}}
    rows = _by(doctor_deep.rows(found, ["node1", "node2", "node3"]))
    assert rows[("node3", "bandwidth")]["status"] == "warning"
    assert "median 900 MiB/s" in rows[("node3", "bandwidth")]["detail"]
    assert rows[("node1", "bandwidth")]["status"] == "ok"
    failed = doctor_deep.rows({"error": "Ray is not running"}, ["node1"])
    assert failed[0]["status"] == "fail" and "cluster start" in failed[0]["fix"]


# ---------------------------------------------------------------------------------------
# on the lab


def _doctor(lab: Lab, cfg: str, *args: str) -> tuple[int, dict[str, Any]]:
    proc = lab.cli("doctor", "-c", cfg, "--json", *args, timeout=600)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


@pytest.fixture(scope="module")
def running(lab: Lab) -> Lab:
    """The lab's cluster, started and brought to its config by apply (which records
    what each node runs)."""
    lab.start_cluster()
    applied = lab.cli("apply", "-c", str(lab.config), "--yes", timeout=900)
    assert applied.returncode == 0, applied.stdout[-2000:] + applied.stderr[-2000:]
    return lab


@pytest.mark.lab
def test_doctor_on_a_well_lab_is_all_green_and_deep_measures_each_node(running: Lab) -> None:
    cfg = str(running.config)
    rc, data = _doctor(running, cfg)
    assert rc == 0 and data["ok"] is True
    bad = [r for r in data["checks"] if r["status"] != "ok"]
    assert bad == []
    checks = {(r["node"], r["check"]) for r in data["checks"]}
    for node in running.nodes:
        for check in ("ssh", "python", "venv", "runtime", "ray", "disk", "clock"):
            assert (node, check) in checks
    for node in running.nodes[1:]:
        port = next(r for r in data["checks"] if (r["node"], r["check"]) == (node, "head ports"))
        assert "6379 (GCS)" in port["detail"] and "(raylet)" in port["detail"]

    rc, deep = _doctor(running, cfg, "--deep")
    assert rc == 0, deep
    speeds = {n: v["mib_s"] for n, v in deep["bandwidth"]["nodes"].items()}
    assert sorted(speeds) == sorted(running.nodes) and all(v > 0 for v in speeds.values())
    assert {r["node"] for r in deep["checks"] if r["check"] == "bandwidth"} == set(running.nodes)


@pytest.mark.lab
def test_doctor_names_a_dead_node_and_a_blocked_head_port(running: Lab) -> None:
    cfg = str(running.config)
    assert running.cli("lab", "block", "node2", "node1").returncode == 0
    try:
        rc, data = _doctor(running, cfg)
    finally:
        assert running.cli("lab", "block", "node2", "node1", "--undo").returncode == 0
    assert rc == 1
    [port] = [r for r in data["checks"] if r["status"] == "fail"]
    assert (port["node"], port["check"]) == ("node2", "head ports")
    assert "cannot reach" in port["detail"] and "6379 (GCS)" in port["detail"]
    assert "node2 open TCP connections to" in port["fix"]

    assert running.cli("lab", "kill", "node3").returncode == 0
    try:
        proc = running.cli("doctor", "-c", cfg)
    finally:
        assert running.cli("lab", "revive", "node3").returncode == 0
    assert proc.returncode == 1
    assert "node3" in proc.stdout and "grid-ops ping" in proc.stdout
    assert "failed on node3" in proc.stderr
    restart = running.cli("cluster", "start", "-c", cfg, timeout=600)
    assert restart.returncode == 0, restart.stderr[-2000:]


@pytest.mark.lab
def test_doctor_playbook_free_and_json_is_one_document(running: Lab, tmp_path: Path) -> None:
    """--json prints one document even when the table would wrap, and no run dir is made
    (doctor uses plain ssh, not Ansible)."""
    runs = running.state_dir / "runs"
    before = set(runs.iterdir()) if runs.exists() else set()
    rc, data = _doctor(running, str(running.config))
    assert rc == 0 and isinstance(data["checks"], list)
    assert (set(runs.iterdir()) if runs.exists() else set()) == before
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"name": "x", "nodes": "not a list"}))
    proc = running.cli("doctor", "-c", str(bad))
    assert proc.returncode != 0 and "Traceback" not in proc.stderr and "nodes" in proc.stderr
    assert subprocess.run(["true"]).returncode == 0
