"""`grid-ops health` (cold and warm) and no-change `grid-ops sync` vs plain parallel ssh/rsync.

On a lab of N nodes (root). Cold = no open ssh connections (both sides); warm = the
multiplexed connections are open (both sides use ControlPersist). The raw health side
runs the very command grid-ops runs on each node (probe.argv: ssh + the fact module on
stdin) in parallel from this already running process and reads the answers; the raw
sync side runs `rsync -a` of the same tree to every node in parallel. Ratio = grid-ops /
raw, so grid-ops' own start (a Python interpreter) counts against it. grid-ops is timed
with --json (what scripts use); the table (Rich) and the full CLI's playbook sync
(GRID_OPS_QUICK=0) are reported beside it, as is a `health` answered from its cache.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import lab_bench, median, parse_args, report, run, timed

from grid_ops import model
from grid_ops.drivers import probe

FLOOR = """
import json, os, sys
with open(sys.argv[1]) as f:
    commands = json.load(f)
running = []
for argv in commands:
    r, w = os.pipe()
    fd = os.open(sys.argv[2] if len(sys.argv) > 2 else os.devnull, os.O_RDONLY)
    acts = [(os.POSIX_SPAWN_DUP2, fd, 0), (os.POSIX_SPAWN_DUP2, w, 1), (os.POSIX_SPAWN_CLOSE, r)]
    running.append((os.posix_spawnp(argv[0], argv, os.environ, file_actions=acts), r))
    os.close(w)
    os.close(fd)
answers = []
for pid, r in running:
    chunks = []
    while chunk := os.read(r, 65536):
        chunks.append(chunk)
    os.waitpid(pid, 0)
    answers.append(b"".join(chunks).decode())
sys.stdout.write(json.dumps(answers))
sys.stdout.flush()
os._exit(0)
"""


def main() -> None:
    args = parse_args(__doc__, runs=5)
    with lab_bench(args.nodes) as bench:
        cfg, cfg_path, exe, work = bench.config, bench.config_path, bench.exe, bench.work
        source = probe.module_source()
        cluster = model.resolve(cfg)
        model.ensure_control_dir()

        def raw_health() -> None:
            procs = [
                subprocess.Popen(
                    probe.argv(cluster, n), stdin=subprocess.PIPE, stdout=subprocess.PIPE
                )
                for n in cluster.nodes
            ]
            for p in procs:
                assert p.stdin is not None
                p.stdin.write(source.encode())
                p.stdin.close()
            answers = [p.stdout.read() if p.stdout else b"" for p in procs]
            if any(p.wait() != 0 for p in procs) or not all(answers):
                raise SystemExit("raw health probe failed")

        full = dict(os.environ, GRID_OPS_QUICK="0")  # the full CLI, for comparison

        def ops_health() -> None:
            run([exe, "health", "-c", str(cfg_path), "--refresh", "--json"])

        # The least any Python CLI can do: start an interpreter, spawn the same commands
        # (posix_spawn, the module file as stdin), read the answers, leave with os._exit.
        argv_file = work / "probe-argv.json"
        argv_file.write_text(json.dumps([probe.argv(cluster, n) for n in cluster.nodes]))
        floor_cmd = [sys.executable, "-c", FLOOR, str(argv_file), str(probe.program_path())]

        def floor_health() -> None:
            run(floor_cmd)

        raw_cold = bench.cold(raw_health, args.runs)
        ops_cold = bench.cold(ops_health, args.runs)
        raw_health()
        raw_warm, ops_warm = timed(raw_health, args.runs), timed(ops_health, args.runs)
        floor_warm = timed(floor_health, args.runs)

        src = work / "proj"
        for i in range(200):
            (src / f"pkg{i % 10}").mkdir(parents=True, exist_ok=True)
            (src / f"pkg{i % 10}" / f"m{i}.py").write_text(f"X = {i}\n" * 50)

        def raw_sync() -> None:
            procs = [
                subprocess.Popen(
                    [
                        "rsync",
                        "-a",
                        "-e",
                        n.rsh,
                        "--",
                        f"{src}/",
                        f"{n.target}:grid-ops/code/proj/",
                    ],
                    stdout=subprocess.DEVNULL,
                )
                for n in cluster.nodes
            ]
            if any(p.wait() != 0 for p in procs):
                raise SystemExit("raw rsync failed")

        def ops_sync() -> None:
            run([exe, "sync", str(src), "-c", str(cfg_path), "--json"])

        def ops_sync_table() -> None:
            run([exe, "sync", str(src), "-c", str(cfg_path)])

        def ops_health_cached() -> None:
            run([exe, "health", "-c", str(cfg_path), "--json"])

        ops_sync()  # the first sync moves the files (playbook); the timed ones find nothing
        raw_sync()
        sync_argv = work / "sync-argv.json"
        listing = json.loads(subprocess.run([exe, "sync", str(src), "-c", str(cfg_path), "--json"],
                             capture_output=True, check=True, text=True).stdout)  # fmt: skip
        sync_argv.write_text(json.dumps([h["command"] for h in listing["hosts"].values()]))
        sync_raw, sync_ops = timed(raw_sync, args.runs), timed(ops_sync, args.runs)
        sync_floor = timed(lambda: run([sys.executable, "-c", FLOOR, str(sync_argv)]), args.runs)
        sync_table = timed(ops_sync_table, args.runs)
        ops_health()  # a fresh cache, then calls within health_check.refresh_interval
        health_cached = timed(ops_health_cached, args.runs)
        sync_full = timed(lambda: run([exe, "sync", str(src), "-c", str(cfg_path)], env=full), 3)
        report(
            "health_sync",
            {
                "nodes": args.nodes,
                "runs": args.runs,
                "health_cold_raw_s": median(raw_cold),
                "health_cold_grid_ops_s": median(ops_cold),
                "health_cold_ratio": round(median(ops_cold) / median(raw_cold), 2),
                "health_warm_raw_s": median(raw_warm),
                "health_warm_grid_ops_s": median(ops_warm),
                "health_warm_ratio": round(median(ops_warm) / median(raw_warm), 2),
                "health_warm_python_floor_s": median(floor_warm),
                "health_warm_python_floor_ratio": round(median(floor_warm) / median(raw_warm), 2),
                "sync_nochange_raw_s": median(sync_raw),
                "sync_nochange_grid_ops_s": median(sync_ops),
                "sync_nochange_ratio": round(median(sync_ops) / median(sync_raw), 2),
                "sync_nochange_python_floor_s": median(sync_floor),
                "sync_nochange_python_floor_ratio": round(median(sync_floor) / median(sync_raw), 2),
                "sync_nochange_table_s": median(sync_table),
                "sync_nochange_table_ratio": round(median(sync_table) / median(sync_raw), 2),
                "sync_nochange_playbook_s": median(sync_full),
                "health_cached_s": median(health_cached),
                "health_cached_vs_warm_probe": round(median(health_cached) / median(raw_warm), 2),
                "targets": {"health_cold": 1.5, "health_warm": 1.2, "sync_nochange": 1.2},
            },
        )


if __name__ == "__main__":
    main()
