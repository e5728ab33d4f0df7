"""The job queue on the head at 500 queued jobs, against Ray Jobs used directly (root: a
lab of --nodes nodes).

* head memory: every process of the head's node user (the lab's nodes have a user each),
  summed RSS, before and after queueing 500 jobs that cannot start yet; against Ray Jobs
  holding --direct jobs submitted straight to it (each a supervisor actor and a driver),
  scaled per job.
* ``job list --json`` with 500 queued jobs (median of --runs).
* from a slot freeing to the next job starting: a job that holds every CPU of every node
  prints the time as it ends; the next queued job prints the time as it starts. Against
  Ray Jobs' own start: submit to a free cluster until the command's first line.

The 500 jobs are queued through the controller's own ``job-submit`` operation from a
script on the head (what ``grid-ops job launch`` sends over ssh, without 500 ssh
connections). Every lab node shares this machine's 2 cores and /proc.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import lab_bench, median, report, timed

QUEUE = """
import json, os, sys, time
from pathlib import Path
from grid_ops.runtime import protocol
state = Path(os.environ["GRID_OPS_ROOT"], "state", "controller")
spec = json.loads(sys.argv[1])
count = int(sys.argv[2])
start = time.perf_counter()
for i in range(count):
    protocol.call(state, "job-submit", {"job": {**spec, "id": f"q{i}", "name": f"q{i}"}})
print(json.dumps({"seconds": time.perf_counter() - start}))
"""

DIRECT = """
import json, sys, time
from ray.job_submission import JobSubmissionClient
client = JobSubmissionClient("http://127.0.0.1:" + sys.argv[1])
what = sys.argv[2]
if what == "hold":
    ids = [client.submit_job(entrypoint="sleep 120") for _ in range(int(sys.argv[3]))]
    deadline = time.time() + 300
    while time.time() < deadline:
        states = [str(client.get_job_status(i)) for i in ids]
        if all("RUNNING" in s for s in states):
            break
        time.sleep(1)
    print(json.dumps({"ids": ids, "states": states}))
elif what == "stop":
    for i in json.loads(sys.argv[3]):
        client.stop_job(i)
    print("{}")
else:
    sent = time.time()
    sid = client.submit_job(entrypoint="python -c 'import time; print(time.time())'")
    while str(client.get_job_status(sid)).split(".")[-1] not in ("SUCCEEDED", "FAILED"):
        time.sleep(0.05)
    said = [w for w in client.get_job_logs(sid).split() if w.replace(".", "", 1).isdigit()]
    print(json.dumps({"latency": float(said[-1]) - sent}))
"""


def head_rss(user: str) -> int:
    """Summed RSS (bytes) of every process of ``user`` on this machine."""
    import pwd

    uid = pwd.getpwnam(user).pw_uid
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if os.stat(entry.path).st_uid != uid:
                continue
            for line in Path(entry.path, "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except (OSError, ValueError):
            continue
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--direct", type=int, default=8, help="jobs held on Ray Jobs directly")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    out: dict[str, object] = {"nodes": args.nodes, "jobs": args.jobs}
    with lab_bench(args.nodes) as bench:
        exe, cfg = bench.exe, str(bench.config_path)

        env = dict(os.environ, GRID_OPS_CONFIG=cfg)

        def cli(*argv: str, check: bool = True) -> str:
            proc = subprocess.run([exe, *argv], capture_output=True, text=True, env=env,
                                  check=False)  # fmt: skip
            if check and proc.returncode != 0:
                raise SystemExit(f"{argv} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
            return proc.stdout

        def on_head(script: str, *argv: str) -> dict[str, object]:
            text = cli("run", "--node", head, "--", "python", "-c", script, *argv)
            data: dict[str, object] = json.loads(text.strip().splitlines()[-1])
            return data

        subprocess.run([exe, "provision", "-c", cfg], check=True, capture_output=True)
        subprocess.run([exe, "cluster", "start", "-c", cfg], check=True, capture_output=True)
        data = yaml.safe_load(bench.config_path.read_text())
        head = next(n["name"] for n in data["nodes"] if n.get("role") == "head")
        user = next(n["user"] for n in data["nodes"] if n["name"] == head)
        port = str(bench.config.ray.dashboard_port)
        status = json.loads(cli("cluster", "status", "--json"))
        cpus = int(min(float(r["resources"].get("CPU", 0)) for r in status["nodes"]))
        whole = ["--nodes", str(args.nodes), "--cpus-per-node", str(cpus)]

        # Ray Jobs' own start, on a free cluster.
        out["ray_jobs_start_s"] = median(
            [float(on_head(DIRECT, port, "start")["latency"]) for _ in range(args.runs)]  # type: ignore[arg-type]
        )
        # Ray Jobs holding jobs directly: memory per job.
        time.sleep(5)
        before = head_rss(user)
        held = on_head(DIRECT, port, "hold", str(args.direct))
        during = head_rss(user)
        on_head(DIRECT, port, "stop", json.dumps(held["ids"]))
        out["ray_jobs_mib_per_job"] = round((during - before) / args.direct / 2**20, 1)

        # The queue: a job holding everything, then 500 behind it.
        time.sleep(10)
        blocker = "import time; time.sleep(20); print('ended', time.time(), flush=True)"
        cli("job", "launch", "--name", "blocker", *whole, "--", "python", "-c", blocker)
        time.sleep(5)
        before = head_rss(user)
        starter = "import time; print('started', time.time())"
        spec = {"submitter": "bench", "nodes": args.nodes, "cpus_per_node": float(cpus),
                "command": ["python", "-c", starter]}  # fmt: skip
        queued = on_head(QUEUE, json.dumps(spec), str(args.jobs))
        time.sleep(2)
        out["queue_mib_for_all"] = round((head_rss(user) - before) / 2**20, 1)
        out["queue_submit_s_per_job"] = round(float(queued["seconds"]) / args.jobs, 4)  # type: ignore[arg-type]
        out["job_list_s"] = median(timed(lambda: cli("job", "list", "--json"), args.runs))
        listed = json.loads(cli("job", "list", "--json"))
        out["listed"] = len(listed)
        # The slot frees when the blocker ends; q0 starts next.
        deadline = time.time() + 180
        while time.time() < deadline:
            rows = {r["name"]: r for r in json.loads(cli("job", "list", "--json"))}
            if rows["q0"]["status"] not in ("QUEUED", "RUNNING"):
                break
            time.sleep(1)
        # every rank prints its time: the slot is free once the last ended, and the next
        # job has started once its first rank did
        ended = max(map(float, re.findall(r"ended (\d+\.\d+)", cli("job", "logs", "blocker"))))
        started = min(map(float, re.findall(r"started (\d+\.\d+)", cli("job", "logs", "q0"))))
        out["slot_free_to_next_start_s"] = round(started - ended, 3)
    report("job_queue", out)


if __name__ == "__main__":
    main()
