"""grid-ops doctor: every check of every node in one table, each failed row with the fix.

The node-local facts come from one health round (grid_ops.drivers.probe: SSH and Python, GPUs
and their checks, disk, clock, Ray's version) and one stamp read (grid_ops.lifecycle:
the venv build and the grid-ops runtime against the config's); the rest is what only
the cluster as a whole shows: Python, Ray, driver and CUDA versions that must agree, and
whether every worker reaches the head's GCS port and the ports the head's raylet
listens on (object and node manager: the usual reason a worker never joins). That last
check runs a small program on the head (which ports its raylet listens on) and then on
every worker (can it open them), over the same plain-ssh path as the probe.

``rows`` is pure: the CLI gathers the inputs and renders the rows.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

from grid_ops import facts
from grid_ops.drivers import probe, spawn
from grid_ops.model import ClusterModel, NodeModel

OK, WARN, FAIL = "ok", "warning", "fail"

# What runs on a node (with grid_node_os): the head's raylet ports, or TCP connects.
REACH = """
import json, os
from ansible.module_utils.grid_node_os import can_connect, listening_ports, raylets

args = json.loads(os.environ["GRID_OPS_ARGS"])
if args["mode"] == "ports":
    pids = [pid for pid, _ in raylets()]
    print(json.dumps({"raylet": bool(pids), "ports": listening_ports(pids)}))
else:
    print(json.dumps({"results": [
        [host, port, can_connect(host, port, args["timeout"])] for host, port in args["targets"]
    ]}))
"""


def _argv(cluster: ClusterModel, node: NodeModel, args: dict[str, Any]) -> list[str]:
    line = f"GRID_OPS_ARGS={shlex.quote(json.dumps(args))} exec {shlex.quote(cluster.python)} -"
    return node.argv(line)


def _answers(
    cluster: ClusterModel, jobs: dict[str, dict[str, Any]], limit: float
) -> dict[str, dict[str, Any]]:
    """Run REACH on each node of ``jobs`` (name -> its args); name -> its answer, or
    ``{"error": why}``."""
    program = probe.build_program("grid_reach", ("grid_node_os",), REACH)
    names = list(jobs)
    argvs: list[tuple[list[str], str | None]] = [
        (_argv(cluster, cluster.node(n), jobs[n]), program) for n in names
    ]
    out: dict[str, dict[str, Any]] = {}
    children = spawn.run_all(argvs, cluster.health["max_workers"], limit)
    for name, child in zip(names, children, strict=True):
        if child is None:
            out[name] = {"error": facts.timeout_error(limit)}
            continue
        found, error = facts.read_answer(
            -1 if child.rc is None else child.rc, child.stdout, child.stderr
        )
        out[name] = found if found is not None else {"error": error or "no answer"}
    return out


def reach(cluster: ClusterModel, workers: list[str]) -> dict[str, Any]:
    """Which of the head's ports each of ``workers`` can open: ``{"head": address,
    "ports": {port: what}, "raylet": bool, "workers": {name: {port: error or None}}}``,
    or ``{"error": why}`` when the head did not answer."""
    head = cluster.node(cluster.head)
    address = head.ray_address
    port_check = cluster.deadlines.port_check
    limit = cluster.deadlines.command + port_check
    found = _answers(cluster, {head.name: {"mode": "ports"}}, limit)[head.name]
    if "error" in found:
        return {"error": str(found["error"])}
    if not found.get("raylet"):
        return {"head": address, "ports": {}, "raylet": False, "workers": {}}
    ports: dict[int, str] = {int(cluster.ray["port"]): "GCS"}
    for port in found.get("ports") or []:
        ports.setdefault(int(port), "raylet")
    targets = [[address, port] for port in ports]
    jobs = {n: {"mode": "connect", "targets": targets, "timeout": port_check} for n in workers}
    answers = _answers(cluster, jobs, limit + port_check * len(targets))
    result: dict[str, dict[int, str | None] | str] = {}
    for name, answer in answers.items():
        if "error" in answer:
            result[name] = str(answer["error"])
        else:
            result[name] = {int(port): error for _, port, error in answer.get("results") or []}
    return {"head": address, "ports": ports, "raylet": bool(found.get("raylet")), "workers": result}


def _row(node: str, check: str, status: str, detail: str, fix: str = "") -> dict[str, str]:
    return {"node": node, "check": check, "status": status, "detail": detail, "fix": fix}


def _majority(values: dict[str, str]) -> str | None:
    """The most common value; a tie goes to the one seen first (config order)."""
    counts: dict[str, int] = {}
    for value in values.values():
        counts[value] = counts.get(value, 0) + 1
    return max(counts, key=lambda v: counts[v]) if counts else None


def _gib(value: Any) -> str:
    return f"{value / 2**30:.1f} GiB" if isinstance(value, int | float) else "?"


def rows(
    cluster: ClusterModel,
    records: list[dict[str, Any]],
    plan: dict[str, Any] | None,
    reached: dict[str, Any] | None,
    config_path: str,
    builds: dict[str, str] | None = None,
) -> list[dict[str, str]]:
    """Every check of every node (pure): rows of node, check, status (ok, warning,
    fail), detail and, for a row that is not ok, the fix. ``plan``: apply's plan (as
    JSON); ``builds``: the venv build each node runs ("" for none); ``reached``: what
    ``reach`` found."""
    c = f" -c {shlex.quote(config_path)}"
    out: list[dict[str, str]] = []
    by_name = {r["name"]: r for r in records}
    up = {
        n.name: by_name[n.name] for n in cluster.nodes if by_name.get(n.name, {}).get("reachable")
    }
    pythons = {n: str(r["python_version"]) for n, r in up.items() if r.get("python_version")}
    head_python = pythons.get(cluster.head) or _majority(pythons)
    drivers = {n: str(r["driver_version"]) for n, r in up.items() if r.get("driver_version")}
    cudas = {n: str(r["cuda_version"]) for n, r in up.items() if r.get("cuda_version")}
    driver, cuda = _majority(drivers), _majority(cudas)
    for node in cluster.nodes:
        name = node.name
        rec = by_name.get(name)
        if rec is None or not rec["reachable"]:
            why = rec["error"] if rec else "not probed"
            out.append(
                _row(
                    name,
                    "ssh",
                    FAIL,
                    f"no answer from {node.target}: {why}",
                    f"check the node is up and sshd runs there: grid-ops ping{c}",
                )
            )
            continue
        out.append(_row(name, "ssh", OK, f"{node.target} answered"))
        version = pythons.get(name)
        if version and head_python and version.split(".")[:2] != head_python.split(".")[:2]:
            out.append(
                _row(
                    name,
                    "python",
                    FAIL,
                    f"Python {version}, the head has {head_python}",
                    "Ray needs the same Python on every node: install it and set "
                    "python_interpreter in the config",
                )
            )
        else:
            out.append(_row(name, "python", OK, f"Python {version or '?'}"))
        out.extend(_applied(name, plan, (builds or {}).get(name), cluster.venv_id, c))
        out.extend(_checks(name, rec, c))
        if name in drivers and driver and drivers[name] != driver:
            out.append(
                _row(
                    name,
                    "driver",
                    WARN,
                    f"NVIDIA driver {drivers[name]}, most GPU nodes have {driver}",
                    "install the same driver on every GPU node",
                )
            )
        if name in cudas and cuda and cudas[name] != cuda:
            out.append(
                _row(
                    name,
                    "cuda",
                    WARN,
                    f"CUDA {cudas[name]}, most GPU nodes have {cuda}",
                    "install the same driver (and so CUDA) on every GPU node",
                )
            )
        if rec.get("gpus"):
            gpus = rec["gpus"]
            out.append(
                _row(
                    name,
                    "gpus",
                    OK,
                    f"{len(gpus)} x {gpus[0].get('name')}, driver {rec.get('driver_version')}, "
                    f"CUDA {rec.get('cuda_version')}",
                )
            )
        if name != cluster.head:
            out.extend(_reach_rows(name, reached, c))
    return out


def _applied(
    name: str, plan: dict[str, Any] | None, build: str | None, wanted: str, c: str
) -> list[dict[str, str]]:
    if plan is None:
        return []
    if name in plan.get("unreachable", []):
        return [_row(name, "venv", FAIL, "its stamp could not be read", f"grid-ops ping{c}")]
    out = []
    if build == wanted:
        out.append(_row(name, "venv", OK, f"the config's build ({wanted})"))
    elif not build:
        out.append(_row(name, "venv", FAIL, "no venv (not provisioned)", f"grid-ops apply{c}"))
    else:
        out.append(
            _row(
                name,
                "venv",
                WARN,
                f"build {build}, the config gives {wanted}",
                f"grid-ops apply{c} (grid-ops rollback keeps the older one)",
            )
        )
    if name in plan.get("add", []):
        out.append(
            _row(
                name,
                "runtime",
                WARN,
                "not recorded: the node was never brought to the config by 'grid-ops apply'",
                f"grid-ops apply{c} (a running node is adopted, not restarted)",
            )
        )
    elif "runtime" in plan.get("change", {}).get(name, []):
        out.append(_row(name, "runtime", WARN, "an older grid-ops runtime", f"grid-ops apply{c}"))
    else:
        out.append(_row(name, "runtime", OK, "this grid-ops' runtime"))
    return out


FIXES = {
    "gpu_count": "check the GPUs on the node (nvidia-smi -L, dmesg); fix gpu_count if the "
    "config is wrong",
    "driver": "reinstall or reload the NVIDIA driver (nvidia-smi must answer)",
    "ecc_uncorrectable": "reset the GPU (nvidia-smi -r) when idle; replace the card if it recurs",
    "remap_pending": "reset the GPU (nvidia-smi -r) when idle to apply the pending repair",
    "retired_pages_pending": "reset the GPU (nvidia-smi -r) when idle to retire the pages",
    "memory_unrepairable": "the card needs service: keep it drained and replace it",
    "xid": "read the Xid in the kernel log (dmesg) and NVIDIA's Xid catalogue",
    "disk": "free space under remote_root (old venv builds: grid-ops apply prunes them)",
    "clock": "run a time service (chrony or systemd-timesyncd) on the node",
    "ray_version": "grid-ops apply installs the cluster's Ray",
    "ray_down": "grid-ops cluster start",
    "persistence_mode": "nvidia-smi -pm 1 (as root), or the nvidia-persistenced service",
}


def _checks(name: str, rec: dict[str, Any], c: str) -> list[dict[str, str]]:
    out = []
    seen = set()
    for check in rec.get("checks") or []:
        kind = str(check.get("check"))
        seen.add(kind)
        status = FAIL if check.get("severity") == facts.SICK else WARN
        fix = FIXES.get(kind, "see 'grid-ops health'")
        if kind == "ray_down":
            fix += f"{c} --limit {name}"
        out.append(_row(name, kind, status, str(check.get("reason")), fix))
    if "disk" not in seen:
        out.append(_row(name, "disk", OK, f"{_gib(rec.get('disk_free_bytes'))} free"))
    if "clock" not in seen:
        offset = rec.get("clock_offset_s")
        out.append(_row(name, "clock", OK, "in step" if not offset else f"{offset:+.1f} s off"))
    if not seen & {"ray_version", "ray_down"} and rec.get("ray_version"):
        running = "running" if rec.get("ray_running") else "not running"
        out.append(_row(name, "ray", OK, f"Ray {rec['ray_version']}, {running}"))
    drained = rec.get("drained")
    if drained:
        out.append(
            _row(
                name,
                "drained",
                WARN,
                str(drained),
                f"grid-ops node undrain {name}{c} (a quarantine lifts itself once well)",
            )
        )
    return out


def _reach_rows(name: str, reached: dict[str, Any] | None, c: str) -> list[dict[str, str]]:
    if reached is None:
        return []
    if "error" in reached:
        return [
            _row(
                name,
                "head ports",
                WARN,
                f"not checked: the head did not answer ({reached['error']})",
                f"grid-ops ping{c}",
            )
        ]
    if not reached["raylet"]:
        return [
            _row(
                name,
                "head ports",
                WARN,
                "not checked: Ray does not run on the head",
                f"grid-ops cluster start{c}",
            )
        ]
    answer = reached["workers"].get(name)
    if answer is None:
        return []
    if isinstance(answer, str):
        return [_row(name, "head ports", WARN, f"not checked: {answer}", f"grid-ops ping{c}")]
    head, ports = reached["head"], reached["ports"]
    failed = {port: why for port, why in answer.items() if why}
    if not failed:
        what = ", ".join(f"{port} ({ports.get(port)})" for port in sorted(answer))
        return [_row(name, "head ports", OK, f"reaches {head} on {what}")]
    what = "; ".join(f"{port} ({ports.get(port)}): {why}" for port, why in sorted(failed.items()))
    fix = (
        f"let {name} open TCP connections to {head} on "
        f"{', '.join(str(p) for p in sorted(failed))} (firewall, security group, routes): "
        "a worker that cannot reach them never joins"
    )
    return [_row(name, "head ports", FAIL, f"cannot reach {head} on {what}", fix)]
