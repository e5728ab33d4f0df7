"""Training jobs on the lab's Ray cluster through the head's queue: launch, status, logs,
results, cancel, list; order, retries, restarts and checkpoints."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import Lab, lab_node

pytestmark = pytest.mark.lab

TRAIN = """
from grid_ops.jobs import report
for epoch in range(1, 4):
    report(epoch=epoch, loss=round(1.0 / epoch, 4))
print("trained three epochs", flush=True)
"""


@pytest.fixture(scope="module")
def cluster(lab: Lab) -> Iterator[Lab]:
    """The lab's cluster with Ray started afresh on every node: an earlier module may have
    left a node drained in Ray (a quarantine lifted, a drain undone, an alias config's
    names), and the queue places work only on nodes Ray has open."""
    lab.start_cluster(restart=True)
    yield lab


def _status(lab: Lab, name: str) -> dict[str, Any]:
    proc = lab.cli("job", "status", name, "-c", str(lab.config), "--json")
    assert proc.returncode == 0, proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def _wait(lab: Lab, name: str, states: tuple[str, ...], limit: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + limit
    while True:
        data = _status(lab, name)
        if data["status"] in states or time.monotonic() > deadline:
            return data
        time.sleep(1)


def test_a_job_runs_with_its_workdir_logs_and_reported_metrics(
    cluster: Lab, tmp_path: Path
) -> None:
    cfg = str(cluster.config)
    work = tmp_path / "proj"
    work.mkdir()
    (work / "train.py").write_text(TRAIN)
    proc = cluster.cli("job", "launch", "--name", "train", "--workdir", str(work), "-c", cfg,
                       "--env", "SEED=7", "--", "python", "train.py")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    done = _wait(cluster, "train", ("SUCCEEDED", "FAILED", "STOPPED"))
    assert done["status"] == "SUCCEEDED", done
    assert done["started_at"] <= done["ended_at"] and done["nodes"] == 1
    logs = cluster.cli("job", "logs", "train", "-c", cfg)
    assert "trained three epochs" in logs.stdout
    slow = "import time; print('start', flush=True); time.sleep(4); print('end', flush=True)"
    assert cluster.cli("job", "launch", "--name", "slow", "-c", cfg, "--",
                       "python", "-c", slow).returncode == 0  # fmt: skip
    follow = cluster.cli("job", "logs", "slow", "--follow", "-c", cfg, timeout=120)
    assert follow.returncode == 0
    assert follow.stdout.index("start") < follow.stdout.index("end")  # returns once it ends
    assert _status(cluster, "slow")["status"] == "SUCCEEDED"
    res = json.loads(cluster.cli("job", "results", "train", "-c", cfg, "--json").stdout)
    assert [m["epoch"] for m in res["metrics"]] == [1, 2, 3]
    assert res["final"] == {"epoch": 3, "loss": 0.3333}
    assert res["duration_s"] > 0


def test_a_job_without_workdir_starts_where_sync_put_the_code(cluster: Lab, tmp_path: Path) -> None:
    cfg = str(cluster.config)
    proj = tmp_path / "synced"
    proj.mkdir()
    (proj / "hello.py").write_text("import os; print('hello from', os.getcwd(), flush=True)\n")
    assert cluster.cli("sync", str(proj), "-c", cfg).returncode == 0
    proc = cluster.cli("job", "launch", "--name", "from-code", "-c", cfg, "--",
                       "python", "synced/hello.py")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    done = _wait(cluster, "from-code", ("SUCCEEDED", "FAILED", "STOPPED"))
    logs = cluster.cli("job", "logs", "from-code", "-c", cfg).stdout
    assert done["status"] == "SUCCEEDED", logs
    homes = [str(lab_node(n).home) for n in cluster.nodes]
    assert any(f"hello from {h}/grid-ops/code" in logs for h in homes), logs  # its rank's node


def test_a_failing_job_ends_failed_with_its_exit_code(cluster: Lab) -> None:
    cfg = str(cluster.config)
    proc = cluster.cli("job", "launch", "--name", "broken", "-c", cfg, "--",
                       "python", "-c", "import sys; print('boom'); sys.exit(3)")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    done = _wait(cluster, "broken", ("SUCCEEDED", "FAILED", "STOPPED"))
    assert done["status"] == "FAILED" and done["exit_code"] == 3


def test_cancel_ends_stopped_and_live_names_are_unique(cluster: Lab) -> None:
    cfg = str(cluster.config)
    assert cluster.cli("job", "launch", "--name", "long", "-c", cfg, "--",
                       "sleep", "600").returncode == 0  # fmt: skip
    assert _wait(cluster, "long", ("RUNNING",))["status"] == "RUNNING"
    again = cluster.cli("job", "launch", "--name", "long", "-c", cfg, "--", "true")
    assert again.returncode == 2
    assert "still running" in again.stderr and "Traceback" not in again.stderr
    cancel = cluster.cli("job", "cancel", "long", "-c", cfg)
    assert cancel.returncode == 0 and "STOPPED" in cancel.stdout
    assert _status(cluster, "long")["status"] == "STOPPED"


def _cpus(lab: Lab) -> int:
    """A lab node's CPUs in Ray (every node has the same: they share this box)."""
    proc = lab.cli("cluster", "status", "-c", str(lab.config), "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)["nodes"]
    cpus = int(min(float((r.get("resources") or {}).get("CPU", 0)) for r in rows))
    assert cpus > 0, rows  # every node is in Ray
    return cpus


def test_jobs_needing_every_node_run_one_by_one_and_high_priority_goes_second(
    cluster: Lab,
) -> None:
    """Three jobs that each take every CPU of every node run one after another, never
    together; a high-priority job submitted last starts second. A second operator's
    machine (another state dir) lists the same jobs."""
    cfg = str(cluster.config)
    whole = ["--nodes", str(len(cluster.nodes)), "--cpus-per-node", str(_cpus(cluster))]
    for name in ("all-a", "all-b", "all-c"):
        proc = cluster.cli("job", "launch", "--name", name, *whole, "-c", cfg, "--",
                           "sleep", "3")  # fmt: skip
        assert proc.returncode == 0, proc.stderr
    proc = cluster.cli("job", "launch", "--name", "all-urgent", "--priority", "high", *whole,
                       "-c", cfg, "--json", "--", "sleep", "3")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["status"] == "QUEUED"
    waiting = _status(cluster, "all-c")
    assert waiting["status"] == "QUEUED" and "free" in waiting["reason"], waiting
    names = ("all-a", "all-b", "all-c", "all-urgent")
    done = {n: _wait(cluster, n, ("SUCCEEDED", "FAILED", "STOPPED"), limit=240) for n in names}
    assert all(d["status"] == "SUCCEEDED" for d in done.values()), done
    runs = sorted((d["started_at"], d["ended_at"], n) for n, d in done.items())
    assert [n for _, _, n in runs] == ["all-a", "all-urgent", "all-b", "all-c"]
    for (_, end, _), (start, _, _) in itertools.pairwise(runs):
        assert end <= start  # one after another
    other = dict(cluster.env(), GRID_OPS_STATE_DIR=str(cluster.state_dir.parent / "other"))
    from tests.conftest import grid_ops

    theirs = grid_ops("job", "list", "-c", cfg, "--json", env=other)
    assert theirs.returncode == 0, theirs.stderr
    mine = cluster.cli("job", "list", "-c", cfg, "--json")
    ids = [j["id"] for j in json.loads(mine.stdout)]
    assert [j["id"] for j in json.loads(theirs.stdout)] == ids and len(ids) >= 4


def test_a_head_reboot_loses_no_job_and_logs_stay(cluster: Lab) -> None:
    """The head goes down hard (every process of its user killed, its disk kept, as a
    power cut would) and the cluster is restarted: running jobs come back as their next
    attempt, queued ones stay queued, and a finished job's logs are read from its rank's
    node once Ray Jobs forgot it."""
    cfg = str(cluster.config)
    assert cluster.cli("job", "launch", "--name", "orphan", "-c", cfg, "--",
                       "sleep", "600").returncode == 0  # fmt: skip
    assert _wait(cluster, "orphan", ("RUNNING",))["status"] == "RUNNING"
    whole = ["--nodes", str(len(cluster.nodes)), "--cpus-per-node", str(_cpus(cluster))]
    assert cluster.cli("job", "launch", "--name", "blocked", *whole, "-c", cfg, "--",
                       "true").returncode == 0  # fmt: skip
    head = cluster.nodes[0]
    assert cluster.cli("lab", "kill", head).returncode == 0
    assert cluster.cli("lab", "revive", head).returncode == 0
    restart = cluster.cli("cluster", "restart", "-c", cfg, timeout=600)
    assert restart.returncode == 0, restart.stdout[-2000:] + restart.stderr[-2000:]
    try:
        orphan = _wait(cluster, "orphan", ("RUNNING",), limit=120)
        while orphan["attempt"] < 2 and orphan["status"] == "RUNNING":
            time.sleep(1)  # the queue finds the attempt gone at its next tick
            orphan = _status(cluster, "orphan")
        assert orphan["attempts"][0]["reason"] == "head restarted", orphan
        assert orphan["status"] in ("QUEUED", "RUNNING") and orphan["attempt"] == 2
        blocked = _status(cluster, "blocked")
        assert blocked["status"] == "QUEUED" and blocked["attempt"] == 0, blocked
        listed = {j["name"]: j for j in json.loads(cluster.cli("job", "list", "-c", cfg,
                                                                "--json").stdout)}  # fmt: skip
        assert listed["train"]["status"] == "SUCCEEDED"
        logs = cluster.cli("job", "logs", "train", "-c", cfg)
        assert logs.returncode == 0 and "[rank 0] trained three epochs" in logs.stdout
        res = json.loads(cluster.cli("job", "results", "train", "-c", cfg, "--json").stdout)
        assert res["final"]["epoch"] == 3  # read back from the rank's node
    finally:
        for name in ("orphan", "blocked"):
            cluster.cli("job", "cancel", name, "-c", cfg)


def test_unknown_job_is_a_clear_error(cluster: Lab) -> None:
    proc = cluster.cli("job", "status", "nope", "-c", str(cluster.config))
    assert proc.returncode == 2
    assert "No job named 'nope'" in proc.stderr and "Traceback" not in proc.stderr


class CmdlineWatch:
    """Scans every process's command line for ``needle`` until the block ends.

    The lab's nodes share this box's PID namespace, so this sees the operator's ssh, the
    head's shell and Python, Ray's workers (setup_worker.py gets a runtime_env on its
    command line) and the job's processes on every node. The operator's own grid-ops
    command is left out: its argv holds ``--env NAME=value`` as the user typed it."""

    def __init__(self, needle: str, marker: str) -> None:
        self.needle, self.marker = needle.encode(), marker.encode()
        self.leaks: dict[int, str] = {}
        self.saw_marker = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cmdline-watch", daemon=True)

    def __enter__(self) -> CmdlineWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            for entry in os.scandir("/proc"):
                if entry.name.isdigit():
                    self._look(int(entry.name))
            time.sleep(0.005)

    def _look(self, pid: int) -> None:
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return
        argv = raw.split(b"\0")
        self.saw_marker = self.saw_marker or self.marker in raw
        if self.needle in raw and argv[1:3] != [b"-m", b"grid_ops"]:
            self.leaks[pid] = raw.replace(b"\0", b" ").decode(errors="replace")[:400]


def _env_probe(marker: str) -> list[str]:
    """A job command that prints a digest of $SECRET_TOKEN (never the value), then runs
    ``sh -c 'sleep 4' MARKER`` for the watch to see: the marker is spelled backwards on
    the job's command line, so only a process the job started on a node shows it."""
    code = (
        "import hashlib, os, subprocess, sys; "
        "print('token', hashlib.sha256(os.environ['SECRET_TOKEN'].encode()).hexdigest(), "
        "flush=True); subprocess.run(['sh', '-c', 'sleep 4', sys.argv[1][::-1]], check=True)"
    )
    return ["python", "-c", code, marker[::-1]]


@pytest.mark.parametrize("nodes", [1, 2])
def test_env_values_reach_the_job_but_no_command_line(cluster: Lab, nodes: int) -> None:
    cfg = str(cluster.config)
    name = f"secret-env-{nodes}"
    secret = f"tok-{uuid.uuid4().hex}"
    marker = f"grid-ops-env-probe-{uuid.uuid4().hex}"
    with CmdlineWatch(secret, marker) as watch:
        launch = ["job", "launch", "--name", name, "--nodes", str(nodes), "-c", cfg]
        proc = cluster.cli(*launch, "--env", f"SECRET_TOKEN={secret}", "--", *_env_probe(marker))
        assert proc.returncode == 0, proc.stderr
        done = _wait(cluster, name, ("SUCCEEDED", "FAILED", "STOPPED"))
    logs = cluster.cli("job", "logs", name, "-c", cfg).stdout
    assert done["status"] == "SUCCEEDED", logs[-3000:]
    digest = hashlib.sha256(secret.encode()).hexdigest()
    assert logs.count(f"token {digest}") == nodes, logs[-3000:]  # every rank has it
    assert watch.saw_marker  # the watch did see the job's processes
    assert watch.leaks == {}, watch.leaks
    status = cluster.cli("job", "status", name, "-c", cfg, "--json").stdout
    assert secret not in status + logs


def test_a_failing_rank_fails_the_job_and_stops_the_others(cluster: Lab) -> None:
    cfg = str(cluster.config)
    script = (
        "import os, sys, time; r = os.environ['RANK']; "
        "print('env', r, os.environ['WORLD_SIZE'], os.environ['LOCAL_RANK'], flush=True); "
        "time.sleep(0 if r == '1' else 300); sys.exit(5 if r == '1' else 0)"
    )
    assert cluster.cli("job", "launch", "--name", "rankfail", "--nodes", "2", "-c", cfg,
                       "--", "python", "-c", script).returncode == 0  # fmt: skip
    done = _wait(cluster, "rankfail", ("SUCCEEDED", "FAILED", "STOPPED"))
    assert done["status"] == "FAILED" and done["exit_code"] == 5
    logs = cluster.cli("job", "logs", "rankfail", "-c", cfg).stdout
    ips = "|".join(re.escape(lab_node(n).ip) for n in cluster.nodes)  # this lane's lab
    assert re.search(rf"rank 1 \(node ({ips})\) exited 5; stopping the other ranks", logs), logs
    assert "env 0 2 0" in logs and "env 1 2 0" in logs


RESUME = """
import os, sys, time
from pathlib import Path
from grid_ops.jobs import checkpoint, latest_checkpoint

rank, attempt = os.environ["RANK"], os.environ["GRID_OPS_ATTEMPT"]
latest = latest_checkpoint()
if latest is None:
    with checkpoint(1) as path:
        Path(path, "state.txt").write_text(f"rank {rank} written by attempt {attempt}")
    print("saved step 1", flush=True)
else:
    print("resumed:", Path(latest, "state.txt").read_text(), flush=True)
    sys.exit(0)
if attempt == "1":
    print("up", flush=True)
    time.sleep(300)
"""


def test_a_killed_node_retries_the_job_elsewhere_from_its_checkpoint(cluster: Lab) -> None:
    """Attempt 1 runs on two nodes; each rank saves a checkpoint on its own node, which
    the job copies to the other's; rank 1's node is killed. Attempt 2 runs on the nodes
    left: rank 0 finds its own checkpoint, rank 1 (on a node new to the job) the one its
    lost node wrote, copied back from the replica; the job succeeds."""
    cfg = str(cluster.config)
    proc = cluster.cli("job", "launch", "--name", "victim", "--nodes", "2", "--max-retries",
                       "1", "-c", cfg, "--", "python", "-c", RESUME)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    running = _wait(cluster, "victim", ("RUNNING",))
    assert running["status"] == "RUNNING"
    first = running["attempts"][0]["nodes"]
    assert cluster.nodes[0] not in first[1:]  # rank 1 is not on the head
    deadline = time.monotonic() + 60
    # Rank 1's own log on its node (its home: the lab's nodes share this machine's disk).
    user = next(n["user"] for n in yaml.safe_load(cluster.config.read_text())["nodes"]
                if n["name"] == first[1])  # fmt: skip
    rank_log = (Path(f"/home/{user}/grid-ops/jobs") / running["id"] / "logs" / "attempt-1"
                / "rank-1.log")  # fmt: skip
    replicated = f"rank 1: checkpoint step-1 replicated to {first[0]}"
    while True:  # every rank runs, and rank 1's checkpoint has its replica on rank 0's node
        seen = cluster.cli("job", "logs", "victim", "-c", cfg).stdout
        if replicated in seen and rank_log.exists() and "up" in rank_log.read_text():
            break
        assert time.monotonic() < deadline, f"attempt 1 did not get going: {seen[-2000:]}"
        time.sleep(1)
    killed = first[1]
    assert cluster.cli("lab", "kill", killed).returncode == 0
    try:
        done = _wait(cluster, "victim", ("SUCCEEDED", "FAILED", "STOPPED"), limit=240)
        logs = cluster.cli("job", "logs", "victim", "-c", cfg).stdout
        assert done["status"] == "SUCCEEDED", json.dumps(done, indent=1) + logs[-3000:]
        assert done["attempt"] == 2 and done["attempts"][0]["reason"] == f"node lost ({killed})"
        second = done["attempts"][1]["nodes"]
        assert killed not in second and second[0] == first[0]
        assert "[rank 0] resumed: rank 0 written by attempt 1" in logs, logs[-3000:]
        assert "[rank 1] resumed: rank 1 written by attempt 1" in logs, logs[-3000:]
        assert f"rank 1: checkpoint step-1 copied to {second[1]} from {first[0]} (a replica" in logs
    finally:
        cluster.cli("job", "cancel", "victim", "-c", cfg)
        assert cluster.cli("lab", "revive", killed).returncode == 0
        cluster.cli("cluster", "start", "-c", cfg, timeout=600)
