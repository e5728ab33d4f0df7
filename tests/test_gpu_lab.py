"""GPU nodes end to end on the lab: each node gets its own replayed nvidia-smi
(tests/fake_nvidia_smi.py, answering from a real H100 capture or a sick variant of it;
the config's health_check.nvidia_smi points there), so one node can be sick while the
others are well. Health, metrics and Ray's --num-gpus must all see the GPU; the health
gate must quarantine a sick node and return it once it is well."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import fake_nvidia_smi, gpu_variants, serving
from tests.conftest import Lab

pytestmark = pytest.mark.lab

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "gpu-h100"
BUSY = (FIXTURES / "nvidia-smi-q.busy.xml").read_text()
BUSY_WATTS = 671.04  # the busy capture's instant_power_draw: what each replayed GPU draws


def _json(proc: subprocess.CompletedProcess[str]) -> Any:
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stdout.strip(), proc.stderr
    return json.loads(proc.stdout)


def _users() -> dict[str, str]:
    from grid_ops import lab as lab_mod

    state = lab_mod.load_state()
    assert state is not None
    return {n.name: n.user for n in state.nodes}


@pytest.fixture(scope="module")
def gpu_lab(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, Path]]:
    """The lab with one replayed H100 per node (node2's config expects two GPUs) and a
    cluster config that names each node user's own nvidia-smi; Ray is started on it."""
    data = yaml.safe_load(lab.config.read_text())
    data.setdefault("health_check", {})["nvidia_smi"] = fake_nvidia_smi.NODE_PATH
    for node in data["nodes"]:
        node["gpu_count"] = 2 if node["name"] == "node2" else 1
    cfg = tmp_path_factory.mktemp("gpu") / "gpu.yaml"
    cfg.write_text(yaml.safe_dump(data))
    users = _users()
    for user in users.values():
        fake_nvidia_smi.install(user, BUSY)
    try:
        yield lab, cfg
    finally:
        for user in users.values():
            fake_nvidia_smi.install(user, None)
        lab.cli("cluster", "stop", "-c", str(lab.config), timeout=300)


def test_gpu_facts_health_metrics_and_ray_resources(gpu_lab: tuple[Lab, Path]) -> None:
    lab, path = gpu_lab
    cfg = str(path)
    assert lab.cli("provision", "-c", cfg, timeout=900).returncode == 0
    restart = lab.cli("cluster", "restart", "-c", cfg, "--json", timeout=600)
    assert restart.returncode == 0, restart.stderr
    status = _json(lab.cli("cluster", "status", "-c", cfg, "--json"))
    for node in status["nodes"]:
        assert node["ray"] == "alive"
        assert node["resources"]["GPU"] == 1.0  # --num-gpus from the node's nvidia-smi -L

    proc = lab.cli("health", "-c", cfg, "--refresh", "--json")
    for node in _json(proc)["nodes"]:
        [gpu] = node["gpus"]
        assert gpu["name"] == "NVIDIA H100 80GB HBM3"
        assert (gpu["memory_total_mib"], gpu["memory_used_mib"]) == (81559, 21970)
        assert gpu["utilization_gpu"] == 100
        assert node["driver_version"] == "580.159.04" and node["cuda_version"] == "13.0"
        expected = node["load1"] / node["cpu_count"] + 3.0 * 21970 / 81559
        assert node["score"] == pytest.approx(expected, abs=1e-3)
    text = lab.cli("metrics", "-c", cfg).stdout
    line = next(ln for ln in text.splitlines() if ln.startswith("grid_node_gpu_memory_used_bytes{"))
    assert line.startswith('grid_node_gpu_memory_used_bytes{gpu="0",node=')
    assert float(line.split()[-1]) == 21970 * 2**20


def _status(lab: Lab, cfg: str) -> dict[str, dict[str, Any]]:
    nodes = _json(lab.cli("cluster", "status", "-c", cfg, "--json"))["nodes"]
    return {n["name"]: n for n in nodes}


def _round(lab: Lab, cfg: str) -> tuple[int, dict[str, dict[str, Any]]]:
    proc = lab.cli("health", "-c", cfg, "--refresh", "--json", timeout=600)
    return proc.returncode, {n["name"]: n for n in _json(proc)["nodes"]}


def _sick(row: dict[str, Any]) -> list[str]:
    return [c["check"] for c in row["checks"] if c["severity"] == "sick"]


def test_a_sick_node_is_quarantined_until_a_round_finds_it_well(
    gpu_lab: tuple[Lab, Path],
) -> None:
    lab, path = gpu_lab
    cfg = str(path)
    users = _users()
    # node2's config gives 2 GPUs and its nvidia-smi reports 1
    rc, rows = _round(lab, cfg)
    assert rc == 1
    [check] = rows["node2"]["checks"]
    assert check == {
        "check": "gpu_count",
        "severity": "sick",
        "reason": "1 GPU(s) found, the config gives 2",
        "gpu": None,
    }
    assert rows["node2"]["drained"].startswith("quarantine: gpu_count: 1 GPU(s) found")
    assert _sick(rows["node1"]) == [] and _sick(rows["node3"]) == []
    status = _status(lab, cfg)
    assert status["node2"]["ray"] != "alive" and status["node2"]["drained"].startswith("quarantine")
    for _ in range(3):
        ran = lab.cli("run", "-c", cfg, "--", "hostname")
        assert ran.returncode == 0 and "running on node2" not in ran.stderr
    launched = lab.cli("job", "launch", "--name", "spread", "--nodes", "2", "-c", cfg, "--",
                       "hostname")  # fmt: skip
    assert launched.returncode == 0, launched.stderr
    logs = lab.cli("job", "logs", "spread", "--follow", "-c", cfg, timeout=300)
    assert logs.returncode == 0, logs.stderr
    assert "node2" not in logs.stdout and "node1" in logs.stdout and "node3" in logs.stdout
    table = lab.cli("health", "-c", cfg)
    assert "SICK" in table.stdout and "failed a health check: node2" in table.stderr

    # healed: the second card is back
    fake_nvidia_smi.install(users["node2"], gpu_variants.two_gpus(BUSY))
    rc, rows = _round(lab, cfg)
    assert rc == 0, rows
    assert rows["node2"]["checks"] == [] and rows["node2"]["drained"] is None
    assert len(rows["node2"]["gpus"]) == 2
    status = _status(lab, cfg)
    assert status["node2"]["ray"] == "alive"

    # uncorrectable ECC errors on node3, then a reset card
    fake_nvidia_smi.install(users["node3"], gpu_variants.ecc_errors(5))
    rc, rows = _round(lab, cfg)
    assert rc == 1 and _sick(rows["node3"]) == ["ecc_uncorrectable"]
    assert "5 uncorrectable ECC error(s)" in rows["node3"]["drained"]
    assert [n for n in rows if rows[n]["drained"]] == ["node3"]
    fake_nvidia_smi.install(users["node3"], BUSY)
    rc, rows = _round(lab, cfg)
    assert rc == 0 and rows["node3"]["drained"] is None

    # a full disk on node3 (its remote_root on a 64 MiB filesystem, files in place)
    assert lab.cli("lab", "fill", "node3").returncode == 0
    try:
        rc, rows = _round(lab, cfg)
    finally:
        assert lab.cli("lab", "fill", "node3", "--undo").returncode == 0
    assert rc == 1 and _sick(rows["node3"]) == ["disk"], rows["node3"]
    assert rows["node3"]["drained"].startswith("quarantine: disk: 0.1 GiB free under ~/grid-ops")
    assert rows["node3"]["disk_free_bytes"] <= 64 * 2**20
    rc, rows = _round(lab, cfg)
    assert rc == 0 and rows["node3"]["drained"] is None

    # an operator's drain is never lifted by a round
    drained = lab.cli("node", "drain", "node3", "--reason", "fan swap", "-c", cfg)
    assert drained.returncode == 0, drained.stderr
    rc, rows = _round(lab, cfg)
    assert rows["node3"]["drained"] == "fan swap"
    back = lab.cli("node", "undrain", "node3", "-c", cfg, timeout=600)
    assert back.returncode == 0, back.stderr[-2000:]


# -- several users on the GPU nodes --------------------------------------------------------

SLEEP = "import time; t = time.time(); time.sleep({s}); print('ran', time.time() - t, flush=True)"


def test_users_own_their_work_and_a_quota_holds_a_job_until_its_gpus_free(
    gpu_lab: tuple[Lab, Path], tmp_path: Path
) -> None:
    """Three people on the GPU lab: ada (admin, on the lab's own machine), bob (a member
    with a quota of 1 GPU at once) and cy (a member), each on a machine of their own (a
    state dir of their own)."""
    lab, path = gpu_lab
    data = yaml.safe_load(path.read_text())
    data["users"] = [
        {"name": "ada", "role": "admin"},
        {"name": "bob", "quota": {"gpus": 1}},
        {"name": "cy"},
    ]
    users_cfg = tmp_path / "users.yaml"
    users_cfg.write_text(yaml.safe_dump(data))
    cfg = str(users_cfg)

    def with_config(args: tuple[str, ...]) -> list[str]:
        """``args`` with ``-c cfg`` before a job's own command (after ``--``)."""
        cut = args.index("--") if "--" in args else len(args)
        return [*args[:cut], "-c", cfg, *args[cut:]]

    def machine(name: str) -> Any:
        env = dict(lab.env(), GRID_OPS_STATE_DIR=str(tmp_path / name))
        return lambda *args, stdin="": subprocess.run(
            [sys.executable, "-m", "grid_ops", *with_config(args)], input=stdin, env=env,
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip

    ada = lambda *args, stdin="": lab.cli(*with_config(args))  # noqa: E731
    bob, cy = machine("bob"), machine("cy")
    applied = lab.cli("apply", "--yes", "-c", cfg, timeout=600)
    assert applied.returncode == 0, applied.stdout[-2000:] + applied.stderr[-2000:]
    try:
        # the head now asks who calls; the first admin's token may be made by whoever
        # reaches the head, once
        refused = ada("job", "list")
        assert refused.returncode != 0 and "needs your token" in refused.stderr
        made = _json(ada("user", "token", "ada", "--save", "--json"))
        assert made["role"] == "admin" and made["saved"]
        assert made["token"] not in (tmp_path / "users.yaml").read_text()
        for person, name in ((bob, "bob"), (cy, "cy")):
            token = _json(ada("user", "token", name, "--json"))["token"]
            login = person("user", "login", stdin=token + "\n")
            assert login.returncode == 0 and f"as {name} (member)" in login.stdout, login.stderr
        again = cy("user", "token", "cy")
        assert again.returncode != 0 and "Only an admin makes tokens; you are cy" in again.stderr
        listed = {r["name"]: r for r in _json(ada("user", "list", "--json"))}
        assert listed["bob"]["token"] and listed["bob"]["quota"]["gpus"] == 1

        # bob's first job holds his one GPU; his second waits, saying why
        long_job = SLEEP.format(s=600)
        started = time.monotonic()
        first = bob("job", "launch", "--name", "bob-long", "--gpus-per-node", "1", "--",
                    "python", "-c", long_job)  # fmt: skip
        assert first.returncode == 0, first.stderr
        second = bob("job", "launch", "--name", "bob-next", "--gpus-per-node", "1", "--",
                     "python", "-c", SLEEP.format(s=8))  # fmt: skip
        assert second.returncode == 0, second.stderr
        running = _wait_job(bob, "bob-long", ("RUNNING",))
        assert running["submitter"] == "bob"
        waiting = _wait_job(bob, "bob-next", ("QUEUED",))
        assert waiting["reason"] == (
            "over bob's quota: needs 1 GPU(s), bob's jobs hold 1 of 1 allowed at once"
        )
        exposed = ada("metrics").stdout
        assert 'grid_user_gpus{user="bob"} 1.0' in exposed
        assert 'grid_user_jobs_queued{user="bob"} 1.0' in exposed
        # cy's job is not held by bob's quota
        cys = cy("job", "launch", "--name", "cy-job", "--gpus-per-node", "1", "--",
                 "python", "-c", SLEEP.format(s=1))  # fmt: skip
        assert cys.returncode == 0, cys.stderr

        # cy may not stop bob's job, nor release his boost; the refusal names bob: through
        # the CLI, and through the API with cy's own token (ada serves it)
        stop = cy("job", "cancel", "bob-long")
        assert stop.returncode == 2
        assert "Job bob-long belongs to bob; only bob or an admin may cancel it" in stop.stderr
        server = serving.start(users_cfg, lab.env(), tmp_path / "serve.log")
        try:
            cy_token = (tmp_path / "cy" / "tokens" / f"{lab.cluster_id()}.token").read_text()
            answer = server.post("/api/jobs/bob-long/cancel", token=cy_token.strip())
            assert answer.status == 403, answer.body
            assert "belongs to bob" in answer.json()["error"]
            guess = server.post("/api/jobs/bob-long/cancel", token="not-a-users-token")
            assert guess.status == 401
        finally:
            server.stop()
        assert _wait_job(cy, "bob-long", ("RUNNING",))["status"] == "RUNNING"
        boost = _json(bob("boost", "request", "node1", "cpu", "0.1", "--json"))
        assert boost["owner"] == "bob"
        taken = cy("boost", "release", boost["id"])
        assert taken.returncode != 0 and "belongs to bob" in taken.stderr
        assert bob("boost", "release", boost["id"]).returncode == 0

        # while it runs, its energy so far shows, and grows (its meter publishes every
        # SAMPLE_S)
        readings: list[float] = []
        deadline = time.monotonic() + 60
        while len(readings) < 2 and time.monotonic() < deadline:
            live = _json(bob("job", "status", "bob-long", "--json"))
            assert live["status"] == "RUNNING", live
            if live["energy_j"] is not None and (not readings or live["energy_j"] > readings[-1]):
                readings.append(live["energy_j"])
            time.sleep(1)
        assert len(readings) == 2 and readings[0] > 0, readings
        assert live["attempts"][-1]["ended_at"] is None

        # bob stops his own; the waiting one starts as his GPU frees
        assert bob("job", "cancel", "bob-long").returncode == 0
        ended = _wait_job(bob, "bob-next", ("SUCCEEDED", "FAILED", "STOPPED"), limit=240)
        assert ended["status"] == "SUCCEEDED", ended
        # serve's health round quarantines node2 (its config expects 2 GPUs): a rank of
        # cy's placed there but not yet started is given up ("node drained") and runs
        # again elsewhere
        cys_record = _wait_job(cy, "cy-job", ("SUCCEEDED", "FAILED", "STOPPED"))
        if cys_record["status"] != "SUCCEEDED":  # what to look at, under "Captured stdout"
            print(json.dumps(cys_record, indent=1), cy("job", "logs", "cy-job").stdout[-5000:])
        assert cys_record["status"] == "SUCCEEDED"
        for attempt in cys_record["attempts"][:-1]:
            seen = (attempt["nodes"], attempt["reason"])
            assert seen == (["node2"], "node drained (node2)"), json.dumps(cys_record["attempts"])
        elapsed = time.monotonic() - started

        # usage: bob's GPU-hours are his two jobs' run times (1 GPU each)
        usage = _json(ada("usage", "--since", "1h", "--json"))["rows"]
        records = {
            r["name"]: r for r in _json(ada("job", "list", "--json")) if r["submitter"] == "bob"
        }
        ran = sum(
            records[n]["ended_at"] - records[n]["started_at"] for n in ("bob-long", "bob-next")
        )
        assert usage["bob"]["gpu_hours"] * 3600 == pytest.approx(ran, rel=0.02)
        assert ran <= elapsed  # and the queue's run times are within what the test saw
        logs = bob("job", "logs", "bob-next").stdout
        clock = re.search(r"\bran ([0-9.]+)", logs)
        assert clock, logs[-2000:]
        slept = float(clock[1])  # the job's own clock: ~8 s
        assert records["bob-next"]["ended_at"] - records["bob-next"]["started_at"] >= slept
        assert usage["cy"]["gpu_hours"] > 0

        # energy: each rank metered its own GPU while it ran (a replayed H100 draws
        # BUSY_WATTS all along), the queue kept it per attempt, usage sums it
        nxt = _json(bob("job", "status", "bob-next", "--json"))
        cut = _json(bob("job", "status", "bob-long", "--json"))
        assert nxt["energy_j"] is not None and cut["energy_j"] is not None, (nxt, cut)
        powered = nxt["energy_j"] / BUSY_WATTS  # seconds its GPU was metered
        assert slept * 0.98 <= powered <= (nxt["ended_at"] - nxt["started_at"]) * 1.02
        assert 0 < cut["energy_j"] / BUSY_WATTS <= (cut["ended_at"] - cut["started_at"]) * 1.02
        assert cut["energy_j"] >= readings[-1]  # what showed while it ran was a part of it
        assert usage["bob"]["energy_measured"] == 2
        assert usage["bob"]["energy_kwh"] * 3.6e6 == pytest.approx(
            nxt["energy_j"] + cut["energy_j"], rel=1e-3
        )

        # a GPU process outside the queue is put on the Unix user who runs it: 'nobody',
        # on node1 (in its own PID namespace, where node1's nvidia-smi reports its pid)
        from grid_ops import lab as lab_mod

        lab_users = _users()
        node1 = lab_users["node1"]
        sshd = next(n["sshd_pid"] for n in lab_mod.status()["nodes"] if n["name"] == "node1")
        outsider = subprocess.Popen(
            ["nsenter", "-t", str(sshd), "-m", "-p", "--", "setpriv", "--reuid=nobody",
             "--regid=nogroup", "--clear-groups", "sh", "-c", 'echo "$$"; exec sleep 120'],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert outsider.stdout is not None
        pid = int(outsider.stdout.readline())
        try:
            fake_nvidia_smi.install(node1, gpu_variants.running(pid, BUSY))
            fake_nvidia_smi.install(lab_users["node2"], gpu_variants.two_gpus(BUSY))  # as set
            round_ = ada("health", "--refresh", "--json")
            assert round_.returncode == 0, round_.stdout[-2000:] + round_.stderr[-2000:]
            seen = _json(ada("usage", "--json"))["gpu_processes"]
            assert {"node": "node1", "pid": pid, "user": "nobody", "process": "python3",
                    "gpu_memory_mib": 21482, "outside_grid_ops": True} in seen, seen  # fmt: skip
            table = ada("usage").stdout
            assert "nobody" in table and "outside grid-ops" in table
        finally:
            subprocess.run(["nsenter", "-t", str(sshd), "-m", "-p", "--", "kill", str(pid)],
                           check=False)  # fmt: skip
            outsider.wait(timeout=30)
            fake_nvidia_smi.install(node1, BUSY)
    finally:
        back = lab.cli("apply", "--yes", "-c", str(path), timeout=600)  # no users again
        lab.cli("user", "logout", "-c", str(path))
    assert back.returncode == 0, back.stderr[-2000:]


def _wait_job(person: Any, name: str, states: tuple[str, ...], limit: float = 120) -> Any:
    deadline = time.monotonic() + limit
    while True:
        record = _json(person("job", "status", name, "--json"))
        if record["status"] in states or time.monotonic() > deadline:
            return record
        time.sleep(1)
