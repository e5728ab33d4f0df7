"""The README's first command: `grid-ops demo` on the embedded default cluster."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from grid_ops.module_utils import grid_node_os
from tests.conftest import Lab

NOT_ROOT = "import os, sys; os.geteuid = lambda: 1000; from grid_ops.cli import main; main()"


@pytest.mark.lab
def test_demo_without_root_runs_the_main_job_on_this_machine(tmp_path: Path) -> None:
    """Not root: a one-node cluster of this machine (local connection), for real: ping,
    provision a venv with Ray, start a Ray head and read its status. It runs in a network
    namespace with only a loopback interface, so Ray's own traffic stays on loopback."""
    ns = "gridops-test-lo"
    home = Path(tempfile.mkdtemp(prefix="gdemo-", dir="/tmp"))  # short: Ray socket paths
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    env = dict(
        os.environ,
        HOME=str(home),
        XDG_CACHE_HOME=cache,  # share the wheel cache with the other tests
        GRID_OPS_STATE_DIR=str(tmp_path / "state"),
        COLUMNS="200",
    )
    config = tmp_path / "demo.yaml"
    subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
    subprocess.run(["ip", "netns", "add", ns], check=True)
    subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
    try:
        proc = subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, "-c", NOT_ROOT, "demo", "-o", str(config)],
            capture_output=True, text=True, env=env, timeout=900, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert "Traceback" not in proc.stderr
        assert "connection: local" in config.read_text()
        assert "Ray cluster: head localhost, address 127.0.0.1:6379" in proc.stdout
        assert "final: {'epoch': 3, 'loss': 0.125}" in proc.stdout  # the demo job ran
        assert "0.5 CPU on localhost" in proc.stdout and "released boost-" in proc.stdout
        assert "stored 'demo' (4 MiB) on localhost" in proc.stdout
        assert "retrieved 'demo': byte-exact" in proc.stdout
        row = next(ln for ln in proc.stdout.splitlines() if "│ localhost" in ln and "head" in ln)
        assert "alive" in row and "127.0.0.1" in row
        assert (home / "grid-ops-demo" / "venv" / "bin" / "ray").exists()
        assert not (tmp_path / "state" / "lab").exists()
    finally:
        # Stop only this demo's Ray (a root 'ray stop' would stop every Ray on the box),
        # and remove what its killed dashboard leaves in /tmp, as 'cluster stop' does.
        mine = [pid for pid, argv in grid_node_os.own_processes() if f"{home}/" in " ".join(argv)]
        sockets = grid_node_os.forkserver_sockets(mine)
        subprocess.run(["pkill", "-KILL", "-f", f"{home}/"], check=False)
        grid_node_os.remove_forkserver_sockets(sockets)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        shutil.rmtree(home, ignore_errors=True)


@pytest.mark.lab
@pytest.mark.slow
def test_demo_as_root_brings_up_the_lab_and_ray_on_it(lab: Lab) -> None:
    proc = lab.cli("demo", "--nodes", str(len(lab.nodes)), "-o", str(lab.config), timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    status, rest = proc.stdout.split("Ray cluster: head node1")[1].split("health of lab")
    health, job = rest.split("launched job demo-")
    for name in lab.nodes:
        row = next(line for line in status.splitlines() if f"│ {name} " in line)
        assert "alive" in row
        row = next(line for line in health.splitlines() if f"│ {name} " in line)
        assert "running" in row  # Ray, as the health probe sees it
    assert ": SUCCEEDED" in job
    assert "final: {'epoch': 3, 'loss': 0.125}" in job
    boost = job.split("final:")[1]
    assert f"0.5 CPU on {lab.nodes[-1]}" in boost and "released boost-" in boost
    assert "stored 'demo' (4 MiB) on " in boost  # two replicas, on two nodes
    assert "retrieved 'demo': byte-exact" in boost and "deleted demo" in boost


SEEDS_SSH_CONFIG = """\
Host gpu1
  HostName {ip1}
  User {user1}
Host gpu2
  HostName {ip2}
  User {user2}
Host *
  IdentityFile {key}
  UserKnownHostsFile {known}
"""
# The seeds' shape, as the lab's own cluster under other names: the same cluster name and
# remote_root, so the nodes' venvs (and the cluster's token) serve both and the test
# provisions nothing new; Ray is restarted under the alias names.
SEEDS_CONFIG = """\
name: lab
nodes: [gpu1, gpu2]
remote_root: ~/grid-ops
ssh: {connect_timeout: 5, config_file: ssh_config}
ray: {dashboard_port: 8265, redis_port: 6379}
"""


@pytest.mark.lab
@pytest.mark.slow
def test_the_seeds_ssh_alias_config_runs_the_main_job(lab: Lab, tmp_path: Path) -> None:
    """The seeds' own shape: nodes by ssh alias only, hosts and users in an ssh config
    file that neither the controller's nor the head's resolver knows. Every step of the
    main job works: the head's DNS never has to know 'gpu2'."""
    from grid_ops import lab as lab_mod

    state = lab_mod.load_state()
    assert state is not None
    first, second = state.nodes[0], state.nodes[1]
    (tmp_path / "ssh_config").write_text(
        SEEDS_SSH_CONFIG.format(
            ip1=first.ip, user1=first.user, ip2=second.ip, user2=second.user,
            key=lab_mod.key_file(), known=lab_mod.known_hosts_file(),
        )
    )  # fmt: skip
    seeds = tmp_path / "grid_cluster.yaml"
    # the lab's machines seen through aliases: the same cluster, so the lab's id (a
    # config without it would be another cluster, refused on nodes the lab provisioned)
    seeds.write_text(SEEDS_CONFIG + f'cluster_id: "{lab.cluster_id()}"\n')
    # the lab's own cluster uses the same nodes' Ray ports: it rests meanwhile
    assert lab.cli("cluster", "stop", "-c", str(lab.config)).returncode == 0
    try:
        proc = lab.cli("demo", "-c", str(seeds), timeout=1200)
        out = proc.stdout
        assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
        status = out.split("Ray cluster: head gpu1")[1].split("health of")[0]
        for name in ("gpu1", "gpu2"):
            row = next(line for line in status.splitlines() if f"│ {name} " in line)
            assert "alive" in row, row
        assert "final: {'epoch': 3, 'loss': 0.125}" in out  # the job ran on Ray Jobs
        assert "0.5 CPU on gpu2" in out and "released boost-" in out  # found by name
        assert "stored 'demo' (4 MiB) on gpu1, gpu2" in out  # both nodes had room
        assert "retrieved 'demo': byte-exact" in out
        run = lab.cli("run", "-c", str(seeds), "--node", "gpu2", "--",
                      "python", "-c", "import os; print(os.environ['RAY_ADDRESS'])")  # fmt: skip
        assert run.returncode == 0, run.stderr[-2000:]
        assert run.stdout.strip() == f"{first.ip}:6379"  # an address, not the alias
        ray = lab.cli("run", "-c", str(seeds), "--node", "gpu2", "--", "ray", "status")
        assert ray.returncode == 0 and "Active:" in ray.stdout, ray.stderr[-2000:]
        driver = lab.cli("run", "-c", str(seeds), "--node", "gpu2", "--", "python", "-c",
                         "import ray; ray.init(logging_level='ERROR'); "
                         "print(sum(n['Alive'] for n in ray.nodes()))")  # fmt: skip
        assert driver.returncode == 0, driver.stderr[-2000:]  # a driver on another user's node
        assert driver.stdout.strip().splitlines()[-1] == "2"
    finally:
        lab.cli("cluster", "stop", "-c", str(seeds))
        assert lab.cli("cluster", "start", "-c", str(lab.config)).returncode == 0
