"""`grid-ops cluster start` vs a raw script doing the same `ray start`s over parallel ssh.

On a lab of N nodes (root), provisioned once (not timed). Each round stops Ray
everywhere, then times one side; sides alternate. The raw side runs exactly the
commands the grid_ray role runs: the head's `ray start --head …`, then every worker's
`ray start --address …` in parallel over plain ssh. Also times a no-change
`grid-ops provision` rerun. Ratio = grid-ops / raw.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import lab_bench, median, parse_args, report, run, timed

from grid_ops import model
from grid_ops.model import config


def main() -> None:
    args = parse_args(__doc__, runs=3)
    with lab_bench(args.nodes) as bench:
        cfg, cfg_path, exe = bench.config, bench.config_path, bench.exe
        run([exe, "provision", "-c", str(cfg_path)])
        run([exe, "cluster", "start", "-c", str(cfg_path)])  # places the Ray token
        provision_rerun = timed(lambda: run([exe, "provision", "-c", str(cfg_path)]), args.runs)

        def ssh(node: config.NodeConfig, command: str) -> subprocess.Popen[bytes]:
            argv = model.resolve(cfg).node(node.name).argv(command)
            return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def ray_start_cmd(node: config.NodeConfig) -> str:
            root = f"/home/{node.user}/grid-ops"
            memory = int((node.memory_gb or 2) * 1024**3)
            argv = [
                f"{root}/venv/bin/ray", "start", "--disable-usage-stats",
                "--temp-dir", f"{root}/ray", "--num-gpus", "0",
                "--resources", json.dumps({"tag:lab": 1}),
                "--node-ip-address", node.host, "--memory", str(memory),
                "--object-store-memory", str(int(memory * 0.3)),
            ]  # fmt: skip
            if node.name == cfg.head.name:
                argv += ["--head", "--port", "6379", "--dashboard-host", "127.0.0.1",
                         "--dashboard-port", "8265"]  # fmt: skip
            else:
                argv += ["--address", f"{cfg.head.host}:6379"]
            env = f"PATH={root}/venv/bin:/usr/local/bin:/usr/bin:/bin RAY_USAGE_STATS_ENABLED=0"
            if cfg.ray.auth == "token":  # the same token auth grid-ops starts Ray with
                env += f" RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH={root}/state/ray_auth_token"
            return f"env {env} {shlex.join(argv)}"

        def raw_start() -> None:
            if ssh(cfg.head, ray_start_cmd(cfg.head)).wait() != 0:
                raise SystemExit("raw head start failed")
            procs = [ssh(n, ray_start_cmd(n)) for n in cfg.workers]
            if any(p.wait() != 0 for p in procs):
                raise SystemExit("raw worker start failed")

        def stop_all() -> None:
            run([exe, "cluster", "stop", "-c", str(cfg_path)])

        raw, ops = [], []
        for _ in range(args.runs):
            stop_all()
            raw += timed(raw_start, 1)
            stop_all()
            ops += timed(lambda: run([exe, "cluster", "start", "-c", str(cfg_path)]), 1)
        noop = timed(lambda: run([exe, "cluster", "start", "-c", str(cfg_path)]), args.runs)
        stop_all()
        report(
            "cluster_start",
            {
                "nodes": args.nodes,
                "runs": args.runs,
                "raw_parallel_ssh_ray_start_s": median(raw),
                "grid_ops_cluster_start_s": median(ops),
                "ratio": round(median(ops) / median(raw), 2),
                "target_ratio": 1.3,
                "grid_ops_cluster_start_noop_s": median(noop),
                "grid_ops_provision_rerun_s": median(provision_rerun),
            },
        )


if __name__ == "__main__":
    main()
