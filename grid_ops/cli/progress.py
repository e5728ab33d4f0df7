"""Live per-host view of a playbook run, and its summary table."""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TYPE_CHECKING

from rich.live import Live
from rich.table import Table

from grid_ops.actions.progress import Progress
from grid_ops.cli.output import cell, err, info, out, safe

if TYPE_CHECKING:
    from grid_ops.drivers.results import PlaybookResult

STYLE = {
    "ok": "green",
    "changed": "yellow",
    "failed": "red",
    "unreachable": "red",
    "skipped": "dim",
    "ignored": "dim",
    "running": "cyan",
}


class LiveView:
    """Shows, per host, the task it is on; only when stderr is a terminal."""

    def __init__(self, title: str, hosts: list[str], enabled: bool = True) -> None:
        self.title = title
        self.rows: dict[str, tuple[str, str]] = {h: ("waiting", "") for h in hosts}
        self.started = time.monotonic()
        self.shown = enabled  # --json runs stay quiet on stderr too
        self.enabled = enabled and sys.stderr.isatty()
        self._live: Live | None = None

    def __enter__(self) -> LiveView:
        if self.enabled:
            self._live = Live(self._render(), console=err, refresh_per_second=8, transient=True)
            self._live.__enter__()
        elif self.shown:
            err.print(f"[dim]{safe(self.title)}: {len(self.rows)} node(s)…[/]")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.__exit__(exc_type, exc, tb)

    def __call__(self, host: str, task: str, status: str | None) -> None:
        previous = self.rows.get(host, ("", ""))[0]
        if status is None:
            state = "running"
        elif status in ("failed", "unreachable") or previous in ("failed", "unreachable"):
            state = status if status in ("failed", "unreachable") else previous
        else:
            state = status
        self.rows[host] = (state, task)
        if self._live is not None:
            self._live.update(self._render())

    def _render(self) -> Table:
        elapsed = time.monotonic() - self.started
        title = f"{safe(self.title)} ({elapsed:.0f}s)"
        table = Table(title=title, title_justify="left", box=None)
        table.add_column("node")
        table.add_column("state")
        table.add_column("task")
        for host, (state, task) in sorted(self.rows.items()):
            style = STYLE.get(state, "")
            table.add_row(cell(host), cell(state, style=style), cell(task))
        return table


def summary_table(result: PlaybookResult) -> Table:
    """The end-of-run recap: counts per host and the failure message."""
    table = Table(title=f"{safe(result.playbook)}: {result.seconds:.1f}s", title_justify="left")
    table.add_column("node")
    table.add_column("status")
    for counter in ("ok", "changed", "failed", "unreachable", "skipped"):
        table.add_column(counter, justify="right")
    table.add_column("message", overflow="fold")
    for host in result.hosts.values():
        style = STYLE.get(host.status, "")
        table.add_row(
            cell(host.name),
            cell(host.status, style=style),
            str(host.ok),
            str(host.changed),
            str(host.failed),
            str(host.unreachable),
            str(host.skipped),
            cell(host.msg or ""),
        )
    return table


def print_summary(result: PlaybookResult) -> None:
    out.print(summary_table(result))


class Console(Progress):
    """A use case's progress on the terminal (stderr): notes dim, trouble yellow, a live
    per-host view around each playbook run. ``quiet`` (--json): trouble only (the
    document on stdout says the rest), no notes, no view and no run banner."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet

    def info(self, text: str) -> None:
        if not self.quiet:
            info(text)

    def warn(self, text: str) -> None:
        err.print(f"[yellow]{safe(text)}[/]")

    def playbook(self, title: str, hosts: list[str]) -> LiveView:
        return LiveView(title, hosts, enabled=not self.quiet)


def console(json_out: bool = False) -> Console:
    """The progress a command passes to a use case (--json: no live view)."""
    return Console(quiet=json_out)
