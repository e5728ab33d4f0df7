"""The node's venv builds: which one is in use, switching, rolling back (on the node).

Each set of requirements gets its own build, ``<remote_root>/venvs/<id>``; ``venv`` is a
link to the one in use, so a new build is made beside it while Ray runs, and Ray only
restarts for the switch. The build used before the current one is noted in
``state/venv_previous`` and kept; older builds are removed at a switch.

Runs with the node's own Python and the grid-ops runtime on PYTHONPATH, never from a venv
it may be switching away from::

    python3 -m grid_ops.runtime.venvs switch ID    # use build ID (complete builds only)
    python3 -m grid_ops.runtime.venvs switch --if-built ID   # or stay where it is
    python3 -m grid_ops.runtime.venvs rollback     # back to the previous build (and the
                                                   # node's stamp names its requirements)
    python3 -m grid_ops.runtime.venvs current

Each prints one JSON line: ``{"switched": bool, "from": id, "to": id}`` or ``{"current"}``.
Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time

from grid_ops import layout
from grid_ops.fsutil import write_atomic
from grid_ops.module_utils import grid_manifest

LEGACY = "legacy"  # a venv made before builds existed, kept as a build under this name


class NoBuild(RuntimeError):
    """The build asked for is missing or incomplete."""


def _root() -> str:
    return os.environ.get("GRID_OPS_ROOT") or os.getcwd()


def current(root: str) -> str:
    """The build in use ("" when none)."""
    link = os.path.join(root, layout.VENV)
    if os.path.islink(link):
        return os.path.basename(os.readlink(link).rstrip("/"))
    return LEGACY if os.path.isdir(link) else ""


def previous(root: str) -> str:
    try:
        with open(os.path.join(root, layout.VENV_PREVIOUS), encoding="utf-8") as handle:
            return handle.readline().strip()
    except OSError:
        return ""


def complete(root: str, build: str) -> bool:
    """Is ``build`` installed (its marker written after a successful install)?"""
    base = os.path.join(root, layout.VENVS, build)
    return os.path.isfile(os.path.join(base, "bin", "python")) and os.path.isfile(
        os.path.join(base, layout.BUILD_MARKER)
    )


def switch(root: str, build: str) -> dict[str, object]:
    """Point ``venv`` at ``build`` (atomically); note the one it replaces; keep only the
    two (older builds are removed)."""
    if "/" in build or build in ("", ".", ".."):
        raise NoBuild(f"not a build name: {build!r}")
    was = current(root)
    if was == build:
        return {"switched": False, "from": was, "to": build}
    link = os.path.join(root, layout.VENV)
    _check_ours(root, link)
    if was == LEGACY:  # a real directory from before builds: keep it as a build
        os.makedirs(os.path.join(root, layout.VENVS), exist_ok=True)
        target = os.path.join(root, layout.VENVS, LEGACY)
        shutil.rmtree(target, ignore_errors=True)
        os.rename(link, target)
    if not complete(root, build):
        raise NoBuild(f"the venv build {build} is missing or incomplete on this node")
    temp = f"{link}.{os.getpid()}.{time.monotonic_ns()}"
    os.symlink(os.path.join(layout.VENVS, build), temp)
    os.replace(temp, link)
    if was in ("", LEGACY):  # the link is new (where nothing, or grid-ops' old venv, was)
        grid_manifest.record(root, layout.as_vars(), layout.VENV)
    if was:
        write_atomic(os.path.join(root, layout.VENV_PREVIOUS), was + "\n", mode=0o600)
    _prune(root, keep={build, was})
    return {"switched": True, "from": was, "to": build}


def _check_ours(root: str, link: str) -> None:
    """Refuse to replace a ``venv`` grid-ops did not make (remote_root may be a directory
    of the user's, holding a venv of their own): grid-ops' is a link into ``venvs``, or a
    venv from before builds that grid-ops installed (its build marker)."""
    if not os.path.lexists(link):
        return
    names = layout.as_vars()
    if layout.VENV in (grid_manifest.load(root, names) or {}).get("created", []):
        return
    if grid_manifest.legacy_reason(root, names, layout.VENV) is None:
        return
    raise NoBuild(
        f"{link} is not grid-ops' (a venv or link made by someone else): move it, or pick "
        "another remote_root"
    )


BUILD_NAME = re.compile(r"[0-9a-f]{8,64}")  # ClusterModel.venv_id


def _prune(root: str, keep: set[str]) -> None:
    """Remove the builds not in ``keep``: grid-ops' builds only (named by their id, or
    the legacy one), never anything else someone keeps in ``venvs``."""
    base = os.path.join(root, layout.VENVS)
    for name in os.listdir(base) if os.path.isdir(base) else []:
        path = os.path.join(base, name)
        ours = name == LEGACY or BUILD_NAME.fullmatch(name)
        if name not in keep and ours and os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)


def requirements(root: str, build: str) -> list[str]:
    """The requirements ``build`` was installed from (its requirements file's lines)."""
    path = os.path.join(root, layout.VENVS, build, layout.REQUIREMENTS)
    with open(path, encoding="utf-8") as handle:
        lines = [line.strip() for line in handle]
    return [line for line in lines if line and not line.startswith("#")]


def _restamp(root: str, build: str) -> None:
    """After a rollback the node's stamp names the requirements that run again, so
    'grid-ops apply' sees the difference from the config (and upgrades again unless the
    config went back too)."""
    path = os.path.join(root, layout.STAMP)
    try:
        with open(path, encoding="utf-8") as handle:
            stamp = json.load(handle)
        stamp["venv"]["requirements"] = requirements(root, build)
    except (OSError, ValueError, KeyError, TypeError):
        return
    write_atomic(path, json.dumps(stamp) + "\n", mode=0o600)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="action", required=True)
    to = sub.add_parser("switch", help="use build ID")
    to.add_argument("build")
    to.add_argument(
        "--if-built",
        action="store_true",
        help="stay on the build in use when ID is missing or incomplete (a failed build)",
    )
    sub.add_parser("rollback", help="back to the previous build")
    sub.add_parser("current", help="the build in use")
    args = parser.parse_args(argv)
    root = _root()
    try:
        if args.action == "current":
            out: dict[str, object] = {"current": current(root), "previous": previous(root)}
        elif args.action == "switch" and args.if_built and not complete(root, args.build):
            was = current(root)
            out = {"switched": False, "from": was, "to": was, "missing": args.build}
        elif args.action == "switch":
            out = switch(root, args.build)
        else:
            back = previous(root)
            if not back:
                raise NoBuild("no previous venv build is noted on this node")
            out = switch(root, back)
            _restamp(root, back)
    except (NoBuild, OSError) as exc:
        sys.stdout.write(json.dumps({"error": str(exc)}) + "\n")
        return 1
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
