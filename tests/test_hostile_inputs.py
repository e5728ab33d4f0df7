"""Hostile names, keys and secrets: job names, ``--env``, memory-pool keys, node facts.

Each case goes through the real code path: the CLI as a user runs it (a subprocess, with
the state dir in tmp_path and a fake ``ssh`` first on PATH that notes every call), or the
function the CLI and the nodes share. No cluster is needed.
"""

from __future__ import annotations

import getpass
import hashlib
import importlib.util
import json
import os
import stat
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from grid_ops.actions import jobs
from grid_ops.errors import UsageError
from grid_ops.model import config as config_mod
from grid_ops.runtime import controller, launch, pool
from grid_ops.runtime import jobs as runtime_jobs
from grid_ops.runtime.jobboard import Board, Seen
from grid_ops.runtime.jobqueue import Attempt, Job
from grid_ops.runtime.nodes import Refused
from tests.conftest import REPO

WHEELHOUSE = REPO / "roles" / "grid_venv" / "library" / "grid_wheelhouse.py"
SECRET = "s3cr3t-value-7f3a9c"
CONFIG = """\
name: hostile
cluster_id: hostile-cluster
remote_root: /nonexistent/grid-ops-hostile
nodes:
  - {name: head1, host: 127.0.0.1, port: 1, role: head}
  - {name: w1, host: 127.0.0.1, port: 2}
ssh:
  connect_timeout: 1
"""
# Notes its argv (NUL-separated) and stdin, then answers as the head's job module would.
FAKE_SSH = """\
#!/bin/sh
printf '%s\\0' "$@" >> "{log}/argv"
printf '\\n' >> "{log}/argv"
cat >> "{log}/stdin"
printf '{answer}\\n'
exit {code}
"""
BAD_JOB_NAMES = ["../../x", "a/b", "..", "x\n", "x" * 300, "-rf", ""]
BAD_KEYS = ["../x", "/etc/passwd", "", " lead", "a\nb", "k" * 257, "-rf", "a b", "\x1b[31mred"]
CLI_BAD_KEYS = ["../x", "", "a\nb", "k" * 257, "-rf"]  # through the CLI; all: the controller


class Env:
    """A grid-ops user in tmp_path: config, state dir, home, and a fake ssh."""

    def __init__(self, root: Path, answer: str = "{}", code: int = 255) -> None:
        self.root = root
        self.config = root / "cluster.yaml"
        self.config.write_text(CONFIG)
        self.state = root / "state"
        self.store = self.state / "jobs" / "hostile-cluster"  # under the cluster's id
        self.log = root / "ssh-log"
        self.log.mkdir()
        bin_dir = root / "bin"
        bin_dir.mkdir()
        ssh = bin_dir / "ssh"
        ssh.write_text(FAKE_SSH.format(log=self.log, answer=answer, code=code))
        ssh.chmod(0o755)
        (root / "home").mkdir()
        self.env = dict(
            os.environ,
            GRID_OPS_STATE_DIR=str(self.state),
            GRID_OPS_CONFIG=str(self.config),
            HOME=str(root / "home"),
            PATH=f"{bin_dir}:{os.environ.get('PATH', '')}",
        )

    def cli(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "grid_ops", *args],
            input=stdin, capture_output=True, text=True, env=self.env, cwd=REPO,
            timeout=120, check=False,
        )  # fmt: skip

    def ssh_calls(self) -> list[list[str]]:
        path = self.log / "argv"
        if not path.exists():
            return []
        lines = path.read_text().split("\0\n")
        return [line.split("\0") for line in lines if line]

    def ssh_stdin(self) -> str:
        path = self.log / "stdin"
        return path.read_text() if path.exists() else ""

    def cfg(self) -> Any:
        return config_mod.load(self.config)


def _tree(root: Path) -> dict[str, str]:
    """Every file under ``root`` with a digest of its content (the ssh log left out)."""
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and "ssh-log" not in path.parts:
            found[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def _record(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "submission_id": f"{name}-20250101-000000",
        "command": ["true"],
        "status": "SUCCEEDED",
        "submitted_at": 1.0,
        "known_to_ray": True,
        **extra,
    }


@pytest.fixture
def user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    env = Env(tmp_path)
    monkeypatch.setenv("GRID_OPS_STATE_DIR", str(env.state))
    return env


@pytest.fixture
def decoys(user: Env) -> dict[str, str]:
    """Files a traversal out of the store would reach, each a record it could use."""
    for path in (user.state / "x.json", user.root / "x.json", user.state / "jobs" / "x.json"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(_record("x", status="RUNNING")))
    user.store.mkdir(parents=True)
    return _tree(user.root)


# ---------------------------------------------------------------------------------------
# job names: checked on every use, before any file is read or written


@pytest.mark.parametrize("command", ["status", "logs", "cancel", "results"])
@pytest.mark.parametrize("name", BAD_JOB_NAMES, ids=repr)
def test_a_bad_job_name_is_a_usage_error_before_any_file_or_ssh(
    user: Env, decoys: dict[str, str], command: str, name: str
) -> None:
    proc = user.cli("job", command, "--", name)  # after '--': even '-rf' is the name
    assert proc.returncode == 2, proc.stderr
    assert "is not valid" in proc.stderr and "Traceback" not in proc.stderr
    assert _tree(user.root) == decoys  # nothing written, the decoys untouched
    assert user.ssh_calls() == []


@pytest.mark.parametrize("name", ["../../x", "a/b", "x\n", "x" * 300])
def test_launch_refuses_a_bad_job_name(user: Env, decoys: dict[str, str], name: str) -> None:
    proc = user.cli("job", "launch", "--name", name, "--", "true")
    assert proc.returncode == 2 and "is not valid" in proc.stderr, proc.stderr
    assert _tree(user.root) == decoys
    assert user.ssh_calls() == []


def test_a_bad_name_error_shows_the_name_escaped_and_short(user: Env) -> None:
    proc = user.cli("job", "status", "\x1b[31m" + "y" * 300)
    assert proc.returncode == 2
    assert "\x1b" not in proc.stderr and "y" * 81 not in proc.stderr


# ---------------------------------------------------------------------------------------
# --env: checked names, values only on the SSH connection's stdin


@pytest.mark.parametrize(
    ("option", "named"),
    [
        ("BAD-KEY=1", "BAD-KEY"),
        ("=x", "empty NAME"),
        ("A", "'A'"),
        ("1A=2", "1A"),
        ("A B=3", "A B"),
        (f"{SECRET}", "#1"),  # no '=': not a name, so not repeated (it may be a secret)
    ],
)
def test_a_bad_env_option_is_a_usage_error_naming_it(
    user: Env, decoys: dict[str, str], option: str, named: str
) -> None:
    proc = user.cli("job", "launch", "--name", "ok", "--env", option, "--", "true")
    assert proc.returncode == 2, proc.stderr
    assert named in proc.stderr and "Traceback" not in proc.stderr
    assert SECRET not in proc.stderr
    assert _tree(user.root) == decoys and user.ssh_calls() == []


def test_a_bad_env_error_never_repeats_the_value(user: Env) -> None:
    proc = user.cli("job", "launch", "--name", "ok", "--env", f"BAD-KEY={SECRET}", "--", "true")
    assert proc.returncode == 2 and "BAD-KEY" in proc.stderr
    assert SECRET not in proc.stderr + proc.stdout


def test_env_values_with_nul_or_bad_names_are_refused_by_the_api() -> None:
    for env in ({"A": "x\0y"}, {"": "x"}, {"A-B": "x"}, {"A=B": "x"}):
        with pytest.raises(UsageError):
            jobs.check_env(env)
    assert jobs.check_env({"_A1": "x=y", "B": ""}) == {"_A1": "x=y", "B": ""}


def test_job_launch_sends_env_values_on_stdin_never_in_argv(tmp_path: Path) -> None:
    """The whole CLI path: the fake ssh sees the argv and the stdin the head would get
    (it answers as the controller's client does, with the queued job)."""
    queued = {"id": "ok-1", "name": "ok", "status": "QUEUED", "reason": "queued"}
    answer = json.dumps({"ok": True, "result": queued}).replace("\\", "\\\\")
    user = Env(tmp_path, answer=answer, code=0)
    proc = user.cli("job", "launch", "--name", "ok", "--env", f"SECRET_TOKEN={SECRET}",
                    "--env", "SEED=7", "--", "python", "train.py")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "is QUEUED: queued" in proc.stdout
    (call,) = user.ssh_calls()
    assert not any(SECRET in arg for arg in call), call
    script = call[-1]  # the remote shell line
    assert "grid_ops.runtime.client job-submit" in script and "--stdin" in script
    who, _, payload = user.ssh_stdin().partition("\n")  # who asks, then the job's env
    assert json.loads(who) == {"token": None, "user": getpass.getuser()}
    assert json.loads(payload) == {"SECRET_TOKEN": SECRET, "SEED": "7"}
    kept = [p for p in user.state.rglob("*") if p.is_file() and SECRET in p.read_text()]
    assert kept == []  # nor kept on this machine


def test_the_launch_line_of_an_attempt_holds_no_env_value() -> None:
    job = Job(id="ok-1", submitter="u", submitted_at=1.0, nodes=3, command=("python", "t.py"))
    argv = runtime_jobs.launch_argv(job, "ok-1-2", 2, ("a", "b", "c"), with_env=True)
    assert SECRET not in " ".join(argv)
    line = " ".join(argv)
    assert "--job-env ok-1-2" in line and "--on a,b,c" in line and "--nodes 3" in line
    assert "--job ok-1 --attempt 2" in line and argv[-3:] == ["--", "python", "t.py"]
    plain = runtime_jobs.launch_argv(job, "ok-1-1", 1, ("a", "b", "c"), with_env=False)
    assert "--job-env" not in plain and "--previous" not in plain
    lost = Attempt(number=1, nodes=("a", "x", "c"), started_at=1.0, ended_at=2.0, reason="lost")
    retry = runtime_jobs.launch_argv(replace(job, attempts=(lost,)), "ok-1-2", 2,
                                     ("a", "b", "c"), with_env=False)  # fmt: skip
    assert " ".join(retry).count("--previous a,x,c") == 1  # rank 1 moved: its checkpoints


class _Gcs:
    """A stand-in for the head's GCS key-value store (ray._raylet.GcsClient's calls)."""

    def __init__(self) -> None:
        self.kv: dict[tuple[bytes, bytes], bytes] = {}

    def internal_kv_put(
        self, key: bytes, value: bytes, overwrite: bool, namespace: bytes, timeout: float
    ) -> int:
        self.kv[namespace, key] = value
        return 1

    def internal_kv_get(self, key: bytes, namespace: bytes, timeout: float) -> bytes | None:
        return self.kv.get((namespace, key))

    def internal_kv_del(self, key: bytes, by_prefix: bool, namespace: bytes, timeout: float) -> int:
        return 1 if self.kv.pop((namespace, key), None) is not None else 0


class _JobClient:
    """A stand-in for Ray's JobSubmissionClient: notes what it was given."""

    def __init__(self) -> None:
        self.submitted: dict[str, Any] = {}
        self.stopped: list[str] = []

    def submit_job(self, **kwargs: Any) -> str:
        self.submitted.update(kwargs)
        return str(kwargs["submission_id"])

    def stop_job(self, submission_id: str) -> bool:
        self.stopped.append(submission_id)
        return True


def test_the_head_keeps_env_for_the_entrypoint_outside_the_jobs_fields(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The queue's Ray Jobs runner, with stand-ins for Ray's job client and GCS: the
    values are in no field of the Ray job (what Ray's job API gives back), only in the
    GCS until the entrypoint takes them; a stopped job has them dropped."""
    gcs = _Gcs()
    client = _JobClient()
    monkeypatch.setattr(runtime_jobs, "_gcs", lambda environ: gcs)
    runner = runtime_jobs.Runner(8265, str(tmp_path), "127.0.0.1:6379")
    runner._job_client = client
    job = Job(id="ok", submitter="u", submitted_at=1.0, command=("true",))
    runner.submit(job, "ok-1", 1, ("head1",), {"SECRET_TOKEN": SECRET})
    assert client.submitted["runtime_env"] is None  # Ray would put env_vars on workers' argv
    assert SECRET not in json.dumps(client.submitted)  # entrypoint, metadata: nothing of it
    assert "--job-env ok-1" in client.submitted["entrypoint"]
    assert [json.loads(v) for v in gcs.kv.values()] == [{"SECRET_TOKEN": SECRET}]
    assert launch.job_env("ok-1") == {"SECRET_TOKEN": SECRET}  # as the entrypoint takes it
    assert gcs.kv == {}
    with pytest.raises(SystemExit) as taken:  # once only
        launch.job_env("ok-1")
    assert taken.value.code == 2 and "taken already" in capsys.readouterr().err
    assert launch.job_env("") == {}

    runner.submit(job, "ok-2", 2, ("head1",), {"SECRET_TOKEN": SECRET})
    assert gcs.kv
    runner.stop("ok-2")  # stopped before its entrypoint took them: dropped
    assert gcs.kv == {} and client.stopped == ["ok-2"]

    # the entrypoint's GCS address: RAY_ADDRESS as Ray sets it for a job, nothing else
    monkeypatch.undo()
    with pytest.raises(ValueError, match="does not name the head's GCS"):
        runtime_jobs.take_env("ok-1", {"RAY_ADDRESS": "http://127.0.0.1:8265"})
    with pytest.raises(ValueError, match="does not name the head's GCS"):
        runtime_jobs.take_env("ok-1", {})


def test_the_entrypoint_wrapper_runs_no_command_without_its_env(tmp_path: Path) -> None:
    """python -m grid_ops.runtime.launch --job-env ID -- CMD, as Ray Jobs would start it,
    where the head keeps nothing for the job (no GCS here): CMD never runs."""
    marker = tmp_path / "ran"
    argv = [sys.executable, "-m", "grid_ops.runtime.launch", "--job-env", "ok-1", "--",
            "touch", str(marker)]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, env=env, check=False)
    assert proc.returncode == 2 and "cannot set the job's environment" in proc.stderr
    assert not marker.exists()


def test_ranks_get_the_job_env_with_the_rank_variables() -> None:
    env = launch.rank_env({"SECRET_TOKEN": SECRET, "RANK": "9"}, "10.0.0.1", 29500, 2, 1)
    assert env["SECRET_TOKEN"] == SECRET
    assert (env["RANK"], env["WORLD_SIZE"], env["MASTER_PORT"]) == ("1", "2", "29500")


def test_the_kept_env_is_checked_when_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    gcs = _Gcs()
    gcs.kv[runtime_jobs.ENV_NAMESPACE, b"env/ok-1"] = json.dumps({"A;rm": "x"}).encode()
    monkeypatch.setattr(runtime_jobs, "_gcs", lambda environ: gcs)
    with pytest.raises(ValueError, match="not an environment variable name"):
        runtime_jobs.take_env("ok-1", {})


# ---------------------------------------------------------------------------------------
# memory-pool keys: the CLI and the controller share one check


@pytest.mark.parametrize("command", ["store", "retrieve", "delete"])
@pytest.mark.parametrize("key", CLI_BAD_KEYS, ids=repr)
def test_a_bad_pool_key_is_a_usage_error_before_any_ssh(user: Env, command: str, key: str) -> None:
    data = user.root / "data.bin"
    data.write_bytes(b"payload")
    args = ["memory", command, "--", key, *([str(data)] if command == "store" else [])]
    proc = user.cli(*args)
    assert proc.returncode == 2, proc.stderr
    assert "Not a memory-pool key" in proc.stderr and "Traceback" not in proc.stderr
    assert "reach" not in proc.stderr and "SSH" not in proc.stderr
    assert user.ssh_calls() == []


def test_a_good_pool_key_does_reach_ssh(user: Env) -> None:
    """The control case: the fake ssh does get called when the key is fine."""
    proc = user.cli("memory", "delete", "models/llama-7b:v1@2024+x=y")
    assert proc.returncode == 1 and "over SSH" in proc.stderr, proc.stderr
    assert len(user.ssh_calls()) == 1


@pytest.mark.parametrize("key", [*BAD_KEYS, None, 7, b"bytes"], ids=repr)
def test_the_controller_refuses_a_bad_key_itself(key: Any) -> None:
    """The controller is the trust boundary for every Ray driver: pure logic, no Ray."""
    assert pool.key_problem(key) is not None
    with _refused():
        pool.check_key(key)
    ctl = _bare_controller()
    for op in ("memory-store", "memory-retrieve", "memory-delete"):
        with _refused():
            ctl.call(op, {"key": key}, b"data")
    with _refused():
        ctl.pool_plan(key, 4, 1, None)
    with _refused():
        ctl.pool_commit(key, 4, "0" * 64, ["a"])
    with _refused():
        ctl.pool_locate(key)
    with _refused():
        pool.PoolStore(capacity=10).put(key, b"x")
    assert ctl.state["pool"] == {"kept": {"size": 1, "nodes": ["a"]}}


def _refused() -> Any:
    return pytest.raises(Refused, match="Not a memory-pool key")


def _bare_controller() -> Any:
    """A Controller without Ray, sockets or threads: only its state and lock."""
    ctl = controller.Controller.__new__(controller.Controller)
    ctl.state = {"pool": {"kept": {"size": 1, "nodes": ["a"]}}}
    ctl.lock = threading.RLock()
    return ctl


def test_the_pool_key_check_accepts_sane_keys() -> None:
    for key in ("a", "models/llama-7b:v1", "x" * 256, "user@host+tag=1", "A.B_C-D"):
        assert pool.key_problem(key) is None
        assert pool.check_key(key) == key
    ctl = _bare_controller()
    with pytest.raises(Refused, match="No object 'models/x' in the memory pool"):
        ctl.call("memory-delete", {"key": "models/x"})


# ---------------------------------------------------------------------------------------
# roles/grid_venv/library/grid_wheelhouse.py: node facts name controller directories


@pytest.fixture(scope="module")
def wheelhouse() -> ModuleType:
    spec = importlib.util.spec_from_file_location("grid_wheelhouse_hostile", WHEELHOUSE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


NODE = {"python_tag": "cp311", "machine": "x86_64", "glibc": "2.36"}


@pytest.mark.parametrize(
    "node",
    [
        {**NODE, "python_tag": "../../../etc"},
        {**NODE, "python_tag": "cp311/../../x"},
        {**NODE, "python_tag": "py311"},
        {**NODE, "python_tag": "cp3"},
        {**NODE, "python_tag": None},
        {**NODE, "python_tag": 311},
        {**NODE, "machine": "x86_64/../../x"},
        {**NODE, "machine": ""},
        {**NODE, "glibc": "2.36/.."},
        {**NODE, "glibc": "2.36 --index-url"},
        {k: v for k, v in NODE.items() if k != "python_tag"},
        "not a mapping",
    ],
    ids=repr,
)
def test_wheelhouse_refuses_hostile_node_facts(wheelhouse: ModuleType, node: Any) -> None:
    problem = wheelhouse.node_problem("node1", node)
    assert problem is not None and "node1" in problem


@pytest.mark.parametrize(
    "node", [NODE, {**NODE, "glibc": ""}, {**NODE, "glibc": None}, {**NODE, "python_tag": "cp39"}]
)
def test_wheelhouse_accepts_real_node_facts(wheelhouse: ModuleType, node: Any) -> None:
    assert wheelhouse.node_problem("node1", node) is None


def test_wheelhouse_refuses_option_like_requirements_and_ends_pip_options(
    wheelhouse: ModuleType,
) -> None:
    for bad in ("-r/etc/passwd", "--index-url=http://evil", " -e .", "", "a\nb"):
        assert wheelhouse.requirement_problem(bad) is not None, bad
    assert wheelhouse.requirement_problem("ray[default]==2.60.0") is None
    cmd = wheelhouse.pip_command("/usr/bin/python3", NODE, ["ray==2.60.0", "numpy"], "/w/x")
    assert cmd[-3:] == ["--", "ray==2.60.0", "numpy"]
    assert cmd.index("--") > max(i for i, a in enumerate(cmd) if a.startswith("--platform"))


@pytest.mark.parametrize(
    ("nodes", "requirements", "said"),
    [
        ({"node1": {**NODE, "python_tag": "../../../tmp/evil"}}, ["ray"], "python_tag"),
        ({"node1": NODE}, ["--index-url=http://evil.example", "ray"], "starts with '-'"),
    ],
)
def test_the_wheelhouse_module_fails_before_touching_dest(
    wheelhouse: ModuleType, tmp_path: Path, nodes: Any, requirements: list[str], said: str
) -> None:
    dest = tmp_path / "wheels"
    args = {
        "ANSIBLE_MODULE_ARGS": {
            "nodes": nodes,
            "requirements": requirements,
            "dest": str(dest),
            "pip_python": "/nonexistent/python",
        }
    }
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps(args), encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, str(WHEELHOUSE), str(args_file)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    out = json.loads(proc.stdout)
    assert out.get("failed") and said in out["msg"], out
    assert not dest.exists() and not (tmp_path / "tmp").exists()


class _Ray:
    """The queue's Ray Jobs, for the board's file tests: takes every submit."""

    def __init__(self) -> None:
        self.jobs: dict[str, Any] = {}

    def submit(self, job: Any, sid: str, attempt: int, nodes: Any, env: Any) -> None:
        self.jobs[sid] = env

    def seen(self, submission_id: str) -> Any:
        return Seen("RUNNING")

    def stop(self, submission_id: str) -> None:
        self.jobs.pop(submission_id, None)


def _spec(**extra: Any) -> dict[str, Any]:
    return {"id": "ok-1", "name": "ok", "submitter": "u", "command": ["true"], **extra}


def test_the_queue_keeps_env_values_apart_in_private_files(tmp_path: Path) -> None:
    state = tmp_path / "controller"
    state.mkdir(mode=0o700)
    board = Board(state, _Ray())
    board.submit(_spec(), {"SECRET_TOKEN": SECRET}, 1.0)
    queue = state / "jobs.json"
    assert SECRET not in queue.read_text()
    kept = state / "job-env" / "ok-1.json"
    assert json.loads(kept.read_text()) == {"SECRET_TOKEN": SECRET}
    assert queue.stat().st_mode & 0o777 == 0o600 and kept.stat().st_mode & 0o777 == 0o600
    assert (state / "job-env").stat().st_mode & 0o777 == 0o700
    board.cancel("ok")  # ended: its variables are gone
    assert not kept.exists()


@pytest.mark.parametrize(
    "spec",
    [
        _spec(id="../../x"),
        _spec(id="a/b"),
        _spec(name="../x"),
        _spec(name="-rf"),
        _spec(id="x" * 200),
        _spec(status="SUCCEEDED"),
        _spec(has_env=True),
        _spec(attempts=[]),
        _spec(command=[]),
        _spec(nodes=0),
        _spec(priority="urgent"),
    ],
    ids=repr,
)
def test_the_queue_refuses_a_hostile_job_before_writing_anything(
    tmp_path: Path, spec: dict[str, Any]
) -> None:
    board = Board(tmp_path, _Ray())
    with pytest.raises(Refused):
        board.submit(spec, {"A": "1"}, 1.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_an_unreadable_queue_is_kept_aside_not_lost(tmp_path: Path) -> None:
    (tmp_path / "jobs.json").write_text("{not json")
    board = Board(tmp_path, _Ray())
    assert board.rows() == [] and "could not be read" in board.problems[0]
    (aside,) = tmp_path.glob("jobs.json.unreadable-*")
    assert aside.read_text() == "{not json"
    bad = {"jobs": [_spec(status="QUEUED", submitted_at=1.0), {"id": 7}]}
    (tmp_path / "jobs.json").write_text(json.dumps(bad))
    board = Board(tmp_path, _Ray())
    assert [r["id"] for r in board.rows()] == ["ok-1"]
    assert "job #1" in board.problems[0]


# -- a user's token on this machine --------------------------------------------------------

WHOAMI = json.dumps({"ok": True, "result": {"name": "bob", "role": "member"}})


def test_login_keeps_the_token_private_and_never_on_a_command_line(tmp_path: Path) -> None:
    user = Env(tmp_path, answer=WHOAMI, code=0)
    proc = user.cli("user", "login", stdin=f"{SECRET}\n")
    assert proc.returncode == 0, proc.stderr
    assert "as bob (member)" in proc.stdout
    kept = user.state / "tokens" / "hostile-cluster.token"
    assert kept.read_text().strip() == SECRET
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert stat.S_IMODE(kept.parent.stat().st_mode) == 0o700
    (call,) = user.ssh_calls()
    assert not any(SECRET in arg for arg in call), call
    assert json.loads(user.ssh_stdin())["token"] == SECRET  # on stdin only
    # every later call carries it, the same way
    user.cli("job", "list")
    assert all(SECRET not in arg for c in user.ssh_calls() for arg in c)
    assert user.ssh_stdin().count(SECRET) == 2


def test_a_token_the_head_refuses_is_not_kept(tmp_path: Path) -> None:
    refused = json.dumps({"ok": False, "error": "Your token is not known to this cluster."})
    user = Env(tmp_path, answer=refused, code=1)
    proc = user.cli("user", "login", stdin="wrong-token\n")
    assert proc.returncode != 0 and "not known to this cluster" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (user.state / "tokens").exists()
    for bad in ("", "two words"):
        proc = user.cli("user", "login", stdin=f"{bad}\n")
        assert proc.returncode == 2 and "not a token" in proc.stderr


def test_a_token_file_others_can_read_is_refused_and_not_sent(tmp_path: Path) -> None:
    user = Env(tmp_path, answer=WHOAMI, code=0)
    kept = user.state / "tokens" / "hostile-cluster.token"
    kept.parent.mkdir(parents=True)
    kept.write_text(SECRET)
    kept.chmod(0o644)
    proc = user.cli("user", "whoami")
    assert proc.returncode == 2
    assert "is readable by other users (mode 644)" in proc.stderr
    assert "grid-ops user login" in proc.stderr
    assert user.ssh_calls() == []  # nothing left this machine


def test_a_file_in_the_way_of_the_token_dir_is_a_clear_error(tmp_path: Path) -> None:
    user = Env(tmp_path, answer=WHOAMI, code=0)
    user.state.mkdir(parents=True)
    (user.state / "tokens").write_text("mine")  # the user's own file, kept
    proc = user.cli("user", "login", stdin=f"{SECRET}\n")
    assert proc.returncode == 2, proc.stderr
    assert "Cannot keep your token in" in proc.stderr and "Traceback" not in proc.stderr
    assert (user.state / "tokens").read_text() == "mine"


def test_usage_refuses_an_unknown_grouping_or_window_before_reaching_the_head(
    tmp_path: Path,
) -> None:
    user = Env(tmp_path, answer=WHOAMI, code=0)
    for args, said in ((("--by", "gpu"), "Use --by user or --by node"),
                       (("--since", "yesterday"), "Cannot read the duration 'yesterday'"),
                       (("--since", "-5d"), "Cannot read the duration")):  # fmt: skip
        proc = user.cli("usage", *args)
        assert proc.returncode == 2, proc.stderr
        assert said in proc.stderr and "Traceback" not in proc.stderr
    assert user.ssh_calls() == []
