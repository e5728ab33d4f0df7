"""grid-ops memory: the cluster's distributed memory pool (store, retrieve, list, delete)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from grid_ops.cli.common import ConfigOption, JsonOption, load_cluster
from grid_ops.cli.output import cell, err, out, print_json, safe

if TYPE_CHECKING:
    from typing import Any

    from rich.table import Table

app = typer.Typer(
    help="Objects kept in memory on the cluster's nodes (Ray actors), optionally replicated.",
    no_args_is_help=True,
)
KeyArg = Annotated[str, typer.Argument(help="The object's key.")]


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _check_key(key: str) -> None:
    """A UsageError (exit 2) for a key the controller would refuse, before any SSH."""
    from grid_ops.errors import UsageError
    from grid_ops.runtime.pool import KEY_HINT, key_problem

    problem = key_problem(key)
    if problem is not None:
        raise UsageError(f"Not a memory-pool key: {problem}.", KEY_HINT)


@app.command("store")
def store(
    key: KeyArg,
    file: Annotated[Path, typer.Argument(help="The file to store ('-' = standard input).")],
    config: ConfigOption = None,
    replicas: Annotated[
        int, typer.Option("--replicas", help="Copies on distinct nodes.", min=1)
    ] = 1,
    node: Annotated[
        str | None, typer.Option("--node", help="Hold the first copy on this node.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Store FILE's bytes under KEY (replacing an object of that key).

    Copies go to the nodes with most pool room (resource_sharing.memory_pool_gb each);
    with --replicas 2 or more the object outlives the loss of a node holding it.
    """
    from grid_ops.drivers import control
    from grid_ops.errors import UsageError

    _check_key(key)
    cluster, _ = load_cluster(config)
    if node:
        cluster.node(node)
    try:
        data = sys.stdin.buffer.read() if str(file) == "-" else file.read_bytes()
    except OSError as exc:
        raise UsageError(f"Cannot read {file}: {exc.strerror or exc}.") from None
    args = {"key": key, "replicas": replicas, "node": node}
    result, _ = control.call(cluster, "memory-store", args, payload=data)
    if as_json:
        print_json(result)
    else:
        out.print(
            f"stored {safe(key)} ({_size(result['size'])}) on {safe(', '.join(result['nodes']))}"
        )


@app.command("retrieve")
def retrieve(
    key: KeyArg,
    config: ConfigOption = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write here (atomically). Default: standard output."),
    ] = None,
) -> None:
    """Fetch KEY's bytes, exactly as stored (from the first holder that answers)."""
    from grid_ops.drivers import control
    from grid_ops.errors import UsageError

    _check_key(key)
    cluster, _ = load_cluster(config)
    result, data = control.call(cluster, "memory-retrieve", {"key": key})
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    from grid_ops.fsutil import write_atomic

    try:
        write_atomic(output, data)
    except OSError as exc:
        raise UsageError(f"Cannot write {output}: {exc.strerror or exc}.") from None
    err.print(
        f"[dim]{safe(key)}: {_size(len(data))} from {safe(result['node'])} -> {safe(output)}[/]"
    )


@app.command("list-objects")
def list_objects(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """The stored objects: key, owner, size and the nodes that hold a copy now."""
    from grid_ops.drivers import control

    cluster, _ = load_cluster(config)
    rows, _ = control.call(cluster, "memory-list")
    show_objects(rows, cluster.name, as_json)


def show_objects(rows: list[dict[str, Any]], cluster: str, as_json: bool) -> None:
    """The pool's objects as a table (or JSON)."""
    if as_json:
        from grid_ops import answers

        print_json(answers.pool_objects(rows))
        return
    if not rows:
        out.print("the memory pool is empty")
        return
    out.print(objects_table(rows, cluster))


def objects_table(rows: list[dict[str, Any]], cluster: str) -> Table:
    """One row per pool object (the controller's memory-list): key, size, holders."""
    from rich.table import Table

    table = Table(title=f"memory pool of {safe(cluster)}", title_justify="left")
    for column in ("key", "owner", "size", "nodes"):
        table.add_column(column)
    for row in rows:
        nodes = cell(", ".join(row["nodes"])) if row["nodes"] else "[red]lost[/]"
        table.add_row(cell(row["key"]), cell(row.get("owner") or ""), _size(row["size"]), nodes)
    return table


@app.command("delete")
def delete(key: KeyArg, config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Delete KEY from every node holding it."""
    from grid_ops.drivers import control

    _check_key(key)
    cluster, _ = load_cluster(config)
    result, _ = control.call(cluster, "memory-delete", {"key": key})
    if as_json:
        print_json(result)
    else:
        out.print(f"deleted {safe(key)}")
