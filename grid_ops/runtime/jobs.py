"""Ray Jobs on the head node, for ``grid-ops job``: runs on the head, prints JSON.

``python -m grid_ops.runtime.jobs <submit|info|logs|stop|list> …`` talks to the head's
job server on loopback (the dashboard stays bound to 127.0.0.1); the CLI reaches this
module over the cluster's ordinary SSH settings. Every command prints one JSON document.

A job's environment variables (``grid-ops job launch --env``) may be secrets, so they never
travel on a command line, nor in anything Ray's job API gives back (``ray job list``,
``JobSubmissionClient.get_job_info``: entrypoint, runtime_env, metadata). ``submit
--env-stdin`` reads them as one JSON object from stdin (the SSH connection) and keeps them
in the head's GCS key-value store under the job's submission id (``stash_env``: namespace
``ENV_NAMESPACE``, outside the job API, reachable only with the cluster's token); the
entrypoint, ``grid_ops.runtime.launch --job-env SUBMISSION_ID`` on whichever node Ray runs
it, takes them out (``take_env``: read and deleted) and gives them to the command. A job
that ends or is stopped before its entrypoint took them has them dropped (``drop_env``,
by 'stop' and by 'info' once the job is over).

Standard library only at the top: the CLI imports the checks below.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import sys
from collections.abc import Callable, Mapping
from typing import Any

from grid_ops import layout
from grid_ops.jobs import TERMINAL

DASHBOARD = "http://127.0.0.1:{port}"
DASHBOARD_WAIT = 15.0
ENV_NAMESPACE = b"grid_ops_job_env"
# Jobs submitted by an earlier grid-ops carried their variables in this metadata key:
# never shown.
OLD_ENV_METADATA_KEY = "grid_ops_env"
GCS_TIMEOUT = 30
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


def _env_key(submission_id: str) -> bytes:
    return f"env/{submission_id}".encode()


def _gcs(environ: Mapping[str, str]) -> Any:
    """A client of the head's GCS, at ``$RAY_ADDRESS`` (grid-ops' commands on a node and
    a job's entrypoint both have it; Ray's token settings come from the environment)."""
    address = environ.get("RAY_ADDRESS") or ""
    if not address or "://" in address:
        raise ValueError(f"RAY_ADDRESS ({address!r}) does not name the head's GCS")
    from ray._raylet import GcsClient

    return GcsClient(address=address)


def stash_env(submission_id: str, env: dict[str, str], environ: Mapping[str, str]) -> None:
    """Keep job ``submission_id``'s variables in the GCS until its entrypoint takes them."""
    value = json.dumps(env).encode()
    _gcs(environ).internal_kv_put(
        _env_key(submission_id), value, True, ENV_NAMESPACE, timeout=GCS_TIMEOUT
    )


def take_env(submission_id: str, environ: Mapping[str, str]) -> dict[str, str]:
    """Job ``submission_id``'s variables, read and deleted from the GCS (only the first
    caller gets them); ValueError says why there are none."""
    client = _gcs(environ)
    key = _env_key(submission_id)
    raw = client.internal_kv_get(key, ENV_NAMESPACE, timeout=GCS_TIMEOUT)
    if raw is None:
        raise ValueError(
            f"the head keeps no variables for job {submission_id!r} (taken already, or the "
            "cluster restarted since it was submitted)"
        )
    client.internal_kv_del(key, False, ENV_NAMESPACE, timeout=GCS_TIMEOUT)
    return parse_env(bytes(raw).decode("utf-8"))


def drop_env(submission_id: str, environ: Mapping[str, str]) -> None:
    """Delete what ``stash_env`` kept for the job, if anything is left (best effort)."""
    with contextlib.suppress(Exception):
        _gcs(environ).internal_kv_del(
            _env_key(submission_id), False, ENV_NAMESPACE, timeout=GCS_TIMEOUT
        )


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
        "metadata": {k: v for k, v in (job.metadata or {}).items() if k != OLD_ENV_METADATA_KEY},
        "entrypoint": job.entrypoint,
    }


def launch_argv(
    job: Any, submission_id: str, attempt: int, nodes: tuple[str, ...], with_env: bool,
    nvidia_smi: str = "",
) -> list[str]:  # fmt: skip
    """What Ray Jobs runs for an attempt of a queued job (a ``jobqueue.Job``): one rank
    per node of ``nodes`` through grid_ops.runtime.launch, pinned there; only the
    submission id of its variables is on this line, never a value. ``nvidia_smi``: the
    config's health_check.nvidia_smi, for its GPUs' energy ("": the one on PATH) (pure)."""
    argv = ["python", "-m", "grid_ops.runtime.launch", "--nodes", str(len(nodes))]
    argv += ["--gpus-per-node", f"{job.gpus_per_node:g}", "--cpus-per-node",
             f"{job.cpus_per_node:g}", "--on", ",".join(nodes), "--job", job.id,
             "--attempt", str(attempt)]  # fmt: skip
    argv += ["--job-env", submission_id] if with_env else []
    argv += ["--nvidia-smi", nvidia_smi] if nvidia_smi and job.gpus_per_node else []
    if job.attempts:  # a retry: ranks that moved get their checkpoints first
        argv += ["--previous", ",".join(job.attempts[-1].nodes)]
    return [*argv, "--", *job.command]


class Runner:
    """Ray Jobs as the job queue sees it (``jobboard.Runner``), from the controller on
    the head: the dashboard on loopback, the GCS at ``gcs_address``."""

    def __init__(
        self, port: int, root: str, gcs_address: str, nvidia_smi: Callable[[], str] = str
    ) -> None:
        self.port = port
        self.root = root
        self.environ = {"RAY_ADDRESS": gcs_address}
        self.nvidia_smi = nvidia_smi  # the settings' health_check.nvidia_smi, as they are now
        self._job_client: Any = None

    def _client(self) -> Any:
        if self._job_client is None:
            from ray.job_submission import JobSubmissionClient

            self._job_client = JobSubmissionClient(DASHBOARD.format(port=self.port))
        return self._job_client

    def submit(
        self, job: Any, submission_id: str, attempt: int, nodes: tuple[str, ...],
        env: dict[str, str],
    ) -> None:  # fmt: skip
        argv = launch_argv(job, submission_id, attempt, nodes, bool(env), self.nvidia_smi())
        entry = shlex.join(argv)
        runtime_env: dict[str, Any] = {}
        if job.workdir:  # shipped by the client to the job's own dir on the head
            runtime_env["working_dir"] = layout.job_file(self.root, job.id, layout.JOB_WORK)
        else:  # it starts where 'grid-ops sync' puts code, as 'run' does
            code = os.path.join(self.root, layout.CODE)
            entry = f"cd -- {shlex.quote(code)} && {entry}"
        if env:  # kept for the entrypoint (launch --job-env), never in the job's own fields
            stash_env(submission_id, env, self.environ)
        try:
            self._client().submit_job(
                entrypoint=entry,
                submission_id=submission_id,
                runtime_env=runtime_env or None,
                metadata={"grid_ops_job": job.id, "grid_ops_name": job.name},
            )
        except BaseException:
            self._job_client = None  # a new client next time (the dashboard may be back)
            if env:
                drop_env(submission_id, self.environ)
            raise

    def seen(self, submission_id: str) -> Any:
        from grid_ops.runtime.jobboard import Seen

        try:
            job = self._client().get_job_info(submission_id)
        except RuntimeError as exc:
            if "does not exist" in str(exc):
                return None
            raise
        except Exception:
            self._job_client = None
            raise
        details = _details(job)
        if details["status"] in TERMINAL:
            drop_env(submission_id, self.environ)  # its entrypoint never took them
        code = details["exit_code"]
        return Seen(details["status"], int(code) if code is not None else None,
                    str(details["message"] or ""))  # fmt: skip

    def stop(self, submission_id: str) -> None:
        self._client().stop_job(submission_id)
        drop_env(submission_id, self.environ)

    def energy(self, job_id: str, attempt: int, ranks: int, take: bool = True) -> float | None:
        """The joules an attempt's ranks measured (grid_ops.runtime.energy), taken out
        of the GCS (``take``: the attempt ended) or read so far; None when none did or
        the GCS does not answer."""
        from grid_ops.runtime import energy

        try:
            return energy.collect(_gcs(self.environ), job_id, attempt, ranks, GCS_TIMEOUT, take)
        except Exception:
            return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dashboard-port", type=int, default=8265)
    sub = parser.add_subparsers(dest="command", required=True)
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
        if args.command == "info":
            out = {"jobs": []}
            for sid in args.submission_ids:
                try:
                    details = _details(client.get_job_info(sid))
                except RuntimeError:
                    details = {"submission_id": sid, "status": "UNKNOWN"}
                if details["status"] in (*TERMINAL, "UNKNOWN"):
                    drop_env(sid, os.environ)  # its entrypoint never took them
                out["jobs"].append(details)
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
            drop_env(args.submission_id, os.environ)
        else:
            out = {"jobs": [_details(j) for j in client.list_jobs()]}
    except Exception as exc:  # the job server is down or refused: say so, as JSON
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        return 1
    print(json.dumps(out, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
