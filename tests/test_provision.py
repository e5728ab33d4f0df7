"""Provision lab nodes and run the Ray cluster on them, through grid-ops and plain Ansible."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import Lab, lab_node

pytestmark = pytest.mark.lab

PINNED = """
import json, socket, getpass, ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
ray.init(logging_level="ERROR", log_to_driver=False)

@ray.remote(num_cpus=0.01)
def where():
    return socket.gethostname(), getpass.getuser()

nodes = [n for n in ray.nodes() if n["Alive"]]
refs = [
    where.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
    .remote()
    for n in nodes
]
print(json.dumps(sorted(ray.get(refs))))
"""


def _json(proc: subprocess.CompletedProcess[str]) -> Any:
    assert "Traceback" not in proc.stderr, proc.stderr
    return json.loads(proc.stdout)


def _counts(data: dict[str, Any], key: str) -> dict[str, int]:
    return {name: host[key] for name, host in data["hosts"].items()}


def _status(lab: Lab) -> dict[str, str]:
    proc = lab.cli("cluster", "status", "-c", str(lab.config), "--json")
    data = _json(proc)
    return {n["name"]: n["ray"] for n in data["nodes"]}


@pytest.fixture(scope="module")
def provisioned(lab: Lab) -> Lab:
    """The session lab rebuilt fresh (new users, empty homes), then provisioned once."""
    lab.up()
    proc = lab.cli("provision", "-c", str(lab.config), "--json", timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = _json(proc)
    assert sorted(data["hosts"]) == lab.nodes
    assert all(h["failed"] == h["unreachable"] == 0 for h in data["hosts"].values())
    lab.provision_result = data  # type: ignore[attr-defined]
    return lab


def test_provision_installs_pinned_ray_and_grid_ops(provisioned: Lab) -> None:
    changed = _counts(provisioned.provision_result, "changed")  # type: ignore[attr-defined]
    assert all(c > 0 for c in changed.values()), changed
    script = "import ray, grid_ops.runtime, sys; print(ray.__version__, sys.prefix)"
    for name in provisioned.nodes:
        proc = provisioned.cli("run", "-c", str(provisioned.config), "--node", name, "--",
                               "python", "-c", script)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        version, prefix = proc.stdout.split()
        assert version == "2.60.0"
        assert prefix.endswith("/grid-ops/venv")


def test_second_provision_changes_nothing(provisioned: Lab) -> None:
    proc = provisioned.cli("provision", "-c", str(provisioned.config), "--json", timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert _counts(_json(proc), "changed") == dict.fromkeys(provisioned.nodes, 0)


def test_check_shows_a_diff_and_changes_nothing(provisioned: Lab, tmp_path: Path) -> None:
    data = yaml.safe_load(provisioned.config.read_text())
    data["provision"] = {"packages": ["six==1.17.0"]}
    changed_cfg = tmp_path / "more.yaml"
    changed_cfg.write_text(yaml.safe_dump(data))
    proc = provisioned.cli("provision", "-c", str(changed_cfg), "--check", "--limit", "node2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "node2 would change" in proc.stdout
    assert "+six==1.17.0" in proc.stdout
    assert "nothing was changed" in proc.stdout
    check = provisioned.cli("run", "-c", str(provisioned.config), "--node", "node2", "--",
                            "cat", "requirements.txt")  # fmt: skip
    assert "six" not in check.stdout
    again = provisioned.cli("provision", "-c", str(provisioned.config), "--json")
    assert _counts(_json(again), "changed") == dict.fromkeys(provisioned.nodes, 0)


def test_cluster_start_brings_up_every_node(provisioned: Lab) -> None:
    cfg = str(provisioned.config)
    proc = provisioned.cli("cluster", "start", "-c", cfg, "--json", timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _status(provisioned) == dict.fromkeys(provisioned.nodes, "alive")
    # `ray status` (the autoscaler's view) catches up with the GCS within seconds.
    deadline = time.monotonic() + 60
    while True:
        ray_status = provisioned.cli("run", "-c", cfg, "--", "ray", "status")
        assert ray_status.returncode == 0, ray_status.stderr
        active = ray_status.stdout.split("Active:")[1].split("Pending:")[0]
        if active.count("node_") == len(provisioned.nodes) or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert active.count("node_") == len(provisioned.nodes), ray_status.stdout
    data = _json(provisioned.cli("cluster", "status", "-c", cfg, "--json"))
    assert data["head"] == "node1" and data["address"] == f"{lab_node('node1').ip}:6379"
    for node in data["nodes"]:
        assert node["resources"]["tag:lab"] == 1
        assert node["resources"]["memory"] == 2 * 1024**3
        assert len(node["node_id"]) == 56
    again = provisioned.cli("cluster", "start", "-c", cfg, "--json")
    assert _counts(_json(again), "changed") == dict.fromkeys(provisioned.nodes, 0)


def test_a_task_pinned_to_each_node_runs_there(provisioned: Lab) -> None:
    proc = provisioned.cli("run", "-c", str(provisioned.config), "--node", "node1", "--",
                           "python", "-c", PINNED, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    placed = json.loads(proc.stdout.strip().splitlines()[-1])
    assert placed == [[n, lab_node(n).user] for n in provisioned.nodes]


DRIVER = """
import json, ray
ray.init(logging_level="ERROR")
me = ray.get_runtime_context().get_node_id()
print(json.dumps({"ip": next(n["NodeManagerAddress"] for n in ray.nodes() if n["NodeID"] == me),
                  "alive": sum(n["Alive"] for n in ray.nodes())}))
"""


def test_a_ray_driver_runs_on_every_node_as_that_node(provisioned: Lab) -> None:
    """A plain ray.init() through 'run --node' joins the cluster from each node, whatever
    the node's user and home, through that node's own raylet (its session dir is the
    node's, not the head's)."""
    from grid_ops import lab as lab_mod

    state = lab_mod.load_state()
    assert state is not None
    for node in state.nodes:
        proc = provisioned.cli("run", "-c", str(provisioned.config), "--node", node.name,
                               "--", "python", "-c", DRIVER, timeout=300)  # fmt: skip
        assert proc.returncode == 0, f"{node.name}: {proc.stderr[-2000:]}"
        seen = json.loads(proc.stdout.strip().splitlines()[-1])
        assert seen == {"ip": node.ip, "alive": len(state.nodes)}, node.name


def test_cluster_start_repairs_only_the_dead_worker(provisioned: Lab) -> None:
    cfg = str(provisioned.config)
    victim = provisioned.nodes[-1]
    stop = provisioned.cli("run", "-c", cfg, "--node", victim, "--", "ray", "stop", "--force")
    assert stop.returncode == 0
    states = _status(provisioned)
    assert states[victim] == "dead"
    assert all(states[n] == "alive" for n in provisioned.nodes[:-1])
    proc = provisioned.cli("cluster", "start", "-c", cfg, "--json", timeout=600)
    assert proc.returncode == 0, proc.stderr
    changed = _counts(_json(proc), "changed")
    assert changed[victim] > 0
    assert all(changed[n] == 0 for n in provisioned.nodes[:-1])
    assert _status(provisioned) == dict.fromkeys(provisioned.nodes, "alive")


def test_stop_with_plain_ansible_playbook(provisioned: Lab, tmp_path: Path) -> None:
    proc = provisioned.operator_playbook("ray_stop", tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _status(provisioned) == dict.fromkeys(provisioned.nodes, "absent")
    for name in provisioned.nodes:
        user = lab_node(name).user
        ps = subprocess.run(["pgrep", "-u", user, "-f", "raylet|gcs_server"],
                            capture_output=True, check=False)  # fmt: skip
        assert ps.returncode == 1, f"Ray still runs on {name}"
    start = provisioned.cli("cluster", "start", "-c", str(provisioned.config), timeout=600)
    assert start.returncode == 0, start.stderr


def test_unreachable_node_during_provision(provisioned: Lab) -> None:
    cfg = str(provisioned.config)
    victim = provisioned.nodes[1]
    assert provisioned.cli("lab", "kill", victim).returncode == 0
    try:
        # --full: 'cluster start' noted the nodes current, and a plain provision skips them
        proc = provisioned.cli("provision", "-c", cfg, "--json", "--full", timeout=600)
        assert proc.returncode == 1
        data = _json(proc)
        assert data["hosts"][victim]["unreachable"] == 1
        for name in provisioned.nodes:
            if name != victim:
                assert data["hosts"][name]["failed"] == data["hosts"][name]["unreachable"] == 0
        table = provisioned.cli("provision", "-c", cfg, "--full", timeout=600)
        assert table.returncode == 1
        assert f"failed on 1 of {len(provisioned.nodes)} node(s) ({victim})" in table.stderr
        assert "Traceback" not in table.stderr
    finally:
        assert provisioned.cli("lab", "revive", victim).returncode == 0
    rerun = provisioned.cli("provision", "-c", cfg, "--json", timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    restart = provisioned.cli("cluster", "start", "-c", cfg, "--json", timeout=600)
    assert restart.returncode == 0
    assert _counts(_json(restart), "changed")[victim] > 0
