"""Shared fixtures. The lab fixture brings up real SSH nodes (network namespaces) once per
test session; tests that need it are marked ``lab``. Without root the lab cannot come up,
and such tests fail with that reason rather than being skipped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
LAB_NODES = int(os.environ.get("GRID_OPS_TEST_LAB_NODES", "3"))


@dataclass
class Lab:
    """A running lab: its cluster config and a way to run the CLI against it."""

    config: Path
    state_dir: Path
    nodes: list[str]

    def env(self) -> dict[str, str]:
        return dict(os.environ, GRID_OPS_STATE_DIR=str(self.state_dir))

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return grid_ops(*args, env=self.env(), timeout=timeout)

    def cluster_id(self, config: Path | None = None) -> str:
        """The id of the cluster of ``config`` (the lab's by default), as grid-ops
        reports it (its state on this machine is kept under it)."""
        import json

        shown = self.cli("config", "validate", "--json", "-c", str(config or self.config))
        assert shown.returncode == 0, shown.stderr
        found: str = json.loads(shown.stdout)["id"]
        return found

    def operator_playbook(
        self, playbook: str, workdir: Path, *extra: str
    ) -> subprocess.CompletedProcess[str]:
        """Render the inventory, then run playbooks/<playbook>.yml with plain
        ansible-playbook from the repository root: no grid-ops in the loop."""
        inv = workdir / "inv"
        render = self.cli("inventory", "render", "-c", str(self.config), "-o", str(inv))
        assert render.returncode == 0, render.stderr
        bin_dir = Path(sys.executable).parent
        env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
        env.pop("ANSIBLE_CONFIG", None)
        argv = [str(bin_dir / "ansible-playbook"), "-i", str(inv / "hosts.yml")]
        return subprocess.run(
            [*argv, f"playbooks/{playbook}.yml", *extra],
            cwd=REPO, capture_output=True, text=True, env=env, timeout=600, check=False,
        )  # fmt: skip

    def start_cluster(self, config: Path | None = None, restart: bool = False) -> None:
        """Ray on every node of the config as it says: 'apply', which visits only the
        nodes that differ (one SSH round when none does, so modules share the cluster
        the one before left); ``restart``: provision, then Ray from scratch."""
        cfg = str(config or self.config)
        if restart:
            assert self.cli("provision", "-c", cfg, timeout=900).returncode == 0
            done = self.cli("cluster", "restart", "-c", cfg, timeout=600)
        else:
            done = self.cli("apply", "--yes", "-c", cfg, timeout=900)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]

    def up(self) -> None:
        from grid_ops import lab

        lab.up(len(self.nodes), self.config)


def grid_ops(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run the grid-ops CLI as a user would, in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "grid_ops", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd or REPO,
        timeout=timeout,
        check=False,
    )


def ctrl_c_reaches_it() -> None:
    """``preexec_fn`` of a process a test interrupts as Ctrl-C does: SIGINT back to its
    default, so Python turns it into KeyboardInterrupt. A suite started in the background
    of a non-interactive shell ('pytest &') inherits SIGINT ignored, and so would the
    process, which would then never see the test's Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


# The lab tier runs in two lanes at once (``-n 2``), each on a lab of its own
# (``$GRID_OPS_LAB``: worker gw0 on lab 0, gw1 on lab 1): the modules in LANE_B run in one
# lane, the rest in the other, each lane in collection order (the ``destroys`` tests last
# in theirs). Chosen to balance their minutes on this 2-core box (the durations CI
# prints); test_molecule stays in one lane (molecule keeps its scenarios under ~/.cache).
LANE_B = frozenset({
    "test_demo.py", "test_jobs.py", "test_gpu_lab.py", "test_serve.py",
    "test_security_lab.py", "test_quick.py", "test_doctor.py", "test_health.py",
    "test_serve_units.py", "test_metrics.py", "test_health_gate.py", "test_private_paths.py",
    "test_sync.py", "test_scheduler.py",
})  # fmt: skip
LANES = 2
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
if WORKER.startswith("gw") and WORKER[2:].isdigit():  # before grid_ops.lab is imported
    os.environ["GRID_OPS_LAB"] = WORKER[2:]
# The marker sets a lab or root test carries.
SHARED_MARKS = ({"lab"}, {"root"}, {"lab", "slow"}, {"lab", "destroys"},
                {"lab", "slow", "destroys"}, {"root", "slow"})  # fmt: skip


def _selects_shared(config: pytest.Config) -> bool:
    """Does this run's ``-m`` select lab or root tests?"""
    from _pytest.mark.expression import Expression

    expression = Expression.compile(config.getoption("markexpr", "") or "lab or not lab")
    return any(
        expression.evaluate(lambda name, marks=marks, **_: name in marks) for marks in SHARED_MARKS
    )


def pytest_configure(config: pytest.Config) -> None:
    """Lab and root tests run one at a time, or in the ``LANES`` lanes of ``-n 2`` (a
    lab each); any other ``-n`` stops here, saying so."""
    workers = config.getoption("numprocesses", None)
    if workers and workers != LANES and _selects_shared(config):
        raise pytest.UsageError(
            "The lab and root tests run one at a time (without -n), or in two lanes with "
            f"a lab each: -n {LANES}."
        )


def lane_of(nodeid: str) -> str:
    """The lane of a lab or root test: by its module (``LANE_B``)."""
    module = nodeid.split("::", 1)[0].rsplit("/", 1)[-1]
    return "lane-b" if module in LANE_B else "lane-a"


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """With ``-n 2`` on the lab tier: each worker takes one lane whole, in order."""
    if not _selects_shared(config):
        return None
    from xdist.scheduler import LoadScopeScheduling

    class Lanes(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return lane_of(nodeid)

    return Lanes(config, log)


LANE_SECONDS: dict[str, dict[str, float]] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Adds up each lane's seconds, per module, for the summary below."""
    module = report.nodeid.split("::", 1)[0].rsplit("/", 1)[-1]
    lane = LANE_SECONDS.setdefault(lane_of(report.nodeid), {})
    lane[module] = lane.get(module, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """With the lab tier in lanes: each lane's minutes and its slowest modules, so the
    split in ``LANE_B`` can be kept even as tests grow."""
    if config.getoption("numprocesses", None) != LANES or not _selects_shared(config):
        return
    terminalreporter.section("lab lanes")
    for lane, modules in sorted(LANE_SECONDS.items()):
        top = sorted(modules.items(), key=lambda kv: -kv[1])
        parts = ", ".join(f"{name} {secs:.0f} s" for name, secs in top)
        terminalreporter.write_line(f"{lane}: {sum(modules.values()):.0f} s ({parts})")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that tear the whole lab down run last (in their lane): the others keep its
    provisioned venvs and running cluster instead of building them again (minutes on
    this box)."""
    last = [item for item in items if item.get_closest_marker("destroys")]
    items[:] = [item for item in items if not item.get_closest_marker("destroys")] + last


def lab_node(name: str) -> Any:
    """Lab node ``name`` of the lab up in this session (its user, ip, home, namespace):
    the lab each lane runs has names and addresses of its own."""
    from grid_ops import lab as lab_mod

    state = lab_mod.load_state()
    assert state is not None, "no lab is up"
    return state.node(name)


@pytest.fixture(scope="session", autouse=True)
def own_state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Tests keep grid-ops' state (cluster ids, caches, tokens) in a dir of their own,
    never in the home of whoever runs them (the lab fixture sets its own on top)."""
    if os.environ.get("GRID_OPS_STATE_DIR"):
        yield
        return
    os.environ["GRID_OPS_STATE_DIR"] = str(tmp_path_factory.mktemp("state"))
    try:
        yield
    finally:
        os.environ.pop("GRID_OPS_STATE_DIR", None)


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A lab of LAB_NODES nodes for the whole session, torn down at the end."""
    if os.geteuid() != 0:
        pytest.fail(
            "lab tests need root (they create network namespaces, users and sshd daemons); "
            "run the suite as root, or deselect them with -m 'not lab'",
            pytrace=False,
        )
    from grid_ops import lab as lab_mod

    base = tmp_path_factory.mktemp("lab")
    state = base / "state"
    previous = os.environ.get("GRID_OPS_STATE_DIR")
    os.environ["GRID_OPS_STATE_DIR"] = str(state)
    handle = Lab(
        config=base / "lab.yaml",
        state_dir=state,
        nodes=[f"node{i}" for i in range(1, LAB_NODES + 1)],
    )
    try:
        try:
            handle.up()
        except Exception as exc:  # the reason must reach the report, not a skip
            pytest.fail(f"the lab could not come up: {exc}", pytrace=False)
        yield handle
    finally:
        lab_mod.down()
        if previous is None:
            os.environ.pop("GRID_OPS_STATE_DIR", None)
        else:
            os.environ["GRID_OPS_STATE_DIR"] = previous
