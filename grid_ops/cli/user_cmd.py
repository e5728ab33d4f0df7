"""grid-ops user (token, login, logout, whoami, list) and grid-ops usage."""

from __future__ import annotations

import sys
import time
from typing import Annotated, Any

import typer

from grid_ops.cli.common import ConfigOption, JsonOption, load_cluster
from grid_ops.cli.output import cell, out, print_json, safe

app = typer.Typer(
    help="The cluster's users (users: in the config): their tokens, and who this machine "
    "is. A cluster without users has none of this: everyone is its admin.",
    no_args_is_help=True,
)


@app.command("token")
def token(
    name: Annotated[str, typer.Argument(help="A user of the config's users:.")],
    config: ConfigOption = None,
    save: Annotated[
        bool, typer.Option("--save", help="Keep it on this machine too: act as NAME from now.")
    ] = False,
    json_out: JsonOption = False,
) -> None:
    """Make a user's token and print it once.

    An admin makes anyone's; before any admin has a token, the first admin's may be made
    by whoever reaches the head. The head keeps only its digest, and NAME's old token
    stops working. NAME keeps it on their machine with 'grid-ops user login'."""
    from grid_ops.actions import users

    cluster, _ = load_cluster(config)
    made = users.make_token(cluster, name, save=save)
    if json_out:
        print_json(made)
        return
    out.print(f"Token for {safe(made['name'])} ({safe(made['role'])}):")
    sys.stdout.write(f"{made['token']}\n")
    sys.stdout.flush()
    if made["saved"]:
        out.print(f"Kept on this machine in {safe(made['saved'])}.")
    else:
        out.print(
            f"Give it to {safe(made['name'])} by a private channel; they run "
            "'grid-ops user login' and paste it."
        )


@app.command("login")
def login(config: ConfigOption = None, json_out: JsonOption = False) -> None:
    """Keep your token on this machine.

    The token is read from standard input (a hidden prompt on a terminal), never from
    the command line, and kept once the head has confirmed whose it is."""
    from grid_ops.actions import users

    cluster, _ = load_cluster(config)
    if sys.stdin.isatty():
        given = typer.prompt("Your token", hide_input=True)
    else:
        given = sys.stdin.readline()
    who = users.login(cluster, given)
    if json_out:
        print_json(who)
        return
    out.print(f"Logged in to {safe(cluster.name)} as {safe(who['name'])} ({safe(who['role'])}).")


@app.command("logout")
def logout(config: ConfigOption = None) -> None:
    """Forget this machine's token for the cluster."""
    from grid_ops.actions import users

    cluster, _ = load_cluster(config)
    if users.logout(cluster):
        out.print(f"Logged out of {safe(cluster.name)}.")
    else:
        out.print(f"This machine had no token for {safe(cluster.name)}.")


@app.command("whoami")
def whoami(config: ConfigOption = None, json_out: JsonOption = False) -> None:
    """Who the head takes this machine for."""
    from grid_ops.actions import users

    cluster, _ = load_cluster(config)
    who = users.whoami(cluster)
    if json_out:
        print_json(who)
    else:
        out.print(f"{safe(who['name'] or '(nobody)')} ({safe(who['role'])})")


def _number(value: Any) -> str:
    return "" if value is None else f"{float(value):g}"


@app.command("list")
def list_users(config: ConfigOption = None, json_out: JsonOption = False) -> None:
    """Every user, their token and their quota use.

    Role, whether a token was made, the GPUs their jobs hold now and their GPU-hours of
    the last 7 days, each beside its quota."""
    from rich.table import Table

    from grid_ops.actions import users

    cluster, _ = load_cluster(config)
    rows = users.listing(cluster)
    if json_out:
        print_json(rows)
        return
    table = Table(title="users", title_justify="left")
    for col in ("user", "role", "token", "GPUs now", "quota", "GPU-h 7d", "quota"):
        table.add_column(col)
    for row in rows:
        quota = row["quota"]
        table.add_row(
            cell(row["name"]),
            cell(row["role"]),
            "yes" if row["token"] else "no",
            _number(row["gpus_running"]),
            _number(quota["gpus"]) or "-",
            f"{float(row['gpu_hours_week']):.2f}",
            _number(quota["gpu_hours_per_week"]) or "-",
        )
    out.print(table)


def usage(
    config: ConfigOption = None,
    since: Annotated[
        str, typer.Option("--since", help="How far back: 90m, 24h, 7d, 30d ...")
    ] = "7d",
    by: Annotated[str, typer.Option("--by", help="user or node.")] = "user",
    json_out: JsonOption = False,
) -> None:
    """GPU-hours, CPU-hours and GPU energy of the queue's jobs, by user or by node.

    Each attempt counts its reserved GPUs and CPUs times its run time (the part inside
    --since), and the energy its GPUs drew as nvidia-smi reported it while it ran
    ("-" where no attempt was measured: no power readings, or still running). Then the
    processes on the nodes' GPUs as the last health round saw them ('grid-ops health'
    makes one), with the Unix user running each: one not the node's grid-ops user works
    outside the queue."""
    from rich.table import Table

    from grid_ops.actions import users
    from grid_ops.drivers.control import parse_duration

    start = time.time() - parse_duration(since)
    cluster, _ = load_cluster(config)
    result = users.usage(cluster, start, by)
    if json_out:
        print_json(result)
        return
    table = Table(title=f"usage since {since} ago, by {by}", title_justify="left")
    for col in (by, "GPU-hours", "CPU-hours", "GPU kWh", "attempts"):
        table.add_column(col)
    for key, row in sorted(result["rows"].items(), key=lambda kv: -kv[1]["gpu_hours"]):
        kwh = row.get("energy_kwh")
        table.add_row(
            cell(key),
            f"{row['gpu_hours']:.3f}",
            f"{row['cpu_hours']:.3f}",
            "-" if kwh is None else f"{kwh:.4f}",
            cell(int(row["attempts"])),
        )
    out.print(table)
    if result["gpu_processes"] is None:
        out.print("GPU processes: no health round yet ('grid-ops health' makes one).")
    elif result["gpu_processes"]:
        procs = Table(title="GPU processes now (last health round)", title_justify="left")
        for col in ("node", "pid", "user", "process", "GPU MiB", "note"):
            procs.add_column(col)
        for app in result["gpu_processes"]:
            procs.add_row(
                cell(app["node"]),
                cell(app["pid"]),
                cell(app["user"] or "?"),
                cell(app["process"]),
                cell(app["gpu_memory_mib"]),
                "outside grid-ops" if app["outside_grid_ops"] else "",
            )
        out.print(procs)
