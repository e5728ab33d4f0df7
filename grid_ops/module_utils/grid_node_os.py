"""What a node's own OS says: /proc (load, memory, this user's processes) and nvidia-smi
(GPUs, their processes). The one parser of both, used on the nodes by the two fact
modules (grid_node_info and grid_health, as Ansible module_utils: ansible.cfg's
module_utils path names this directory), by the Ray stop module (grid_ray_stop) and by
the controller's offload sampler on the head (grid_ops.runtime.offload).

The node's Python 3 standard library only (3.8 and later: no newer syntax); it runs
before any venv exists.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time

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


def locate_nvidia_smi(configured: str = "") -> str | None:
    """The nvidia-smi to run: health_check.nvidia_smi when the config gives it (``~`` is
    this user's home; None when it is not there), else the one on PATH (or None)."""
    if configured:
        path = os.path.expanduser(configured)
        return path if os.path.isfile(path) and os.access(path, os.X_OK) else None
    return shutil.which("nvidia-smi")


def gpu_facts(
    timeout: float = 10.0, smi: str | None = None
) -> tuple[list[dict[str, object]], list[dict[str, object]], list[str]]:
    """(gpus, processes, warnings) from the nvidia-smi at ``smi``. None: no GPUs and no
    warning."""
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
    for app in apps:
        app["user"] = process_user(app.get("pid"))
    return gpus, apps, []


def process_user(pid: object, proc: str = "/proc") -> str | None:
    """The Unix user running process ``pid`` (its /proc entry's owner), or None when it
    is gone or not visible here (another PID namespace)."""
    import pwd

    if not isinstance(pid, (int, float)) or pid < 1:
        return None
    try:
        uid = os.stat(f"{proc}/{int(pid)}").st_uid
    except OSError:
        return None
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def gpu_count(smi: str | None, timeout: float = 20.0) -> int:
    """GPUs nvidia-smi lists; 0 without it or when it fails."""
    if not smi:
        return 0
    try:
        return len(query_gpus(timeout, smi))
    except (OSError, RuntimeError, ValueError, subprocess.TimeoutExpired):
        return 0


def gpu_utilization(timeout: float = 5.0, configured: str = "") -> float | None:
    """The busiest GPU's utilisation (percent); None without GPUs or nvidia-smi."""
    smi = locate_nvidia_smi(configured)
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


def own_processes() -> list[tuple[int, list[str]]]:
    """(pid, argv) of this user's processes but this one: the one scan of /proc (other
    users' processes on the same box are not this node's)."""
    uid, me = os.getuid(), os.getpid()
    found: list[tuple[int, list[str]]] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            if os.stat("/proc/" + entry).st_uid != uid:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                argv = [a.decode(errors="replace") for a in handle.read().split(b"\0") if a]
        except OSError:
            continue
        found.append((int(entry), argv))
    return found


def user_processes(names: tuple[str, ...]) -> list[tuple[int, list[str]]]:
    """(pid, argv) of this user's processes whose program is one of ``names``."""
    return [(pid, argv) for pid, argv in own_processes()
            if argv and os.path.basename(argv[0]) in names]  # fmt: skip


# The process whose presence means this node's Ray is up (its program's name).
RAYLET = "raylet"


def raylets() -> list[tuple[int, list[str]]]:
    """(pid, argv) of this user's raylets: the node's Ray runs when there is one."""
    return user_processes((RAYLET,))


# Ray's processes as 'ray stop' finds them (Ray 2.60, ray.autoscaler._private.constants.
# RAY_PROCESSES): text in the program's name (its comm, 15 characters, as 'ray::IDLE' for
# a worker), or text anywhere in its command line. The GCS goes last, as Ray does it.
RAY_BY_NAME = (RAYLET, "plasma_store", "ray::")
RAY_BY_ARGS = (
    "monitor.py",
    "ray.util.client.server",
    "default_worker.py",
    "setup_worker.py",
    "io.ray.runtime.runner.worker.DefaultWorker",
    "log_monitor.py",
    "ray::DashboardAgent",
    "dashboard/dashboard.py",
    "ray::RuntimeEnvAgent",
    "ray_process_reaper.py",
)
RAY_LAST = "gcs_server"


def _process_name(pid: str, argv: list[str]) -> str:
    """The program's name as ps shows it (comm); a 15-character comm is completed from
    argv[0] where that is the longer spelling of it."""
    try:
        comm = read("/proc/" + pid + "/comm").rstrip("\n")
    except OSError:
        return ""
    base = os.path.basename(argv[0]) if argv else ""
    return base if len(comm) >= 15 and base.startswith(comm) else comm


def ray_kind(name: str, argv: list[str]) -> int:
    """Is a process Ray's, by its name and command line: 0 no, 1 yes, 2 the GCS."""
    if RAY_LAST in name:
        return 2
    line = " ".join(argv)
    return int(any(k in name for k in RAY_BY_NAME) or any(k in line for k in RAY_BY_ARGS))


def ray_processes() -> list[tuple[int, str]]:
    """(pid, name) of this user's Ray processes, the GCS last."""
    found: list[tuple[int, str, int]] = []
    for pid, argv in own_processes():
        name = _process_name(str(pid), argv)
        kind = ray_kind(name, argv)
        if kind:
            found.append((pid, name, kind))
    return [(pid, name) for pid, name, _ in sorted(found, key=lambda row: row[2])]


def _stat(pid: int) -> list[str]:
    """/proc/PID/stat's fields after the program's name (state, ppid, ...); [] when gone."""
    try:
        return read(f"/proc/{pid}/stat").rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _gone(pid: int) -> bool:
    state = _stat(pid)[:1]
    return state in ([], ["Z"], ["X"])  # a zombie holds no ports, files or memory


def stop_ray(timeout: float = 10.0) -> tuple[list[str], list[str]]:
    """Kill (SIGKILL, as 'ray stop --force') this user's Ray processes, the GCS last, and
    wait until they are gone; then remove the temp dir of the forkserver Ray's dashboard
    started (see forkserver_sockets). Returns (names stopped, names still there after
    ``timeout`` seconds)."""
    sockets = forkserver_sockets([pid for pid, _ in ray_processes()])
    stopped, left = _kill_ray(timeout)
    remove_forkserver_sockets(sockets)
    return stopped, left


# A multiprocessing forkserver's listening socket: <temp dir>/pymp-<random>/listener-<random>.
_FORKSERVER_SOCKET = re.compile(r"/.+/pymp-[a-z0-9_]+/listener-[a-z0-9_]+")


def forkserver_sockets(parents: list[int]) -> list[str]:
    """The listening sockets, in a pymp-* dir of the temp dir, of this user's children of
    ``parents``. Ray's dashboard starts a multiprocessing forkserver for its modules; the
    dir is the dashboard's to remove at exit, so a killed dashboard leaves one behind in
    the node's shared /tmp on every stop. Each child's sockets are looked up in its own
    /proc/PID/net/unix: the table of its network namespace, which need not be ours."""
    wanted = {str(pid) for pid in parents}
    paths = []
    for pid, _ in own_processes():
        parent = _stat(pid)[1:2]  # its ppid
        inodes = _socket_inodes(pid) if parent and parent[0] in wanted else set()
        if not inodes:
            continue
        try:
            lines = read(f"/proc/{pid}/net/unix").splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 7 and fields[6] in inodes and _FORKSERVER_SOCKET.fullmatch(fields[7]):
                paths.append(fields[7])
    return sorted(set(paths))


def remove_forkserver_sockets(paths: list[str]) -> list[str]:
    """Remove each socket that is this user's and still a socket, and then its pymp-* dir
    when nothing else is in it. Returns the dirs removed."""
    import stat

    removed = []
    for path in paths:
        if not _FORKSERVER_SOCKET.fullmatch(path):
            continue
        try:
            info = os.lstat(path)
            if not stat.S_ISSOCK(info.st_mode) or info.st_uid != os.getuid():
                continue
            os.unlink(path)
            os.rmdir(os.path.dirname(path))
        except OSError:
            continue
        removed.append(os.path.dirname(path))
    return removed


def _kill_ray(timeout: float) -> tuple[list[str], list[str]]:
    stopped: list[str] = []
    waiting: list[tuple[int, str]] = []
    for group in (False, True):  # everything else first, then the GCS
        for pid, name in ray_processes():
            if (RAY_LAST in name) != group:
                continue
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                continue
            stopped.append(name)
            waiting.append((pid, name))
        deadline = time.monotonic() + timeout
        while waiting and time.monotonic() < deadline:
            waiting = [(pid, name) for pid, name in waiting if not _gone(pid)]
            if waiting:
                time.sleep(0.02)
        if waiting:
            break
    return stopped, [name for _, name in waiting]


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        pass
    return inodes


def listening_ports(pids: list[int]) -> list[int]:
    """The TCP ports these processes listen on (this network namespace's /proc/net/tcp
    and tcp6: state 0A is LISTEN), sorted."""
    inodes: set[str] = set()
    for pid in pids:
        inodes |= _socket_inodes(pid)
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = read(table).splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == "0A" and fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return sorted(ports)


def can_connect(host: str, port: int, timeout: float) -> str | None:
    """None when a TCP connection to host:port opens within ``timeout`` s, else why not."""
    import socket

    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return str(exc) or type(exc).__name__
