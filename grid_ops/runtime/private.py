"""Private runtime directories of the node user (standard library only, no Ray).

Unix socket paths are short (107 bytes) and Ray's session sockets live under its temp
dir, so a long remote_root needs a short place elsewhere. Nothing goes into a shared
``/tmp`` under a name another user could take first: ``/tmp/grid-ops-<uid>`` is made
0700 and checked with ``lstat`` (a directory, ours, not a link, nobody else may enter)
before each use; anything else there is refused, never reused.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

from grid_ops import layout

SHARED_TMP = layout.SHARED_TMP


class NotPrivate(PermissionError):
    """A path that should be ours alone is not."""


def check_private_dir(path: Path) -> Path:
    """``path`` if it is a real directory of this user that no one else can enter."""
    info = os.lstat(path)
    uid = os.getuid()
    if not stat.S_ISDIR(info.st_mode):
        raise NotPrivate(f"{path} is not a directory (a link or a file was put there)")
    if info.st_uid != uid:
        raise NotPrivate(f"{path} belongs to uid {info.st_uid}, not to this user ({uid})")
    if info.st_mode & 0o077:
        raise NotPrivate(f"{path} has mode {stat.S_IMODE(info.st_mode):o}; it must be 0700")
    return path


def _make_private_dir(path: Path) -> tuple[Path, bool]:
    """``path`` (made 0700 unless it exists, then checked private), and whether it was
    made now. A directory of ours that is open to others (made before this rule) is
    closed to 0700 first."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        info = os.lstat(path)
        if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid():
            os.chmod(path, 0o700)
        return check_private_dir(path), False
    return check_private_dir(path), True


def private_dir(path: Path) -> Path:
    """Make ``path`` (0700) unless it exists, then check it is private."""
    return _make_private_dir(path)[0]


def short_dir_path(uid: int | None = None) -> Path:
    """Where the short directory of the user ``uid`` (default: this one) lives."""
    return Path(SHARED_TMP) / layout.SHORT_DIR.format(uid=os.getuid() if uid is None else uid)


def short_dir() -> Path:
    """This user's private short directory in the shared temp dir. Made now, it is noted
    in the manifest of the remote_root this runs for (GRID_OPS_ROOT), so that 'reset'
    there removes it (and only there)."""
    path, made = _make_private_dir(short_dir_path())
    root = os.environ.get("GRID_OPS_ROOT")
    if made and root and os.path.isdir(root):
        from grid_ops.module_utils import grid_manifest

        names = dict(layout.as_vars(), short_dir=str(Path(SHARED_TMP) / layout.SHORT_DIR))
        try:
            grid_manifest.record(root, names, str(path))
        except (OSError, grid_manifest.ManifestError) as exc:  # then 'reset' keeps it
            print(f"grid-ops: could not note {path} in the manifest: {exc}", file=sys.stderr)
    return path


def main() -> int:
    """``python -m grid_ops.runtime.private``: print the short private dir (the grid_ray
    role uses it for Ray's temp dir when remote_root is too long for Ray's sockets).
    'grid-ops reset' removes it where the manifest says grid-ops made it (grid_paths)."""
    try:
        print(short_dir())
    except OSError as exc:
        print(
            f"grid-ops: no private temp dir: {exc}; remove it or pick a shorter remote_root",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
