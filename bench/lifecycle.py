"""The lifecycle's costs on a lab (root), each against its baseline in the same run.

* no change: `grid-ops apply` on N applied nodes (reads each node's stamp over ssh, runs
  no Ansible) against a no-change `grid-ops sync` of a small project to the same nodes;
  target ratio <= 3.
* add one (`--add`): `apply` growing the N-node cluster by one fresh node, against
  provisioning and starting that node alone (`provision --limit` + `cluster start
  --limit`, after a `reset` of it); target ratio <= 1.3.
* upgrade (`--upgrade`): the Ray down window of an upgrade (provision.packages changed:
  a new venv build on every node while Ray runs, then stop everywhere and start on the
  new build; apply reports the window) against a plain `cluster start` of the stopped
  cluster; target ratio <= 1.3.

Every node of the lab shares this machine's cores and /proc: with N nodes the fan-out
measures N sshd+Python starts competing for 2 cores, not N machines working in parallel.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import lab_bench, median, report, timed


def cli(exe: str, *args: str, check: bool = True) -> dict[str, object]:
    proc = subprocess.run([exe, *args], capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    try:
        data: dict[str, object] = json.loads(proc.stdout)
    except ValueError:
        data = {}
    return data


def once(fn: object) -> float:
    return round(timed(fn, 1)[0], 3)  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--add", action="store_true", help="also grow the cluster by one")
    parser.add_argument("--upgrade", action="store_true", help="also time an upgrade window")
    args = parser.parse_args()
    extra = 1 if args.add else 0
    out: dict[str, object] = {"nodes": args.nodes}
    with lab_bench(args.nodes + extra) as bench:
        exe, work = bench.exe, bench.work
        data = yaml.safe_load(bench.config_path.read_text())
        grown = dict(data)
        data["nodes"] = data["nodes"][: args.nodes]
        # 2 shared cores: Ray workers starting all at once time out here beyond 4
        data.setdefault("ray", {})["worker_start_batch"] = 4
        grown.setdefault("ray", {})["worker_start_batch"] = 4
        base = work / "base.yaml"
        base.write_text(yaml.safe_dump(data))
        cfg = str(base)
        started = time.perf_counter()
        first = subprocess.run([exe, "apply", "-c", cfg], capture_output=True, check=False)
        if first.returncode != 0:
            cli(exe, "apply", "-c", cfg, "--json")  # a rerun resumes where one failed
        out["first_apply_s"] = round(time.perf_counter() - started, 1)

        project = work / "proj"
        project.mkdir()
        for i in range(20):
            (project / f"m{i}.py").write_text(f"X = {i}\n" * 50)
        cli(exe, "sync", str(project), "-c", cfg, "--json")
        apply_s = timed(lambda: cli(exe, "apply", "-c", cfg, "--json"), args.runs)
        sync_s = timed(lambda: cli(exe, "sync", str(project), "-c", cfg, "--json"), args.runs)
        out["no_change_apply_s"] = median(apply_s)
        out["no_change_sync_s"] = median(sync_s)
        out["no_change_ratio"] = round(median(apply_s) / median(sync_s), 2)
        out["no_change_target"] = 3.0

        if args.add:
            new = grown["nodes"][-1]["name"]
            full = work / "grown.yaml"
            full.write_text(yaml.safe_dump(grown))
            add_s = once(lambda: cli(exe, "apply", "-c", str(full), "--json"))
            cli(exe, "reset", "-c", str(full), "--limit", new, "--yes", "--json")

            def alone() -> None:
                cli(exe, "provision", "-c", str(full), "--limit", new, "--json")
                cli(exe, "cluster", "start", "-c", str(full), "--limit", new, "--json")

            alone_s = once(alone)
            out.update(
                add_one_apply_s=add_s,
                add_one_alone_s=alone_s,
                add_one_ratio=round(add_s / alone_s, 2),
                add_one_target=1.3,
            )

        if args.upgrade:
            cli(exe, "cluster", "stop", "-c", cfg, "--json")
            start_s = once(lambda: cli(exe, "cluster", "start", "-c", cfg, "--json"))
            data.setdefault("provision", {})["packages"] = ["tomli==2.4.1"]
            upgraded = work / "upgraded.yaml"
            upgraded.write_text(yaml.safe_dump(data))
            started = time.perf_counter()
            result = cli(exe, "apply", "-c", str(upgraded), "--json")
            window = float(result["window_s"])  # type: ignore[arg-type]
            out.update(
                upgrade_apply_s=round(time.perf_counter() - started, 1),
                upgrade_window_s=window,
                cluster_start_s=start_s,
                upgrade_window_ratio=round(window / start_s, 2),
                upgrade_window_target=1.3,
                upgrade_not_current=result.get("not_current"),
            )
    report(f"lifecycle-{args.nodes}", out)


if __name__ == "__main__":
    main()
