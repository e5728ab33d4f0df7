"""README.md opens with the two set-up commands, and CI runs the second one verbatim."""

from __future__ import annotations

import re

from tests.conftest import REPO, lane_of


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
    assert tests.endswith(f"{fast} && {lab} -n 2")


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

    for marks, workers in (("lab or root", "3"), ("lab and not slow", "1"), ("root", "4")):
        refused = pytest("-n", workers, "-m", marks, "--collect-only", "-q", "tests/test_lab.py")
        assert refused.returncode == 4, refused.stdout + refused.stderr
        assert "or in two lanes with a lab each: -n 2." in refused.stderr
    # the two lanes: each a whole set of modules, the destroying test last in its lane
    lanes: dict[str, list[str]] = {}
    listed = pytest("-m", "lab or root", "--collect-only", "-q")
    for line in listed.stdout.splitlines():
        if "::" in line:
            lanes.setdefault(lane_of(line), []).append(line)
    assert set(lanes) == {"lane-a", "lane-b"}
    assert all(name.startswith("tests/test_lab.py") for name in lanes["lane-a"][-1:])
    assert "destroys" in pytest("--markers").stdout
    modules = [{n.split("::")[0] for n in names} for names in lanes.values()]
    assert not modules[0] & modules[1]
    assert {"tests/test_molecule.py"} <= modules[0] | modules[1]
    fast = pytest("-n", "2", "-q", "tests/test_readme.py::test_ci_runs_the_readme_test_command")
    assert fast.returncode == 0 and "1 passed" in fast.stdout, fast.stdout + fast.stderr
