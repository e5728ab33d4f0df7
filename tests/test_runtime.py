"""The cluster controller on the lab's real Ray: boosts, resource sharing, auto-offload,
the memory pool and its metrics, all through the CLI as an operator runs them."""

from __future__ import annotations

import getpass
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import Lab

POOL_MIB = 10  # per-node pool capacity in this module's config


@pytest.fixture(scope="module")
def rt(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, str]]:
    """The lab, provisioned and started with a small memory pool; its config path."""
    data = yaml.safe_load(lab.config.read_text())
    data["resource_sharing"] = {"memory_pool_gb": POOL_MIB / 1024, "max_share_fraction": 0.5}
    cfg = tmp_path_factory.mktemp("runtime") / "lab.yaml"
    cfg.write_text(yaml.safe_dump(data))
    lab.start_cluster(cfg)  # the controller takes the pool's new size in place
    yield lab, str(cfg)
    for kind in ("boost", "resource-sharing"):
        rows = lab.cli(kind, "status", "-c", str(cfg), "--json")
        for row in json.loads(rows.stdout or "[]") if rows.returncode == 0 else []:
            lab.cli(kind, "release", row["id"], "-c", str(cfg))
    lab.cli("offload", "auto", "--disable", "-c", str(cfg))


def _json(lab: Lab, *args: str) -> Any:
    proc = lab.cli(*args, "--json")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return json.loads(proc.stdout)


def _where_driver(submit_args: str) -> str:
    """A driver for the head that prints the hostname a scheduler task ran on."""
    return (
        "import socket, time, ray\n"
        "from grid_ops.runtime.scheduler import submit\n"
        "ray.init(logging_level='ERROR', log_to_driver=False)\n"
        "def where():\n    return socket.gethostname()\n"
        f"print('TASK-RAN-ON', ray.get(submit(where{submit_args})))\n"
        "time.sleep(1)  # the workers' task counts reach the controller\n"
    )


def _ran_on(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    match = re.search(r"TASK-RAN-ON (\S+)", proc.stdout)
    assert match, proc.stdout
    return match.group(1)


@pytest.mark.lab
def test_boost_request_run_inside_status_release(rt: tuple[Lab, str]) -> None:
    lab, cfg = rt
    boost = _json(lab, "boost", "request", "node2", "cpu", "1", "--priority", "high", "-c", cfg)
    assert isinstance(boost, dict)
    assert boost["node"] == "node2" and boost["resource"] == "cpu" and boost["amount"] == 1
    assert boost["id"].startswith("boost-") and boost["expires_at"] is None
    listed = _json(lab, "boost", "status", "-c", cfg)
    assert [(b["id"], b["state"], b["priority"]) for b in listed] == [
        (boost["id"], "active", "high")
    ]
    # the head's work runs inside the boost: on node2, though the driver is on node1
    run = lab.cli("run", "-c", cfg, "--boost", boost["id"], "--", "python", "-c",
                  _where_driver(""), timeout=300)  # fmt: skip
    assert _ran_on(run) == "node2"
    # node2 has 2 CPUs and 1 is held: asking for 2 more says what is free, changes nothing
    over = lab.cli("boost", "request", "node2", "cpu", "2", "-c", cfg)
    assert over.returncode != 0
    assert "node2' has 1 CPU free (of 2 CPU)" in over.stderr
    assert "Traceback" not in over.stderr
    released = _json(lab, "boost", "release", boost["id"], "-c", cfg)
    assert released["state"] == "released"
    assert _json(lab, "boost", "status", "-c", cfg) == []
    again = lab.cli("boost", "release", boost["id"], "-c", cfg)
    assert again.returncode != 0 and "already released" in again.stderr
    unknown = lab.cli("boost", "request", "node9", "cpu", "1", "-c", cfg)
    assert unknown.returncode == 2 and "Unknown node 'node9'" in unknown.stderr
    bad = lab.cli("boost", "request", "node2", "disk", "1", "-c", cfg)
    assert bad.returncode == 2 and "Unknown resource 'disk'" in bad.stderr
    assert lab.cli("boost", "release", "boost-00000000", "-c", cfg).returncode != 0


@pytest.mark.lab
def test_boost_expires_after_its_ttl(rt: tuple[Lab, str]) -> None:
    lab, cfg = rt
    boost = _json(lab, "boost", "request", "node3", "memory", "256MiB", "--ttl", "2s", "-c", cfg)
    assert boost["amount"] == 256 * 2**20
    assert boost["expires_at"] - time.time() <= 2.5
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if not _json(lab, "boost", "status", "-c", cfg):
            break
        time.sleep(1)
    assert _json(lab, "boost", "status", "-c", cfg) == []
    gone = lab.cli("boost", "release", boost["id"], "-c", cfg)
    assert gone.returncode != 0 and "expired" in gone.stderr


@pytest.mark.lab
def test_resource_sharing_places_on_a_node_with_room(rt: tuple[Lab, str]) -> None:
    lab, cfg = rt
    share = _json(lab, "resource-sharing", "request", "cpu", "0.5", "-c", cfg)
    assert isinstance(share, dict)
    assert share["node"] in lab.nodes and share["id"].startswith("share-")
    pinned = _json(lab, "resource-sharing", "request", "cpu", "1", "--node", "node3", "-c", cfg)
    assert pinned["node"] == "node3"
    rows = _json(lab, "resource-sharing", "status", "-c", cfg)
    assert {r["id"] for r in rows} == {share["id"], pinned["id"]}
    # a node shares at most half of its 2 CPUs: 1.5 CPU fits nowhere
    over = lab.cli("resource-sharing", "request", "cpu", "1.5", "-c", cfg)
    assert over.returncode != 0 and "No node can share 1.5 CPU" in over.stderr
    wrong = lab.cli("boost", "release", share["id"], "-c", cfg)
    assert wrong.returncode != 0 and "is a share, not a boost" in wrong.stderr
    for row in (share, pinned):
        assert lab.cli("resource-sharing", "release", row["id"], "-c", cfg).returncode == 0
    assert _json(lab, "resource-sharing", "status", "-c", cfg) == []


@pytest.mark.lab
def test_auto_offload_moves_work_off_a_head_under_pressure(rt: tuple[Lab, str]) -> None:
    lab, cfg = rt
    status = _json(lab, "offload", "auto", "--enable", "--threshold", "70", "-c", cfg)
    assert status["enabled"] is True and status["thresholds"]["memory"] == 70
    # memory in use on this machine is far above 1%: the head counts as under pressure
    _json(lab, "offload", "auto", "--enable", "--threshold", "memory=1", "--threshold",
          "cpu=99", "-c", cfg)  # fmt: skip
    driver = _where_driver(", strategy='local-first', offload=True")
    moved = _ran_on(lab.cli("run", "-c", cfg, "--node", "node1", "--", "python", "-c", driver))
    assert moved in ("node2", "node3")
    status = _json(lab, "offload", "auto", "--status", "-c", cfg)
    last = status["decisions"][-1]
    assert last["task"] == "where" and last["node"] == moved
    assert "memory" in last["reason"] and "> 1%" in last["reason"]
    off = _json(lab, "offload", "auto", "--disable", "-c", cfg)
    assert off["enabled"] is False and off["thresholds"]["cpu"] == 99
    kept = _ran_on(lab.cli("run", "-c", cfg, "--node", "node1", "--", "python", "-c", driver))
    assert kept == "node1"  # local-first on the head, nothing moved
    watch = lab.cli("offload", "watch", "--rounds", "1", "--interval", "0.5", "-c", cfg)
    assert watch.returncode == 0, watch.stderr
    for text in ("auto-offload disabled", "node1", "node3", "recent offloads", moved):
        assert text in watch.stdout
    bad = lab.cli("offload", "auto", "--enable", "--threshold", "disk=5", "-c", cfg)
    assert bad.returncode == 2 and "Unknown threshold 'disk'" in bad.stderr


@pytest.mark.lab
def test_memory_pool_round_trip_replicas_and_limits(rt: tuple[Lab, str], tmp_path: Path) -> None:
    lab, cfg = rt
    blob = tmp_path / "blob.bin"
    blob.write_bytes(os.urandom(3 * 2**20) + b"\x00tail")
    stored = _json(lab, "memory", "store", "w", str(blob), "--replicas", "2", "-c", cfg)
    assert stored["size"] == blob.stat().st_size and len(stored["nodes"]) == 2
    out = tmp_path / "back.bin"
    assert lab.cli("memory", "retrieve", "w", "-o", str(out), "-c", cfg).returncode == 0
    assert out.read_bytes() == blob.read_bytes()
    raw = subprocess.run(
        [*_cli_argv(), "memory", "retrieve", "w", "-c", cfg], capture_output=True,
        env=lab.env(), timeout=120, check=False,
    )  # fmt: skip
    assert raw.returncode == 0 and raw.stdout == blob.read_bytes()
    listed = _json(lab, "memory", "list-objects", "-c", cfg)
    me = getpass.getuser()  # the owner, on a cluster without users: the login name
    assert listed == [{"key": "w", "size": stored["size"], "nodes": stored["nodes"], "owner": me}]
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * (POOL_MIB * 2**20 + 1))
    full = lab.cli("memory", "store", "big", str(big), "-c", cfg)
    assert full.returncode != 0 and "larger than a node's pool capacity" in full.stderr
    many = lab.cli("memory", "store", "w4", str(blob), "--replicas", "4", "-c", cfg)
    assert many.returncode != 0 and "4 replicas were asked for" in many.stderr
    missing = lab.cli("memory", "retrieve", "nope", "-c", cfg)
    assert missing.returncode != 0 and "No object 'nope'" in missing.stderr
    assert not (tmp_path / "nope").exists()
    assert lab.cli("memory", "delete", "w", "-c", cfg).returncode == 0
    assert _json(lab, "memory", "list-objects", "-c", cfg) == []
    assert lab.cli("memory", "delete", "w", "-c", cfg).returncode != 0


def _cli_argv() -> list[str]:
    import sys

    return [sys.executable, "-m", "grid_ops"]


@pytest.mark.lab
def test_controller_metrics_count_tasks_boosts_and_pool(
    rt: tuple[Lab, str], tmp_path: Path
) -> None:
    lab, cfg = rt

    def value(text: str, metric: str) -> float:
        match = re.search(rf"^{re.escape(metric)} (\S+)$", text, flags=re.M)
        assert match, f"{metric} not in exposition"
        return float(match.group(1))

    before = lab.cli("metrics", "-c", cfg).stdout
    done0 = value(before, 'grid_tasks_completed_total{source="cluster",status="succeeded"}')
    driver = (
        "import time, ray\nfrom grid_ops.runtime.scheduler import submit\n"
        "ray.init(logging_level='ERROR', log_to_driver=False)\n"
        "print(sum(ray.get([submit(abs, -i, strategy='spread', resources={'CPU': 0.1})"
        " for i in range(20)])))\ntime.sleep(1.5)\n"
    )
    run = lab.cli("run", "-c", cfg, "--node", "node1", "--", "python", "-c", driver)
    assert run.returncode == 0 and "190" in run.stdout, run.stderr
    boost = _json(lab, "boost", "request", "node2", "cpu", "0.5", "-c", cfg)
    try:
        blob = tmp_path / "m.bin"
        blob.write_bytes(b"m" * 1000)
        stored = lab.cli("memory", "store", "m", str(blob), "--node", "node3", "-c", cfg)
        assert stored.returncode == 0, stored.stderr
        after = lab.cli("metrics", "-c", cfg).stdout
        assert value(after, "grid_controller_up") == 1
        assert value(after, 'grid_tasks_completed_total{source="cluster",status="succeeded"}') == (
            done0 + 20
        )
        assert value(after, 'grid_task_duration_seconds_count{source="cluster"}') >= 20
        assert value(after, "grid_active_tasks") == 0
        assert value(after, "grid_boosts_active") == 1
        assert value(after, 'grid_memory_pool_bytes{node="node3"}') == 1000
        promtool = shutil.which("promtool")
        assert promtool, "promtool is missing: install Debian's 'prometheus' package"
        check = subprocess.run([promtool, "check", "metrics"], input=after, capture_output=True,
                               text=True, check=False)  # fmt: skip
        assert check.returncode == 0, check.stdout + check.stderr
    finally:  # the module's later tests expect no boost and no object of this test
        assert lab.cli("boost", "release", boost["id"], "-c", cfg).returncode == 0
        deleted = lab.cli("memory", "delete", "m", "-c", cfg)
    assert deleted.returncode == 0, deleted.stderr


@pytest.mark.lab
def test_killed_node_loses_its_boost_but_not_a_replicated_object(
    rt: tuple[Lab, str], tmp_path: Path
) -> None:
    lab, cfg = rt
    blob = tmp_path / "r.bin"
    blob.write_bytes(os.urandom(2**20))
    stored = _json(lab, "memory", "store", "r", str(blob), "--replicas", "2", "--node", "node3",
                   "-c", cfg)  # fmt: skip
    assert stored["nodes"][0] == "node3"
    other = stored["nodes"][1]
    boost = _json(lab, "boost", "request", "node3", "cpu", "1", "-c", cfg)
    assert lab.cli("lab", "kill", "node3").returncode == 0
    try:
        out = tmp_path / "r.back"
        got = lab.cli("memory", "retrieve", "r", "-o", str(out), "-c", cfg)
        assert got.returncode == 0, got.stderr
        assert out.read_bytes() == blob.read_bytes()
        assert _json(lab, "memory", "list-objects", "-c", cfg) == [
            {"key": "r", "size": 2**20, "nodes": [other], "owner": getpass.getuser()}
        ]
        state = ""
        deadline = time.monotonic() + 90  # until Ray's GCS declares node3 dead
        while time.monotonic() < deadline:
            rows = _json(lab, "boost", "status", "-c", cfg)
            state = next(r["state"] for r in rows if r["id"] == boost["id"])
            if state == "node-lost":
                break
            time.sleep(2)
        assert state == "node-lost"
        lost = lab.cli("boost", "request", "node3", "cpu", "1", "-c", cfg)
        assert lost.returncode != 0 and "not part of the running Ray cluster" in lost.stderr
    finally:
        assert lab.cli("lab", "revive", "node3").returncode == 0
    # node3 back in Ray: the boost is placed there again by Ray itself
    assert lab.cli("cluster", "start", "-c", cfg, timeout=600).returncode == 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rows = _json(lab, "boost", "status", "-c", cfg)
        if [r["state"] for r in rows] == ["active"]:
            break
        time.sleep(2)
    assert [r["state"] for r in rows] == ["active"]
    assert lab.cli("boost", "release", boost["id"], "-c", cfg).returncode == 0
    assert lab.cli("memory", "delete", "r", "-c", cfg).returncode == 0


@pytest.mark.lab
def test_state_survives_a_cluster_restart_and_a_stopped_cluster_is_a_clear_error(
    rt: tuple[Lab, str],
) -> None:
    lab, cfg = rt
    boost = _json(lab, "boost", "request", "node2", "cpu", "1", "--ttl", "1h", "-c", cfg)
    _json(lab, "offload", "auto", "--enable", "--threshold", "cpu=55", "-c", cfg)
    assert lab.cli("cluster", "stop", "-c", cfg, timeout=300).returncode == 0
    down = lab.cli("boost", "status", "-c", cfg)
    assert down.returncode != 0
    assert "controller does not run on the head (node1)" in down.stderr
    assert "grid-ops cluster start" in down.stderr and "Traceback" not in down.stderr
    metrics = lab.cli("metrics", "-c", cfg)
    assert metrics.returncode == 0 and "grid_controller_up 0.0" in metrics.stdout
    assert lab.cli("cluster", "start", "-c", cfg, timeout=600).returncode == 0
    rows = _json(lab, "boost", "status", "-c", cfg)
    assert [(r["id"], r["state"]) for r in rows] == [(boost["id"], "active")]
    status = _json(lab, "offload", "auto", "--status", "-c", cfg)
    assert status["enabled"] is True and status["thresholds"]["cpu"] == 55
    assert lab.cli("boost", "release", boost["id"], "-c", cfg).returncode == 0
    assert lab.cli("offload", "auto", "--disable", "-c", cfg).returncode == 0
