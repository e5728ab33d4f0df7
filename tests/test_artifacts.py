"""ansible-runner's run directory keeps no copy of the operator's secrets.

Runs a real playbook (ping) against this machine through a local connection: no lab,
real Ansible, real ansible-runner artifacts."""

from __future__ import annotations

from pathlib import Path

import pytest

from grid_ops import model
from grid_ops.drivers import ansible
from grid_ops.model import config

SECRET = "grid-ops-test-secret-4c1d9e"


def test_a_run_leaves_no_environment_value_in_its_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRID_OPS_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("OPERATOR_API_TOKEN", SECRET)
    cfg = config.parse(
        {
            "name": "artifacts",
            "remote_root": str(tmp_path / "root"),
            "nodes": [{"name": "here", "host": "localhost", "connection": "local"}],
        }
    )
    result = ansible.run("ping", model.of(cfg), keep_runs=5)
    assert result.rc == 0, result.hosts
    files = [p for p in result.private_data_dir.rglob("*") if p.is_file()]
    assert any(p.name == "command" for p in files)  # the note is kept, its values are not
    for path in files:
        assert SECRET not in path.read_text(errors="replace"), path
    command = next(p for p in files if p.name == "command").read_text()
    assert "OPERATOR_API_TOKEN" in command  # the names stay, to tell what was set
