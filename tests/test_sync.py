"""grid-ops sync on real lab nodes: delta only, excludes, .gitignore, --delete, dry run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Lab, lab_node

pytestmark = pytest.mark.lab


def _sync(lab: Lab, src: Path, *args: str) -> tuple[int, dict[str, Any]]:
    proc = lab.cli("sync", str(src), "-c", str(lab.config), "--json", *args, timeout=300)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def _on_node(node: str, name: str) -> Path:
    return Path(lab_node(node).home / "grid-ops" / "code" / name)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    src = tmp_path / "proj"
    (src / "pkg").mkdir(parents=True)
    (src / "train.py").write_text("print('train')\n")
    (src / "pkg" / "model.py").write_text("W = 1\n")
    (src / ".gitignore").write_text("*.ckpt\n")
    (src / "big.ckpt").write_text("weights\n")
    (src / "__pycache__").mkdir()
    (src / "__pycache__" / "x.pyc").write_text("junk\n")
    return src


def test_sync_moves_only_changes_and_honours_excludes(lab: Lab, project: Path) -> None:
    rc, data = _sync(lab, project, "--delete")
    assert rc == 0
    for node in lab.nodes:
        host = data["hosts"][node]
        assert host["files_transferred"] == 3  # train.py, pkg/model.py, .gitignore
        assert host["bytes_sent"] > 0 and host["seconds"] >= 0
        dest = _on_node(node, "proj")
        assert host["dest"] == str(dest)
        assert (dest / "pkg" / "model.py").read_text() == "W = 1\n"
        assert not (dest / "big.ckpt").exists()  # .gitignore
        assert not (dest / "__pycache__").exists()  # sync.exclude_patterns
    rc, again = _sync(lab, project)
    assert rc == 0
    for node in lab.nodes:
        assert again["hosts"][node]["files_transferred"] == 0
        assert again["hosts"][node]["changed"] == 0
    (project / "pkg" / "model.py").write_text("W = 2\n")
    rc, delta = _sync(lab, project)
    assert all(delta["hosts"][n]["files_transferred"] == 1 for n in lab.nodes)
    assert (_on_node("node2", "proj") / "pkg" / "model.py").read_text() == "W = 2\n"


def test_delete_dry_run_and_node_limit(lab: Lab, project: Path) -> None:
    assert _sync(lab, project, "--delete")[0] == 0
    (project / "train.py").unlink()
    rc, dry = _sync(lab, project, "--delete", "--dry-run")
    assert rc == 0
    assert all(dry["hosts"][n]["changed"] == 1 for n in lab.nodes)  # would delete train.py
    assert (_on_node("node1", "proj") / "train.py").exists()  # dry run: nothing moved
    rc, kept = _sync(lab, project)  # without --delete the node keeps the file
    assert rc == 0 and kept["hosts"]["node1"]["files_transferred"] == 0
    assert (_on_node("node1", "proj") / "train.py").exists()
    rc, only = _sync(lab, project, "--delete", "--node", "node2")
    assert rc == 0 and list(only["hosts"]) == ["node2"]
    assert not (_on_node("node2", "proj") / "train.py").exists()
    assert (_on_node("node3", "proj") / "train.py").exists()


def test_killed_node_does_not_stop_the_others(lab: Lab, project: Path) -> None:
    assert lab.cli("lab", "kill", "node3").returncode == 0
    try:
        proc = lab.cli("sync", str(project), "-c", str(lab.config))
        assert proc.returncode == 1
        assert "node3" in proc.stderr and "Traceback" not in proc.stderr
        assert (_on_node("node1", "proj") / "train.py").exists()
    finally:
        assert lab.cli("lab", "revive", "node3").returncode == 0


def test_sync_playbook_works_without_grid_ops(lab: Lab, project: Path, tmp_path: Path) -> None:
    proc = lab.operator_playbook("sync", tmp_path, "-e", f"src={project}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for node in lab.nodes:
        assert (_on_node(node, "proj") / "train.py").read_text() == "print('train')\n"
    assert "file(s)" in proc.stdout and "bytes" in proc.stdout


def test_sync_of_a_missing_directory_is_a_clear_error(lab: Lab, tmp_path: Path) -> None:
    proc = lab.cli("sync", str(tmp_path / "nope"), "-c", str(lab.config))
    assert proc.returncode == 2
    assert "is not a directory" in proc.stderr and "Traceback" not in proc.stderr
