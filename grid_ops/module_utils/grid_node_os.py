"""What a node's own OS says: /proc (load, memory, this user's processes) and nvidia-smi
(GPUs, their processes). The one parser of both, used on the nodes by the two fact
modules (grid_node_info and grid_health, as Ansible module_utils: ansible.cfg's
module_utils path names this directory) and by the controller's offload sampler on the
head (grid_ops.runtime.offload).

The node's Python 3 standard library only (3.8 and later: no newer syntax); it runs
before any venv exists.
"""

from __future__ import annotations

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


def number(text: str) -> int | float | None:
    """nvidia-smi numbers: '81559' -> 81559, '697.46' -> 697.46, '[N/A]' -> None."""
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if value.is_integer() and "." not in text else value


def parse_query_gpu(text: str, fields: tuple[str, ...] = GPU_FIELDS) -> list[dict[str, object]]:
    """Rows of ``--query-gpu=<fields> --format=csv,noheader,nounits`` as GPU dicts.

    memory_used_mib is total - free, which is what NVML reports as used (nvidia-smi's own
    'memory.used' leaves out the memory the driver reserves); the smi figure is kept as
    memory_used_smi_mib.
    """
    gpus: list[dict[str, object]] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        values = [v.strip() for v in line.split(",")]
        if len(values) != len(fields):
            raise ValueError(f"expected {len(fields)} fields, got {len(values)}: {line!r}")
        row = {field: values[i] for i, field in enumerate(fields)}
        total = number(row.get("memory.total", ""))
        free = number(row.get("memory.free", ""))
        used = (total - free) if total is not None and free is not None else None
        gpus.append(
            {
                "index": int(row["index"]),
                "name": row.get("name", ""),
                "uuid": row.get("uuid", ""),
                "memory_total_mib": total,
                "memory_free_mib": free,
                "memory_used_mib": used,
                "memory_used_smi_mib": number(row.get("memory.used", "")),
                "utilization_gpu": number(row.get("utilization.gpu", "")),
                "temperature_gpu": number(row.get("temperature.gpu", "")),
                "power_draw_w": number(row.get("power.draw", "")),
            }
        )
    return gpus


def parse_compute_apps(text: str, fields: tuple[str, ...] = APP_FIELDS) -> list[dict[str, object]]:
    """Rows of ``--query-compute-apps=<fields> --format=csv,noheader,nounits``."""
    apps: list[dict[str, object]] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        values = [v.strip() for v in line.split(",")]
        row = {field: values[i] for i, field in enumerate(fields) if i < len(values)}
        apps.append(
            {
                "gpu_uuid": row.get("gpu_uuid", ""),
                "pid": number(row.get("pid", "")),
                "process_name": row.get("process_name", ""),
                "used_memory_mib": number(row.get("used_memory", "")),
            }
        )
    return apps


def nvidia_smi(smi: str, args: list[str], timeout: float) -> str:
    """nvidia-smi's output; RuntimeError with its last line when it fails."""
    proc = subprocess.run(
        [smi, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        last = detail[-1] if detail else "no output"
        raise RuntimeError(f"nvidia-smi exited {proc.returncode}: {last}")
    return proc.stdout


def query_gpus(timeout: float, smi: str) -> list[dict[str, object]]:
    args = ["--query-gpu=" + ",".join(GPU_FIELDS), "--format=csv,noheader,nounits"]
    return parse_query_gpu(nvidia_smi(smi, args, timeout))


def gpu_facts(
    timeout: float = 10.0, smi: str | None = None
) -> tuple[list[dict[str, object]], list[dict[str, object]], list[str]]:
    """(gpus, processes, warnings). No nvidia-smi: no GPUs and no warning."""
    smi = smi or shutil.which("nvidia-smi")
    if not smi:
        return [], [], []
    try:
        gpus = query_gpus(timeout, smi)
    except (OSError, RuntimeError, ValueError, subprocess.TimeoutExpired) as exc:
        return [], [], [f"nvidia-smi is installed but failed (driver problem?): {exc}"]
    try:
        args = ["--query-compute-apps=" + ",".join(APP_FIELDS), "--format=csv,noheader,nounits"]
        apps = parse_compute_apps(nvidia_smi(smi, args, timeout))
    except (OSError, RuntimeError, ValueError, subprocess.TimeoutExpired) as exc:
        return gpus, [], [f"nvidia-smi could not list GPU processes: {exc}"]
    return gpus, apps, []


def gpu_count(smi: str | None, timeout: float = 20.0) -> int:
    """GPUs nvidia-smi lists; 0 without it or when it fails."""
    if not smi:
        return 0
    try:
        return len(query_gpus(timeout, smi))
    except (OSError, RuntimeError, ValueError, subprocess.TimeoutExpired):
        return 0


def gpu_utilization(timeout: float = 5.0) -> float | None:
    """The busiest GPU's utilisation (percent); None without GPUs or nvidia-smi."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    try:
        values = [g["utilization_gpu"] for g in query_gpus(timeout, smi)]
    except (OSError, RuntimeError, ValueError, subprocess.TimeoutExpired):
        return None
    numbers = [float(v) for v in values if isinstance(v, (int, float))]
    return max(numbers) if numbers else None


def read(path: str) -> str:
    with open(path, encoding="ascii", errors="replace") as handle:
        return handle.read()


def parse_loadavg(text: str) -> tuple[float, float, float]:
    parts = text.split()
    return float(parts[0]), float(parts[1]), float(parts[2])


def parse_meminfo(text: str) -> tuple[int, int]:
    """(MemTotal, MemAvailable) in bytes."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        fields = rest.split()
        if fields:
            values[key] = int(fields[0]) * 1024
    return values.get("MemTotal", 0), values.get("MemAvailable", values.get("MemFree", 0))


def user_processes(names: tuple[str, ...]) -> list[tuple[int, list[str]]]:
    """(pid, argv) of this user's processes whose program is one of ``names`` (other
    users' processes on the same box are not this node's)."""
    uid = os.getuid()
    found: list[tuple[int, list[str]]] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat("/proc/" + entry).st_uid != uid:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                argv = [a.decode(errors="replace") for a in handle.read().split(b"\0") if a]
        except OSError:
            continue
        if argv and os.path.basename(argv[0]) in names:
            found.append((int(entry), argv))
    return found
