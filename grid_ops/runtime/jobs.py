"""Ray Jobs on the head node, for ``grid-ops job``: runs on the head, prints JSON.

``python -m grid_ops.runtime.jobs <submit|info|logs|stop|list> …`` talks to the head's
job server on loopback (the dashboard stays bound to 127.0.0.1); the CLI reaches this
module over the cluster's ordinary SSH settings. Every command prints one JSON document.

A job's environment variables (``grid-ops job launch --env``) may be secrets, so they never
travel on a command line: ``submit --env-stdin`` reads them as one JSON object from stdin
(the SSH connection), and they reach the job in its metadata (``ENV_METADATA_KEY``), not
in Ray's ``runtime_env`` (Ray passes that to each worker it starts on the worker's command
line). Ray hands a job's metadata to its entrypoint in the ``RAY_JOB_CONFIG_JSON_ENV_VAR``
environment variable; ``grid_ops.runtime.launch --job-env`` takes the variables from there
(``take_job_env``) and gives them to the command.

Standard library only at the top: the CLI imports the checks below.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from grid_ops import layout

DASHBOARD = "http://127.0.0.1:{port}"
DASHBOARD_WAIT = 15.0
ENV_METADATA_KEY = "grid_ops_env"
JOB_CONFIG_VAR = "RAY_JOB_CONFIG_JSON_ENV_VAR"
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_ENV_NAME = 255


def env_problem(key: object, value: object) -> str | None:
    """Why ``key=value`` cannot be a job's environment variable; None when it can."""
    if not isinstance(key, str) or not isinstance(value, str):
        return "names and values must be strings"
    if len(key) > MAX_ENV_NAME or ENV_NAME.fullmatch(key) is None:
        return (
            f"{key[:80]!r} is not an environment variable name "
            "(letters, digits and '_', not starting with a digit)"
        )
    if "\0" in value:
        return f"the value of {key} contains a NUL character"
    return None


def parse_env(text: str) -> dict[str, str]:
    """A JSON object of environment variables, checked; ValueError says what is wrong."""
    data = json.loads(text or "{}")
    if not isinstance(data, dict):
        raise ValueError("the environment must be a JSON object")
    for key, value in data.items():
        problem = env_problem(key, value)
        if problem is not None:
            raise ValueError(problem)
    return dict(data)


def take_job_env(environ: MutableMapping[str, str]) -> dict[str, str]:
    """The variables ``submit --env-stdin`` put in this job's metadata, removed from it.

    ``environ``: the entrypoint's environment, where Ray put the job's config. The
    variables are taken out of it, so neither the command nor a driver it starts (which
    copies that config into the cluster's job table) carries them further."""
    config = json.loads(environ.get(JOB_CONFIG_VAR) or "{}")
    metadata = config.get("metadata") if isinstance(config, dict) else None
    if not isinstance(metadata, dict) or ENV_METADATA_KEY not in metadata:
        raise ValueError(f"the job's metadata ({JOB_CONFIG_VAR}) has no {ENV_METADATA_KEY}")
    env = parse_env(str(metadata.pop(ENV_METADATA_KEY)))
    environ[JOB_CONFIG_VAR] = json.dumps(config)
    return env


def _client(port: int) -> Any:
    """Ray's job client for the head's dashboard. Fails (ConnectionRefusedError) when
    nothing listens there within DASHBOARD_WAIT seconds (a dashboard still starting gets
    that long); Ray's own client would retry for about 40 s, each call, on a stopped
    cluster."""
    import socket
    import time

    deadline = time.monotonic() + DASHBOARD_WAIT
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10):
                break
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
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
        "metadata": {k: v for k, v in (job.metadata or {}).items() if k != ENV_METADATA_KEY},
        "entrypoint": job.entrypoint,
    }


def submit_metadata(metadata: dict[str, str], env: dict[str, str]) -> dict[str, str]:
    """The job's metadata: the caller's, plus its environment variables when it has any."""
    if not env:
        return dict(metadata)
    return {**metadata, ENV_METADATA_KEY: json.dumps(env)}


def _submit(client: Any, args: argparse.Namespace, env_text: str) -> str:
    runtime_env: dict[str, Any] = {}
    entrypoint = args.entrypoint
    if args.working_dir:
        runtime_env["working_dir"] = args.working_dir
    else:  # no --workdir: the job starts where 'grid-ops sync' puts code, as 'run' does
        code = Path.cwd() / layout.CODE
        entrypoint = f"cd -- {shlex.quote(str(code))} && {entrypoint}"
    metadata = submit_metadata(json.loads(args.metadata), parse_env(env_text))
    sid: str = client.submit_job(
        entrypoint=entrypoint,
        submission_id=args.submission_id,
        runtime_env=runtime_env or None,
        metadata=metadata,
        entrypoint_num_gpus=args.num_gpus or None,
    )
    return sid


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dashboard-port", type=int, default=8265)
    sub = parser.add_subparsers(dest="command", required=True)
    submit = sub.add_parser("submit")
    submit.add_argument("--submission-id", required=True)
    submit.add_argument("--entrypoint", required=True)
    submit.add_argument("--working-dir")
    submit.add_argument(
        "--env-stdin",
        action="store_true",
        help="read the job's environment variables from stdin (a JSON object)",
    )
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
            env_text = sys.stdin.read() if args.env_stdin else ""
            out = {"submission_id": _submit(client, args, env_text)}
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
