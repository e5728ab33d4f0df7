"""The rsync command of a code sync and what its output says: the one implementation.

The grid_sync role uses these as Jinja filters (``grid_rsync_argv``, ``grid_rsync_dest``,
``grid_rsync_source_name``, ``grid_rsync_changes``, ``grid_rsync_stats``); grid-ops' quick
path, ``job launch --workdir`` and the full CLI's sync import this very
file (grid_ops.drivers.rsync) and calls the same functions, so both build the same argv and read
rsync's output the same way. Standard library only.
"""

from __future__ import annotations

import posixpath
import re
from typing import Any

# An itemized line that is a change: a file sent, created, deleted or with new
# attributes; directory time stamps alone do not count.
_CHANGE = re.compile(r"^[<>ch*.][fdLDS]")
_FILES = re.compile(r"Number of regular files transferred: ([0-9,]+)")
_BYTES = re.compile(r"Total bytes sent: ([0-9,]+)")


def source_name(src: str) -> str:
    """The name a source directory is synced under (its last path component); '' when
    it has none of its own (/, . or ..)."""
    name = posixpath.basename(str(src).rstrip("/"))
    return "" if name in (".", "..") else name


def dest(root: str, code_dir: str, src: str) -> str:
    """``<root>/<code_dir>/<name of src>``: where a source directory lands on a node."""
    name = source_name(src)
    if not name:
        raise ValueError(f"cannot sync {src}: name the directory to sync, not / or . or ..")
    return f"{str(root).rstrip('/')}/{code_dir}/{name}"


def argv(
    settings: dict[str, Any],
    src: str,
    target: str,
    rsh: str = "",
    delete: bool = False,
    dry_run: bool = False,
    mkpath: bool = False,
) -> list[str]:
    """rsync SRC/ to TARGET/ (``[user@]host:path`` or a local path) with the cluster's
    sync settings (exclude, gitignore, checksums, follow_symlinks); ``mkpath``: make
    TARGET's missing parents."""
    args = ["rsync", "-a", "--omit-dir-times", "--itemize-changes", "--stats"]
    if mkpath:
        args.append("--mkpath")
    if settings["checksums"]:
        args.append("--checksum")
    if settings["follow_symlinks"]:
        args.append("--copy-links")
    if delete:
        args.append("--delete")
    if dry_run:
        args.append("--dry-run")
    args += [f"--exclude={pattern}" for pattern in settings["exclude"]]
    if settings["gitignore"]:
        args.append("--filter=:- .gitignore")
    if rsh:
        args += ["-e", rsh]
    return [*args, "--", str(src).rstrip("/") + "/", str(target).rstrip("/") + "/"]


def changes(stdout: str) -> list[str]:
    """The itemized lines that change something on the node."""
    return [
        line for line in stdout.splitlines() if _CHANGE.match(line) and not line.startswith(".d")
    ]


def _number(pattern: re.Pattern[str], stdout: str) -> int:
    found = pattern.search(stdout)
    return int(found.group(1).replace(",", "")) if found else 0


def stats(stdout: str) -> dict[str, int]:
    """Files transferred and bytes sent, from rsync's ``--stats``."""
    return {"files_transferred": _number(_FILES, stdout), "bytes_sent": _number(_BYTES, stdout)}


class FilterModule:
    """The Jinja filters of the grid_sync role."""

    def filters(self) -> dict[str, Any]:
        return {
            "grid_rsync_argv": argv,
            "grid_rsync_dest": dest,
            "grid_rsync_source_name": source_name,
            "grid_rsync_changes": changes,
            "grid_rsync_stats": stats,
        }
