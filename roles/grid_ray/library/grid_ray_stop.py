#!/usr/bin/python3
"""Stop this user's Ray on the node, as 'ray stop --force' does, without importing Ray.

'ray stop' is a Python program that imports all of Ray (seconds of CPU) before it kills
anything; this module reads /proc with the node's own Python (the shared grid_node_os,
grid_ops/module_utils), kills the same processes (SIGKILL; the GCS last) and waits until
they are gone. Only this user's processes: another user's Ray on the same box is not this
node's.
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: grid_ray_stop
short_description: Stop this user's Ray processes on the node (as ray stop --force)
description:
  - Kills, with SIGKILL, the processes 'ray stop' would (Ray's raylet, workers, agents,
    dashboard, monitors, the GCS last) that belong to the connecting user, and waits until
    they are gone. Fails, naming them, when some are still there after the timeout.
options:
  timeout:
    description: Seconds to wait for the killed processes to go.
    type: float
    default: 10
author:
  - grid-ops
"""

EXAMPLES = r"""
- name: Stop Ray
  grid_ray_stop:
"""

RETURN = r"""
stopped:
  description: The names of the processes killed.
  type: list
  elements: str
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.grid_node_os import stop_ray


def main() -> None:
    module = AnsibleModule(
        argument_spec={"timeout": {"type": "float", "default": 10.0}},
        supports_check_mode=True,
    )
    if module.check_mode:
        module.exit_json(changed=False, stopped=[])
    stopped, left = stop_ray(module.params["timeout"])
    if left:
        module.fail_json(
            msg="Ray processes still running after SIGKILL: " + ", ".join(sorted(set(left))),
            stopped=stopped,
        )
    module.exit_json(changed=bool(stopped), stopped=stopped)


if __name__ == "__main__":
    main()
