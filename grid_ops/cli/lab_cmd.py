"""grid-ops lab: SSH nodes as network namespaces on this machine (root only)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from grid_ops.cli.common import JsonOption
from grid_ops.cli.output import cell, info, out, print_json, safe

app = typer.Typer(
    help="A local lab: N SSH nodes as network namespaces on this machine (needs root).",
    no_args_is_help=True,
)

NodeArg = Annotated[str, typer.Argument(help="Lab node name, e.g. node2.")]


@app.command("up")
def up(
    nodes: Annotated[int, typer.Option("--nodes", "-n", help="How many nodes.", min=1)] = 3,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Where to write the lab's cluster config.")
    ] = Path("lab.yaml"),
    subnet: Annotated[
        str | None,
        typer.Option(
            help="Private IPv4 range used only on the lab bridge "
            "(default: 10.231.N.0/24 for lab N; N is $GRID_OPS_LAB, 0 when unset)."
        ),
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """Create N nodes (own sshd, user, hostname) and write a cluster config for them.

    Clears stale lab state first, and installs openssh-server and rsync with apt-get if
    they are missing.
    """
    from grid_ops import lab

    state = lab.up(nodes, output, subnet=subnet or lab.DEFAULT_SUBNET, progress=info)
    if json_out:
        print_json(lab.status())
        return
    nodes_text = ", ".join(f"{n.name}={n.ip}" for n in state.nodes)
    out.print(f"Lab up: {len(state.nodes)} node(s) on {safe(state.subnet)} ({safe(nodes_text)}).")
    shown = safe(output)
    out.print(f"Cluster config: {shown}. Try: grid-ops ping -c {shown}")


@app.command("down")
def down(json_out: JsonOption = False) -> None:
    """Remove every namespace, bridge, user, process and key the lab made, and what
    its users left in the shared /tmp."""
    from grid_ops import lab

    removed = lab.down(progress=info)
    if json_out:
        print_json(removed)
        return
    if any(removed.values()):
        out.print(
            f"Lab down: removed {len(removed['namespaces'])} namespace(s), "
            f"{len(removed['links'])} link(s), {len(removed['users'])} user(s) and "
            f"{len(removed['temp'])} thing(s) they left in {lab.NODE_TEMP}."
        )
    else:
        out.print("No lab was up; nothing to remove.")


@app.command("status")
def status(json_out: JsonOption = False) -> None:
    """Show the lab's nodes: namespace, user, sshd and whether SSH answers."""
    from rich.table import Table

    from grid_ops import lab

    data = lab.status()
    if json_out:
        print_json(data)
        return
    if not data["up"]:
        stale = data.get("stale_namespaces") or []
        extra = (
            f" Stale namespaces: {safe(', '.join(stale))} (run 'grid-ops lab down')."
            if stale
            else ""
        )
        out.print(f"No lab is up.{extra}")
        return
    title = f"lab on {safe(data['subnet'])} (config {safe(data['config'])})"
    table = Table(title=title, title_justify="left")
    for col in ("node", "ip", "user", "sshd", "ssh", "processes"):
        table.add_column(col)
    for row in data["nodes"]:
        table.add_row(
            cell(row["name"]),
            cell(row["ip"]),
            cell(row["user"]),
            str(row["sshd_pid"] or "[red]stopped[/]"),
            "[green]answers[/]" if row["ssh"] else "[red]down[/]",
            str(row["processes"]),
        )
    out.print(table)


@app.command("kill")
def kill(node: NodeArg) -> None:
    """Stop NODE's sshd and every process of its user (to test failures)."""
    from grid_ops import lab

    killed = lab.kill(node)
    out.print(
        f"Killed lab node {safe(killed.name)} ({safe(killed.ip)}): sshd and all processes stopped."
    )


@app.command("block")
def block(
    node: NodeArg,
    target: Annotated[str, typer.Argument(help="The node NODE may no longer reach.")],
    undo: Annotated[bool, typer.Option("--undo", help="Let NODE reach TARGET again.")] = False,
) -> None:
    """Make TARGET unreachable from NODE (connections fail at once, as behind a firewall
    that rejects them), to test what 'grid-ops doctor' says; --undo lifts it."""
    from grid_ops import lab

    src, dst = lab.block(node, target, blocked=not undo)
    what = "can reach" if undo else "can no longer reach"
    out.print(f"Lab node {safe(src.name)} {what} {safe(dst.name)} ({safe(dst.ip)}).")


@app.command("fill")
def fill(
    node: NodeArg,
    undo: Annotated[bool, typer.Option("--undo", help="Give NODE its disk back.")] = False,
) -> None:
    """Make NODE's disk look full (its remote_root on a 64 MiB filesystem, every file
    still where it was), to see the health gate quarantine it; --undo lifts it."""
    from grid_ops import lab

    done = lab.fill(node, full=not undo)
    state = "has its disk back" if undo else "looks full (64 MiB under its remote_root)"
    out.print(f"Lab node {safe(done.name)} {state}.")


@app.command("revive")
def revive(node: NodeArg) -> None:
    """Start a killed node's sshd again."""
    from grid_ops import lab

    revived = lab.revive(node)
    out.print(f"Lab node {safe(revived.name)} ({safe(revived.ip)}) answers again.")
