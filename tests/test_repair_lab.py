"""A worker whose Ray died is a failure, and the watch loop repairs it (lab): 'health'
exits 1 naming it, 'doctor' shows one failed row and exits 1, 'health --watch' starts its
Ray again; a node whose Ray cannot start is quarantined after three tries, and the first
repair that works lifts the quarantine. The decisions alone: tests/test_repair.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO, Lab, lab_node

pytestmark = pytest.mark.lab

VICTIM = "node3"
BROKEN = "#!/bin/sh\necho 'ray: broken on purpose by the test' >&2\nexit 3\n"


@pytest.fixture(scope="module")
def running(lab: Lab) -> Lab:
    lab.start_cluster()
    return lab


def _round(lab: Lab, cfg: str) -> tuple[int, dict[str, dict[str, Any]], str]:
    proc = lab.cli("health", "-c", cfg, "--refresh", "--json", timeout=300)
    assert "Traceback" not in proc.stderr, proc.stderr
    nodes = json.loads(proc.stdout)["nodes"]
    return proc.returncode, {n["name"]: n for n in nodes}, proc.stderr


def _kill_raylet() -> None:
    subprocess.run(["pkill", "-KILL", "-u", lab_node(VICTIM).user, "-x", "raylet"], check=False)


def _wait(what: str, test: Any, limit: float) -> Any:
    deadline = time.monotonic() + limit
    while True:
        found = test()
        if found:
            return found
        assert time.monotonic() < deadline, f"not within {limit:g} s: {what}"
        time.sleep(2)


class Watch:
    """'grid-ops health --watch' in the background, its output kept in files."""

    def __init__(self, lab: Lab, cfg: str, seconds: int, out: Path) -> None:
        self.out, self.err = out / "watch.out", out / "watch.err"
        with self.out.open("w") as stdout, self.err.open("w") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "grid_ops", "health", "--watch", str(seconds), "-c", cfg],
                stdout=stdout, stderr=stderr, env=lab.env(), cwd=REPO,
            )  # fmt: skip

    def rounds(self) -> int:
        return self.out.read_text().count("health of lab at")

    def stderr(self) -> str:
        return self.err.read_text()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def test_a_dead_raylet_fails_health_and_doctor_and_the_watch_restarts_it(
    running: Lab, tmp_path: Path
) -> None:
    cfg = str(running.config)
    _kill_raylet()
    rc, rows, _ = _wait(
        "health sees the raylet gone",
        lambda: (found := _round(running, cfg)) and not found[1][VICTIM]["ray_running"] and found,
        60,
    )
    assert rc == 1  # a failure
    table = running.cli("health", "-c", cfg)
    assert table.returncode == 1 and f"failed a health check: {VICTIM}" in table.stderr
    assert [(c["check"], c["severity"]) for c in rows[VICTIM]["checks"]] == [("ray_down", "sick")]
    assert rows[VICTIM]["drained"] is None  # left to repair, not quarantined
    doctor = running.cli("doctor", "-c", cfg, "--json", timeout=300)
    assert doctor.returncode == 1
    mine = [r for r in json.loads(doctor.stdout)["checks"] if r["node"] == VICTIM]
    ray_rows = [(r["check"], r["status"]) for r in mine if r["check"] in ("ray", "ray_down")]
    assert ray_rows == [("ray_down", "fail")]  # one line, not an "ok" beside a warning
    watch = Watch(running, cfg, 5, tmp_path)
    try:
        _wait("the watch restarts the node's Ray", lambda: "repaired" in watch.stderr(), 240)
        assert watch.rounds() <= 2, watch.out.read_text()[-3000:]
    finally:
        watch.stop()
    rc, rows, _ = _round(running, cfg)
    assert rc == 0 and rows[VICTIM]["ray_running"] and rows[VICTIM]["checks"] == []
    assert f"{VICTIM}: Ray should run there but does not: repairing" in watch.stderr()


def test_a_node_whose_ray_cannot_start_is_quarantined_after_three_tries(
    running: Lab, tmp_path: Path
) -> None:
    data = yaml.safe_load(running.config.read_text())
    data["health_check"] = {**data.get("health_check", {}), "repair_backoff": 1}
    fast = tmp_path / "lab-fast-repair.yaml"  # the same cluster (its id), quick retries
    fast.write_text(yaml.safe_dump(data))
    cfg = str(fast)
    ray = lab_node(VICTIM).home / "grid-ops" / "venv" / "bin" / "ray"
    kept = ray.with_name("ray.kept-by-test")
    os.rename(ray, kept)
    ray.write_text(BROKEN)
    os.chmod(ray, 0o755)
    watch = None
    try:
        _kill_raylet()
        _wait(
            "health sees the raylet gone",
            lambda: not _round(running, cfg)[1][VICTIM]["ray_running"],
            60,
        )
        watch = Watch(running, cfg, 2, tmp_path)
        drained = _wait(
            "three failed repairs quarantine the node",
            lambda: _round(running, cfg)[1][VICTIM]["drained"],
            300,
        )
        assert drained.startswith("quarantine: ray_down: Ray did not start after 3 repair(s)")
        log = watch.stderr()
        assert "repair failed (1 in a row)" in log and "repair failed (3 in a row)" in log
        assert "repair failed (4 in a row)" not in log
        ray.unlink()
        os.rename(kept, ray)
        _wait(
            "a repair that works lifts the quarantine",
            lambda: (
                (rows := _round(running, cfg)[1])[VICTIM]["drained"] is None
                and rows[VICTIM]["ray_running"]
            ),
            300,
        )
        _wait(
            "the watch says so",
            lambda: f"{VICTIM}: repaired (Ray runs again)" in watch.stderr(),
            60,
        )
    finally:
        if watch is not None:
            watch.stop()
        if kept.exists():
            ray.unlink(missing_ok=True)
            os.rename(kept, ray)
        running.cli("node", "undrain", VICTIM, "-c", cfg)
        assert running.cli("cluster", "start", "-c", cfg, timeout=600).returncode == 0
