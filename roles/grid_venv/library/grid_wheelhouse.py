#!/usr/bin/python3
"""Ansible module: download wheels once, on the controller, for every node platform."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: grid_wheelhouse
short_description: Build an offline wheelhouse per node platform on the controller
description:
  - Runs on the controller (delegate_to localhost). For each distinct node platform
    (Python tag, machine, glibc) it downloads binary wheels of the requirements with
    pip into C(dest)/<platform key>/, once; a marker file records what was downloaded,
    so a second run with the same requirements changes nothing.
  - Each platform's directory is built under an exclusive lock (C(<key>.lock) beside
    it), so two provisions at once on one controller (two clusters, two terminals)
    never read a half-downloaded wheelhouse; the second finds the first one's marker.
  - The node facts name a directory on the controller, so they are checked first
    (python_tag like C(cp311), machine like C(x86_64), glibc like C(2.36) or empty);
    a requirement that starts with C(-) (a pip option) is refused too.
options:
  nodes:
    description: Mapping of host name to its C(grid_node) facts.
    type: dict
    required: true
  requirements:
    description: Requirement strings, e.g. C(ray[default]==2.60.0).
    type: list
    elements: str
    required: true
  dest:
    description: Wheelhouse cache directory on the controller.
    type: path
    required: true
  pip_python:
    description: Python whose pip does the download (the controller's).
    type: path
    required: true
author:
  - grid-ops
"""

EXAMPLES = r"""
- name: Build the wheelhouse
  grid_wheelhouse:
    nodes: {node1: "{{ hostvars.node1.grid_node }}"}
    requirements: ["ray[default]==2.60.0"]
    dest: ~/.cache/grid-ops/wheelhouse
    pip_python: "{{ ansible_playbook_python }}"
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
host_dirs:
  description: Wheelhouse directory for each host.
  type: dict
  returned: always
downloaded:
  description: Platform keys downloaded in this run.
  type: list
  returned: always
"""

import fcntl
import hashlib
import json
import os
import re
import subprocess

from ansible.module_utils.basic import AnsibleModule

MARKER = ".grid-ops-wheelhouse.json"
# What a node may report; each ends up in a directory name under dest.
FACT_PATTERNS = {
    "python_tag": r"cp3\d{1,2}",
    "machine": r"[A-Za-z0-9_]{1,32}",
    "glibc": r"(\d{1,4}(\.\d{1,4}){0,2})?",
}


def node_problem(host, node):
    """Why ``node`` (a host's grid_node facts) cannot be used; None when it can."""
    if not isinstance(node, dict):
        return "the facts of %r are not a mapping" % (host,)
    for fact, pattern in sorted(FACT_PATTERNS.items()):
        value = node.get(fact) if fact != "glibc" else (node.get("glibc") or "")
        if not isinstance(value, str) or re.fullmatch(pattern, value) is None:
            return "%r reports %s=%r, which does not match %s" % (
                host, fact, str(value)[:80], pattern,
            )  # fmt: skip
    return None


def requirement_problem(requirement):
    """Why ``requirement`` cannot be handed to pip; None when it can."""
    if not isinstance(requirement, str) or not requirement.strip():
        return "empty requirement %r" % (requirement,)
    if requirement.lstrip().startswith("-"):
        return "requirement %r starts with '-' (a pip option, not a package)" % (
            requirement[:80],
        )  # fmt: skip
    if any(c in requirement for c in "\0\n\r"):
        return "requirement %r has a control character" % (requirement[:80],)
    return None


def input_problems(nodes, requirements):
    """Every problem with the module's node facts and requirements (empty: none)."""
    problems = [requirement_problem(r) for r in requirements]
    problems += [node_problem(h, n) for h, n in sorted(nodes.items())]
    return [p for p in problems if p is not None]


def platform_key(node: dict, requirements: list) -> str:
    digest = hashlib.sha256("\n".join(sorted(requirements)).encode()).hexdigest()[:10]
    glibc = node.get("glibc") or "0.0"
    return "%s-%s-glibc%s-%s" % (node["python_tag"], node["machine"], glibc, digest)


def platform_tags(machine: str, glibc: str) -> list:
    """pip --platform values a node with this machine and glibc can install."""
    tags = []
    try:
        major, minor = (int(x) for x in glibc.split(".")[:2])
    except ValueError:
        major, minor = 0, 0
    if major == 2:
        for m in range(minor, 4, -1):
            tags.append("manylinux_2_%d_%s" % (m, machine))
        legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
        tags += ["%s_%s" % (name, machine) for m, name in legacy.items() if m <= minor]
    tags.append("linux_%s" % machine)
    return tags


def pip_command(pip_python: str, node: dict, requirements: list, target: str) -> list:
    """The pip download argv: options, then ``--``, then the requirements (pure)."""
    version = node["python_tag"][2:]
    cmd = [
        pip_python, "-m", "pip", "download", "--quiet",
        "--disable-pip-version-check", "--dest", target, "--only-binary=:all:",
        "--implementation", "cp", "--python-version", version,
        "--abi", node["python_tag"], "--abi", "abi3", "--abi", "none",
    ]  # fmt: skip
    for tag in platform_tags(node["machine"], node.get("glibc") or ""):
        cmd += ["--platform", tag]
    return [*cmd, "--", *requirements]


def download(module: AnsibleModule, node: dict, requirements: list, target: str) -> None:
    cmd = pip_command(module.params["pip_python"], node, requirements, target)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        module.fail_json(
            msg="pip download for %s failed: %s" % (os.path.basename(target), " ".join(tail)),
            cmd=cmd,
        )


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "nodes": {"type": "dict", "required": True},
            "requirements": {"type": "list", "elements": "str", "required": True},
            "dest": {"type": "path", "required": True},
            "pip_python": {"type": "path", "required": True},
        },
        supports_check_mode=True,
    )
    requirements = sorted(module.params["requirements"])
    dest = module.params["dest"]
    problems = input_problems(module.params["nodes"], requirements)
    if problems:
        module.fail_json(msg="grid_wheelhouse refuses its input: %s" % "; ".join(problems))
    host_dirs, todo = {}, {}
    for host, node in sorted(module.params["nodes"].items()):
        key = platform_key(node, requirements)
        host_dirs[host] = os.path.join(dest, key)
        todo.setdefault(key, node)
    downloaded = []
    for key, node in sorted(todo.items()):
        target = os.path.join(dest, key)
        marker = os.path.join(target, MARKER)
        if os.path.exists(marker):
            continue
        downloaded.append(key)
        if module.check_mode:
            continue
        os.makedirs(dest, exist_ok=True)
        with open(target + ".lock", "a", encoding="utf-8") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another provision may be building it
            if os.path.exists(marker):  # it did: nothing left to download
                downloaded.remove(key)
                continue
            os.makedirs(target, exist_ok=True)
            download(module, node, requirements, target)
            with open(marker, "w", encoding="utf-8") as handle:
                json.dump({"requirements": requirements, "platform": node}, handle)
    module.exit_json(changed=bool(downloaded), host_dirs=host_dirs, downloaded=downloaded)


if __name__ == "__main__":
    main()
