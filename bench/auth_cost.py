"""What Ray token authentication costs: `cluster start` and a job's launch-to-finish,
with `ray.auth: token` (the default) against `ray.auth: none`, on one lab in one run.

Provision once (not timed). Each round stops Ray, then times `grid-ops cluster start`
under one setting, then `grid-ops job launch` of a trivial job and `job status` polls
until it SUCCEEDED; settings alternate so drift on this shared box hits both alike.
Ratio = token / none.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import lab_bench, median, parse_args, report, run, timed


def main() -> None:
    args = parse_args(__doc__, runs=3)
    with lab_bench(args.nodes) as bench:
        exe = bench.exe
        paths = {}
        for mode in ("token", "none"):
            data = yaml.safe_load(bench.config_path.read_text())
            data.setdefault("ray", {})["auth"] = mode
            paths[mode] = bench.work / f"lab-{mode}.yaml"
            paths[mode].write_text(yaml.safe_dump(data))
        run([exe, "provision", "-c", str(paths["token"])])
        starts: dict[str, list[float]] = {"token": [], "none": []}
        jobs: dict[str, list[float]] = {"token": [], "none": []}
        for i in range(args.runs):
            for mode in ("token", "none") if i % 2 == 0 else ("none", "token"):
                cfg = str(paths[mode])
                run([exe, "cluster", "stop", "-c", cfg])
                starts[mode] += timed(lambda cfg=cfg: run([exe, "cluster", "start", "-c", cfg]), 1)
                name = f"auth-{mode}-{i}"

                def job(cfg: str = cfg, name: str = name) -> None:
                    run([exe, "job", "launch", "--name", name, "-c", cfg, "--", "true"])
                    while True:
                        proc = subprocess.run(
                            [exe, "job", "status", name, "-c", cfg, "--json"],
                            capture_output=True, text=True, check=True,
                        )  # fmt: skip
                        status = json.loads(proc.stdout)["status"]
                        if status in ("SUCCEEDED", "FAILED", "STOPPED"):
                            if status != "SUCCEEDED":
                                raise SystemExit(f"job {name} ended {status}")
                            return
                        time.sleep(0.2)

                jobs[mode] += timed(job, 1)
        run([exe, "cluster", "stop", "-c", str(paths["token"])])
        report(
            "auth_cost",
            {
                "nodes": args.nodes,
                "runs": args.runs,
                "cluster_start_token_s": median(starts["token"]),
                "cluster_start_none_s": median(starts["none"]),
                "cluster_start_ratio": round(median(starts["token"]) / median(starts["none"]), 2),
                "job_launch_to_done_token_s": median(jobs["token"]),
                "job_launch_to_done_none_s": median(jobs["none"]),
                "job_ratio": round(median(jobs["token"]) / median(jobs["none"]), 2),
            },
        )


if __name__ == "__main__":
    main()
