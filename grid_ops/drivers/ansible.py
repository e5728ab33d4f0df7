"""Run a playbook against the cluster: the only module that imports ansible_runner.

``run()`` renders the cluster's inventory into a fresh private data dir, runs the playbook
through ansible-runner with the repository's ansible.cfg, and folds the event stream into
a :class:`PlaybookResult` (per host: counts, the failed task's message, returned facts,
durations). Results come from the events, never from ansible-runner's fact cache.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grid_ops import model
from grid_ops.drivers import inventory
from grid_ops.drivers.results import COUNTERS, HostResult, PlaybookResult
from grid_ops.errors import AnsibleRunError, UsageError
from grid_ops.fsutil import write_atomic
from grid_ops.paths import ansible_root, playbook_path, state_dir

KEEP_RUNS = 10
# The extra var every run passes: the digest of the runtime grid-ops pushes to the nodes
# (the grid_ray role adds it to the stamp it notes on each node).
RUNTIME_VAR = "grid_runtime"
EventCallback = Callable[[str, str, str | None], None]
"""Called as ``(host, task name, status)`` while a playbook runs (status None = started)."""


class _Collector:
    """Folds ansible-runner events into per-host results."""

    def __init__(self, on_progress: EventCallback | None) -> None:
        self.hosts: dict[str, HostResult] = {}
        self.stats: dict[str, dict[str, int]] | None = None
        self.on_progress = on_progress
        self._starts: dict[tuple[str, str], float] = {}

    def host(self, name: str) -> HostResult:
        if name not in self.hosts:
            self.hosts[name] = HostResult(name=name)
        return self.hosts[name]

    def __call__(self, event: dict[str, Any]) -> bool:
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        name = data.get("host")
        task = data.get("task") or ""
        if kind == "playbook_on_stats":
            self.stats = {
                "ok": data.get("ok") or {},
                "changed": data.get("changed") or {},
                "failed": data.get("failures") or {},
                "unreachable": data.get("dark") or {},
                "skipped": data.get("skipped") or {},
                "ignored": data.get("ignored") or {},
                "rescued": data.get("rescued") or {},
            }
        if not name:
            return True
        result = self.host(name)
        if kind == "runner_on_start":
            result.task = task
            self._starts[(name, task)] = time.monotonic()
            if self.on_progress:
                self.on_progress(name, task, None)
            return True
        if not kind.startswith("runner_on_") and not kind.startswith("runner_item_on_"):
            return True
        res = data.get("res") or {}
        if kind.startswith("runner_item_on_"):
            return True  # per-item results of a loop; the task's own event follows
        started = self._starts.pop((name, task), None)
        if started is not None:
            result.durations[task] = round(time.monotonic() - started, 3)
        status = {
            "runner_on_ok": "changed" if res.get("changed") else "ok",
            "runner_on_failed": "ignored" if data.get("ignore_errors") else "failed",
            "runner_on_unreachable": "unreachable",
            "runner_on_skipped": "skipped",
        }.get(kind)
        if status is None:
            return True
        self._count(result, status)
        if isinstance(res, dict):
            facts = res.get("ansible_facts")
            if isinstance(facts, dict):
                result.facts.update(facts)
            if status in ("ok", "changed"):
                result.results[task] = res
            if status == "changed":
                result.changed_tasks.append(task)
                diff = res.get("diff")
                for item in diff if isinstance(diff, list) else [diff] if diff else []:
                    if isinstance(item, dict) and ("before" in item or "after" in item):
                        result.diffs.append((task, item))
        if status in ("failed", "unreachable"):
            result.msg = _message(res)
            result.failed_task = task
        if self.on_progress:
            self.on_progress(name, task, status)
        return True

    @staticmethod
    def _count(result: HostResult, status: str) -> None:
        if status == "changed":
            result.ok += 1
            result.changed += 1
        elif status == "ignored":
            result.ok += 1
        else:
            setattr(result, status, getattr(result, status) + 1)

    def finish(self) -> dict[str, HostResult]:
        """Prefer Ansible's own recap for the counts when it arrived."""
        if self.stats is not None:
            names = set().union(*(set(v) for v in self.stats.values()))
            for name in names:
                host = self.host(name)
                for counter in COUNTERS:
                    setattr(host, counter, int(self.stats[counter].get(name, 0)))
        return dict(sorted(self.hosts.items()))


def _message(res: Any) -> str:
    if not isinstance(res, dict):
        return str(res)
    parts = [str(res.get("msg") or "").strip()]
    stderr = str(res.get("stderr") or res.get("module_stderr") or "").strip()
    if stderr and stderr not in parts[0]:
        parts.append(stderr.splitlines()[-1])
    text = " ".join(p for p in parts if p)
    return text or "failed (no message)"


def runs_dir() -> Path:
    return state_dir() / "runs"


def _new_private_dir(playbook: str) -> Path:
    base = runs_dir()
    base.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = base / f"{stamp}-{playbook}-{uuid.uuid4().hex[:6]}"
    path.mkdir(mode=0o700)
    return path


def _prune_runs(keep: int) -> None:
    dirs = sorted((p for p in runs_dir().iterdir() if p.is_dir()), key=lambda p: p.name)
    for old in dirs[:-keep] if keep > 0 else dirs:
        shutil.rmtree(old, ignore_errors=True)


def _write_extravars(private: Path, extravars: dict[str, Any]) -> Path:
    """Extra vars as a YAML file, every string ``!unsafe``: a directory name or any other
    value from the command line is data for the play, never a template."""
    path = private / "env" / "grid-ops-extravars.yml"
    write_atomic(path, f"---\n{inventory.to_yaml(extravars)}\n", mode=0o600)
    return path


def _forget_environment(private: Path) -> None:
    """ansible-runner notes the whole environment of the run (the operator's, tokens
    included) in ``artifacts/<id>/command``; keep the command, drop the environment."""
    for note in private.glob("artifacts/*/command"):
        try:
            data = json.loads(note.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            note.unlink(missing_ok=True)
            continue
        if isinstance(data, dict) and "env" in data:
            data["env"] = sorted(data["env"]) if isinstance(data["env"], dict) else []
            write_atomic(note, json.dumps(data, indent=2) + "\n", mode=0o600)


def _envvars(forks: int) -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    return {
        # ansible-runner runs the bare ansible-playbook from PATH: ours first.
        "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")]),
        "ANSIBLE_CONFIG": str(ansible_root() / "ansible.cfg"),
        # ansible-runner turns host-key checking off unless told; we keep it on.
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_FORKS": str(forks),
        "ANSIBLE_NOCOLOR": "1",
    }


def run(
    playbook: str,
    cluster: model.ClusterModel,
    limit: list[str] | str | None = None,
    extravars: dict[str, Any] | None = None,
    check: bool = False,
    on_progress: EventCallback | None = None,
    source: str = "cluster.yaml",
    keep_runs: int | None = None,
) -> PlaybookResult:
    """Run ``playbooks/<playbook>.yml`` against the cluster; returns per-host results."""
    path = playbook_path(playbook)
    if not path.is_file():
        raise UsageError(f"No playbook '{playbook}' at {path}.")
    if isinstance(limit, str):
        limit = [limit]
    for name in limit or []:
        cluster.node(name)
    try:
        import ansible_runner
    except ImportError as exc:
        raise AnsibleRunError(
            f"ansible-runner is not importable ({exc}).",
            "Reinstall grid-ops: pip install grid-ops.",
        ) from None
    private = _new_private_dir(playbook)
    inv_dir = private / "inventory"
    # with what the nodes reported up to now (an earlier run of this command included)
    inventory.render(model.of_cluster_again(cluster), inv_dir, source=source)
    collector = _Collector(on_progress)
    from grid_ops.runtime.digest import runtime_digest

    # the digest of the runtime this grid-ops pushes: part of each node's stamp
    given = {RUNTIME_VAR: runtime_digest(), **(extravars or {})}
    cmdline = ["-e", "@" + str(_write_extravars(private, given))]
    if check:
        cmdline += ["--check", "--diff"]
    from grid_ops import log

    log.logger.info(
        "playbook %s on %s (run dir %s)", playbook, ",".join(limit) if limit else "all", private
    )
    started = time.monotonic()
    try:
        runner = ansible_runner.run(
            verbosity=3 if log.debugging() else None,
            private_data_dir=str(private),
            playbook=str(path),
            inventory=str(inv_dir / "hosts.yml"),
            envvars=_envvars(cluster.forks),
            limit=",".join(limit) if limit else None,
            cmdline=shlex.join(cmdline),
            event_handler=collector,
            quiet=True,
            suppress_env_files=True,
            timeout=None,
        )
    except Exception as exc:  # ansible-runner raises bare exceptions for setup problems
        raise AnsibleRunError(
            f"ansible-runner could not run {playbook}.yml: {exc}.",
            f"Its files are in {private}.",
        ) from None
    finally:
        _forget_environment(private)
        keep = (
            keep_runs
            if keep_runs is not None
            else int(os.environ.get("GRID_OPS_KEEP_RUNS", KEEP_RUNS))
        )
        _prune_runs(max(keep, 1))
    seconds = round(time.monotonic() - started, 3)
    hosts = collector.finish()
    # What only the nodes know (remote_root expanded, the address SSH arrived on): the
    # model's record, for the commands that do not run a playbook.
    model.record_facts(cluster, {name: host.facts.get("grid_node") for name, host in hosts.items()})
    rc = int(runner.rc if runner.rc is not None else 1)
    log.logger.info(
        "playbook %s: exit %s in %.1f s; %s", playbook, rc, seconds,
        ", ".join(f"{n} {h.status}" for n, h in hosts.items()),
    )  # fmt: skip
    if rc != 0 and not any(h.failed or h.unreachable for h in hosts.values()):
        stdout = _tail(private)
        raise AnsibleRunError(
            f"{playbook}.yml did not run (ansible-playbook exit {rc}, status {runner.status}): "
            f"{stdout}",
            f"The run's files are kept in {private}.",
        )
    return PlaybookResult(
        playbook=playbook,
        rc=rc,
        status=str(runner.status),
        hosts=hosts,
        private_data_dir=private,
        seconds=seconds,
    )


def _tail(private: Path) -> str:
    """Last meaningful lines of a run's stdout, to explain a run that never reached a host."""
    for stdout in sorted(private.glob("artifacts/*/stdout")):
        lines = [ln.strip() for ln in stdout.read_text(errors="replace").splitlines() if ln.strip()]
        errors = [ln for ln in lines if "ERROR" in ln or "error" in ln.lower()]
        picked = errors[-2:] or lines[-2:]
        return " ".join(picked)[:600]
    return "no output"
