"""`grid-ops ping` on N lab nodes vs plain parallel ssh doing the same probe (root only).

Both sides start from closed connections (cold) and are then repeated with connections
kept open (warm: ControlPersist for both). Ratio = grid-ops / ssh.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import lab_bench, median, parse_args, report, run, timed

from grid_ops.model import config


def main() -> None:
    args = parse_args(__doc__, runs=5)
    with lab_bench(args.nodes) as bench:
        cfg, cfg_path, exe = bench.config, bench.config_path, bench.exe
        cp_dir = bench.work / "cp"
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

        gridops = [exe, "ping", "-c", str(cfg_path), "--json"]
        ssh_cold = bench.cold(lambda: parallel_ssh(False), args.runs)
        ops_cold = bench.cold(lambda: run(gridops), args.runs)
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


if __name__ == "__main__":
    main()
