"""The runtime on a lab's Ray cluster: scheduler overhead, memory pool throughput, and
the controller's round trip from the operator's CLI.

On a lab of N nodes (root), provisioned and started once (not timed).
- 1000 no-op tasks: ``submit(noop)`` (default strategy, and ``spread``) and
  ``BatchExecutor`` vs plain ``ray.remote`` from a driver on the head; sides alternate.
  Ratio = scheduler / raw (target <= 1.1).
  ``place_only``: the placement choice alone, 1000 times (the scheduler's own cost).
- 50 MB across nodes: ``MemoryPool.store(node=<worker>)`` + ``retrieve`` vs raw
  ``ray.put`` + a task on the same worker returning the bytes + ``ray.get``; both move
  50 MB to the worker and back. Throughput ratio = pool / raw (target >= 0.5).
- ``grid-ops boost request`` / ``boost status`` wall time, warm (multiplexed SSH open),
  next to a plain ``ssh head true`` and ``grid-ops --help`` (the CLI's own start).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import lab_bench, median, parse_args, report, run, timed

from grid_ops import model

DRIVER = r"""
import json, os, statistics, sys, time
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy as Pin
from grid_ops.runtime.scheduler import BatchExecutor, submit
from grid_ops.runtime.pool import MemoryPool

RUNS = int(sys.argv[1])
ray.init(logging_level="ERROR", log_to_driver=False)

def noop():
    return None

raw_noop = ray.remote(noop)

def med(fn):
    fn()  # warm-up: workers started, functions exported
    out = []
    for _ in range(RUNS):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return round(statistics.median(out), 4)

sides = {
    "raw": lambda: ray.get([raw_noop.remote() for _ in range(1000)]),
    "submit": lambda: ray.get([submit(noop) for _ in range(1000)]),
    "submit_spread": lambda: ray.get([submit(noop, strategy="spread") for _ in range(1000)]),
    "batch": lambda: BatchExecutor(batch_size=50).map(lambda x: None, range(1000)),
}
tasks = {name: [] for name in sides}
for _ in range(2):  # alternate the sides twice against drift
    for name, fn in sides.items():
        tasks[name].append(med(fn))
tasks = {name: min(values) for name, values in tasks.items()}
from grid_ops.runtime import scheduler
start = time.perf_counter()
for _ in range(1000):
    scheduler.place("load-balanced", {"CPU": 1.0})
tasks["place_only"] = round(time.perf_counter() - start, 4)

worker = [n for n in ray.nodes() if n["Alive"]
          and n["NodeID"] != ray.get_runtime_context().get_node_id()][0]
pin = Pin(worker["NodeID"], soft=False)

@ray.remote(num_cpus=0)
def echo(data):
    return data

data = os.urandom(50 * 2**20)
def raw_move():
    back = ray.get(echo.options(scheduling_strategy=pin).remote(ray.put(data)))
    assert len(back) == len(data)

pool = MemoryPool()
from grid_ops import layout
def pool_move():
    pool.store("bench", data, node=layout.node_name(worker["Resources"]))
    assert pool.retrieve("bench") == data

memory = {"raw": med(raw_move), "pool": med(pool_move)}
pool.delete("bench")
print("BENCH " + json.dumps({"tasks": tasks, "memory": memory}))
time.sleep(1)
"""


def main() -> None:
    args = parse_args(__doc__, runs=5)
    with lab_bench(args.nodes) as bench:
        cfg, cfg_path, exe = bench.config, bench.config_path, bench.exe
        c = ["-c", str(cfg_path)]
        run([exe, "provision", *c])
        run([exe, "cluster", "start", *c])
        proc = subprocess.run(
            [exe, "run", *c, "--node", cfg.head.name, "--",
             "python", "-c", DRIVER, str(args.runs)],
            capture_output=True, text=True, check=False, timeout=1800,
        )  # fmt: skip
        line = next((x for x in proc.stdout.splitlines() if x.startswith("BENCH ")), None)
        if line is None:
            raise SystemExit(f"driver failed: {proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        cluster = json.loads(line[len("BENCH ") :])
        tasks, memory = cluster["tasks"], cluster["memory"]
        mb = 2 * 50  # to the worker and back

        worker = cfg.nodes[1].name
        head = cfg.head
        model.ensure_control_dir()
        ssh = model.resolve(cfg).node(head.name).argv("true")
        run(ssh)
        request = [exe, "boost", "request", worker, "cpu", "0.1", *c, "--json"]
        ids: list[str] = []

        def boost_request() -> None:
            out = subprocess.run(request, capture_output=True, text=True, check=True)
            ids.append(json.loads(out.stdout)["id"])

        request_s = timed(boost_request, args.runs)
        status_s = timed(lambda: run([exe, "boost", "status", *c, "--json"]), args.runs)
        for rid in ids:
            run([exe, "boost", "release", rid, *c])
        ssh_s = timed(lambda: run(ssh), args.runs)
        help_s = timed(lambda: run([exe, "--help"]), args.runs)
        report(
            "runtime",
            {
                "nodes": args.nodes,
                "runs": args.runs,
                "tasks_1000_seconds": tasks,
                "submit_ratio": round(tasks["submit"] / tasks["raw"], 3),
                "submit_spread_ratio": round(tasks["submit_spread"] / tasks["raw"], 3),
                "batch_ratio": round(tasks["batch"] / tasks["raw"], 3),
                "memory_50mb_seconds": memory,
                "memory_raw_mb_s": round(mb / memory["raw"], 1),
                "memory_pool_mb_s": round(mb / memory["pool"], 1),
                "memory_throughput_ratio": round(memory["raw"] / memory["pool"], 3),
                "boost_request_s": median(request_s),
                "boost_status_s": median(status_s),
                "ssh_true_warm_s": median(ssh_s),
                "cli_help_s": median(help_s),
            },
        )


if __name__ == "__main__":
    main()
