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
    # both tiers: the fast one first (any user, on every core), then the lab (root, two lanes)
    fast, lab = ".venv/bin/pytest -n auto --dist loadfile", ".venv/bin/pytest -m 'lab or root'"
    assert tests.endswith(f"{fast} && {lab} -n 2 --dist loadgroup")


def test_ci_runs_the_readme_test_command() -> None:
    _, tests = _commands()
    lines = (REPO / ".ci" / "run").read_text().splitlines()
    assert tests in lines


def test_the_lab_tier_runs_serially_or_in_its_two_lanes_only() -> None:
    import subprocess
    import sys

    def pytest(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
            cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    for marks, extra in (("lab or root", ()), ("lab and not slow", ("--dist", "loadfile")),
                         ("root", ("--dist", "loadgroup", "-n", "3"))):  # fmt: skip
        refused = pytest("-n", "2", *extra, "-m", marks, "--collect-only", "-q",
                         "tests/test_lab.py")  # fmt: skip
        assert refused.returncode == 4, refused.stdout + refused.stderr
        assert "or in two lanes with a lab each: -n 2 --dist loadgroup" in refused.stderr
    lanes = pytest("-n", "2", "--dist", "loadgroup", "-m", "lab", "--collect-only", "-q",
                   "tests/test_lab.py", "tests/test_demo.py")  # fmt: skip
    assert lanes.returncode == 0, lanes.stdout + lanes.stderr
    fast = pytest("-n", "2", "-q", "tests/test_readme.py::test_ci_runs_the_readme_test_command")
    assert fast.returncode == 0 and "1 passed" in fast.stdout, fast.stdout + fast.stderr
