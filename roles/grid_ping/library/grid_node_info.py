#!/usr/bin/python3
"""Ansible module: report the node's Python, user and kernel in one round trip."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: grid_node_info
short_description: Report a node's Python interpreter, user and kernel
description:
  - Read-only probe used by C(grid-ops ping). Runs with the node's own Python and
    needs no extra packages.
options: {}
author:
  - grid-ops
"""

EXAMPLES = r"""
- name: Probe the node
  grid_node_info:
  register: info
"""

RETURN = r"""
ansible_facts:
  description: C(grid_node), a mapping with the keys below.
  type: dict
  returned: always
python_version:
  description: Version of the Python that ran the module.
  type: str
  returned: always
python_executable:
  description: Path of that Python.
  type: str
  returned: always
hostname:
  description: The node's host name.
  type: str
  returned: always
user:
  description: The user the module ran as.
  type: str
  returned: always
system:
  description: Kernel name.
  type: str
  returned: always
release:
  description: Kernel release.
  type: str
  returned: always
"""

import getpass
import platform
import socket
import sys

from ansible.module_utils.basic import AnsibleModule


def main() -> None:
    module = AnsibleModule(argument_spec={}, supports_check_mode=True)
    uname = platform.uname()
    info = {
        "python_version": platform.python_version(),
        "python_executable": sys.executable,
        "hostname": socket.gethostname(),
        "user": getpass.getuser(),
        "system": uname.system,
        "release": uname.release,
    }
    module.exit_json(changed=False, ansible_facts={"grid_node": info})


if __name__ == "__main__":
    main()
