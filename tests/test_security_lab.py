"""Security on the lab: authenticated Ray, private node paths, reserved and odd names.

Each lab node has its own Unix user on this one machine, so node2's user is a real second
local user next to node1's: the tests use it to try what another user of a shared box
would try."""

from __future__ import annotations

import json
import pwd
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import Lab, lab_node

pytestmark = pytest.mark.lab

UNAUTH = "env -u RAY_AUTH_MODE -u RAY_AUTH_TOKEN_PATH -u RAY_AUTH_TOKEN"
JOBS_PROBE = (
    "import sys, urllib.request, urllib.error\n"
    "req = urllib.request.Request('http://127.0.0.1:8265/api/jobs/')\n"
    "if len(sys.argv) > 1: req.add_header('Authorization', 'Bearer ' + sys.argv[1])\n"
    "try:\n    print(urllib.request.urlopen(req, timeout=20).status)\n"
    "except urllib.error.HTTPError as e:\n    print(e.code)\n"
)


@pytest.fixture(scope="module")
def cluster(lab: Lab) -> Iterator[Lab]:
    lab.start_cluster()
    yield lab


def _user(node: str) -> str:
    return str(lab_node(node).user)


def _root(node: str) -> Path:
    return Path(pwd.getpwnam(_user(node)).pw_dir) / "grid-ops"


def _run(lab: Lab, node: str, line: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """``line`` through the node's shell as grid-ops runs it (venv, RAY_ADDRESS, token)."""
    return lab.cli(
        "run", "--node", node, "-c", str(lab.config), "--shell", "--", line, timeout=timeout
    )


def _as(user: str, line: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``line`` as a local user with a bare environment: no grid-ops, no token."""
    return subprocess.run(
        ["runuser", "-u", user, "--", "env", "-i", "PATH=/usr/bin:/bin", "bash", "-c", line],
        capture_output=True, text=True, timeout=timeout, check=False, cwd="/",
    )  # fmt: skip


def test_ray_refuses_callers_without_the_token_and_takes_ours(cluster: Lab) -> None:
    token_file = cluster.state_dir / "secrets" / cluster.cluster_id() / "ray_auth_token"
    assert token_file.stat().st_mode & 0o777 == 0o600
    assert token_file.parent.stat().st_mode & 0o777 == 0o700
    token = token_file.read_text().strip()
    assert len(token) == 64
    for node in cluster.nodes:
        placed = _root(node) / "state" / "ray_auth_token"
        assert placed.read_text().strip() == token
        assert placed.stat().st_mode & 0o777 == 0o600

    # grid-ops' own driver on the head: connects and sees every node
    ours = _run(cluster, "node1", "timeout 120 python -c 'import ray; ray.init(); "
                "print(len([n for n in ray.nodes() if n[\"Alive\"]]))'")  # fmt: skip
    assert ours.returncode == 0, ours.stderr[-1500:]
    assert ours.stdout.strip().splitlines()[-1] == str(len(cluster.nodes))

    # the same driver without the token is refused (or never gets in)
    theirs = _run(cluster, "node1", f"{UNAUTH} timeout 60 python -c 'import ray; ray.init(); "
                  "print(\"CONNECTED\", ray.cluster_resources())'")  # fmt: skip
    assert theirs.returncode != 0
    assert "CONNECTED" not in theirs.stdout

    # the job server: no token, 401; a wrong one, 401; ours, 200
    codes = []
    for arg in ("", "wrong-token", token):
        line = f"python -c {shlex.quote(JOBS_PROBE)} {shlex.quote(arg) if arg else ''}"
        proc = _run(cluster, "node1", line)
        assert proc.returncode == 0, proc.stderr[-1500:]
        codes.append(int(proc.stdout.strip().splitlines()[-1]))
    assert codes[0] in (401, 403) and codes[1] in (401, 403) and codes[2] == 200

    # an unauthenticated job submission is refused
    marker = Path("/tmp/grid-ops-test-unauthenticated-job")
    submit = _run(cluster, "node1", f"{UNAUTH} timeout 90 ray job submit --address "
                  f"http://127.0.0.1:8265 --no-wait -- touch {marker}")  # fmt: skip
    assert submit.returncode != 0
    assert not marker.exists()


def test_another_local_user_cannot_reach_the_token_notes_socket_or_temp_dir(
    cluster: Lab,
) -> None:
    victim, other = _user("node1"), _user("node2")
    root = _root("node1")
    assert root.stat().st_mode & 0o777 == 0o700
    assert (root / "state").stat().st_mode & 0o777 == 0o700
    # Ray's own temp dir is 0777, but it sits inside the 0700 remote_root
    assert (root / "ray").is_dir()
    for target in ("state/ray_auth_token", "state/run", "state/controller/control.sock", "ray"):
        proc = _as(other, f"ls -l {shlex.quote(str(root / target))}")
        assert proc.returncode != 0 and "Permission denied" in proc.stderr, target
    sock = shlex.quote(str(root / "state/controller/control.sock"))
    connect = _as(other, "python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); "
                  f"s.connect(sys.argv[1])' {sock}")  # fmt: skip
    assert connect.returncode != 0 and "Permission" in connect.stderr

    # the short private dir: another user made it first; it is refused, not used
    uid = pwd.getpwnam(victim).pw_uid
    squat = Path(f"/tmp/grid-ops-{uid}")
    assert not squat.exists()
    assert _as(other, f"mkdir -m 777 {squat}").returncode == 0
    try:
        proc = _run(cluster, "node1", "python -m grid_ops.runtime.private")
        assert proc.returncode == 1
        assert f"belongs to uid {pwd.getpwnam(other).pw_uid}" in proc.stderr
    finally:
        _as(other, f"rmdir {squat}")
    proc = _run(cluster, "node1", "python -m grid_ops.runtime.private")
    assert proc.returncode == 0 and proc.stdout.strip().endswith(str(squat))
    assert squat.stat().st_uid == uid and squat.stat().st_mode & 0o777 == 0o700
    squat.rmdir()


@pytest.mark.parametrize("name", ["state", "venv", "lib", "jobs", "wheelhouse"])
def test_syncing_a_reserved_name_leaves_grid_ops_own_files_alone(
    cluster: Lab, tmp_path: Path, name: str
) -> None:
    src = tmp_path / name
    src.mkdir()
    (src / "mine.txt").write_text(f"user file in {name}\n")
    proc = cluster.cli("sync", str(src), "-c", str(cluster.config), "--delete", "--json")
    assert proc.returncode == 0, proc.stderr
    for node in cluster.nodes:
        root = _root(node)
        assert (root / "code" / name / "mine.txt").read_text() == f"user file in {name}\n"
        assert (root / "state" / "ray_auth_token").is_file()
        assert (root / "venv" / "bin" / "python").exists()
        assert (root / "lib" / "grid_ops" / "__init__.py").is_file()
    assert (_root("node1") / "state" / "controller" / "state.json").is_file()
    status = cluster.cli("boost", "status", "-c", str(cluster.config), "--json")
    assert status.returncode == 0, status.stderr  # the controller still answers
    # and run starts where sync put it
    proc = _run(cluster, "node1", f"cat {name}/mine.txt")
    assert proc.returncode == 0 and proc.stdout.strip() == f"user file in {name}"


def test_a_directory_named_like_a_template_is_synced_under_its_literal_name(
    cluster: Lab, tmp_path: Path
) -> None:
    name = "{{ lookup('pipe', 'touch grid-ops-injected') }}{{ 7 * 7 }}"
    src = tmp_path / name
    src.mkdir()
    (src / "f.txt").write_text("literal\n")
    proc = cluster.cli("sync", str(src), "-c", str(cluster.config), "--json", "--node", "node2")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["hosts"]["node2"]["dest"] == str(_root("node2") / "code" / name)
    assert (_root("node2") / "code" / name / "f.txt").read_text() == "literal\n"
    for where in (Path.cwd(), tmp_path, Path("/"), cluster.config.parent):
        assert not (where / "grid-ops-injected").exists()
    assert not (_root("node2") / "code" / "49").exists()


def _copy_config(lab: Lab, path: Path, **changes: object) -> Path:
    """The lab's config with ``changes`` (None: the key left out), written to ``path``
    (same cluster name)."""
    data = yaml.safe_load(lab.config.read_text())
    data.update(changes)
    data = {k: v for k, v in data.items() if v is not None}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_a_second_cluster_of_the_same_name_cannot_touch_the_first_ones_nodes(
    cluster: Lab, tmp_path: Path
) -> None:
    """What 'grid-ops init' gives everyone: two configs both named 'lab'. The second,
    for node3 alone, keeps its own state and is refused on node3 (which the first
    cluster provisioned) before anything changes there."""
    ours = cluster.cluster_id()
    assert (_root("node3") / "state" / "cluster_id").read_text().strip() == ours
    data = yaml.safe_load(cluster.config.read_text())
    node3 = [n for n in data["nodes"] if n["name"] == "node3"]
    # no cluster_id: one is made for the file (as for a config written by hand)
    other = _copy_config(cluster, tmp_path / "lab.yaml", nodes=node3, cluster_id=None)
    theirs = cluster.cluster_id(other)
    assert theirs != ours

    for command in (("apply", "--check"), ("apply", "--yes"), ("reset", "--yes")):
        refused = cluster.cli(*command, "-c", str(other), timeout=300)
        assert refused.returncode == 2, (command, refused.stdout[-800:], refused.stderr[-800:])
        text = " ".join(refused.stderr.split())
        assert "node3 (cluster" in text and "another grid-ops cluster" in text, text
        assert "nothing was changed" in text and "--adopt" in text and "Traceback" not in text
    # the playbooks check it on every node too (the operator's path: no grid-ops plan)
    played = cluster.cli("provision", "-c", str(other), timeout=300)
    assert played.returncode != 0, played.stdout[-800:]
    said = " ".join((played.stdout + played.stderr).split())
    assert "node3 belongs to another grid-ops cluster" in said, said[-1500:]
    # node3 is still the first cluster's, whole, with its Ray running
    assert (_root("node3") / "state" / "cluster_id").read_text().strip() == ours
    assert (_root("node3") / "venv" / "bin" / "python").exists()
    alive = _run(cluster, "node3", 'pgrep -x -U "$(id -u)" raylet >/dev/null && echo UP')
    assert alive.stdout.strip().splitlines()[-1:] == ["UP"], alive.stderr[-800:]
    # --adopt gets past the refusal (checked only: node3 stays the lab's)
    planned = cluster.cli("apply", "--check", "--adopt", "-c", str(other), timeout=300)
    assert planned.returncode == 0, planned.stderr[-1500:]
    assert (_root("node3") / "state" / "cluster_id").read_text().strip() == ours

    # the first cluster's applied state and Ray token were never the second's
    mine = cluster.cli("apply", "--check", "--json", "-c", str(cluster.config), timeout=300)
    assert mine.returncode == 0, mine.stderr[-1500:]
    plan = json.loads(mine.stdout)["plan"]
    assert plan["remove"] == [] and plan["foreign"] == {}
    secrets = cluster.state_dir / "secrets"
    assert (secrets / ours / "ray_auth_token").is_file()
    assert not (secrets / theirs).exists()
    assert not (cluster.state_dir / "clusters" / theirs / "applied.json").exists()


def test_an_ssh_master_opened_under_other_host_key_rules_is_not_reused(
    cluster: Lab, tmp_path: Path
) -> None:
    """A master opened under the lab's settings must not carry a config of the same
    cluster that pins a known_hosts file without the node's key: that config's ssh
    checks the host key itself and refuses."""
    opened = _run(cluster, "node2", "echo OPEN")
    assert opened.returncode == 0 and "OPEN" in opened.stdout, opened.stderr[-800:]
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    ssh = yaml.safe_load(cluster.config.read_text())["ssh"]
    pinned = _copy_config(
        cluster,
        tmp_path / "pinned.yaml",
        cluster_id=cluster.cluster_id(),
        ssh={**ssh, "known_hosts_file": str(empty)},
    )
    tried = cluster.cli("run", "--node", "node2", "-c", str(pinned), "--", "echo", "RODE")
    assert tried.returncode != 0 and "RODE" not in tried.stdout, tried.stdout[-800:]
    assert "Host key verification failed" in tried.stderr, tried.stderr[-800:]
