"""The cost of the health checks on one health round: this tree's probe vs an earlier one's.

On a lab of N nodes (root), both versions of the probe (the grid_health module with its
module_utils, as each version's grid_ops.drivers.probe builds it, with each version's own
arguments) run one round on every node in parallel over the same warm, multiplexed ssh
connections, alternately, ``--runs`` times each; the figure is the median wall time of a
round. ``--rev`` names the earlier version (default: the commit before the checks came).

Two kinds of node: CPU-only (no nvidia-smi), and "GPU" nodes where a replayed nvidia-smi
(tests/fake_nvidia_smi.py with the real H100 capture) is on PATH at
/usr/local/bin/nvidia-smi. What the replay hides: a real nvidia-smi on an H100 takes tens
to hundreds of milliseconds per call (it talks to the driver); the replay is a Python
start (~20 ms here). The checks add one `nvidia-smi -q -x` call per round, so on real GPUs
the added cost is one such call, which this lab cannot measure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import lab_bench, median, parse_args, report

from grid_ops.drivers import spawn

REPO = Path(__file__).resolve().parent.parent
BEFORE = "286f2ea"  # main before the health checks (issue 14, part 2)
FAKE = Path("/usr/local/bin/nvidia-smi")
PROGRAM = """
import json, sys
sys.path.insert(0, sys.argv[1])
from grid_ops import model
from grid_ops.model import config
from grid_ops.drivers import probe
cluster = model.resolve(config.load(sys.argv[2]))
print(json.dumps({"program": probe.program_path(),
                  "argv": [probe.argv(cluster, n) for n in cluster.nodes]}))
"""


def commands(tree: Path, cfg: Path) -> dict[str, object]:
    """The probe program and the per-node commands of the grid-ops in ``tree``."""
    proc = subprocess.run(
        [sys.executable, "-c", PROGRAM, str(tree), str(cfg)],
        capture_output=True, text=True, check=True, cwd=tree,
    )  # fmt: skip
    found: dict[str, object] = json.loads(proc.stdout)
    return found


def one_round(found: dict[str, object]) -> float:
    """Seconds of one round on every node; every node must answer with facts."""
    import time

    argvs = found["argv"]
    assert isinstance(argvs, list)
    started = time.perf_counter()
    children = spawn.run_all([(a, str(found["program"])) for a in argvs], len(argvs), 60)
    seconds = time.perf_counter() - started
    for child in children:
        assert child is not None and child.rc == 0, child and child.stderr
        json.loads(child.stdout.strip().splitlines()[-1])
    return seconds


def main() -> None:
    parser_args = parse_args(__doc__, runs=15)
    rev = os.environ.get("GRID_OPS_BENCH_BEFORE", BEFORE)
    old = Path(tempfile.mkdtemp(prefix="grid-ops-before-"))
    archive = subprocess.run(
        ["git", "archive", rev, "grid_ops", "roles", "playbooks", "ansible.cfg"],
        cwd=REPO,
        capture_output=True,
        check=True,
    )
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive.stdout, check=True)
    if FAKE.exists():
        raise SystemExit(f"{FAKE} exists; this bench would replace it")
    results: dict[str, object] = {
        "nodes": parser_args.nodes,
        "runs": parser_args.runs,
        "before": rev,
    }
    try:
        with lab_bench(parser_args.nodes) as bench:
            versions = {"before": commands(old, bench.config_path),
                        "after": commands(REPO, bench.config_path)}  # fmt: skip
            for kind in ("cpu", "gpu"):
                if kind == "gpu":
                    shutil.copyfile(REPO / "tests" / "fake_nvidia_smi.py", FAKE)
                    xml = REPO / "tests" / "fixtures" / "gpu-h100" / "nvidia-smi-q.busy.xml"
                    shutil.copyfile(xml, FAKE.with_name("nvidia-smi.xml"))
                    FAKE.chmod(0o755)
                    FAKE.with_name("nvidia-smi.xml").chmod(0o644)
                for found in versions.values():
                    one_round(found)  # opens the connections, warms the caches
                times: dict[str, list[float]] = {"before": [], "after": []}
                for _ in range(parser_args.runs):
                    for name, found in versions.items():
                        times[name].append(one_round(found))
                before, after = median(times["before"]), median(times["after"])
                results[kind] = {
                    "before_s": before,
                    "after_s": after,
                    "ratio": round(after / before, 2),
                    "added_ms": round((after - before) * 1000, 1),
                }
    finally:
        FAKE.unlink(missing_ok=True)
        FAKE.with_name("nvidia-smi.xml").unlink(missing_ok=True)
        shutil.rmtree(old, ignore_errors=True)
    report(f"health_checks_{parser_args.nodes}", results)


if __name__ == "__main__":
    main()
