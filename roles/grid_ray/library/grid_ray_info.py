#!/usr/bin/python3
"""Ansible module: is Ray running for this user on this node, and as what."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: grid_ray_info
short_description: Report the Ray processes of the connecting user on this node
description:
  - Looks at the processes of the current user only (other users' Ray on the same box,
    e.g. other lab nodes, is not this node's). Returns the fact C(grid_ray_node).
options: {}
author:
  - grid-ops
"""

EXAMPLES = r"""
- name: Is Ray running here
  grid_ray_info:
"""

RETURN = r"""
ansible_facts:
  description: >-
    C(grid_ray_node) with running (a raylet is up), head (a GCS server is up),
    node_id (from the raylet's command line, when present) and pids.
  type: dict
  returned: always
"""

import os

from ansible.module_utils.basic import AnsibleModule

NAMES = ("raylet", "gcs_server")


def scan() -> dict:
    uid = os.getuid()
    found: dict = {"running": False, "head": False, "node_id": "", "pids": {}}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat("/proc/" + entry).st_uid != uid:
                continue
            with open("/proc/%s/cmdline" % entry, "rb") as handle:
                argv = [a.decode(errors="replace") for a in handle.read().split(b"\0") if a]
        except OSError:
            continue
        if not argv:
            continue
        name = os.path.basename(argv[0])
        if name not in NAMES:
            continue
        found["pids"].setdefault(name, []).append(int(entry))
        if name == "raylet":
            found["running"] = True
            for arg in argv[1:]:
                if arg.startswith("--node_id="):
                    found["node_id"] = arg.split("=", 1)[1]
        else:
            found["head"] = True
    return found


def main() -> None:
    module = AnsibleModule(argument_spec={}, supports_check_mode=True)
    module.exit_json(changed=False, ansible_facts={"grid_ray_node": scan()})


if __name__ == "__main__":
    main()
