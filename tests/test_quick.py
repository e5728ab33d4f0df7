"""The quick paths of `health` and `sync` on real lab nodes: same answers as the full
CLI, without loading it, and back to the full CLI whenever the plan no longer holds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, Lab, lab_node

pytestmark = pytest.mark.lab

HEAVY = ("typer", "pydantic", "rich", "yaml", "ansible_runner")


@dataclass
class Run:
    """One CLI call and the heavy libraries it imported."""

    returncode: int
    stdout: str
    stderr: str
    heavy: list[str]


def _cli(lab: Lab, *args: str, quick: bool = True, config: Path | None = None) -> Run:
    env = dict(lab.env(), GRID_OPS_QUICK="1" if quick else "0")
    argv = [sys.executable, "-X", "importtime", "-m", "grid_ops", *args]
    proc = subprocess.run(
        [*argv, "-c", str(config or lab.config)],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=600, check=False,
    )  # fmt: skip
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if "|" in line}
    heavy = sorted(m for m in imported if m.split(".")[0] in HEAVY)
    return Run(proc.returncode, proc.stdout, proc.stderr, heavy)


@pytest.fixture(scope="module", autouse=True)
def running(lab: Lab) -> Lab:
    """The lab's cluster up on every node: a worker without Ray fails a health round."""
    lab.start_cluster()
    return lab


def test_health_answers_without_the_full_cli_once_planned(lab: Lab) -> None:
    full = _cli(lab, "health", "--refresh", "--json", quick=False)
    assert full.returncode == 0, full.stderr[-2000:]
    assert "pydantic" in full.heavy  # the full CLI validated the config and left a plan
    quick = _cli(lab, "health", "--refresh", "--json")
    assert quick.returncode == 0, quick.stderr[-2000:]
    assert quick.heavy == []  # no Typer, Rich, pydantic, YAML or Ansible loaded
    a, b = json.loads(full.stdout), json.loads(quick.stdout)
    assert b["cached"] is False
    assert sorted(n["name"] for n in b["nodes"]) == lab.nodes
    for fn, qn in zip(
        sorted(a["nodes"], key=lambda n: n["name"]),
        sorted(b["nodes"], key=lambda n: n["name"]),
        strict=True,
    ):
        assert list(fn) == list(qn)  # same fields, same order
        for key in ("reachable", "cpu_count", "mem_total_bytes", "gpus", "error"):
            assert fn[key] == qn[key]
    cached = _cli(lab, "health", "--json")
    assert cached.heavy == [] and json.loads(cached.stdout) == dict(b, cached=True)
    table = _cli(lab, "health")
    assert table.returncode == 0 and "health of lab (cached" in table.stdout
    assert not [m for m in table.heavy if m.split(".")[0] != "rich"]  # Rich only for the table


def test_an_edited_config_is_read_again(lab: Lab, tmp_path: Path) -> None:
    config = tmp_path / "weights.yaml"
    text = lab.config.read_text()
    config.write_text(text)
    assert _cli(lab, "health", "--refresh", "--json", config=config).returncode == 0
    config.write_text(text + "health_check:\n  cpu_weight: 7.0\n  gpu_weight: 0.0\n")
    proc = _cli(lab, "health", "--refresh", "--json", config=config)
    assert proc.returncode == 0 and "pydantic" in proc.heavy  # the plan no longer held
    for node in json.loads(proc.stdout)["nodes"]:
        assert node["score"] == pytest.approx(7.0 * node["load1"] / node["cpu_count"], abs=1e-3)
    config.write_text(text + "health_check:\n  cpu_weight: -1\n")  # invalid now
    bad = _cli(lab, "health", "--json", config=config)
    assert bad.returncode == 2 and "cpu_weight" in bad.stderr


def test_killed_node_costs_the_connect_timeout_on_the_quick_path(lab: Lab) -> None:
    assert _cli(lab, "health", "--refresh", "--json", quick=False).returncode == 0
    victim = lab.nodes[-1]
    assert lab.cli("lab", "kill", victim).returncode == 0
    try:
        proc = _cli(lab, "health", "--refresh")
        assert proc.returncode == 1 and proc.heavy and "pydantic" not in proc.heavy
        assert victim in proc.stdout and "unreachable" in proc.stdout
        assert f"did not answer: {victim}" in proc.stderr
    finally:
        assert lab.cli("lab", "revive", victim).returncode == 0
        assert lab.cli("cluster", "start", "-c", str(lab.config), timeout=600).returncode == 0


@pytest.fixture
def project(tmp_path: Path) -> Path:
    src = tmp_path / "quickproj"
    (src / "pkg").mkdir(parents=True)
    (src / "pkg" / "model.py").write_text("W = 1\n")
    (src / ".gitignore").write_text("*.ckpt\n")
    return src


def _sync(lab: Lab, src: Path, *args: str, quick: bool = True) -> tuple[Run, dict[str, Any]]:
    proc = _cli(lab, "sync", str(src), "--json", *args, quick=quick)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, json.loads(proc.stdout)


def test_sync_with_nothing_to_move_skips_the_playbook(lab: Lab, project: Path) -> None:
    _, first = _sync(lab, project)
    assert first["playbook_ran"] is True
    assert all(first["hosts"][n]["files_transferred"] == 2 for n in lab.nodes)
    proc, again = _sync(lab, project)
    assert again["playbook_ran"] is False and proc.heavy == []
    for node in lab.nodes:
        host = again["hosts"][node]
        assert host["files_transferred"] == 0 and host["changed"] == 0
        assert host["dest"] == first["hosts"][node]["dest"]
    (project / "big.ckpt").write_text("ignored\n")  # .gitignore'd: still nothing to move
    assert _sync(lab, project)[1]["playbook_ran"] is False
    (project / "pkg" / "model.py").write_text("W = 2\n")
    _, changed = _sync(lab, project)
    assert changed["playbook_ran"] is True
    assert all(changed["hosts"][n]["files_transferred"] == 1 for n in lab.nodes)
    remote = Path(first["hosts"][lab.nodes[0]]["dest"]) / "pkg" / "model.py"
    assert remote.read_text() == "W = 2\n"
    remote.write_text("edited on the node\n")  # a node that drifted gets the file again
    _, healed = _sync(lab, project, "--node", lab.nodes[0])
    assert healed["playbook_ran"] is True and list(healed["hosts"]) == [lab.nodes[0]]
    assert remote.read_text() == "W = 2\n"


def test_a_new_remote_root_is_synced_by_the_playbook(
    lab: Lab, project: Path, tmp_path: Path
) -> None:
    _sync(lab, project)
    moved = tmp_path / "moved.yaml"
    text = lab.config.read_text()
    moved.write_text(text.replace("remote_root: ~/grid-ops", "remote_root: ~/elsewhere"))
    assert _cli(lab, "health", "--refresh", "--json", quick=False, config=moved).returncode == 0
    proc = _cli(lab, "sync", str(project), "--json", config=moved)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(proc.stdout)
    assert data["playbook_ran"] is True  # the old root's "up to date" does not count here
    for node in lab.nodes:
        dest = Path(data["hosts"][node]["dest"])
        assert dest == lab_node(node).home / "elsewhere" / "code" / "quickproj"
        assert (dest / "pkg" / "model.py").read_text() == "W = 1\n"


def test_quick_and_playbook_sync_run_the_same_rsync(lab: Lab, project: Path) -> None:
    _sync(lab, project)
    (project / "new.py").write_text("N = 1\n")
    _, quick = _sync(lab, project, "--dry-run", "--delete")
    _, full = _sync(lab, project, "--dry-run", "--delete", quick=False)
    assert quick["playbook_ran"] is False and full["playbook_ran"] is True
    for node in lab.nodes:
        q, f = quick["hosts"][node], full["hosts"][node]
        assert q["command"] == f["command"]
        assert "--dry-run" in q["command"] and "--delete" in q["command"]
        assert (q["files_transferred"], q["changed"]) == (1, 1)
        assert (f["files_transferred"], f["changed"]) == (1, 1)
    assert not (Path(quick["hosts"][lab.nodes[0]]["dest"]) / "new.py").exists()


def test_unknown_node_still_gets_the_full_cli_error(lab: Lab, project: Path) -> None:
    _sync(lab, project)
    proc = _cli(lab, "sync", str(project), "--node", "nosuchnode")
    assert proc.returncode != 0 and "nosuchnode" in proc.stderr
    assert os.path.isdir(project)
