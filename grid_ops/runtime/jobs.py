"""Ray Jobs on the head node, for ``grid-ops job``: runs on the head, prints JSON.

``python -m grid_ops.runtime.jobs <submit|info|logs|stop|list> …`` talks to the head's
job server on loopback (the dashboard stays bound to 127.0.0.1); the CLI reaches this
module over the cluster's ordinary SSH settings. Every command prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

DASHBOARD = "http://127.0.0.1:{port}"


def _client(port: int) -> Any:
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(DASHBOARD.format(port=port))


def _details(job: Any) -> dict[str, Any]:
    status = getattr(job.status, "value", str(job.status))
    return {
        "submission_id": job.submission_id,
        "status": str(status),
        "message": job.message,
        "start_time": job.start_time,
        "end_time": job.end_time,
        "exit_code": getattr(job, "driver_exit_code", None),
        "metadata": job.metadata or {},
        "entrypoint": job.entrypoint,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dashboard-port", type=int, default=8265)
    sub = parser.add_subparsers(dest="command", required=True)
    submit = sub.add_parser("submit")
    submit.add_argument("--submission-id", required=True)
    submit.add_argument("--entrypoint", required=True)
    submit.add_argument("--working-dir")
    submit.add_argument("--env", default="{}", help="JSON object of environment variables")
    submit.add_argument("--metadata", default="{}", help="JSON object of strings")
    submit.add_argument("--num-gpus", type=float, default=0)
    info = sub.add_parser("info")
    info.add_argument("submission_ids", nargs="+")
    logs = sub.add_parser("logs")
    logs.add_argument("submission_id")
    stop = sub.add_parser("stop")
    stop.add_argument("submission_id")
    sub.add_parser("list")
    args = parser.parse_args(argv)
    try:
        client = _client(args.dashboard_port)
        out: Any
        if args.command == "submit":
            runtime_env: dict[str, Any] = {"env_vars": json.loads(args.env)}
            if args.working_dir:
                runtime_env["working_dir"] = args.working_dir
            sid = client.submit_job(
                entrypoint=args.entrypoint,
                submission_id=args.submission_id,
                runtime_env=runtime_env,
                metadata=json.loads(args.metadata),
                entrypoint_num_gpus=args.num_gpus or None,
            )
            out = {"submission_id": sid}
        elif args.command == "info":
            out = {"jobs": []}
            for sid in args.submission_ids:
                try:
                    out["jobs"].append(_details(client.get_job_info(sid)))
                except RuntimeError:
                    out["jobs"].append({"submission_id": sid, "status": "UNKNOWN"})
        elif args.command == "logs":
            out = {
                "submission_id": args.submission_id,
                "logs": client.get_job_logs(args.submission_id),
            }
        elif args.command == "stop":
            out = {
                "submission_id": args.submission_id,
                "stopped": client.stop_job(args.submission_id),
            }
        else:
            out = {"jobs": [_details(j) for j in client.list_jobs()]}
    except Exception as exc:  # the job server is down or refused: say so, as JSON
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        return 1
    print(json.dumps(out, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
