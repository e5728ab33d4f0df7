"""grid-ops ping: reachability and Python on every node."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from grid_ops.actions import playbooks
from grid_ops.cli.common import ConfigOption, JsonOption, LimitOption, load_cluster
from grid_ops.cli.output import cell, error, out, print_json, safe
from grid_ops.cli.progress import STYLE, console

if TYPE_CHECKING:
    from grid_ops.drivers.results import PlaybookResult


def ping(
    config: ConfigOption = None, json_out: JsonOption = False, limit: LimitOption = None
) -> None:
    """Check that every node answers over SSH and runs Python (exit 1 if any does not)."""
    cluster, path = load_cluster(config)
    result = playbooks.run(
        "ping", cluster, path, title="ping", progress=console(json_out), limit=limit
    )
    show(cluster.name, result, json_out)


def show(cluster: str, result: PlaybookResult, json_out: bool) -> None:
    """The ping table (or JSON); exit 1 if a node did not answer."""
    from rich.table import Table

    if json_out:
        data = result.to_json()
        for name, host in result.hosts.items():
            data["hosts"][name]["python"] = host.facts.get("grid_node", {}).get("python_version")
        print_json(data)
    else:
        table = Table(title=f"ping {safe(cluster)}: {result.seconds:.1f}s", title_justify="left")
        for col in ("node", "status", "python", "hostname", "user"):
            table.add_column(col)
        table.add_column("message", overflow="fold")
        for name, host in result.hosts.items():
            facts = host.facts.get("grid_node", {})
            state = "unreachable" if host.unreachable else ("failed" if host.failed else "ok")
            table.add_row(
                cell(name),
                f"[{STYLE[state]}]{state}[/]",
                cell(facts.get("python_version", "")),
                cell(facts.get("hostname", "")),
                cell(facts.get("user", "")),
                cell(host.msg or ""),
            )
        out.print(table)
    bad = result.failed_hosts
    if bad:
        if not json_out:
            error(
                f"{len(bad)} of {len(result.hosts)} node(s) did not answer: {', '.join(bad)}.",
                "Check that they are up and reachable with the ssh settings in the config "
                "(their messages are in the table above).",
            )
        raise typer.Exit(1)
