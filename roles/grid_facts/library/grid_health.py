#!/usr/bin/python3
"""Health facts of a node in one round trip: load, CPUs, memory, disk, Ray, GPUs.

One module, two transports: Ansible runs it like any module (playbooks/health.yml), and
``grid-ops health`` sends this same file over plain OpenSSH to ``python3 -`` with
GRID_OPS_STANDALONE=1, which prints the facts as JSON without Ansible on either side.
It needs only the node's own Python 3 standard library.
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
    default: ~/grid-ops
  nvidia_smi_timeout:
    description: Seconds nvidia-smi may take.
    type: float
    default: 10
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
    mem_available_bytes, disk_free_bytes, ray_running, gpus (index, name, uuid,
    memory_total_mib, memory_used_mib, memory_free_mib, utilization_gpu, temperature_gpu,
    power_draw_w), gpu_processes (gpu_uuid, pid, process_name, used_memory_mib), warnings.
  type: dict
  returned: always
"""

import json
import os
import shutil
import subprocess

GPU_FIELDS = (
    "index",
    "name",
    "uuid",
    "memory.total",
    "memory.used",
    "memory.free",
    "utilization.gpu",
    "temperature.gpu",
    "power.draw",
)
APP_FIELDS = ("gpu_uuid", "pid", "process_name", "used_memory")


def _number(text):
    """nvidia-smi numbers: '81559' -> 81559, '697.46' -> 697.46, '[N/A]' -> None."""
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if value.is_integer() and "." not in text else value


def parse_query_gpu(text, fields=GPU_FIELDS):
    """Rows of ``--query-gpu=<fields> --format=csv,noheader,nounits`` as GPU dicts.

    memory_used_mib is total - free, which is what NVML reports as used (nvidia-smi's own
    'memory.used' leaves out the memory the driver reserves); the smi figure is kept as
    memory_used_smi_mib.
    """
    gpus = []
    for line in text.splitlines():
        if not line.strip():
            continue
        values = [v.strip() for v in line.split(",")]
        if len(values) != len(fields):
            raise ValueError("expected %d fields, got %d: %r" % (len(fields), len(values), line))
        row = dict(zip(fields, values))
        total = _number(row.get("memory.total", ""))
        free = _number(row.get("memory.free", ""))
        gpus.append(
            {
                "index": int(row["index"]),
                "name": row.get("name", ""),
                "uuid": row.get("uuid", ""),
                "memory_total_mib": total,
                "memory_free_mib": free,
                "memory_used_mib": (total - free) if total is not None and free is not None else None,
                "memory_used_smi_mib": _number(row.get("memory.used", "")),
                "utilization_gpu": _number(row.get("utilization.gpu", "")),
                "temperature_gpu": _number(row.get("temperature.gpu", "")),
                "power_draw_w": _number(row.get("power.draw", "")),
            }
        )
    return gpus


def parse_compute_apps(text, fields=APP_FIELDS):
    """Rows of ``--query-compute-apps=<fields> --format=csv,noheader,nounits``."""
    apps = []
    for line in text.splitlines():
        if not line.strip():
            continue
        row = dict(zip(fields, (v.strip() for v in line.split(","))))
        apps.append(
            {
                "gpu_uuid": row.get("gpu_uuid", ""),
                "pid": _number(row.get("pid", "")),
                "process_name": row.get("process_name", ""),
                "used_memory_mib": _number(row.get("used_memory", "")),
            }
        )
    return apps


def parse_loadavg(text):
    parts = text.split()
    return float(parts[0]), float(parts[1]), float(parts[2])


def parse_meminfo(text):
    """(MemTotal, MemAvailable) in bytes."""
    values = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        fields = rest.split()
        if fields:
            values[key] = int(fields[0]) * 1024
    return values.get("MemTotal", 0), values.get("MemAvailable", values.get("MemFree", 0))


def _read(path):
    with open(path, encoding="ascii", errors="replace") as handle:
        return handle.read()


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
    uid = os.getuid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat("/proc/" + entry).st_uid != uid:
                continue
            with open("/proc/%s/cmdline" % entry, "rb") as handle:
                argv0 = handle.read().split(b"\0", 1)[0]
        except OSError:
            continue
        if os.path.basename(argv0) == b"raylet":
            return True
    return False


def _nvidia_smi(smi, args, timeout):
    proc = subprocess.run(
        [smi, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise RuntimeError(
            "nvidia-smi exited %d: %s" % (proc.returncode, detail[-1] if detail else "no output")
        )
    return proc.stdout


def gpu_facts(timeout=10.0, smi=None):
    """(gpus, processes, warnings). No nvidia-smi: no GPUs and no warning."""
    smi = smi or shutil.which("nvidia-smi")
    if not smi:
        return [], [], []
    try:
        gpus = parse_query_gpu(
            _nvidia_smi(
                smi,
                ["--query-gpu=" + ",".join(GPU_FIELDS), "--format=csv,noheader,nounits"],
                timeout,
            )
        )
    except (OSError, RuntimeError, ValueError, subprocess.TimeoutExpired) as exc:
        return [], [], ["nvidia-smi is installed but failed (driver problem?): %s" % exc]
    try:
        apps = parse_compute_apps(
            _nvidia_smi(
                smi,
                ["--query-compute-apps=" + ",".join(APP_FIELDS), "--format=csv,noheader,nounits"],
                timeout,
            )
        )
    except (OSError, RuntimeError, ValueError, subprocess.TimeoutExpired) as exc:
        return gpus, [], ["nvidia-smi could not list GPU processes: %s" % exc]
    return gpus, apps, []


def collect(remote_root="~/grid-ops", nvidia_smi_timeout=10.0):
    """Every health fact of this node."""
    warnings = []
    try:
        load1, load5, load15 = parse_loadavg(_read("/proc/loadavg"))
    except (OSError, ValueError, IndexError) as exc:
        load1 = load5 = load15 = None
        warnings.append("cannot read /proc/loadavg: %s" % exc)
    try:
        mem_total, mem_available = parse_meminfo(_read("/proc/meminfo"))
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
            "remote_root": {"type": "str", "default": "~/grid-ops"},
            "nvidia_smi_timeout": {"type": "float", "default": 10},
        },
        supports_check_mode=True,
    )
    facts = collect(module.params["remote_root"], module.params["nvidia_smi_timeout"])
    for warning in facts["warnings"]:
        module.warn(warning)
    module.exit_json(changed=False, ansible_facts={"grid_health": facts})


if __name__ == "__main__":
    main()
