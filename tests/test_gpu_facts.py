"""The health module's parsers on real nvidia-smi output from an H100 node, checked
against the NVML numbers captured beside it (tests/fixtures/gpu-h100)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

from grid_ops import health
from grid_ops.drivers import probe
from grid_ops.model import config

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "gpu-h100"
MODULE = REPO / "roles" / "grid_facts" / "library" / "grid_health.py"
FULL_FIELDS = (
    "index", "name", "uuid", "pci.bus_id", "driver_version", "memory.total", "memory.used",
    "memory.free", "utilization.gpu", "utilization.memory", "temperature.gpu", "power.draw",
    "power.limit",
)  # fmt: skip
MIB = 2**20


@pytest.fixture(scope="module")
def gh() -> ModuleType:
    """The nodes' parser of nvidia-smi and /proc (the fact modules' module_utils)."""
    from grid_ops.module_utils import grid_node_os

    return grid_node_os


def _nvml() -> dict:  # type: ignore[type-arg]
    return json.loads((FIXTURES / "nvml.busy.json").read_text())["gpus"][0]


def test_busy_h100_values_equal_nvml(gh: ModuleType) -> None:
    text = (FIXTURES / "query-gpu.busy.noheader-nounits.csv").read_text()
    [gpu] = gh.parse_query_gpu(text, FULL_FIELDS)
    nvml = _nvml()
    assert gpu["index"] == nvml["index"] == 0
    assert gpu["name"] == nvml["name"] == "NVIDIA H100 80GB HBM3"
    assert gpu["uuid"] == nvml["uuid"]
    # nvidia-smi prints whole MiB; NVML has bytes: equal at MiB resolution.
    assert abs(gpu["memory_total_mib"] - nvml["memory_total"] / MIB) < 1
    assert abs(gpu["memory_free_mib"] - nvml["memory_free"] / MIB) < 1
    assert abs(gpu["memory_used_mib"] - nvml["memory_used"] / MIB) < 1
    assert gpu["memory_used_smi_mib"] == 21491  # smi's own figure leaves out reserved memory
    assert gpu["utilization_gpu"] == nvml["util_gpu"] == 100
    assert gpu["temperature_gpu"] == nvml["temperature"] == 54
    assert gpu["power_draw_w"] == pytest.approx(697.46)


def test_idle_h100(gh: ModuleType) -> None:
    [gpu] = gh.parse_query_gpu(
        (FIXTURES / "query-gpu.idle.noheader-nounits.csv").read_text(), FULL_FIELDS
    )
    assert gpu["memory_total_mib"] == 81559
    assert gpu["memory_free_mib"] == 81079
    assert gpu["memory_used_mib"] == 480  # the driver's reservation, as NVML counts it
    assert gpu["utilization_gpu"] == 0
    assert gpu["temperature_gpu"] == 34


def test_compute_apps(gh: ModuleType) -> None:
    fields = ("pid", "process_name", "used_memory")
    busy = gh.parse_compute_apps((FIXTURES / "compute-apps.busy.csv").read_text(), fields)
    assert busy == [
        {"gpu_uuid": "", "pid": 430, "process_name": "python3", "used_memory_mib": 21482}
    ]
    assert gh.parse_compute_apps((FIXTURES / "compute-apps.idle.csv").read_text(), fields) == []


def test_proc_files_of_the_gpu_node(gh: ModuleType) -> None:
    assert gh.parse_loadavg((FIXTURES / "proc-loadavg.busy.txt").read_text()) == (0.28, 0.07, 0.02)
    total, available = gh.parse_meminfo((FIXTURES / "proc-meminfo.txt").read_text())
    assert total == 131981020 * 1024
    assert available == 131490588 * 1024


def test_score_of_the_busy_node_uses_config_weights(gh: ModuleType) -> None:
    [gpu] = gh.parse_query_gpu(
        (FIXTURES / "query-gpu.busy.noheader-nounits.csv").read_text(), FULL_FIELDS
    )
    facts = {"load1": 0.28, "cpu_count": 16, "gpus": [gpu]}
    cfg = config.parse({"nodes": ["gpu1"], "health_check": {"cpu_weight": 2, "gpu_weight": 3}})
    expected = 2 * 0.28 / 16 + 3 * (21970 / 81559)
    assert health.score(facts, cfg.health_check.cpu_weight, cfg.health_check.gpu_weight) == (
        pytest.approx(expected, abs=1e-4)
    )


def _fake_smi(tmp_path: Path, script: str) -> Path:
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\n" + script)
    smi.chmod(smi.stat().st_mode | stat.S_IXUSR)
    return smi


def _standalone(env_path: str) -> dict:  # type: ignore[type-arg]
    """The module as grid-ops health runs it: the probe's program (the module and its
    module_utils) on stdin of a bare python3, JSON on stdout."""
    args = json.dumps({"remote_root": "/", "nvidia_smi_timeout": 5})
    proc = subprocess.run(
        ["/usr/bin/python3", "-I", "-"],
        input=probe.module_source(), capture_output=True, text=True, check=True,
        env=dict(os.environ, GRID_OPS_STANDALONE="1", GRID_OPS_ARGS=args, PATH=env_path),
    )  # fmt: skip
    return json.loads(proc.stdout)


def test_no_nvidia_smi_means_zero_gpus_and_no_warning(tmp_path: Path) -> None:
    facts = _standalone(str(tmp_path))  # a PATH without nvidia-smi
    assert facts["gpus"] == [] and facts["warnings"] == []
    assert facts["cpu_count"] >= 1 and facts["mem_total_bytes"] > 0


def test_nvidia_smi_output_is_parsed_from_the_real_command(tmp_path: Path) -> None:
    busy = FIXTURES / "query-gpu.busy.noheader-nounits.csv"
    # The captured row has the fixture's 13 fields; the module asks for 9 of them.
    row = busy.read_text().strip().split(", ")
    picked = [row[FULL_FIELDS.index(f)] for f in (
        "index", "name", "uuid", "memory.total", "memory.used", "memory.free",
        "utilization.gpu", "temperature.gpu", "power.draw",
    )]  # fmt: skip
    apps = "GPU-0bc60ea9-73e2-6fa3-43f3-d0badee38d81, 430, python3, 21482"
    _fake_smi(
        tmp_path,
        f'case "$1" in --query-gpu=*) echo "{", ".join(picked)}";; *) echo "{apps}";; esac\n',
    )
    facts = _standalone(f"{tmp_path}:/usr/bin:/bin")
    [gpu] = facts["gpus"]
    assert gpu["memory_used_mib"] == 21970 and gpu["utilization_gpu"] == 100
    assert facts["gpu_processes"][0]["pid"] == 430
    assert facts["warnings"] == []


def test_broken_driver_is_a_sick_check_not_a_failed_probe(tmp_path: Path) -> None:
    _fake_smi(
        tmp_path,
        'echo "NVIDIA-SMI has failed because it couldn\'t communicate with the NVIDIA driver."'
        "\nexit 9\n",
    )
    facts = _standalone(f"{tmp_path}:/usr/bin:/bin")
    assert facts["gpus"] == []
    [check] = facts["checks"]
    assert (check["check"], check["severity"]) == ("driver", "sick")
    assert "exited 9" in check["reason"] and "NVIDIA driver" in check["reason"]
    assert facts["warnings"] == []
