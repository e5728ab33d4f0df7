"""A playbook run's end in a command: summary or JSON, diffs of --check, exit code
(grid_ops.actions.playbooks runs it)."""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Any

import typer

from grid_ops.cli.output import clean, err, error, out, print_json, safe
from grid_ops.cli.progress import print_summary

if TYPE_CHECKING:
    from grid_ops.drivers.results import PlaybookResult


def print_diffs(result: PlaybookResult) -> None:
    """What a --check run would change, per host, with file diffs."""
    for host in result.hosts.values():
        if not host.changed_tasks:
            continue
        out.print(f"[bold]{safe(host.name)}[/] would change:")
        for task in dict.fromkeys(host.changed_tasks):
            out.print(f"  - {clean(task)}", markup=False)
        for task, diff in host.diffs:
            before = str(diff.get("before", "")).splitlines(keepends=True)
            after = str(diff.get("after", "")).splitlines(keepends=True)
            lines = difflib.unified_diff(
                before,
                after,
                fromfile=str(diff.get("before_header", "before")),
                tofile=str(diff.get("after_header", "after")),
            )
            text = "".join(lines)
            if text:
                out.print(f"  {clean(task)}:", markup=False)
                out.print(clean(text, limit=None, lines=True), markup=False, highlight=False)


def finish(
    result: PlaybookResult,
    json_out: bool,
    what: str,
    extra: dict[str, Any] | None = None,
    check: bool = False,
    quiet: bool = False,
) -> None:
    """Print the result (table or JSON) and exit 1 when a host failed or was unreachable.

    ``quiet``: the caller printed its own view; only report failures and the exit code.
    """
    if quiet:
        pass
    elif json_out:
        data = result.to_json()
        data.update(extra or {})
        print_json(data)
    else:
        print_summary(result)
        if check:
            print_diffs(result)
            out.print("[dim]--check: nothing was changed.[/]")
    failed = result.failed_hosts
    if failed:
        if not json_out or quiet:
            details = "; ".join(
                f"{name}: {result.hosts[name].failed_task or 'connect'}: "
                f"{(result.hosts[name].msg or '').strip()[:300]}"
                for name in failed
            )
            error(
                f"{what} failed on {len(failed)} of {len(result.hosts)} node(s) "
                f"({', '.join(failed)}). {details}.",
                "Fix the cause and run the command again; nodes that succeeded are kept as "
                f"they are. Full output: {result.private_data_dir}",
            )
        raise typer.Exit(1)
    if not json_out and not quiet:
        err.print(f"[green]{safe(what)}: done on {len(result.hosts)} node(s).[/]")
