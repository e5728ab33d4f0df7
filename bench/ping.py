"""`grid-ops ping` on N lab nodes vs plain parallel ssh doing the same probe (root only).

Both sides start from closed connections (cold) and are then repeated with connections
kept open (warm: ControlPersist for both). Ratio = grid-ops / ssh.
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

from grid_ops import config, lab


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
        cp_dir = work / "cp"
        cp_dir.mkdir()

        def ssh_cmd(node: config.NodeConfig, persist: bool) -> list[str]:
            cmd = ["ssh", "-i", str(cfg.ssh.key_file), "-o", "BatchMode=yes"]
            cmd += ["-o", f"UserKnownHostsFile={cfg.ssh.known_hosts_file}"]
            if persist:
                cmd += ["-o", "ControlMaster=auto", "-o", "ControlPersist=60s"]
                cmd += ["-o", f"ControlPath={cp_dir}/%C"]
            return [*cmd, f"{node.user}@{node.host}", "/usr/bin/python3 -V"]

        def parallel_ssh(persist: bool) -> None:
            procs = [
                subprocess.Popen(ssh_cmd(n, persist), stdout=subprocess.DEVNULL) for n in cfg.nodes
            ]
            if any(p.wait() != 0 for p in procs):
                raise SystemExit("ssh baseline failed")

        def close_all() -> None:
            lab._kill(lab._controller_ssh_pids({n.host for n in cfg.nodes}))

        def cold(fn: object) -> list[float]:
            out = []
            for _ in range(args.runs):
                close_all()
                out += timed(fn, 1)  # type: ignore[arg-type]
            return out

        gridops = [exe, "ping", "-c", str(cfg_path), "--json"]
        ssh_cold = cold(lambda: parallel_ssh(False))
        ops_cold = cold(lambda: run(gridops))
        parallel_ssh(True)
        run(gridops)
        ssh_warm = timed(lambda: parallel_ssh(True), args.runs)
        ops_warm = timed(lambda: run(gridops), args.runs)
        report(
            "ping",
            {
                "nodes": args.nodes,
                "runs": args.runs,
                "ssh_cold_s": median(ssh_cold),
                "grid_ops_cold_s": median(ops_cold),
                "ratio_cold": round(median(ops_cold) / median(ssh_cold), 2),
                "ssh_warm_s": median(ssh_warm),
                "grid_ops_warm_s": median(ops_warm),
                "ratio_warm": round(median(ops_warm) / median(ssh_warm), 2),
            },
        )
    finally:
        lab.down()


if __name__ == "__main__":
    main()
