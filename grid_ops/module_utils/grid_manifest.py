"""What grid-ops made on a node, and taking back only that.

grid-ops works under remote_root, which may hold what others made (remote_root is the
user's choice: a directory of their own, beside their own ``code`` or ``lib``). So
grid-ops notes each thing it makes, at the moment it makes it, in the node's manifest
(``names["manifest"]``, in the state dir), and 'reset' (and a node's removal) deletes only
what the manifest names. Whatever else is there stays and is named, with the reason.

The manifest is JSON: ``{"version": 1, "complete": bool, "created": [entry, ...]}``. An
entry is a top-level name (``names["top_level"]``), ``"."`` for remote_root itself, or the
path of the node user's private short dir (``names["short_dir"]``). An entry is noted only
when grid-ops made the path here (it did not exist): a directory that was there first is
never noted, even when grid-ops then writes into it. The state dir that holds the manifest
is made (and noted) before anything else; ``complete`` says the manifest was begun by the
grid-ops run that made the state dir, so everything grid-ops made since is in it.

A node an older grid-ops provisioned has a state dir but no manifest (or one begun later:
``complete`` false). There an entry the manifest does not name is judged by grid-ops' own
markers
(:func:`legacy_reason`): a venv build's marker, the runtime package alone in ``lib``, the
wheelhouse's marker, a state dir holding the stamp and only grid-ops' files, Ray's
sessions alone in its temp dir. What has no such marker (synced ``code`` has none) is
kept and named. A node with neither manifest nor state dir (reset already, or never
provisioned) holds nothing of grid-ops': everything there is kept.

Standard library only, the node's Python 3.8 and later: the Ansible module grid_paths
imports it as ``ansible.module_utils.grid_manifest`` (ansible.cfg's module_utils path) and
the grid-ops runtime on the nodes as ``grid_ops.module_utils.grid_manifest``. ``names`` is
the layout (grid_ops.layout.as_vars(), the roles' ``grid_layout``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import stat
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the node's Python may be 3.8: no subscripted types at run time
    from collections.abc import Mapping, Sequence

    Names = Mapping[str, Any]  # the layout
    Manifest = dict[str, Any]
    Report = dict[str, Any]

VERSION = 1
ROOT = "."  # remote_root itself, as a manifest entry

KEPT_BEFORE = "not made by grid-ops: it was there before grid-ops first provisioned the node"
KEPT_NO_MARKER = (
    "not known to be grid-ops': the node has no complete manifest (an older grid-ops "
    "provisioned it, or its state dir was there first) and nothing in it marks it as "
    "grid-ops'"
)
KEPT_NO_STATE = (
    "not made by grid-ops: the node holds no grid-ops state (never provisioned, or reset already)"
)
KEPT_SHORT = (
    "not made for this remote_root (another cluster of the node user may use it, or it "
    "was there before)"
)
KEPT_ROOT_BEFORE = "remote_root was there before grid-ops (it is never removed then)"
KEPT_HOME = "remote_root is the node user's home or / (never removed)"
KEPT_LINK = "remote_root is a link (the link is left; what grid-ops made behind it is gone)"

# Ray's temp dir (a node without manifest): what Ray keeps there.
_RAY_TEMP_NAMES = re.compile(r"session_.*|ray_current_cluster")
# The short dir (a node without manifest): the controller's sockets (and Ray's temp dir).
_SOCKET = re.compile(r"control-[0-9a-f]+\.sock")
# A job's working dir under jobs (grid_ops.jobs: <name>-<YYYYmmdd>-<HHMMSS>).
_JOB_DIR = re.compile(r".+-[0-9]{8}-[0-9]{6}")


class ManifestError(Exception):
    """A path grid-ops must make is in the way, or a name it does not make."""


def manifest_path(root: str, names: Names) -> str:
    return os.path.join(root, names["manifest"])


def short_dir(names: Names) -> str:
    """This user's private short dir (grid_ops.runtime.private makes it)."""
    return str(names["short_dir"]).format(uid=os.getuid())


def _allowed(names: Names) -> set[str]:
    """What a manifest may name (anything else in it is ignored, never deleted)."""
    return set(names["top_level"]) | {ROOT, short_dir(names)}


def _empty(complete: bool) -> Manifest:
    return {"version": VERSION, "complete": complete, "created": []}


def load(root: str, names: Names) -> Manifest | None:
    """The node's manifest (None: there is none). One that cannot be read counts as
    begun late (``complete`` false): what it does not name is judged by the markers."""
    try:
        with open(manifest_path(root, names), encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return _empty(False)
    created = data.get("created") if isinstance(data, dict) else None
    if not isinstance(created, list):
        return _empty(False)
    allowed = _allowed(names)
    return {
        "version": VERSION,
        "complete": data.get("complete") is True,
        "created": [e for e in created if isinstance(e, str) and e in allowed],
    }


def _save(root: str, names: Names, data: Manifest) -> None:
    """Write the manifest atomically, 0600, never through a link."""
    path = manifest_path(root, names)
    temp = f"{path}.{os.getpid()}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(temp, flags, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(data, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def _mkdir(path: str, mode: int) -> bool:
    """Make ``path`` (its parent exists); True only when this call made it."""
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        return False
    os.chmod(path, mode)  # the umask may have taken bits away
    return True


def _note(data: Manifest, entry: str) -> bool:
    if entry in data["created"]:
        return False
    data["created"].append(entry)
    return True


def _plan(root: str, names: Names, dirs: Sequence[Mapping[str, Any]]) -> list[Any]:
    """(name, path, mode, enforce) of remote_root, the state dir and ``dirs``, in order."""
    state = names["state"]
    plan: list[Any] = [[ROOT, root, 0o700, False], [state, os.path.join(root, state), 0o700, True]]
    for item in dirs:
        name, mode, enforce = item["name"], int(str(item["mode"]), 8), bool(item["enforce"])
        if name != ROOT and name not in names["top_level"]:
            raise ManifestError(f"{name!r} is not a name grid-ops puts under remote_root")
        if name == ROOT:
            plan[0] = [ROOT, root, mode, enforce]
        elif name != state:
            plan.append([name, os.path.join(root, name), mode, enforce])
    return plan


def make_dirs(
    root: str, names: Names, dirs: Sequence[Mapping[str, Any]], check: bool = False
) -> list[str]:
    """Make what is missing of remote_root, its state dir and ``dirs`` (each a mapping of
    name, mode as octal text and enforce: an existing one is given the mode too), noting
    in the manifest each one made here. Returns what changed (``check``: would change)."""
    plan = _plan(root, names, dirs)
    changes = []
    for _name, path, mode, enforce in plan:
        if not os.path.lexists(path):
            changes.append(f"make {path}")
        elif not os.path.isdir(path):
            raise ManifestError(
                f"{path} is in the way: it is not a directory. Move it, or pick another "
                "remote_root."
            )
        elif enforce and stat.S_IMODE(os.stat(path).st_mode) != mode:
            changes.append(f"mode {mode:o} on {path}")
    if os.path.isdir(plan[1][1]) and load(root, names) is None:
        changes.append(f"begin the manifest {manifest_path(root, names)}")
    if check or not changes:
        return changes
    parent = os.path.dirname(root.rstrip("/"))
    if parent and not os.path.isdir(parent):
        os.makedirs(parent)  # remote_root's parents are not grid-ops' to take back
    made: list[str] = []
    try:
        for name, path, mode, enforce in plan:
            if _mkdir(path, mode):
                made.append(name)
            elif enforce and stat.S_IMODE(os.stat(path).st_mode) != mode:
                os.chmod(path, mode)
    finally:  # what was made is noted even when a later step failed
        if os.path.isdir(plan[1][1]):
            data = load(root, names)
            dirty = data is None
            if data is None:  # begun now: complete when this run made the state dir
                data = _empty(names["state"] in made)
            for name in made:
                dirty = _note(data, name) or dirty
            if dirty:
                _save(root, names, data)
    return changes


def record(root: str, names: Names, entry: str) -> None:
    """Note ``entry`` as made by grid-ops just now (the runtime: the venv link, the short
    dir). The state dir is made first where it is missing (remote_root must exist)."""
    if entry not in _allowed(names):
        raise ManifestError(f"{entry!r} is not something grid-ops makes")
    made_state = _mkdir(os.path.join(root, names["state"]), 0o700)
    data = load(root, names)
    dirty = data is None
    if data is None:
        data = _empty(made_state)
    if made_state:
        dirty = _note(data, names["state"]) or dirty
    if _note(data, entry) or dirty:
        _save(root, names, data)


def _entries(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _real_dir(path: str) -> bool:
    return os.path.isdir(path) and not os.path.islink(path)


def _a_build(path: str, marker: str) -> bool:
    return _real_dir(path) and (
        os.path.isfile(os.path.join(path, marker))
        or os.path.isfile(os.path.join(path, "pyvenv.cfg"))
    )


def legacy_reason(root: str, names: Names, entry: str) -> str | None:
    """On a node without a complete manifest: None when grid-ops' own markers show that
    grid-ops made ``entry``, else why it is kept."""
    path = entry if entry.startswith("/") else os.path.join(root, entry)
    inside = _entries(path)
    marker = names["build_marker"]
    if entry == short_dir(names):
        info = os.lstat(path)
        if (
            stat.S_ISDIR(info.st_mode)
            and info.st_uid == os.getuid()
            and all(n == names["ray_temp"] or _SOCKET.fullmatch(n) for n in inside)
        ):
            return None
    elif entry == names["venv"]:
        if os.path.islink(path):
            if os.readlink(path).startswith(names["venvs"] + "/"):
                return None
        elif os.path.isfile(os.path.join(path, marker)):
            return None  # a venv from before builds, installed by grid-ops
    elif entry == names["venvs"]:
        if inside and all(_a_build(os.path.join(path, n), marker) for n in inside):
            return None
    elif entry == names["lib"]:
        if inside == ["grid_ops"] and os.path.isfile(os.path.join(path, "grid_ops", "layout.py")):
            return None  # the grid-ops runtime package alone
    elif entry == names["wheelhouse"]:
        if names["wheelhouse_marker"] in inside:
            return None
    elif entry == names["state"]:
        own = {f.split("/", 1)[1].split("/")[0] for f in names["state_files"]}
        stamp = os.path.basename(names["stamp"])
        if stamp in inside and all(n in own or n.endswith(".tmp") for n in inside):
            return None
    elif entry == names["ray_temp"]:
        if inside and all(_RAY_TEMP_NAMES.fullmatch(n) for n in inside):
            return None
    elif entry == names["jobs"] and inside and all(_JOB_DIR.fullmatch(n) for n in inside):
        return None
    return KEPT_NO_MARKER


def _remove(path: str, errors: list[str]) -> None:
    """Remove ``path`` without following links (a link goes, what it points at stays)."""

    def failed(_func: object, failed_path: str, exc: BaseException) -> None:
        errors.append(f"{failed_path}: {exc}")

    if os.path.islink(path) or not os.path.isdir(path):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            errors.append(f"{path}: {exc}")
    elif sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=failed)
    else:
        shutil.rmtree(path, onerror=lambda f, p, e: failed(f, p, e[1]))


def _home_or_slash(path: str) -> bool:
    real = os.path.realpath(path)
    return real in ("/", os.path.realpath(os.path.expanduser("~")))


def take_back(root: str, names: Names, check: bool = False) -> Report:
    """Remove what the manifest names (on a node without a complete one: what grid-ops'
    markers show is its own), the state dir (and the manifest) last, then remote_root if
    grid-ops made it and it is empty. Returns removed (entries), kept (name, path,
    reason: each thing under remote_root grid-ops did not make, and the short dir and
    remote_root when they stay), errors and changed. ``check``: what it would do."""
    report: Report = {"removed": [], "kept": [], "errors": [], "changed": False}
    if not os.path.isdir(root):
        return report
    data = load(root, names)
    complete = bool(data and data["complete"])
    created = set(data["created"]) if data else set()
    state = names["state"]
    short = short_dir(names)
    # No manifest and no state dir: grid-ops' bookkeeping is gone (a reset ran, or grid-ops
    # never provisioned the node): what is left there is not grid-ops' (markers or not).
    bare = data is None and not os.path.isdir(os.path.join(root, state))
    for entry in [n for n in names["top_level"] if n != state] + [short, state]:
        path = entry if entry.startswith("/") else os.path.join(root, entry)
        if not os.path.lexists(path):
            continue
        if entry in created:
            reason = None
        elif bare:
            reason = KEPT_NO_STATE
        elif complete:
            reason = KEPT_SHORT if entry == short else KEPT_BEFORE
        else:
            reason = legacy_reason(root, names, entry)
        if reason is not None:
            report["kept"].append({"name": entry, "path": path, "reason": reason})
            continue
        if not check:
            _remove(path, report["errors"])
        report["removed"].append(entry)
    if not check and data is not None and os.path.isdir(os.path.join(root, state)):
        # the state dir stays (not grid-ops'): its manifest forgets what is gone, so what
        # someone makes there later is not taken for grid-ops'
        left = [e for e in data["created"] if e not in report["removed"]]
        if left != data["created"]:
            _save(root, names, dict(data, created=left))
    if ROOT in created:
        reason = None
    elif bare:
        reason = KEPT_NO_STATE
    elif complete:
        reason = KEPT_ROOT_BEFORE
    else:  # no complete manifest: emptied of grid-ops' own things just now, it was ours
        reason = None if report["removed"] else KEPT_NO_MARKER
    _take_back_root(root, report, reason, check)
    report["changed"] = bool(report["removed"])
    return report


def _take_back_root(root: str, report: Report, reason: str | None, check: bool) -> None:
    """remote_root goes when it is grid-ops' (``reason`` None), empty now, and no link,
    home or /; else it is named as kept, with the reason."""
    gone = set(report["removed"])
    left = [n for n in _entries(root) if n not in gone]
    if _home_or_slash(root):
        reason = KEPT_HOME
    elif os.path.islink(root.rstrip("/")):
        reason = KEPT_LINK
    elif reason is None and left:
        shown = ", ".join(sorted(left)[:5]) + (", ..." if len(left) > 5 else "")
        reason = f"holds what grid-ops did not make ({shown})"
    if reason is not None:
        report["kept"].append({"name": ROOT, "path": root, "reason": reason})
        return
    if report["errors"]:
        return  # something of grid-ops' could not be removed: the errors say what
    if not check:
        try:
            os.rmdir(root)
        except OSError as exc:
            report["errors"].append(f"{root}: {exc}")
            return
    report["removed"].append(ROOT)
