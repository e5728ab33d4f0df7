#!/usr/bin/python3
"""Health facts of a node in one round trip: load, CPUs, memory, disk, Ray, GPUs.

One module, two transports: Ansible runs it like any module (playbooks/health.yml), and
``grid-ops health`` sends this same file over plain OpenSSH to ``python3 -`` with
GRID_OPS_STANDALONE=1, which prints the facts as JSON without Ansible on either side
(grid_ops.probe sends the module_utils it imports ahead of it). /proc and nvidia-smi are
read by the shared grid_node_os (grid_ops/module_utils). It needs only the node's own
Python 3 standard library.
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: grid_health
short_description: Health facts of a node (load, memory, disk, Ray, NVIDIA GPUs)
description:
  - Reads /proc/loadavg, /proc/meminfo, the free space under remote_root, this user's Ray
    processes and, when nvidia-smi exists, every GPU's memory, utilisation, temperature,
    power and compute processes. No nvidia-smi means zero GPUs, not an error; a broken
    driver gives zero GPUs and a warning. Returns the fact C(grid_health).
options:
  remote_root:
    description: The cluster's remote_root (disk free is measured there, or at its parent).
    type: str
    required: true
  nvidia_smi_timeout:
    description: Seconds nvidia-smi may take.
    type: float
    default: 10
  drain_note:
    description: The drain note's path under remote_root (its reason is returned as drained).
    type: str
    default: ""
author:
  - grid-ops
"""

EXAMPLES = r"""
- name: Read the node's health
  grid_health:
    remote_root: ~/grid-ops
"""

RETURN = r"""
ansible_facts:
  description: >-
    C(grid_health) with load1, load5, load15, cpu_count, mem_total_bytes,
    mem_available_bytes, disk_free_bytes, ray_running, drained (the drain note's reason, or
    null), gpus (index, name, uuid,
    memory_total_mib, memory_used_mib, memory_free_mib, utilization_gpu, temperature_gpu,
    power_draw_w), gpu_processes (gpu_uuid, pid, process_name, used_memory_mib), warnings.
  type: dict
  returned: always
"""

import json
import os
import shutil

from ansible.module_utils.grid_node_os import (
    gpu_facts,
    parse_loadavg,
    parse_meminfo,
    read,
    user_processes,
)


def _disk_free(root):
    path = os.path.expanduser(root)
    while path and not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    try:
        return shutil.disk_usage(path or "/").free
    except OSError:
        return None


def _ray_running():
    return bool(user_processes(("raylet",)))


def _drained(root, note):
    """The node's drain note (its reason), None when the node is not drained."""
    if not note:
        return None
    try:
        with open(os.path.join(os.path.expanduser(root), note), encoding="utf-8") as handle:
            return handle.readline(300).strip() or "drained"
    except OSError:
        return None


def collect(remote_root, nvidia_smi_timeout, drain_note=""):
    """Every health fact of this node."""
    warnings = []
    try:
        load1, load5, load15 = parse_loadavg(read("/proc/loadavg"))
    except (OSError, ValueError, IndexError) as exc:
        load1 = load5 = load15 = None
        warnings.append("cannot read /proc/loadavg: %s" % exc)
    try:
        mem_total, mem_available = parse_meminfo(read("/proc/meminfo"))
    except (OSError, ValueError) as exc:
        mem_total = mem_available = None
        warnings.append("cannot read /proc/meminfo: %s" % exc)
    gpus, apps, gpu_warnings = gpu_facts(nvidia_smi_timeout)
    return {
        "load1": load1,
        "load5": load5,
        "load15": load15,
        "cpu_count": os.cpu_count() or 1,
        "mem_total_bytes": mem_total,
        "mem_available_bytes": mem_available,
        "disk_free_bytes": _disk_free(remote_root),
        "ray_running": _ray_running(),
        "drained": _drained(remote_root, drain_note),
        "gpus": gpus,
        "gpu_processes": apps,
        "warnings": warnings + gpu_warnings,
    }


def main():
    if os.environ.get("GRID_OPS_STANDALONE") == "1":
        args = json.loads(os.environ.get("GRID_OPS_ARGS") or "{}")
        print(json.dumps(collect(**args)))
        return
    from ansible.module_utils.basic import AnsibleModule

    module = AnsibleModule(
        argument_spec={
            "remote_root": {"type": "str", "required": True},
            "nvidia_smi_timeout": {"type": "float", "default": 10},
            "drain_note": {"type": "str", "default": ""},
        },
        supports_check_mode=True,
    )
    facts = collect(
        module.params["remote_root"],
        module.params["nvidia_smi_timeout"],
        module.params["drain_note"],
    )
    for warning in facts["warnings"]:
        module.warn(warning)
    module.exit_json(changed=False, ansible_facts={"grid_health": facts})


if __name__ == "__main__":
    main()
