"""grid-ops sync: delta code sync to every node, through playbooks/sync.yml."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from grid_ops.actions import playbooks
from grid_ops.cli import playbook
from grid_ops.cli.common import ConfigOption, JsonOption, load_cluster
from grid_ops.cli.output import out
from grid_ops.cli.progress import console
from grid_ops.drivers.results import sync_document, sync_row

SYNC_TASK = "Sync the source to the node (only changed files move)"


def sync(
    src: Annotated[
        Path, typer.Argument(help="Directory to sync (default: the current one).")
    ] = Path("."),
    config: ConfigOption = None,
    node: Annotated[
        list[str] | None, typer.Option("--node", "-n", help="Only this node (repeatable).")
    ] = None,
    delete: Annotated[
        bool, typer.Option("--delete", help="Remove files on the nodes that SRC no longer has.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would move; move nothing.")
    ] = False,
    json_out: JsonOption = False,
) -> None:
    """Copy SRC to <remote_root>/code/<basename of SRC> on every node, in parallel, with rsync.

    Only changed files move. sync.exclude_patterns and SRC's .gitignore are honoured.
    The same runs without grid-ops: ansible-playbook -i INVENTORY playbooks/sync.yml -e src=DIR

    If rsync's dry run finds nothing to move, the playbook is not started.
    --json then says "playbook_ran": false; GRID_OPS_QUICK=0 always runs it.
    """
    from grid_ops.errors import UsageError

    cluster, path = load_cluster(config, quick_plan=True)
    source = src.expanduser().resolve()
    if not source.is_dir():
        raise UsageError(f"{src} is not a directory.", "Pass the directory to sync as SRC.")
    from grid_ops.drivers import rsync

    if not rsync.source_name(str(source)):
        raise UsageError(
            f"{src} has no name of its own to sync under.", "Pass a directory below '/'."
        )
    extravars = {"src": str(source), "delete": delete}
    result = playbooks.run(
        "sync", cluster, path, title=f"sync {source.name}", progress=console(json_out), limit=node,
        check=dry_run, extravars=extravars,
    )  # fmt: skip
    stats: dict[str, dict[str, Any]] = {}
    for name, host in result.hosts.items():
        facts = host.facts.get("grid_sync_stats") or {}
        stats[name] = sync_row(
            facts, host.durations.get(SYNC_TASK), facts.get("dest"), facts.get("command")
        )
    if not dry_run:
        from grid_ops import metrics

        seconds = [r["seconds"] for r in stats.values() if r["seconds"] is not None]
        metrics.record_sync(cluster.id, seconds)
    if json_out:
        from grid_ops.cli.output import print_json

        print_json(sync_document(result, stats, playbook_ran=True))
    else:
        from grid_ops.cli.views import sync_table

        out.print(sync_table(str(source), stats, dry_run))
    if json_out and result.failed_hosts:
        raise typer.Exit(1)
    playbook.finish(result, json_out=json_out, what="sync", quiet=True)
