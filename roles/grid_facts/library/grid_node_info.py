#!/usr/bin/python3
"""Ansible module: one round trip that tells what later plays branch on."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: grid_node_info
short_description: Probe a node's Python, platform, paths, GPUs, tools and Ray processes
description:
  - Read-only probe run first by every grid-ops play. Runs with the node's own Python
    and needs no extra packages. Returns the facts C(grid_node) and C(grid_ray_node).
options:
  remote_root:
    description: The cluster's remote_root; C(~) is expanded with the node user's home.
    type: str
    required: true
  private_dirs:
    description: Directories under remote_root that must be private (0700) to the user.
    type: list
    elements: str
    default: []
  ray_token:
    description: The Ray token's path under remote_root (only its SHA-1 is returned).
    type: str
    default: ""
  ray_address:
    description: The file under remote_root noting the head's address (its text is returned).
    type: str
    default: ""
  drain_note:
    description: The node's drain note under remote_root (its text is returned as drained).
    type: str
    default: ""
  cluster_id:
    description: The file under remote_root naming the cluster the node belongs to (its text is returned).
    type: str
    default: ""
  venv:
    description: The venv link under remote_root (the build it points at is returned as venv_id).
    type: str
    default: ""
  nvidia_smi:
    description: nvidia-smi's path (C(~) is this user's home); empty for the one on PATH.
    type: str
    default: ""
author:
  - grid-ops
"""

EXAMPLES = r"""
- name: Probe the node
  grid_node_info:
    remote_root: ~/grid-ops
"""

RETURN = r"""
ansible_facts:
  description: >-
    C(grid_node) with python_version, python_executable, python_tag (e.g. cp311),
    hostname, ssh_ip, user, home, root (remote_root expanded), private_ok (remote_root and
    private_dirs are directories of this user with mode 0700), ray_token_sha1 ("" when
    absent), ray_address (the noted head address, "" when absent), drained (the drain
    note's reason, "" when the node is not drained), cluster_id (the id of the cluster
    the node belongs to, "" when none is noted), venv_id (the venv build in use:
    "legacy" for a venv made before builds, "" for none), system, release,
    machine, glibc, venv_support, rsync, nvidia_smi, gpu_count, cpu_count, mem_total_bytes;
    and C(grid_ray_node), this user's Ray processes on the node: running (a raylet is
    up), head (a GCS server is up), node_id (from the raylet's command line), pids.
  type: dict
  returned: always
"""

import getpass
import hashlib
import os
import platform
import shutil
import socket
import stat
import sys

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.grid_root import expand_root
from ansible.module_utils.grid_node_os import (
    RAY_LAST,
    RAYLET,
    gpu_count,
    locate_nvidia_smi,
    parse_meminfo,
    read,
    user_processes,
)


def _mem_total() -> int:
    try:
        return parse_meminfo(read("/proc/meminfo"))[0]
    except (OSError, ValueError):
        return 0


def _venv_support() -> bool:
    try:
        import ensurepip  # noqa: F401
        import venv  # noqa: F401
    except ImportError:
        return False
    return True


RAY_PROCESSES = (RAYLET, RAY_LAST)  # the node's Ray; the head's GCS


def _ray_processes() -> dict:
    """This user's Ray on this node (other users' Ray on the same box is not this node's)."""
    found: dict = {"running": False, "head": False, "node_id": "", "pids": {}}
    for pid, argv in user_processes(RAY_PROCESSES):
        name = os.path.basename(argv[0])
        found["pids"].setdefault(name, []).append(pid)
        if name == RAYLET:
            found["running"] = True
            for arg in argv[1:]:
                if arg.startswith("--node_id="):
                    found["node_id"] = arg.split("=", 1)[1]
        else:
            found["head"] = True
    return found


def _private(paths: list) -> bool:
    """Are all ``paths`` real directories of this user that no one else can enter?"""
    for path in paths:
        try:
            info = os.lstat(path)
        except OSError:
            return False
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            return False
        if stat.S_IMODE(info.st_mode) != 0o700:
            return False
    return True


def _sha1(path: str) -> str:
    try:
        with open(path, "rb") as handle:
            return hashlib.sha1(handle.read()).hexdigest()
    except OSError:
        return ""


def _first_line(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.readline(300).strip()
    except OSError:
        return ""


def _venv_id(link: str) -> str:
    """The build the venv link points at ("legacy": a real directory; "": none)."""
    if os.path.islink(link):
        return os.path.basename(os.readlink(link).rstrip("/"))
    return "legacy" if os.path.isdir(link) else ""


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "remote_root": {"type": "str", "required": True},
            "private_dirs": {"type": "list", "elements": "str", "default": []},
            "ray_token": {"type": "str", "default": "", "no_log": False},
            "ray_address": {"type": "str", "default": ""},
            "drain_note": {"type": "str", "default": ""},
            "cluster_id": {"type": "str", "default": ""},
            "venv": {"type": "str", "default": ""},
            "nvidia_smi": {"type": "str", "default": ""},
        },
        supports_check_mode=True,
    )
    home = os.path.expanduser("~")
    root = expand_root(module.params["remote_root"])
    uname = platform.uname()
    libc, libc_version = platform.libc_ver()
    nvidia_smi = locate_nvidia_smi(module.params["nvidia_smi"])
    info = {
        "python_version": platform.python_version(),
        "python_executable": sys.executable,
        "python_tag": "cp%d%d" % sys.version_info[:2],
        "hostname": socket.gethostname(),
        # The node's own address on the connection we came in on ("" for local runs).
        "ssh_ip": (os.environ.get("SSH_CONNECTION", "").split() + ["", "", ""])[2],
        "user": getpass.getuser(),
        "home": home,
        "root": root.rstrip("/") or "/",
        "private_ok": _private(
            [root] + [os.path.join(root, d) for d in module.params["private_dirs"]]
        ),
        "ray_token_sha1": (
            _sha1(os.path.join(root, module.params["ray_token"]))
            if module.params["ray_token"]
            else ""
        ),
        "ray_address": (
            _first_line(os.path.join(root, module.params["ray_address"]))
            if module.params["ray_address"]
            else ""
        ),
        "drained": (
            _first_line(os.path.join(root, module.params["drain_note"]))
            if module.params["drain_note"]
            else ""
        ),
        "cluster_id": (
            _first_line(os.path.join(root, module.params["cluster_id"]))
            if module.params["cluster_id"]
            else ""
        ),
        "venv_id": _venv_id(os.path.join(root, module.params["venv"]))
        if module.params["venv"]
        else "",
        "system": uname.system,
        "release": uname.release,
        "machine": uname.machine,
        "glibc": libc_version if libc == "glibc" else "",
        "venv_support": _venv_support(),
        "rsync": shutil.which("rsync") or "",
        "nvidia_smi": nvidia_smi or "",
        "gpu_count": gpu_count(nvidia_smi),
        "cpu_count": os.cpu_count() or 1,
        "mem_total_bytes": _mem_total(),
    }
    module.exit_json(
        changed=False, ansible_facts={"grid_node": info, "grid_ray_node": _ray_processes()}
    )


if __name__ == "__main__":
    main()
