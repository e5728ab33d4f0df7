"""The lab and the first playbook through the whole chain, on real SSH nodes."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from grid_ops import lab as lab_mod
from grid_ops import model
from grid_ops.errors import LabError
from tests.conftest import Lab, lab_node

pytestmark = pytest.mark.lab


def _ping_json(lab: Lab) -> tuple[int, dict]:  # type: ignore[type-arg]
    proc = lab.cli("ping", "-c", str(lab.config), "--json")
    assert "Traceback" not in proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def test_lab_writes_a_valid_cluster_config(lab: Lab) -> None:
    proc = lab.cli("config", "validate", str(lab.config), "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert [n["name"] for n in data["nodes"]] == lab.nodes
    assert data["head"] == "node1"
    ips = {n["host"] for n in data["nodes"]}
    subnet = ipaddress.ip_network(lab_mod.DEFAULT_SUBNET)
    assert all(ipaddress.ip_address(ip) in subnet for ip in ips)


def test_lab_status_shows_every_node_answering(lab: Lab) -> None:
    proc = lab.cli("lab", "status", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["up"] is True
    assert [(n["name"], n["ssh"]) for n in data["nodes"]] == [(n, True) for n in lab.nodes]


def test_nodes_have_own_hostname_user_and_home(lab: Lab) -> None:
    state = lab_mod.load_state()
    assert state is not None
    node = state.nodes[1]
    key = lab.state_dir / "lab" / "id_ed25519"
    known = lab.state_dir / "lab" / "known_hosts"
    proc = subprocess.run(
        [
            "ssh", "-i", str(key), "-o", f"UserKnownHostsFile={known}",
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
            f"{node.user}@{node.ip}", "hostname; id -un; echo $HOME; getent hosts node1",
        ],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    hostname, user, home, hosts = proc.stdout.splitlines()
    assert (hostname, user, home) == (node.name, node.user, f"/home/{node.user}")
    assert hosts.split()[0] == state.nodes[0].ip


def test_ping_reaches_every_node(lab: Lab) -> None:
    rc, data = _ping_json(lab)
    assert rc == 0
    assert data["playbook"] == "ping"
    assert data["rc"] == 0
    assert sorted(data["hosts"]) == lab.nodes
    for host in data["hosts"].values():
        assert host["ok"] >= 1
        assert host["failed"] == host["unreachable"] == 0
        assert host["python"].startswith("3.")


def test_killed_node_is_unreachable_and_others_still_reported(lab: Lab) -> None:
    victim = lab.nodes[-1]
    kill = lab.cli("lab", "kill", victim)
    assert kill.returncode == 0, kill.stderr
    try:
        rc, data = _ping_json(lab)
        assert rc == 1
        assert data["hosts"][victim]["unreachable"] == 1
        assert lab_node(victim).ip in data["hosts"][victim]["msg"]
        for name in lab.nodes[:-1]:
            assert data["hosts"][name]["unreachable"] == 0
            assert data["hosts"][name]["ok"] >= 1
        table = lab.cli("ping", "-c", str(lab.config))
        assert table.returncode == 1
        assert victim in table.stderr and "did not answer" in table.stderr
        assert "Traceback" not in table.stdout + table.stderr
    finally:
        revive = lab.cli("lab", "revive", victim)
        assert revive.returncode == 0, revive.stderr
    rc, data = _ping_json(lab)
    assert rc == 0


def test_kill_unknown_node_is_a_clear_error(lab: Lab) -> None:
    proc = lab.cli("lab", "kill", "node99")
    assert proc.returncode == 1
    assert "no node 'node99'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_driver_reports_counts_facts_and_keeps_recent_runs(lab: Lab) -> None:
    from grid_ops.drivers import ansible
    from grid_ops.model import config

    cfg = config.load(lab.config)
    seen: list[tuple[str, str, str | None]] = []
    for _ in range(3):
        result = ansible.run(
            "ping",
            model.of(cfg),
            limit=["node1"],
            keep_runs=2,
            on_progress=lambda *e: seen.append(e),
        )
    assert result.rc == 0
    assert list(result.hosts) == ["node1"]
    host = result.hosts["node1"]
    # the inventory check (grid_validate), the probe, the cluster identity check, the
    # ping role's report
    assert (host.ok, host.changed, host.failed, host.unreachable) == (4, 0, 0, 0)
    assert host.facts["grid_node"]["hostname"] == "node1"
    assert host.facts["grid_node"]["user"] == lab_node("node1").user
    assert all(d >= 0 for d in host.durations.values()) and host.durations
    assert ("node1", "Probe the node's Python, platform, paths, GPUs and Ray", "ok") in seen
    runs = sorted(p.name for p in ansible.runs_dir().iterdir())
    assert len(runs) == 2 and result.private_data_dir.name in runs
    assert (result.private_data_dir / "inventory" / "hosts.yml").is_file()


def test_host_key_checking_stays_on(lab: Lab, tmp_path: Path) -> None:
    """A node whose host key does not match known_hosts is refused, not trusted."""
    from grid_ops.drivers import ansible
    from grid_ops.model import config

    cfg = config.load(lab.config)
    assert cfg.ssh.known_hosts_file is not None
    wrong = tmp_path / "known_hosts"
    lines = cfg.ssh.known_hosts_file.read_text().splitlines()
    # node1's address with node2's key
    wrong.write_text(f"{lines[0].split()[0]} {' '.join(lines[1].split()[1:])}\n")
    cfg.ssh.known_hosts_file = wrong
    # Close multiplexed connections so the check happens on a fresh one.
    lab_mod._kill(lab_mod._controller_ssh_pids({cfg.node("node1").host}))
    result = ansible.run("ping", model.of(cfg), limit=["node1"])
    assert result.rc != 0
    assert result.hosts["node1"].unreachable == 1
    assert "host key" in (result.hosts["node1"].msg or "").lower()


def test_operator_path_plain_ansible_playbook(lab: Lab, tmp_path: Path) -> None:
    """Rendered inventory + ansible-playbook from the repo root, no grid-ops in the loop."""
    proc = lab.operator_playbook("ping", tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in lab.nodes:
        assert f"{name}: Python 3." in proc.stdout
    # ok=4: the inventory check (grid_validate), the probe, the identity check, the report
    recap = [ln for ln in proc.stdout.splitlines() if "ok=4" in ln and "unreachable=0" in ln]
    assert len(recap) == len(lab.nodes)


@pytest.mark.destroys
def test_lab_down_leaves_nothing_and_up_clears_stale_state(lab: Lab) -> None:
    state = lab_mod.load_state()
    assert state is not None
    users = [n.user for n in state.nodes]
    # what a node user leaves in the shared /tmp (as a killed Ray dashboard does), a link
    # of theirs to a file that is not theirs, and a file of somebody else's
    made = subprocess.run(
        ["runuser", "-u", users[0], "--", "mktemp", "-d", "-p", str(lab_mod.NODE_TEMP)],
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stderr
    left = Path(made.stdout.strip())
    (left / "inside").mkdir()
    target = Path(tempfile.mkdtemp()) / "not-theirs"
    target.write_text("kept\n")
    link = lab_mod.NODE_TEMP / f"link-{os.getpid()}-{users[0]}"
    subprocess.run(
        ["runuser", "-u", users[0], "--", "ln", "-s", str(target), str(link)], check=True
    )
    down = lab.cli("lab", "down", "--json")
    assert down.returncode == 0, down.stderr
    assert {str(left), str(link)} <= set(json.loads(down.stdout)["temp"])
    assert not left.exists() and not link.is_symlink()
    assert target.read_text() == "kept\n"
    shutil.rmtree(target.parent)
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not [ns for ns in netns.split() if ns.startswith(lab_mod.NS_PREFIX)]
    bridge = subprocess.run(["ip", "link", "show", lab_mod.BRIDGE], capture_output=True)
    assert bridge.returncode != 0
    passwd = Path("/etc/passwd").read_text()
    for user in users:
        assert f"\n{user}:" not in passwd
        assert not Path(f"/home/{user}").exists()
        assert subprocess.run(["pgrep", "-u", user], capture_output=True).returncode != 0
    assert not (lab.state_dir / "lab").exists()
    status = json.loads(lab.cli("lab", "status", "--json").stdout)
    assert status["up"] is False

    # Stale state with no state file (e.g. a crashed run): a namespace and a marked user.
    stale_ns, stale_user = f"{lab_mod.NS_PREFIX}node7", f"{lab_mod.USER_PREFIX}7"
    subprocess.run(["ip", "netns", "add", stale_ns], check=True)
    subprocess.run(["useradd", "-m", "-c", f"{lab_mod.USER_COMMENT} node7", stale_user], check=True)
    up = lab.cli("lab", "up", "--nodes", str(len(lab.nodes)), "-o", str(lab.config))
    assert up.returncode == 0, up.stderr
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert stale_ns not in netns.split()
    assert f"\n{stale_user}:" not in Path("/etc/passwd").read_text()
    rc, _ = _ping_json(lab)
    assert rc == 0


def test_lab_needs_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(LabError, match="needs root"):
        lab_mod.up(2, Path("unused.yaml"))
