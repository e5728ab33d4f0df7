"""grid-ops job: training jobs on Ray Jobs (launch, status, logs, list, cancel, results)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from grid_ops.cli.common import ConfigOption, JsonOption, load_cluster
from grid_ops.cli.output import cell, out, print_json, safe
from grid_ops.jobs import TERMINAL

app = typer.Typer(help="Training jobs on the cluster's Ray Jobs.", no_args_is_help=True)
NameArg = Annotated[str, typer.Argument(help="The job's name (from job launch).")]
STYLE = {"SUCCEEDED": "green", "FAILED": "red", "STOPPED": "yellow", "RUNNING": "cyan"}


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
    json_out: JsonOption = False,
) -> None:
    """Submit COMMAND as a job to Ray Jobs on the head; prints its name and id."""
    from grid_ops.actions import jobs

    jobs.check_name(name)
    variables = jobs.parse_env(env or [])  # checked before anything else happens
    cluster, _ = load_cluster(config)
    record = jobs.launch(
        cluster, name, command, workdir=workdir, env=variables, gpus=gpus_per_node, nodes=nodes
    )
    if json_out:
        from grid_ops import answers

        print_json(answers.job(record))
    else:
        shown = safe(name)
        out.print(f"Launched job {shown} ({safe(record['submission_id'])}).")
        out.print(
            f"Follow it: grid-ops job logs {shown} --follow   |   grid-ops job status {shown}"
        )


@app.command("status")
def status(
    name: Annotated[str | None, typer.Argument(help="A job (default: all).")] = None,
    config: ConfigOption = None,
    json_out: JsonOption = False,
) -> None:
    """Status of one job (or all): PENDING, RUNNING, SUCCEEDED, FAILED or STOPPED."""
    from grid_ops.actions import jobs

    if name is not None:
        jobs.check_name(name)
    cluster, _ = load_cluster(config)
    records = [jobs.load(cluster, name)] if name is not None else jobs.load_all(cluster)
    records = jobs.refresh(cluster, records)
    if json_out:
        from grid_ops import answers

        rows = [answers.job(r) for r in records]
        print_json(rows[0] if name else rows)
        return
    _table(records)


@app.command("list")
def list_jobs(config: ConfigOption = None, json_out: JsonOption = False) -> None:
    """Every job launched on this cluster from here, newest last."""
    status(name=None, config=config, json_out=json_out)


def _table(records: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table(title="jobs", title_justify="left")
    for col in ("name", "status", "submitted", "started", "ended", "exit", "note"):
        table.add_column(col)
    for r in records:
        state = str(r.get("status"))
        table.add_row(
            cell(r["name"]),
            cell(state, style=STYLE.get(state, "")),
            _when(r.get("submitted_at")),
            _when(r.get("started_at")),
            _when(r.get("ended_at")),
            cell("" if r.get("exit_code") is None else r["exit_code"]),
            "" if r.get("known_to_ray", True) else "no longer known to Ray",
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
    """Print a job's output (stdout and stderr of its command)."""
    from grid_ops.actions import jobs

    jobs.check_name(name)
    cluster, _ = load_cluster(config)
    record = jobs.load(cluster, name)
    shown = 0
    while True:
        text = jobs.head_call(cluster, "logs", record["submission_id"])["logs"] or ""
        sys.stdout.write(text[shown:])
        sys.stdout.flush()
        shown = len(text)
        if not follow:
            return
        jobs.refresh(cluster, [record])
        if record.get("status") in TERMINAL or not record.get("known_to_ray", True):
            text = jobs.head_call(cluster, "logs", record["submission_id"])["logs"] or ""
            sys.stdout.write(text[shown:])
            return
        time.sleep(1.0)


@app.command("cancel")
def cancel(name: NameArg, config: ConfigOption = None) -> None:
    """Stop a job; it ends STOPPED."""
    from grid_ops.actions import jobs

    jobs.check_name(name)
    cluster, _ = load_cluster(config)
    stopped = jobs.cancel(cluster, name)
    out.print(f"Job {safe(name)}: {safe(stopped['status'])}.")


@app.command("results")
def results(name: NameArg, config: ConfigOption = None, json_out: JsonOption = False) -> None:
    """The metrics a job reported (grid_ops.jobs.report), the final values and duration."""
    from grid_ops.actions import jobs

    jobs.check_name(name)
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
