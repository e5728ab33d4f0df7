"""README.md opens with the two set-up commands, and CI runs the second one verbatim."""

from __future__ import annotations

import re

from tests.conftest import REPO


def _commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    return re.findall(r"```bash\n(.+?)\n```", text, flags=re.S)[:2]


def test_readme_opens_with_demo_and_test_commands() -> None:
    demo, tests = _commands()
    assert "\n" not in demo and "\n" not in tests
    assert demo.endswith("grid-ops demo")
    assert "pip install" in demo and "pip install" in tests
    # both tiers: the fast one first (any user), then the lab (root)
    assert tests.endswith(".venv/bin/pytest && .venv/bin/pytest -m 'lab or root'")


def test_ci_runs_the_readme_test_command() -> None:
    _, tests = _commands()
    lines = (REPO / ".ci" / "run").read_text().splitlines()
    assert tests in lines
