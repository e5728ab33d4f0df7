"""grid-ops health and run on real lab nodes, including a killed node."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from grid_ops import model
from tests.conftest import REPO, Lab, ctrl_c_reaches_it, lab_node

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def ready(lab: Lab) -> Lab:
    """The lab with remote_root and venvs in place (provision is idempotent)."""
    proc = lab.cli("provision", "-c", str(lab.config), "--json", timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return lab


def _health(lab: Lab, *args: str) -> tuple[int, dict[str, Any]]:
    proc = lab.cli("health", "-c", str(lab.config), "--json", *args)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def test_health_reports_every_node_sorted_by_score(ready: Lab) -> None:
    rc, data = _health(ready, "--refresh")
    assert rc == 0
    assert data["cached"] is False
    nodes = data["nodes"]
    assert sorted(n["name"] for n in nodes) == ready.nodes
    scores = [n["score"] for n in nodes]
    assert scores == sorted(scores)
    for node in nodes:
        assert node["reachable"] is True and node["error"] is None
        assert node["cpu_count"] == os.cpu_count()
        assert 0 < node["mem_available_bytes"] <= node["mem_total_bytes"]
        assert node["gpus"] == []  # no nvidia-smi in the lab: zero GPUs, not an error
        assert node["score"] == pytest.approx(node["load1"] / node["cpu_count"], abs=1e-3)
    again_rc, again = _health(ready)
    assert again_rc == 0 and again["cached"] is True
    assert again["nodes"] == nodes


def test_killed_node_is_unreachable_last_and_never_chosen(ready: Lab) -> None:
    victim = ready.nodes[0]
    assert ready.cli("lab", "kill", victim).returncode == 0
    try:
        rc, data = _health(ready, "--refresh")
        assert rc == 1
        last = data["nodes"][-1]
        assert last["name"] == victim
        assert last["reachable"] is False and last["score"] is None
        assert "refused" in last["error"] or "Connection" in last["error"]
        assert all(n["reachable"] for n in data["nodes"][:-1])
        proc = ready.cli("run", "-c", str(ready.config), "--", "hostname")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() in ready.nodes[1:]
    finally:
        assert ready.cli("lab", "revive", victim).returncode == 0


def test_run_falls_back_when_the_best_node_dies_after_scoring(ready: Lab) -> None:
    rc, data = _health(ready, "--refresh")
    assert rc == 0
    best = data["nodes"][0]["name"]
    assert ready.cli("lab", "kill", best).returncode == 0
    try:
        proc = ready.cli("run", "-c", str(ready.config), "--", "hostname")  # cached scores
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() != best and proc.stdout.strip() in ready.nodes
        assert f"{best} does not answer" in proc.stderr
    finally:
        assert ready.cli("lab", "revive", best).returncode == 0


def test_run_defaults_to_the_best_node_and_keeps_the_exit_code(ready: Lab) -> None:
    _, data = _health(ready, "--refresh")
    proc = ready.cli("run", "-c", str(ready.config), "--", "hostname")
    assert proc.returncode == 0
    assert proc.stdout.strip() == data["nodes"][0]["name"]
    failing = ready.cli("run", "-c", str(ready.config), "--node", "node2", "--",
                        "sh", "-c", "echo out; echo err >&2; exit 7")  # fmt: skip
    assert failing.returncode == 7
    assert failing.stdout == "out\n" and "err" in failing.stderr


def test_run_passes_arguments_verbatim_unless_asked_for_a_shell(ready: Lab) -> None:
    cfg = str(ready.config)
    tricky = ["a b", "$HOME", "x;y", "*", "'q'"]
    proc = ready.cli("run", "-c", cfg, "--node", "node2", "--", "printf", "%s\\n", *tricky)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == tricky
    shell = ready.cli("run", "-c", cfg, "--node", "node2", "--shell", "--", "echo $((6*7)) | cat")
    assert shell.stdout.strip() == "42"
    where = ready.cli("run", "-c", cfg, "--node", "node3", "--", "sh", "-c",
                      'pwd; command -v python; echo "$RAY_ADDRESS"')  # fmt: skip
    pwd, python, address = where.stdout.splitlines()
    node3 = lab_node("node3")
    assert pwd == f"{node3.home}/grid-ops/code"  # where sync puts code
    assert python == f"{node3.home}/grid-ops/venv/bin/python"
    assert address == f"{lab_node('node1').ip}:6379"


def test_run_all_has_a_section_per_node_and_fails_if_any_fails(ready: Lab) -> None:
    cfg = str(ready.config)
    ok = ready.cli("run", "-c", cfg, "--all", "--", "hostname")
    assert ok.returncode == 0, ok.stderr
    for name in ready.nodes:
        assert f"── {name} (exit 0)" in ok.stdout
        assert f"\n{name}\n" in ok.stdout
    bad = ready.cli("run", "-c", cfg, "--all", "--", "sh", "-c", 'test "$(hostname)" != node2')
    assert bad.returncode == 1
    assert "── node2 (exit 1)" in bad.stdout
    assert "failed on 1 of 3 node(s): node2" in bad.stderr


# How long a stopped command may take to be gone: it returns as soon as it is, so this
# only bounds a failure (a loaded box, e.g. another test run beside this one, is slow).
GONE_WITHIN = 20.0


def _left_running(pattern: str, wait_s: float, nodes: str = "node1,node2,node3") -> list[str]:
    """Processes of these lab nodes' users (the nodes share this machine's process table)
    still matching after up to ``wait_s`` seconds."""
    users = ",".join(lab_node(n).user for n in nodes.split(","))
    deadline = time.monotonic() + wait_s
    while True:
        argv = ["pgrep", "-u", users, "-f", pattern]
        found = subprocess.run(argv, capture_output=True, text=True, check=False)
        if not found.stdout.split() or time.monotonic() > deadline:
            return found.stdout.split()
        time.sleep(0.2)


def test_run_timeout_stops_the_command_on_the_node(ready: Lab) -> None:
    cfg = str(ready.config)
    proc = ready.cli("run", "-c", cfg, "--node", "node2", "--timeout", "1", "--", "sleep", "93.5")
    assert proc.returncode == 124
    assert "did not finish within 1 s" in proc.stderr
    assert _left_running("sleep 93.5", GONE_WITHIN) == []
    stubborn = ready.cli("run", "-c", cfg, "--node", "node3", "--timeout", "1", "--shell", "--",
                         'trap "" TERM; sleep 94.5')  # fmt: skip
    assert stubborn.returncode == 124
    # SIGKILL after the grace (the sleep would outlast this wait by a minute)
    assert _left_running("sleep 94.5", model.STOP_GRACE_S + GONE_WITHIN) == []
    every = ready.cli("run", "-c", cfg, "--all", "--timeout", "1", "--", "sleep", "95.5")
    assert every.returncode == 1
    for name in ready.nodes:
        assert f"── {name} (exit 124)" in every.stdout
    assert _left_running("sleep 95.5", GONE_WITHIN) == []
    assert not list(Path("/tmp").glob("grid-ops-run-*.pid"))


def test_a_command_exiting_124_is_not_taken_for_a_time_out(ready: Lab) -> None:
    cfg = str(ready.config)
    one = ready.cli("run", "-c", cfg, "--node", "node2", "--timeout", "30", "--", "sh", "-c",
                    "exit 124")  # fmt: skip
    assert one.returncode == 124 and "did not finish" not in one.stderr
    every = ready.cli("run", "-c", cfg, "--all", "--timeout", "30", "--", "sh", "-c", "exit 124")
    assert every.returncode == 1 and "── node1 (exit 124)" in every.stdout
    assert "stopped" not in every.stdout


def test_interrupted_run_all_stops_every_node(ready: Lab) -> None:
    argv = [sys.executable, "-m", "grid_ops", "run", "-c", str(ready.config), "--all"]
    proc = subprocess.Popen([*argv, "--", "sleep", "98.5"], env=ready.env(), cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=ctrl_c_reaches_it)  # fmt: skip
    deadline = time.monotonic() + 30
    while len(_left_running("sleep 98.5", 0)) < 2 * len(ready.nodes):  # shell + sleep each
        assert time.monotonic() < deadline, "the runs did not start"
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert _left_running("sleep 98.5", GONE_WITHIN) == []


def test_interrupted_run_stops_the_command_on_the_node(ready: Lab) -> None:
    argv = [sys.executable, "-m", "grid_ops", "run", "-c", str(ready.config), "--node", "node1"]
    proc = subprocess.Popen([*argv, "--", "sleep", "96.5"], env=ready.env(), cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=ctrl_c_reaches_it)  # fmt: skip
    deadline = time.monotonic() + 30
    while not _left_running("sleep 96.5", 0) and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)  # Ctrl-C
    proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert _left_running("sleep 96.5", GONE_WITHIN) == []


def test_run_unknown_node_is_a_clear_error(ready: Lab) -> None:
    proc = ready.cli("run", "-c", str(ready.config), "--node", "nope", "--", "true")
    assert proc.returncode == 2
    assert "Unknown node 'nope'" in proc.stderr and "Traceback" not in proc.stderr


def test_health_playbook_works_without_grid_ops(ready: Lab, tmp_path: Path) -> None:
    proc = ready.operator_playbook("health", tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count(f"on {os.cpu_count()} CPUs") == len(ready.nodes)
    assert "0 GPU(s)" in proc.stdout


def test_one_quoted_command_line_runs_in_the_nodes_shell(ready: Lab) -> None:
    """`run "CMD ARGS"` as ssh takes it: quotes, $VARS, globs and && reach the node's
    shell intact; one word without whitespace stays a program name."""
    cfg = str(ready.config)
    (lab_node("node2").home / "grid-ops" / "code" / "seed-a.txt").write_text("x")
    line = "printf '%s|' 'a b' \"$((6*7))\" seed-*.txt && echo done"
    proc = ready.cli("run", "-c", cfg, "--node", "node2", line)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "a b|42|seed-a.txt|done\n"
    one = ready.cli("run", "--config", cfg, "--node", "node2", "hostname")
    assert one.returncode == 0 and one.stdout.strip() == "node2"
    failing = ready.cli("run", "-c", cfg, "--node", "node2", "false && echo never")
    assert failing.returncode == 1 and failing.stdout == ""


def test_status_shows_ray_and_health_in_one_document(ready: Lab) -> None:
    proc = ready.cli("status", "--config", str(ready.config), "--json", "--refresh")
    assert "Traceback" not in proc.stderr, proc.stderr
    data = json.loads(proc.stdout)
    assert [n["name"] for n in data["cluster"]["nodes"]] == ready.nodes
    assert {n["name"] for n in data["health"]["nodes"]} == set(ready.nodes)
    assert data["health"]["cached"] is False
    assert proc.returncode == 0
    table = ready.cli("status", "-c", str(ready.config))
    assert "Ray cluster: head node1" in table.stdout and "health of lab" in table.stdout


def test_log_level_from_the_command_line_and_the_config(ready: Lab, tmp_path: Path) -> None:
    """`run "CMD" --log-level DEBUG` (the earlier tool's form) logs what grid-ops runs;
    the config's logging section sets the default, JSON lines when asked."""
    cfg = str(ready.config)
    proc = ready.cli("run", "-c", cfg, "--node", "node2", "echo test", "--log-level", "DEBUG")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "test\n"
    assert "grid-ops DEBUG: on node2: ssh " in proc.stderr
    quiet = ready.cli("-q", "run", "-c", cfg, "--node", "node2", "echo test")
    assert quiet.returncode == 0 and "DEBUG" not in quiet.stderr and "INFO" not in quiet.stderr
    import yaml

    data = yaml.safe_load(ready.config.read_text())
    data["logging"] = {"level": "info", "format": "json"}
    logged = tmp_path / "logged.yaml"
    logged.write_text(yaml.safe_dump(data))
    status = ready.cli("cluster", "status", "-c", str(logged), "--json")
    lines = [json.loads(ln) for ln in status.stderr.splitlines() if ln.startswith("{")]
    assert any(r["level"] == "INFO" and "playbook ray_status" in r["message"] for r in lines)
    json.loads(status.stdout)  # the document on stdout stays whole
    plain = ready.cli("--log-level", "WARNING", "cluster", "status", "-c", str(logged), "--json")
    assert not [ln for ln in plain.stderr.splitlines() if ln.startswith("{")]
