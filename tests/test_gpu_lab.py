"""GPU nodes end to end on the lab: an nvidia-smi that answers with the real H100
captures (tests/fixtures/gpu-h100) is put on the nodes' PATH; health, metrics and Ray's
--num-gpus must all see the GPU."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Lab

pytestmark = pytest.mark.lab

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "gpu-h100"
FAKE = Path("/usr/local/bin/nvidia-smi")
FIELDS = (
    "index,name,uuid,pci.bus_id,driver_version,memory.total,memory.used,memory.free,"
    "utilization.gpu,utilization.memory,temperature.gpu,power.draw,power.limit"
)
SCRIPT = """#!/usr/bin/python3
# Test stand-in for nvidia-smi: replays captures from a real H100 node.
import sys
FIELDS = {fields!r}.split(",")
ROW = {row!r}.split(", ")
LISTING = {listing!r}
APPS = {apps!r}
args = sys.argv[1:]
if args == ["-L"]:
    sys.stdout.write(LISTING)
elif args and args[0].startswith("--query-gpu="):
    wanted = args[0].split("=", 1)[1].split(",")
    print(", ".join(ROW[FIELDS.index(f)] for f in wanted))
elif args and args[0].startswith("--query-compute-apps="):
    for line in APPS.splitlines():
        print("{uuid}, " + line)
else:
    sys.exit(2)
"""


@pytest.fixture
def gpu_nodes(lab: Lab) -> Iterator[Lab]:
    if FAKE.exists():
        pytest.fail(f"{FAKE} exists already; this test would replace a real one", pytrace=False)
    row = (FIXTURES / "query-gpu.busy.noheader-nounits.csv").read_text().strip()
    FAKE.write_text(
        SCRIPT.format(
            fields=FIELDS,
            row=row,
            listing=(FIXTURES / "nvidia-smi-L.txt").read_text(),
            apps=(FIXTURES / "compute-apps.busy.csv").read_text(),
            uuid=row.split(", ")[2],
        )
    )
    FAKE.chmod(0o755)
    try:
        yield lab
    finally:
        FAKE.unlink()
        lab.cli("cluster", "stop", "-c", str(lab.config), timeout=300)


def test_gpu_facts_health_metrics_and_ray_resources(gpu_nodes: Lab) -> None:
    cfg = str(gpu_nodes.config)
    proc = gpu_nodes.cli("health", "-c", cfg, "--refresh", "--json")
    assert proc.returncode == 0, proc.stderr
    for node in json.loads(proc.stdout)["nodes"]:
        [gpu] = node["gpus"]
        assert gpu["name"] == "NVIDIA H100 80GB HBM3"
        assert (gpu["memory_total_mib"], gpu["memory_used_mib"]) == (81559, 21970)
        assert gpu["utilization_gpu"] == 100
        expected = node["load1"] / node["cpu_count"] + 3.0 * 21970 / 81559
        assert node["score"] == pytest.approx(expected, abs=1e-3)
    text = gpu_nodes.cli("metrics", "-c", cfg).stdout
    line = next(ln for ln in text.splitlines() if ln.startswith("grid_node_gpu_memory_used_bytes{"))
    assert line.startswith('grid_node_gpu_memory_used_bytes{gpu="0",node=')
    assert float(line.split()[-1]) == 21970 * 2**20

    assert gpu_nodes.cli("provision", "-c", cfg, timeout=900).returncode == 0
    restart = gpu_nodes.cli("cluster", "restart", "-c", cfg, "--json", timeout=600)
    assert restart.returncode == 0, restart.stderr
    status = json.loads(gpu_nodes.cli("cluster", "status", "-c", cfg, "--json").stdout)
    for node in status["nodes"]:
        assert node["ray"] == "alive"
        assert node["resources"]["GPU"] == 1.0  # --num-gpus from nvidia-smi -L, not config
    assert os.access(FAKE, os.X_OK)
