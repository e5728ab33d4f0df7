"""The rsync command of `sync` and what its output says (the quick path's side of it).

playbooks/sync.yml (role grid_sync) builds the same command in its task "Sync the source
to the node"; the lab tests compare the two argv. Imports nothing heavy.
"""

from __future__ import annotations

import re

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# An itemized line that is a change (the role's changed_when): a file sent, created,
# deleted or with new attributes; directory time stamps alone do not count.
_CHANGE = re.compile(r"^[<>ch*.][fdLDS]")
_FILES = re.compile(r"Number of regular files transferred: ([0-9,]+)")
_BYTES = re.compile(r"Total bytes sent: ([0-9,]+)")


def argv(
    settings: dict[str, Any],
    src: str,
    dest: str,
    rsh: str,
    delete: bool,
    dry_run: bool,
) -> list[str]:
    """rsync SRC/ to DEST/ with the cluster's sync settings (plan["sync"])."""
    args = ["rsync", "-a", "--omit-dir-times", "--itemize-changes", "--stats"]
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
    return [*args, "--", src.rstrip("/") + "/", dest + "/"]


def changes(stdout: str) -> list[str]:
    """The itemized lines that change something on the node."""
    return [
        line for line in stdout.splitlines() if _CHANGE.match(line) and not line.startswith(".d")
    ]


def _number(pattern: re.Pattern[str], stdout: str) -> int:
    found = pattern.search(stdout)
    return int(found.group(1).replace(",", "")) if found else 0


def files_transferred(stdout: str) -> int:
    return _number(_FILES, stdout)


def bytes_sent(stdout: str) -> int:
    return _number(_BYTES, stdout)
