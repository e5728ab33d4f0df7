"""The health gate's logic: Xid events from the kernel log, the disk check on a real
small filesystem, the checks a whole round makes, and the quarantine plan. The same
paths run end to end on the lab in tests/test_gpu_lab.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from grid_ops import facts, layout
from grid_ops.drivers import probe
from grid_ops.module_utils import grid_gpu_health as gpu
from tests import gpu_variants
from tests.conftest import grid_ops

BUS = "00000000:00:06.0"  # the captured H100's
NOW_US = 7_200_000_000  # two hours after boot


def _kmsg(seconds_ago: float, message: str, seq: int = 1) -> str:
    return f"3,{seq},{int(NOW_US - seconds_ago * 1e6)},-;{message}\n"


def test_xid_events_of_this_nodes_gpus_in_the_last_hour() -> None:
    records = [
        _kmsg(
            60,
            "NVRM: Xid (PCI:0000:00:06): 79, pid=1234, name=python3, GPU has fallen off the bus.",
        ),
        _kmsg(
            30,
            "NVRM: Xid (PCI:0000:00:06): 79, pid=1234, name=python3, GPU has fallen off the bus.",
        ),
        _kmsg(20, "NVRM: Xid (PCI:0000:00:06): 13, pid=99, name=python3, Graphics Exception"),
        _kmsg(10, "NVRM: Xid (PCI:0000:00:06): 45, pid=99, name=python3, Ch 00000010"),
        _kmsg(10, "NVRM: Xid (PCI:0000:3b:00): 48, pid=7, An uncorrectable double bit error"),
        _kmsg(7000, "NVRM: Xid (PCI:0000:00:06): 95, pid=7, Uncontained: FBHUB."),
        _kmsg(5, "usb 1-1: new high-speed USB device number 2"),
    ]
    events = gpu.xid_events(records, NOW_US)
    assert [e["xid"] for e in events] == [79, 79, 13, 45, 48]  # 95 is older than an hour
    [card] = gpu.parse(gpu_variants.real())["gpus"]  # type: ignore[call-overload]
    assert card["bus_id"] == BUS
    checks = gpu.xid_checks(events, [card])  # 48 is another box's card: not this node's
    assert [(c["check"], c["severity"], c["gpu"]) for c in checks] == [
        ("xid", "warning", 0),
        ("xid", "sick", 0),
    ]
    assert checks[1]["reason"] == (
        "GPU 0: Xid 79, the GPU has fallen off the bus (2 times) in the last 60 min"
    )


@pytest.mark.root
def test_the_kernel_log_is_read_as_it_is() -> None:
    """A record written to this machine's real /dev/kmsg comes back as an Xid event."""
    if os.geteuid() != 0:
        pytest.fail("writing the kernel log needs root; run the suite as root", pytrace=False)
    marker = f"grid-ops test {os.getpid()}"
    with open("/dev/kmsg", "w") as kmsg:  # a bus id no machine has
        kmsg.write(f"NVRM: Xid (PCI:ffff:ff:1f): 79, pid=1, {marker}\n")
    records = gpu.read_kmsg()
    assert records is not None
    now = gpu.uptime_us()
    assert now is not None
    found = [e for e in gpu.xid_events(records, now) if marker in str(e["text"])]
    assert [(e["xid"], e["bus"]) for e in found] == [(79, (0xFFFF, 0xFF, 0x1F))]
    assert gpu.read_kmsg("/nonexistent/kmsg") is None


def _module(args: dict[str, Any], path: str = "/usr/bin:/bin") -> dict[str, Any]:
    """The fact module as the probe runs it on a node (a bare python3, JSON out)."""
    proc = subprocess.run(
        ["/usr/bin/python3", "-I", "-"],
        input=probe.module_source(), capture_output=True, text=True, check=True,
        env=dict(os.environ, GRID_OPS_STANDALONE="1", GRID_OPS_ARGS=json.dumps(args), PATH=path),
    )  # fmt: skip
    answer: dict[str, Any] = json.loads(proc.stdout)
    return answer


@pytest.mark.root
def test_disk_free_below_the_threshold_is_sick_on_a_real_filesystem(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("mounting a small filesystem needs root; run the suite as root", pytrace=False)
    root = tmp_path / "small"
    root.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(root)], check=True)
    try:
        (root / "fill").write_bytes(b"\0" * 6 * 2**20)
        args = {"remote_root": str(root), "nvidia_smi_timeout": 5}
        full = _module({**args, "min_disk_free_bytes": 4 * 2**20})
        [check] = full["checks"]
        assert (check["check"], check["severity"]) == ("disk", "sick")
        assert check["reason"].startswith(f"0.0 GiB free under {root}, below the 0.0 GiB")
        assert full["disk_free_bytes"] < 4 * 2**20
        (root / "fill").unlink()
        assert _module({**args, "min_disk_free_bytes": 4 * 2**20})["checks"] == []
    finally:
        subprocess.run(["umount", str(root)], check=True)


def test_a_configured_nvidia_smi_short_of_the_configs_gpus(tmp_path: Path) -> None:
    """health_check.nvidia_smi names the program; it replays the real capture (1 GPU)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shutil.copyfile(Path(__file__).parent / "fake_nvidia_smi.py", bin_dir / "nvidia-smi")
    (bin_dir / "nvidia-smi").chmod(0o755)
    (bin_dir / "nvidia-smi.xml").write_text(gpu_variants.real())
    args = {"remote_root": "/", "nvidia_smi_timeout": 5, "nvidia_smi": str(bin_dir / "nvidia-smi")}
    found = _module({**args, "expected_gpus": 2}, path=str(tmp_path))  # not on PATH
    assert [c["reason"] for c in found["checks"]] == ["1 GPU(s) found, the config gives 2"]
    assert found["driver_version"] == "580.159.04" and len(found["gpus"]) == 1
    assert _module({**args, "expected_gpus": 1})["checks"] == []
    missing = _module({**args, "nvidia_smi": str(tmp_path / "none"), "expected_gpus": 1})
    assert [c["reason"] for c in missing["checks"]] == [
        "no nvidia-smi found, the config gives 1 GPU(s)"
    ]


def _rec(name: str, **values: Any) -> dict[str, Any]:
    rec = facts.record(name, {"load1": 0.1, "cpu_count": 2, "ray_running": True}, 1.0, 3.0)
    rec.update(values)
    return rec


SICK = {"check": "gpu_count", "severity": "sick", "reason": "1 GPU(s) found", "gpu": None}
WARN = {"check": "persistence_mode", "severity": "warning", "reason": "off", "gpu": 0}


def test_quarantine_plan() -> None:
    records = [
        _rec("head", checks=[SICK]),  # the head is never drained
        _rec("sick", checks=[SICK, WARN]),
        _rec("warned", checks=[WARN]),  # a warning keeps the node in service
        _rec("healed", drained="quarantine: gpu_count: 1 GPU(s) found"),
        _rec("still", checks=[SICK], drained="quarantine: gpu_count: 1 GPU(s) found"),
        _rec("fan", drained="fan swap"),  # an operator's drain
        facts.unreachable("gone", "no answer"),
        {**facts.unreachable("gone2", "x"), "drained": "quarantine: x"},
    ]
    drain, lift = facts.quarantine_plan(records, "head", enabled=True)
    assert drain == {"sick": "quarantine: gpu_count: 1 GPU(s) found"}
    assert lift == ["healed"]
    assert facts.quarantine_plan(records, "head", enabled=False) == ({}, [])
    order = [r["name"] for r in facts.rank(records)]  # in service, sick, drained, gone
    assert order == ["warned", "head", "sick", "fan", "healed", "still", "gone", "gone2"]
    assert [r["name"] for r in records if facts.in_service(r)] == ["warned"]


def test_a_node_whose_ray_is_down_is_left_to_repair_not_quarantined() -> None:
    down = {"check": "ray_down", "severity": "sick", "reason": "Ray is not running", "gpu": None}
    given_up = "quarantine: ray_down: Ray did not start after 3 repair(s) in a row"
    records = [
        _rec("head"),
        _rec("down", checks=[down]),  # repair restarts it, the gate does not drain it
        _rec("both", checks=[down, SICK]),  # sick for another reason too: quarantined
        _rec("given_up", drained=given_up),  # quiet because drained: only a repair lifts it
    ]
    drain, lift = facts.quarantine_plan(records, "head", enabled=True)
    assert drain == {"both": "quarantine: ray_down: Ray is not running; gpu_count: 1 GPU(s) found"}
    assert lift == []
    assert [r["name"] for r in records if facts.repairable(r)] == ["down"]
    assert [r["name"] for r in records if facts.repair_quarantined(r)] == ["given_up"]
    assert not facts.in_service(records[1])  # run and the scheduler keep off it meanwhile


def test_checks_of_the_whole_round() -> None:
    records = [
        _rec("head", ray_version="2.60.0", clock_offset_s=0.0),
        _rec("old", ray_version="2.59.0", clock_offset_s=-12.5),
        _rec("down", ray_version="2.60.0", ray_running=False, clock_offset_s=0.4),
        _rec("drained", ray_running=False, drained="fan swap"),
        _rec("fresh", ray_version=None),
    ]
    facts.round_checks(records, "head", max_clock_offset=5.0)
    by = {r["name"]: [(c["check"], c["severity"]) for c in r["checks"]] for r in records}
    assert by == {
        "head": [],
        "old": [("clock", "warning"), ("ray_version", "sick")],
        "down": [("ray_down", "sick")],  # a failure: health and doctor exit 1
        "drained": [],
        "fresh": [],
    }
    assert records[1]["checks"][0]["reason"].startswith("the clock is -12.5 s off")
    assert facts.clock_offset(100.0, 101.0, 102.0) == -1.0
    assert facts.clock_offset(101.5, 101.0, 102.0) == 0.0
    assert facts.clock_offset(None, 101.0, 102.0) is None


def _drain_here(root: Path, *args: str) -> tuple[int, dict[str, Any]]:
    """grid_ops.runtime.drain as a node runs it, on a real remote_root (``root``)."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.run(
        [sys.executable, "-m", "grid_ops.runtime.drain", *args],
        capture_output=True, text=True, check=False, env={**env, "GRID_OPS_ROOT": str(root)},
    )  # fmt: skip
    return proc.returncode, json.loads(proc.stdout.strip().splitlines()[-1])


POSING = [
    "quarantine: gpu_count: 1 GPU(s) found",
    "  quarantine:   fake",
    "\nquarantine: on a second line",
    "Quarantine: RMA pending",
    "QUARANTINE : x",
    "\x1cquarantine: after a separator",
]


def test_an_operators_reason_cannot_pose_as_a_quarantine_the_gate_lifts(tmp_path: Path) -> None:
    note = tmp_path / layout.DRAIN_NOTE
    note.parent.mkdir()
    for reason in POSING:
        rc, answer = _drain_here(tmp_path, "set", "--node", "n", "--reason", reason)
        assert rc == 2 and "may not start with 'quarantine:'" in answer["error"], reason
        assert not note.exists(), reason
    # the gate's own drain, and a lift that takes only it
    gate = facts.QUARANTINE + "disk: 0.1 GiB free"
    rc, answer = _drain_here(tmp_path, "set", "--node", "n", "--reason", gate, "--quarantine")
    assert rc == 0 and answer["reason"] == gate and note.read_text() == gate + "\n"
    assert facts.quarantined({"drained": note.read_text().strip()})
    assert _drain_here(tmp_path, "clear", "--only-if", facts.QUARANTINE)[1]["cleared"] is True
    # an operator's reason that only mentions it is kept, and a round does not lift it
    held = "held for RMA (was quarantine: disk)"
    rc, answer = _drain_here(tmp_path, "set", "--node", "n", "--reason", held)
    assert rc == 0 and note.read_text() == held + "\n"
    rec = facts.record("n", {"load1": 0.1, "cpu_count": 2}, 1.0, 3.0)
    assert facts.quarantine_plan([{**rec, "drained": held}], "head", True) == ({}, [])
    kept = _drain_here(tmp_path, "clear", "--only-if", facts.QUARANTINE)[1]
    assert kept == {"cleared": False, "reason": held} and note.exists()


def test_node_drain_refuses_a_quarantine_reason_before_it_moves_anything(tmp_path: Path) -> None:
    """The nodes do not exist: a refusal that came after the evacuation or the SSH call
    would fail otherwise, and late."""
    cfg = tmp_path / "cluster.yaml"
    cfg.write_text(
        "nodes:\n  - {name: head, host: 192.0.2.1}\n  - {name: w1, host: 192.0.2.2}\n"
        "ssh: {connect_timeout: 30}\n"
    )
    env = dict(os.environ, GRID_OPS_STATE_DIR=str(tmp_path / "state"))
    proc = grid_ops("node", "drain", "w1", "-r", "Quarantine: RMA", "-c", str(cfg), env=env,
                    timeout=20)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "may not start with 'quarantine:'" in " ".join(proc.stderr.split())
    assert "Traceback" not in proc.stderr
