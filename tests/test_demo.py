"""The README's first command: `grid-ops demo` on the embedded default cluster."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from grid_ops.cli import app
from tests.conftest import Lab


def test_demo_without_root_runs_the_main_job_on_this_machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not root: a one-node cluster of this machine (local connection), for real: ping,
    provision a venv with Ray, start a Ray head and read its status."""
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("GRID_OPS_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(Path.home() / ".cache"))  # share the wheel cache
    config = tmp_path / "demo.yaml"
    root = tmp_path / "home" / "grid-ops-demo"
    try:
        result = CliRunner().invoke(app, ["demo", "-o", str(config)])
        assert result.exit_code == 0, result.output
        assert "connection: local" in config.read_text()
        assert "Ray cluster: head localhost, address 127.0.0.1:6379" in result.output
        row = next(ln for ln in result.output.splitlines() if "│ localhost" in ln and "head" in ln)
        assert "alive" in row
        assert (root / "venv" / "bin" / "ray").exists()
        assert not (tmp_path / "state" / "lab").exists()
    finally:
        # Stop only this demo's Ray (a root 'ray stop' would stop every Ray on the box).
        subprocess.run(["pkill", "-KILL", "-f", f"{root}/"], check=False)


@pytest.mark.lab
def test_demo_as_root_brings_up_the_lab_and_ray_on_it(lab: Lab) -> None:
    proc = lab.cli("demo", "--nodes", str(len(lab.nodes)), "-o", str(lab.config), timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    status = proc.stdout.split("Ray cluster: head node1")[1]
    for name in lab.nodes:
        row = next(line for line in status.splitlines() if f"│ {name} " in line)
        assert "alive" in row
