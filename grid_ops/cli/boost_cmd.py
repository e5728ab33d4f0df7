"""grid-ops boost / resource-sharing: resources reserved on a node by the controller.

Both are Ray placement groups the cluster's controller creates and tracks: a boost on a
node you name, for the head's work; a shared allocation on whichever node has it free.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from grid_ops import answers
from grid_ops.cli.common import ConfigOption, JsonOption, load_cluster
from grid_ops.cli.output import cell, out, print_json, safe

if TYPE_CHECKING:
    from grid_ops.model import ClusterModel

boost_app = typer.Typer(
    help="Reserve CPU, GPU or memory on a node for the head's work (a Ray placement group).",
    no_args_is_help=True,
)
sharing_app = typer.Typer(
    help="Allocate CPU, GPU or memory on whichever node has it free.", no_args_is_help=True
)
ResourceArg = Annotated[str, typer.Argument(help="cpu, gpu or memory.")]
AmountArg = Annotated[
    str, typer.Argument(help="How much: 2, 0.5; memory as 4GiB, 512MiB (bare number = GiB).")
]
IdArg = Annotated[str, typer.Argument(help="The id that request printed.")]


def amount_text(resource: str, amount: float) -> str:
    if resource == "memory":
        return f"{amount / 2**30:.2f} GiB"
    return f"{amount:g}"


def _when(stamp: float | None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(stamp)) if stamp else "never"


def _table(rows: list[dict[str, Any]], title: str) -> None:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in ("id", "owner", "node", "resource", "amount", "priority", "state", "expires"):
        table.add_column(column)
    style = {"active": "green", "node-lost": "red", "pending": "yellow"}
    for row in rows:
        state = str(row.get("state"))
        table.add_row(
            cell(row["id"]),
            cell(row.get("owner") or ""),
            cell(row["node"]),
            cell(row["resource"]),
            amount_text(row["resource"], row["amount"]),
            cell(row.get("priority") or ""),
            cell(state, style=style.get(state, "white")),
            _when(row.get("expires_at")),
        )
    out.print(table)


def _request(
    cluster: ClusterModel, kind: str, resource: str, amount: str, as_json: bool, **more: Any
) -> None:
    from grid_ops.drivers import control

    row = control.reserve(cluster, kind, resource, amount, **more)
    if as_json:
        print_json(answers.reservation(row))
        return
    out.print(
        f"[green]{safe(row['id'])}[/]: {amount_text(row['resource'], row['amount'])} "
        f"{safe(row['resource'])} on {safe(row['node'])}, expires {_when(row.get('expires_at'))}"
    )


def _release(cluster: ClusterModel, rid: str, kind: str, as_json: bool) -> None:
    from grid_ops.drivers import control

    show_released(rid, control.release(cluster, rid, kind), as_json)


def show_released(rid: str, row: dict[str, Any], as_json: bool) -> None:
    """A released reservation in a line (or JSON)."""
    if as_json:
        print_json(answers.reservation(row))
    else:
        out.print(f"released {safe(rid)} ({safe(row['resource'])} on {safe(row['node'])})")


def _status(cluster: ClusterModel, kind: str, as_json: bool, title: str) -> None:
    from grid_ops.drivers import control

    rows, _ = control.call(cluster, "reservations", {"kind": kind})
    show_reservations(rows, title, as_json)


def show_reservations(rows: list[dict[str, Any]], title: str, as_json: bool) -> None:
    """The live reservations of one kind as a table (or JSON)."""
    if as_json:
        print_json([answers.reservation(r) for r in rows])
    elif not rows:
        out.print(f"no {title.lower()}")
    else:
        _table(rows, title)


@boost_app.command("request")
def boost_request(
    node: Annotated[str, typer.Argument(help="The node to reserve on.")],
    resource: ResourceArg,
    amount: AmountArg,
    config: ConfigOption = None,
    priority: Annotated[
        str, typer.Option("--priority", help="low, normal, high or critical.")
    ] = "normal",
    ttl: Annotated[
        str | None,
        typer.Option("--ttl", help="Release it after this long: 90s, 10m, 2h, 1d."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Reserve AMOUNT of RESOURCE on NODE and print the boost id.

    The reservation is a Ray placement group pinned to NODE; run the head's work in it
    with 'grid-ops run --boost ID -- CMD', or submit(fn, boost=ID) from code. Fails,
    changing nothing, when NODE does not have that much free (the error says what is).
    Example: grid-ops boost request node2 cpu 1 --ttl 30m
    """
    cluster, _ = load_cluster(config)
    _request(cluster, "boost", resource, amount, as_json, node=node, priority=priority, ttl=ttl)


@boost_app.command("release")
def boost_release(rid: IdArg, config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Release a boost now (its resources are free again)."""
    cluster, _ = load_cluster(config)
    _release(cluster, rid, "boost", as_json)


@boost_app.command("status")
def boost_status(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """The live boosts: node, resource, amount, priority, state, expiry.

    State is active, pending (waiting to be placed again after a restart) or node-lost
    (its node left the Ray cluster; Ray places it again when the node returns).
    """
    cluster, _ = load_cluster(config)
    _status(cluster, "boost", as_json, "Boosts")


@sharing_app.command("request")
def sharing_request(
    resource: ResourceArg,
    amount: AmountArg,
    config: ConfigOption = None,
    node: Annotated[
        str | None, typer.Option("--node", help="Place it on this node instead.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Allocate AMOUNT of RESOURCE on the node with most of it free; print the id.

    A node shares at most resource_sharing.max_share_fraction of its total.
    """
    cluster, _ = load_cluster(config)
    _request(cluster, "share", resource, amount, as_json, node=node)


@sharing_app.command("release")
def sharing_release(rid: IdArg, config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Release a shared allocation."""
    cluster, _ = load_cluster(config)
    _release(cluster, rid, "share", as_json)


@sharing_app.command("status")
def sharing_status(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """The live shared allocations."""
    cluster, _ = load_cluster(config)
    _status(cluster, "share", as_json, "Shared allocations")
