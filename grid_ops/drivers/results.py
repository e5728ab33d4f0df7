"""What a playbook run (or the quick path doing the same work) did, per host, and the JSON
shapes the commands print from it. Standard library only: the quick path builds the
same records and prints the same documents as the full CLI.
"""

from __future__ import annotations

from grid_ops.record import factory, record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

COUNTERS = ("ok", "changed", "failed", "unreachable", "skipped")


@record
class HostResult:
    """What one host did during a playbook run."""

    name: str
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0
    msg: str | None = None
    failed_task: str | None = None
    task: str | None = None
    facts: dict[str, Any] = factory(dict)
    changed_tasks: list[str] = factory(list)
    diffs: list[tuple[str, dict[str, Any]]] = factory(list)
    results: dict[str, Any] = factory(dict)
    durations: dict[str, float] = factory(dict)

    @property
    def status(self) -> str:
        if self.unreachable:
            return "unreachable"
        if self.failed:
            return "failed"
        if self.changed:
            return "changed"
        return "ok"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {c: getattr(self, c) for c in COUNTERS}
        out["msg"] = self.msg
        return out


@record
class PlaybookResult:
    """The outcome of one playbook run."""

    playbook: str
    rc: int
    status: str
    hosts: dict[str, HostResult]
    private_data_dir: Path | None
    seconds: float

    @property
    def failed_hosts(self) -> list[str]:
        return [h.name for h in self.hosts.values() if h.failed or h.unreachable]

    @property
    def unreachable_hosts(self) -> list[str]:
        return [h.name for h in self.hosts.values() if h.unreachable]

    def to_json(self) -> dict[str, Any]:
        return {
            "playbook": self.playbook,
            "rc": self.rc,
            "hosts": {name: h.to_json() for name, h in self.hosts.items()},
        }


def sync_row(
    stats: dict[str, int], seconds: float | None, dest: str | None, command: Any
) -> dict[str, Any]:
    """One node's row of a sync (``stats``: rsync's files_transferred and bytes_sent)."""
    return {
        "files_transferred": int(stats.get("files_transferred") or 0),
        "bytes_sent": int(stats.get("bytes_sent") or 0),
        "seconds": seconds,
        "dest": dest,
        "command": command,
    }


def sync_document(
    result: PlaybookResult, rows: dict[str, dict[str, Any]], playbook_ran: bool
) -> dict[str, Any]:
    """``grid-ops sync --json``: the run's per-host counts with each node's sync row."""
    data = result.to_json()
    data["playbook_ran"] = playbook_ran
    for name, row in rows.items():
        data["hosts"].setdefault(name, {}).update(row)
    return data
