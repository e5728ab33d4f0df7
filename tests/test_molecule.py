"""molecule: syntax, converge, idempotence and verify of the roles on the lab's nodes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, Lab

pytestmark = pytest.mark.lab


def _molecule(lab: Lab, tmp_path: Path, scenario: str) -> str:
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
        [str(bin_dir / "molecule"), "test", "-s", scenario],
        cwd=REPO, capture_output=True, text=True, env=env, timeout=1200, check=False,
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    return output


@pytest.mark.slow
def test_molecule_default_scenario_on_lab_nodes(lab: Lab, tmp_path: Path) -> None:
    output = _molecule(lab, tmp_path, "default")
    for step in ("syntax", "converge", "idempotence", "verify"):
        assert f"{step}: Executed: Successful" in output, step
    assert "skipping: no hosts matched" not in output


@pytest.mark.slow
def test_molecule_lifecycle_scenario_removes_and_re_adds_a_worker(lab: Lab, tmp_path: Path) -> None:
    """After the default scenario's converge (a running cluster): remove_node.yml takes
    the last worker out and cleans it, scale.yml brings it back, verify sees all alive."""
    output = _molecule(lab, tmp_path, "lifecycle")
    for step in ("syntax", "converge", "verify"):
        assert f"{step}: Executed: Successful" in output, step
    last = lab.nodes[-1]
    drained = output.split("TASK [grid_ray : Drain the node (note, Ray drain)]", 1)[1]
    assert drained.split("TASK [", 1)[0].count(f"changed: [{last}]") == 1
    cleaned = output.split("TASK [Fail if anything is left]", 1)[1]
    assert f"ok: [{last}]" in cleaned.split("TASK [", 1)[0]
    assert "skipping: no hosts matched" not in output
