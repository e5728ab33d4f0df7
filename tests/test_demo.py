"""The README's first command: `grid-ops demo` on the embedded default cluster."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from grid_ops.cli import app
from tests.conftest import Lab


def test_demo_without_root_uses_this_machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not root: a one-node cluster of this machine over a local connection, pinged for real."""
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("GRID_OPS_STATE_DIR", str(tmp_path / "state"))
    config = tmp_path / "demo.yaml"
    result = CliRunner().invoke(app, ["demo", "-o", str(config)])
    assert result.exit_code == 0, result.output
    assert "localhost" in result.output and "ok" in result.output
    assert "connection: local" in config.read_text()
    assert not (tmp_path / "state" / "lab").exists()


@pytest.mark.lab
def test_demo_as_root_brings_up_the_lab_and_pings_it(lab: Lab) -> None:
    proc = lab.cli("demo", "--nodes", str(len(lab.nodes)), "-o", str(lab.config))
    assert proc.returncode == 0, proc.stderr
    for name in lab.nodes:
        row = next(line for line in proc.stdout.splitlines() if f" {name} " in line)
        assert " ok " in row and "3." in row
    assert "Traceback" not in proc.stderr
