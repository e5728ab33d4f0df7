#!/usr/bin/python3
"""Health facts of a node in one round trip: load, CPUs, memory, disk, Ray, GPUs, and the
passive checks (GPU faults, Xid events, disk) that can find it sick.

One module, two transports: Ansible runs it like any module (playbooks/health.yml), and
``grid-ops health`` sends this same file over plain OpenSSH to ``python3 -`` with
GRID_OPS_STANDALONE=1, which prints the facts as JSON without Ansible on either side
(grid_ops.drivers.probe sends the module_utils it imports ahead of it). /proc and nvidia-smi are
read by the shared grid_node_os, the GPU checks made by grid_gpu_health (both in
grid_ops/module_utils). It needs only the node's own Python 3 standard library.
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
  nvidia_smi:
    description: nvidia-smi's path (C(~) is this user's home); empty for the one on PATH.
    type: str
    default: ""
  expected_gpus:
    description: The GPUs the config gives this node (0 when it gives none).
    type: int
    default: 0
  min_disk_free_bytes:
    description: Free space under remote_root below this fails the disk check (0 = none).
    type: int
    default: 0
  venv:
    description: The venv link's path under remote_root (Ray's version is read there).
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
    C(grid_health) with load1, load5, load15, cpu_count, python_version, mem_total_bytes,
    mem_available_bytes, disk_free_bytes, ray_running, ray_version (of the venv in use, or
    null), drained (the drain note's reason, or null), gpus (index, name, uuid,
    memory_total_mib, memory_used_mib, memory_free_mib, utilization_gpu, temperature_gpu,
    power_draw_w), gpu_processes (gpu_uuid, pid, process_name, used_memory_mib),
    driver_version, cuda_version, checks (each failed check: check, severity sick or
    warning, reason, gpu), time (the node's clock), warnings.
  type: dict
  returned: always
"""

import glob
import json
import os
import shutil
import subprocess
import sys
import time

from ansible.module_utils.grid_root import expand_root
from ansible.module_utils.grid_gpu_health import (
    SICK,
    SMI_ARGS,
    checks as gpu_checks,
    driver_failed,
    failed,
    parse as parse_smi_xml,
    read_kmsg,
    smi_missing,
    uptime_us,
    xid_checks,
    xid_events,
)
from ansible.module_utils.grid_node_os import (
    gpu_facts,
    locate_nvidia_smi,
    nvidia_smi as run_smi,
    parse_loadavg,
    parse_meminfo,
    raylets,
    read,
)


def _disk_free(root):
    path = root
    while path and not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    try:
        return shutil.disk_usage(path or "/").free
    except OSError:
        return None


def _drained(root, note):
    """The node's drain note (its reason), None when the node is not drained."""
    if not note:
        return None
    try:
        with open(os.path.join(root, note), encoding="utf-8") as handle:
            return handle.readline(300).strip() or "drained"
    except OSError:
        return None


def _ray_version(root, venv):
    """The Ray installed in the venv in use (its dist-info's name), or None."""
    if not venv:
        return None
    pattern = os.path.join(
        root, venv, "lib", "python3*", "site-packages", "ray-*.dist-info"
    )
    for path in sorted(glob.glob(pattern)):
        return os.path.basename(path)[len("ray-") : -len(".dist-info")]
    return None


def _gpu_checks(smi, timeout, expected, gpus, warnings):
    """The GPU checks: nvidia-smi -q -x read by grid_gpu_health, and this node's Xid
    events in the kernel log when this user may read it. Returns (checks, report)."""
    if not smi:
        return ([smi_missing(expected)] if expected else []), {}
    if not gpus and warnings:  # nvidia-smi is there but did not answer: the check says so
        return [driver_failed(warnings.pop(0))], {}
    try:
        report = parse_smi_xml(run_smi(smi, list(SMI_ARGS), timeout))
    except (OSError, RuntimeError, ValueError, subprocess.TimeoutExpired) as exc:
        return [driver_failed(str(exc))], {}
    failed = gpu_checks(report, expected or None)
    if len(report["gpus"]) != len(gpus):
        warnings.append(
            "nvidia-smi listed %d GPU(s) but reported %d" % (len(gpus), len(report["gpus"]))
        )
    records, now = read_kmsg(), uptime_us()
    if records is not None and now is not None:
        failed.extend(xid_checks(xid_events(records, now), report["gpus"]))
    return failed, report


def collect(
    remote_root,
    nvidia_smi_timeout,
    drain_note="",
    nvidia_smi="",
    expected_gpus=0,
    min_disk_free_bytes=0,
    venv="",
):
    """Every health fact of this node."""
    root = expand_root(remote_root)
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
    smi = locate_nvidia_smi(nvidia_smi)
    gpus, apps, gpu_warnings = gpu_facts(nvidia_smi_timeout, smi)
    checks, report = _gpu_checks(smi, nvidia_smi_timeout, expected_gpus, gpus, gpu_warnings)
    disk_free = _disk_free(root)
    if min_disk_free_bytes and disk_free is not None and disk_free < min_disk_free_bytes:
        checks.append(
            failed(
                "disk",
                SICK,
                "%.1f GiB free under %s, below the %.1f GiB the config asks for"
                % (disk_free / 2**30, remote_root, min_disk_free_bytes / 2**30),
            )
        )
    return {
        "load1": load1,
        "load5": load5,
        "load15": load15,
        "cpu_count": os.cpu_count() or 1,
        "python_version": "%d.%d.%d" % sys.version_info[:3],
        "mem_total_bytes": mem_total,
        "mem_available_bytes": mem_available,
        "disk_free_bytes": disk_free,
        "ray_running": bool(raylets()),
        "ray_version": _ray_version(root, venv),
        "drained": _drained(root, drain_note),
        "gpus": gpus,
        "gpu_processes": apps,
        "driver_version": report.get("driver_version") or None,
        "cuda_version": report.get("cuda_version") or None,
        "checks": checks,
        "time": time.time(),
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
            "nvidia_smi": {"type": "str", "default": ""},
            "expected_gpus": {"type": "int", "default": 0},
            "min_disk_free_bytes": {"type": "int", "default": 0},
            "venv": {"type": "str", "default": ""},
        },
        supports_check_mode=True,
    )
    facts = collect(**module.params)
    for warning in facts["warnings"]:
        module.warn(warning)
    module.exit_json(changed=False, ansible_facts={"grid_health": facts})


if __name__ == "__main__":
    main()
