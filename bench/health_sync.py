"""`grid-ops health` (cold and warm) and no-change `grid-ops sync` vs plain parallel ssh/rsync.

On a lab of N nodes (root). Cold = no open ssh connections (both sides); warm = the
multiplexed connections are open (both sides use ControlPersist). The raw health side
sends the same module file to `python3 -` on every node over parallel ssh; the raw sync
side runs `rsync -a` of the same tree to every node in parallel. Ratio = grid-ops / raw.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import median, report, run, timed

from grid_ops import config, inventory, lab, probe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="grid-ops-bench-"))
    os.environ["GRID_OPS_STATE_DIR"] = str(work / "state")
    cfg_path = work / "lab.yaml"
    lab.up(args.nodes, cfg_path)
    try:
        cfg = config.load(cfg_path)
        exe = str(Path(sys.executable).parent / "grid-ops")
        source = probe.module_source()
        inventory.ensure_control_dir()

        def close_all() -> None:
            lab._kill(lab._controller_ssh_pids({n.host for n in cfg.nodes}))

        def raw_health() -> None:
            procs = [
                subprocess.Popen(
                    [
                        *inventory.ssh_command(cfg, n),
                        inventory.ssh_target(n),
                        "GRID_OPS_STANDALONE=1 python3 -",
                    ],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,
                )
                for n in cfg.nodes
            ]
            for p in procs:
                assert p.stdin is not None
                p.stdin.write(source.encode())
                p.stdin.close()
            if any(p.wait() != 0 for p in procs):
                raise SystemExit("raw health probe failed")

        def ops_health() -> None:
            run([exe, "health", "-c", str(cfg_path), "--refresh", "--json"])

        def cold(fn: object) -> list[float]:
            out: list[float] = []
            for _ in range(args.runs):
                close_all()
                out += timed(fn, 1)  # type: ignore[arg-type]
            return out

        raw_cold, ops_cold = cold(raw_health), cold(ops_health)
        raw_health()
        raw_warm, ops_warm = timed(raw_health, args.runs), timed(ops_health, args.runs)

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
                        " ".join(inventory.ssh_command(cfg, n)),
                        f"{src}/",
                        f"{inventory.ssh_target(n)}:grid-ops/proj/",
                    ],
                    stdout=subprocess.DEVNULL,
                )
                for n in cfg.nodes
            ]
            if any(p.wait() != 0 for p in procs):
                raise SystemExit("raw rsync failed")

        def ops_sync() -> None:
            run([exe, "sync", str(src), "-c", str(cfg_path)])

        ops_sync()
        raw_sync()
        sync_raw, sync_ops = timed(raw_sync, args.runs), timed(ops_sync, args.runs)
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
                "sync_nochange_raw_s": median(sync_raw),
                "sync_nochange_grid_ops_s": median(sync_ops),
                "sync_nochange_ratio": round(median(sync_ops) / median(sync_raw), 2),
                "targets": {"health_cold": 1.5, "health_warm": 1.2, "sync_nochange": 1.2},
            },
        )
    finally:
        lab.down()


if __name__ == "__main__":
    main()
