"""molecule: syntax, converge, idempotence and verify of the roles on the lab's nodes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, Lab

pytestmark = pytest.mark.lab


def test_molecule_default_scenario_on_lab_nodes(lab: Lab, tmp_path: Path) -> None:
    inv = tmp_path / "inventory"
    render = lab.cli("inventory", "render", "-c", str(lab.config), "-o", str(inv))
    assert render.returncode == 0, render.stderr
    bin_dir = Path(sys.executable).parent
    env = dict(
        os.environ,
        PATH=f"{bin_dir}:{os.environ['PATH']}",
        GRID_OPS_MOLECULE_INVENTORY=str(inv / "hosts.yml"),
        NO_COLOR="1",
        ANSIBLE_NOCOLOR="1",
    )
    proc = subprocess.run(
        [str(bin_dir / "molecule"), "test", "-s", "default"],
        cwd=REPO, capture_output=True, text=True, env=env, timeout=1200, check=False,
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    for step in ("syntax", "converge", "idempotence", "verify"):
        assert f"{step}: Executed: Successful" in output, step
    assert "skipping: no hosts matched" not in output
