"""The project's own quality gates: ruff, mypy, yamllint, ansible-lint, syntax checks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

BIN = Path(sys.executable).parent


def _run(*cmd: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PATH=f"{BIN}:{os.environ.get('PATH', '')}")
    return subprocess.run(
        list(cmd), cwd=REPO, capture_output=True, text=True, env=env, timeout=timeout, check=False
    )


@pytest.mark.parametrize(
    "cmd",
    [
        ("ruff", "check", "grid_ops", "tests", "bench"),
        ("ruff", "format", "--check", "grid_ops", "tests", "bench"),
        ("mypy",),
        ("yamllint", "--strict", "."),
    ],
    ids=["ruff", "ruff-format", "mypy", "yamllint"],
)
def test_linter_is_clean(cmd: tuple[str, ...]) -> None:
    proc = _run(str(BIN / cmd[0]), *cmd[1:])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ansible_lint_production_profile_without_skips() -> None:
    config = (REPO / ".ansible-lint").read_text()
    assert "profile: production" in config
    assert "skip_list" not in config and "warn_list" not in config
    proc = _run(str(BIN / "ansible-lint"), "--offline")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Profile 'production' was required, and it passed" in proc.stdout + proc.stderr


def test_playbooks_pass_syntax_check(tmp_path: Path) -> None:
    inv = tmp_path / "hosts.yml"
    inv.write_text("all:\n  hosts:\n    n1:\n      ansible_connection: local\n")
    playbooks = sorted((REPO / "playbooks").glob("*.yml"))
    assert playbooks
    for playbook in playbooks:
        proc = _run(str(BIN / "ansible-playbook"), "--syntax-check", "-i", str(inv), str(playbook))
        assert proc.returncode == 0, f"{playbook.name}: {proc.stdout}{proc.stderr}"
