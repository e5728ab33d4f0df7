"""grid-ops job: training jobs in the head's queue (launch, status, logs, list, cancel,
results)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from grid_ops.cli.common import ConfigOption, JsonOption, load_cluster
from grid_ops.cli.output import cell, out, print_json, safe
from grid_ops.jobs import TERMINAL

app = typer.Typer(
    help="Training jobs: a queue on the head (priorities, fair share, retries) that starts "
    "each job on Ray Jobs once its ranks fit.",
    no_args_is_help=True,
)
NameArg = Annotated[str, typer.Argument(help="The job's name (from job launch).")]
STYLE = {
    "SUCCEEDED": "green", "FAILED": "red", "STOPPED": "yellow", "RUNNING": "cyan",
    "QUEUED": "magenta",
}  # fmt: skip


def _when(stamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp)) if stamp else ""


@app.command("launch", context_settings={"allow_interspersed_args": False})
def launch(
    command: Annotated[list[str], typer.Argument(help="The job's command (after --).")],
    name: Annotated[str, typer.Option("--name", help="Unique among live jobs.")],
    config: ConfigOption = None,
    workdir: Annotated[
        Path | None,
        typer.Option("--workdir", help="Directory shipped with the job; the command runs in it."),
    ] = None,
    env: Annotated[
        list[str] | None,
        typer.Option(
            "--env",
            help="NAME=value for the job's environment (repeat). Values reach the head on "
            "the SSH connection's stdin, never on a command line.",
        ),
    ] = None,
    nodes: Annotated[
        int | None,
        typer.Option(
            "--nodes",
            help="Ranks, one per node (STRICT_SPREAD), with MASTER_ADDR, MASTER_PORT, "
            "WORLD_SIZE, RANK, LOCAL_RANK set; the job fails when a rank fails. "
            "Default: execution.default_nodes of the config (1).",
            min=1,
            show_default=False,
        ),
    ] = None,
    gpus_per_node: Annotated[
        float | None,
        typer.Option(
            "--gpus-per-node",
            help="GPUs reserved per rank. Default: execution.default_gpus_per_node of the "
            "config (0).",
            min=0,
            show_default=False,
        ),
    ] = None,
    cpus_per_node: Annotated[
        float, typer.Option("--cpus-per-node", help="CPUs reserved per rank.", min=0)
    ] = 1.0,
    priority: Annotated[
        str,
        typer.Option(
            "--priority",
            help="low, normal or high: the queue offers the cluster to higher first, then "
            "to the submitter with fewer recent GPU-hours, then to the older job.",
        ),
    ] = "normal",
    max_retries: Annotated[
        int | None,
        typer.Option(
            "--max-retries",
            help="Attempts after a lost node, a restarted head or a --retry-on-exit code "
            "(a plain failure is never retried). Default: execution.job_max_retries (2).",
            min=0,
            show_default=False,
        ),
    ] = None,
    retry_on_exit: Annotated[
        list[int] | None,
        typer.Option(
            "--retry-on-exit", help="An exit code that retries the job (repeat).", min=1, max=255
        ),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            help="Seconds an attempt may run; then it ends FAILED (timeout).",
            min=1,
            show_default=False,
        ),
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """Queue COMMAND on the head; it starts once its ranks fit on healthy, undrained nodes.
    Prints its name and id at once ('job status' says why it waits)."""
    from grid_ops.actions import jobs

    jobs.check_name(name)
    variables = jobs.parse_env(env or [])  # checked before anything else happens
    cluster, _ = load_cluster(config)
    spec = jobs.job_spec(
        cluster, name, command, workdir, gpus_per_node, nodes, cpus=cpus_per_node,
        priority=priority, max_retries=max_retries, retry_on_exit=tuple(retry_on_exit or ()),
        timeout=timeout,
    )  # fmt: skip
    record = jobs.launch(cluster, spec, variables, workdir)
    if json_out:
        from grid_ops import answers

        print_json(answers.job(record))
    else:
        shown = safe(name)
        state = safe(record["status"])
        why = f": {safe(record['reason'])}" if record["status"] == "QUEUED" else ""
        out.print(f"Job {shown} ({safe(record['id'])}) is {state}{why}.")
        out.print(
            f"Follow it: grid-ops job logs {shown} --follow   |   grid-ops job status {shown}"
        )


@app.command("status")
def status(
    name: Annotated[str | None, typer.Argument(help="A job (default: all).")] = None,
    config: ConfigOption = None,
    json_out: JsonOption = False,
) -> None:
    """Status of one job (or all): QUEUED (and why it waits), RUNNING, SUCCEEDED, FAILED
    or STOPPED, with its attempts."""
    from grid_ops.actions import jobs

    if name is not None:
        jobs.check_key(name)
    cluster, _ = load_cluster(config)
    records = [jobs.load(cluster, name)] if name is not None else jobs.load_all(cluster)
    if json_out:
        from grid_ops import answers

        rows = [answers.job(r) for r in records]
        print_json(rows[0] if name else rows)
        return
    _table(records)


@app.command("list")
def list_jobs(config: ConfigOption = None, json_out: JsonOption = False) -> None:
    """Every job in the head's queue (whoever launched it), newest last."""
    status(name=None, config=config, json_out=json_out)


def _table(records: list[dict[str, Any]]) -> None:
    from rich.table import Table

    from grid_ops import answers

    table = Table(title="jobs", title_justify="left")
    for col in ("name", "status", "pri", "by", "try", "submitted", "started", "ended", "exit",
                "note"):  # fmt: skip
        table.add_column(col)
    for record in records:
        r = answers.job(record)
        state = str(r["status"])
        table.add_row(
            cell(r["name"]),
            cell(state, style=STYLE.get(state, "")),
            cell(r["priority"]),
            cell(r["submitter"]),
            cell(r["attempt"] or ""),
            _when(r["submitted_at"]),
            _when(r["started_at"]),
            _when(r["ended_at"]),
            cell("" if r["exit_code"] is None else r["exit_code"]),
            cell(r["reason"]),
        )
    out.print(table)


@app.command("logs")
def logs(
    name: NameArg,
    config: ConfigOption = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing until it ends.")] = (
        False
    ),
) -> None:
    """Print a job's output (its last attempt's ranks): from Ray Jobs while the head knows
    the attempt, else from each rank's log on its own node."""
    from grid_ops.actions import jobs

    jobs.check_key(name)
    cluster, _ = load_cluster(config)
    record = jobs.load(cluster, name)
    shown = 0
    while True:
        text = jobs.logs(cluster, record)
        sys.stdout.write(text[shown:])
        sys.stdout.flush()
        shown = len(text)
        if not follow or record.get("status") in TERMINAL:
            return
        time.sleep(1.0)
        before = record.get("attempts") or []
        record = jobs.load(cluster, record["id"])
        if len(record.get("attempts") or []) != len(before):
            shown = 0  # a new attempt: its own output from the start


@app.command("cancel")
def cancel(name: NameArg, config: ConfigOption = None) -> None:
    """Stop a job, queued or running; it ends STOPPED."""
    from grid_ops.actions import jobs

    jobs.check_key(name)
    cluster, _ = load_cluster(config)
    stopped = jobs.cancel(cluster, name)
    out.print(f"Job {safe(name)}: {safe(stopped['status'])}.")


@app.command("results")
def results(name: NameArg, config: ConfigOption = None, json_out: JsonOption = False) -> None:
    """The metrics a job reported (grid_ops.jobs.report), the final values and duration."""
    from grid_ops.actions import jobs

    jobs.check_key(name)
    cluster, _ = load_cluster(config)
    data, record = jobs.outcome(cluster, name)
    show_results(name, data, record, json_out)


def show_results(name: str, data: dict[str, Any], record: dict[str, Any], json_out: bool) -> None:
    """A job's reported metrics as a table with its final values (or the JSON)."""
    from rich.table import Table

    found = {"metrics": data["metrics"], "final": data["final"]}
    if json_out:
        print_json(data)
        return
    keys = sorted({k for row in found["metrics"] for k in row if k != "time"})
    title = f"job {safe(name)}: {safe(record.get('status'))}"
    table = Table(title=title, title_justify="left")
    for key in keys:
        table.add_column(cell(key))
    for row in found["metrics"]:
        table.add_row(*(cell(row.get(k, "")) for k in keys))
    out.print(table)
    out.print(
        f"final: {safe(found['final'])}   duration: {data['duration_s']} s   "
        f"logs: {safe(data['logs'])}"
    )
