"""Tables of `health` and `sync` (Rich), shared by the full CLI and the quick path.

Rich loads when a table is drawn, not at import. Every value from the config or a node
goes in as a cell (never read as markup, control characters made visible).
"""

from __future__ import annotations

from grid_ops import facts
from grid_ops.cli.sanitize import cell, safe

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from rich.table import Table


def _gib(value: int | None) -> str:
    return "" if value is None else f"{value / 2**30:.1f}"


def health_table(records: list[dict[str, Any]], title: str) -> Table:
    """One row per node record (grid_ops.facts), in the given order."""
    from rich.table import Table

    tab = Table(title=safe(title), title_justify="left")
    for col in ("node", "score", "load1", "CPUs", "mem free/total GiB", "GPUs", "Ray", "note"):
        tab.add_column(col, overflow="fold" if col == "note" else "ellipsis")
    for n in records:
        if not n["reachable"]:
            tab.add_row(
                cell(n["name"]),
                "[red]—[/]",
                *([""] * 5),
                f"[red]unreachable[/]: {safe(n['error'])}",
            )
            continue
        gpus = ", ".join(
            f"#{g['index']} {g['memory_used_mib']}/{g['memory_total_mib']} MiB "
            f"{g['utilization_gpu']}%"
            for g in n["gpus"]
        )
        checks = n.get("checks") or []
        marks = [
            f"{'SICK' if c.get('severity') == 'sick' else 'warning'} {c.get('check')}: "
            f"{c.get('reason')}"
            for c in checks
        ]
        tab.add_row(
            cell(n["name"])
            if not any(c.get("severity") == "sick" for c in checks)
            else f"[red]{cell(n['name'])}[/]",
            f"{n['score']:.3f}" if n["score"] is not None else "",
            f"{n['load1']:.2f}" if n["load1"] is not None else "",
            cell(n["cpu_count"] or ""),
            f"{_gib(n['mem_available_bytes'])}/{_gib(n['mem_total_bytes'])}",
            cell(gpus or "0"),
            "running" if n["ray_running"] else "-",
            cell(
                "; ".join(
                    ([f"drained: {n['drained']}"] if n.get("drained") else [])
                    + marks
                    + [str(w) for w in n["warnings"]]
                )
            ),
        )
    return tab


def health_title(cluster: str, cached: bool) -> str:
    return f"health of {cluster}" + (" (cached; --refresh to probe now)" if cached else "")


def report_trouble(records: list[dict[str, Any]], json_out: bool) -> bool:
    """Say which nodes did not answer or are sick (not with --json: the document says
    it); True when there are any (the command then exits 1)."""
    down = [r["name"] for r in records if not r["reachable"]]
    sick = [r["name"] for r in records if r["reachable"] and facts.sick(r)]
    if json_out:
        return bool(down or sick)
    if down:
        report_down(down)
    if sick:
        from grid_ops.cli.output import error

        error(
            f"{len(sick)} node(s) failed a health check: {', '.join(sick)}; no work is "
            "placed there while they are sick (the note column says why).",
            "Fix the cause; the next 'grid-ops health --refresh' returns a node that "
            "passes, or 'grid-ops node undrain NODE' returns it now.",
        )
    return bool(down or sick)


def report_down(down: list[str]) -> None:
    """The error paragraph for nodes that did not answer a health probe."""
    from grid_ops.cli.output import error

    error(
        f"{len(down)} node(s) did not answer: {', '.join(down)}; they have no score "
        "and are never chosen to run work.",
        "Check them with 'grid-ops ping'.",
    )


def sync_table(source: str, stats: dict[str, dict[str, Any]], dry_run: bool) -> Table:
    """One row per node: files and bytes moved (or that would move), seconds, destination."""
    from rich.table import Table

    verb = "would move" if dry_run else "moved"
    table = Table(title=f"sync {safe(source)} ({verb})", title_justify="left")
    for col in ("node", "files", "bytes sent", "seconds", "to"):
        table.add_column(col, justify="right" if col in ("files", "bytes sent") else "left")
    for name, row in stats.items():
        secs = row["seconds"]
        table.add_row(
            cell(name),
            str(row["files_transferred"]),
            str(row["bytes_sent"]),
            "" if secs is None else f"{secs:.2f}",
            cell(row["dest"] or ""),
        )
    return table
