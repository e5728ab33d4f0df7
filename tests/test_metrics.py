"""Prometheus metrics: exposition checked by promtool, counters from run and sync, serve."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from grid_ops import facts, metrics
from tests.conftest import REPO, Lab

RULES = REPO / "grid_ops" / "prometheus" / "alerts.yml"


@pytest.fixture(scope="module")
def promtool() -> str:
    """promtool from Debian's prometheus package; installed here when missing (root)."""
    found = shutil.which("promtool")
    if not found and os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, check=False)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "prometheus"],
            env=env, capture_output=True, check=False,
        )  # fmt: skip
        found = shutil.which("promtool")
    if not found:
        pytest.fail("promtool is missing: install Debian's 'prometheus' package", pytrace=False)
    return found


def _value(text: str, metric: str) -> float:
    match = re.search(rf"^{re.escape(metric)} (\S+)$", text, flags=re.M)
    assert match, f"{metric} not in exposition"
    return float(match.group(1))


def test_alert_rules_pass_promtool(promtool: str) -> None:
    proc = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 5 rules found" in proc.stdout + proc.stderr


def test_gpu_gauge_from_h100_facts(promtool: str) -> None:
    node = {
        "name": "gpu1", "reachable": True, "score": 0.8, "load1": 0.28,
        "gpus": [{"index": 0, "memory_used_mib": 21970, "memory_total_mib": 81559}],
    }  # fmt: skip
    text = metrics.exposition("c1", [node, {"name": "gpu2", "reachable": False}]).decode()
    assert _value(text, 'grid_node_gpu_memory_used_bytes{gpu="0",node="gpu1"}') == 21970 * 2**20
    assert _value(text, 'grid_node_up{node="gpu2"}') == 0
    assert 'grid_node_health_score{node="gpu2"}' not in text  # unreachable: no score
    proc = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                          text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.lab
def test_metrics_of_the_lab_pass_promtool_and_count_run_and_sync(
    lab: Lab, promtool: str, tmp_path: Path
) -> None:
    cfg = str(lab.config)
    assert lab.cli("provision", "-c", cfg, timeout=900).returncode == 0
    before = lab.cli("metrics", "-c", cfg, "--refresh").stdout
    for node in lab.nodes:
        assert _value(before, f'grid_node_up{{node="{node}"}}') == 1
        assert _value(before, f'grid_node_load1{{node="{node}"}}') >= 0
    ok0 = _value(before, 'grid_tasks_completed_total{source="run",status="succeeded"}')
    bad0 = _value(before, 'grid_tasks_completed_total{source="run",status="failed"}')
    sync0 = _value(before, "grid_sync_duration_seconds_count")
    assert lab.cli("run", "-c", cfg, "--node", "node2", "--", "true").returncode == 0
    assert lab.cli("run", "-c", cfg, "--node", "node2", "--", "false").returncode == 1
    src = tmp_path / "code"
    src.mkdir()
    (src / "a.py").write_text("A = 1\n")
    assert lab.cli("sync", str(src), "-c", cfg).returncode == 0
    after = lab.cli("metrics", "-c", cfg).stdout
    assert _value(after, 'grid_tasks_completed_total{source="run",status="succeeded"}') == ok0 + 1
    assert _value(after, 'grid_tasks_completed_total{source="run",status="failed"}') == bad0 + 1
    assert _value(after, "grid_sync_duration_seconds_count") == sync0 + len(lab.nodes)
    check = subprocess.run([promtool, "check", "metrics"], input=after, capture_output=True,
                           text=True)  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    assert lab.cli("lab", "kill", "node3").returncode == 0
    try:
        down = lab.cli("metrics", "-c", cfg, "--refresh").stdout
        assert _value(down, 'grid_node_up{node="node3"}') == 0
        assert _value(down, 'grid_node_up{node="node1"}') == 1
    finally:
        assert lab.cli("lab", "revive", "node3").returncode == 0


@pytest.mark.lab
def test_metrics_serve_on_loopback(lab: Lab) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "grid_ops", "metrics", "serve", "-c", str(lab.config),
         "--port", str(port), "--interval", "2"],
        env=lab.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        body = ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                    body = r.read().decode()
                break
            except OSError:
                time.sleep(0.3)
        assert 'grid_node_up{node="node1"} 1.0' in body
        assert "grid_tasks_completed_total" in body
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_sick_node_is_exposed_and_raises_its_alert(promtool: str, tmp_path: Path) -> None:
    """The gauges of a quarantined node, and promtool's unit test of GridNodeSick."""
    check = {"check": "gpu_count", "severity": "sick", "reason": "1 GPU(s) found", "gpu": None}
    warn = {"check": "persistence_mode", "severity": "warning", "reason": "off", "gpu": 0}
    nodes = [
        {"name": "gpu2", "reachable": True, "score": 0.1, "checks": [check, warn],
         "drained": "quarantine: gpu_count: 1 GPU(s) found"},
        {"name": "gpu3", "reachable": True, "score": 0.1, "checks": [], "drained": "fan swap"},
    ]  # fmt: skip
    text = metrics.exposition("c1", nodes).decode()
    assert _value(text, 'grid_node_sick{check="gpu_count",node="gpu2"}') == 1
    assert 'check="persistence_mode"' not in text  # a warning is not sick
    assert _value(text, 'grid_node_drained{by="quarantine",node="gpu2"}') == 1
    assert _value(text, 'grid_node_drained{by="operator",node="gpu3"}') == 1
    tests = tmp_path / "alerts-test.yml"
    summary = "Node gpu2 failed the health check gpu_count"
    tests.write_text(
        json.dumps(
            {
                "rule_files": [str(RULES)],
                "evaluation_interval": "1m",
                "tests": [
                    {
                        "interval": "1m",
                        "input_series": [
                            {
                                "series": 'grid_node_sick{node="gpu2",check="gpu_count"}',
                                "values": "1x5",
                            },
                            {"series": 'grid_node_up{node="gpu2"}', "values": "1x5"},
                        ],
                        "alert_rule_test": [
                            {"eval_time": "30s", "alertname": "GridNodeSick", "exp_alerts": []},
                            {
                                "eval_time": "3m",
                                "alertname": "GridNodeSick",
                                "exp_alerts": [
                                    {
                                        "exp_labels": {
                                            "severity": "critical",
                                            "node": "gpu2",
                                            "check": "gpu_count",
                                        },
                                        "exp_annotations": {
                                            "summary": summary,
                                            "description": DESCRIPTION.format(node="gpu2"),
                                        },
                                    }
                                ],
                            },
                        ],
                    }
                ],
            }
        )
    )
    proc = subprocess.run([promtool, "test", "rules", str(tests)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


DESCRIPTION = (
    "grid-ops keeps work off {node} (quarantined when health_check.quarantine is on) until "
    "a health round finds it well; 'grid-ops health' gives the reason."
)


def test_a_worker_whose_ray_died_is_exposed_as_sick() -> None:
    """ray_down is a sick check: GridNodeSick (tested above for any check) fires for it."""
    records = [facts.record(name, {"ray_running": up}, 1.0, 3.0)
               for name, up in (("n1", True), ("n2", False))]  # fmt: skip
    facts.round_checks(records, "n1", max_clock_offset=5.0)
    text = metrics.exposition("c1", records).decode()
    assert _value(text, 'grid_node_sick{check="ray_down",node="n2"}') == 1
    assert 'node="n1"' not in text.split("grid_node_sick")[-1]
