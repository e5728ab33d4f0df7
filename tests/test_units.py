"""Unit tests of pure logic: the cluster status fold, the wheelhouse module's platform
logic, the remote command script (executed locally with bash), the ansible-runner event
collector and the ssh/inventory host variables. No lab, no network, no Ansible run."""

from __future__ import annotations

import configparser
import importlib.util
import json
import os
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from grid_ops import model
from grid_ops.drivers import inventory, remote
from grid_ops.drivers.ansible import HostResult, PlaybookResult, _Collector
from grid_ops.drivers.cluster_status import summarize
from grid_ops.model.config import ClusterConfig, parse

REPO = Path(__file__).resolve().parent.parent
WHEELHOUSE = REPO / "roles" / "grid_venv" / "library" / "grid_wheelhouse.py"

# ---------------------------------------------------------------------------------------
# cluster_status.summarize


def three_nodes() -> ClusterConfig:
    return parse(
        {
            "name": "units",
            "nodes": [
                {"name": "node1", "host": "10.0.0.1", "role": "head"},
                {"name": "node2", "host": "10.0.0.2"},
                {"name": "node3", "host": "10.0.0.3"},
            ],
        }
    )


def ray_facts(ip: str, running: bool, head: bool = False, node_id: str = "") -> dict[str, Any]:
    """Per-host facts as grid_node_info (the grid_facts probe) produces them."""
    pids: dict[str, list[int]] = {}
    if running:
        pids["raylet"] = [1000]
    if head:
        pids["gcs_server"] = [999]
    return {
        "grid_ray_node": {"running": running, "head": head, "node_id": node_id, "pids": pids},
        "grid_node": {"ssh_ip": ip},
    }


def head_facts(
    running: bool = True,
    head: bool = True,
    node_id: str = "h" * 56,
    gcs: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The head's facts: its own Ray facts plus the GCS cluster view (status.yml)."""
    facts = ray_facts("10.0.0.1", running, head, node_id if running else "")
    facts["grid_ray_cluster"] = {
        "address": "10.0.0.1:6379" if head else None,
        "nodes": gcs if gcs is not None else [],
    }
    facts["grid_ray_head_address"] = "10.0.0.1:6379"
    return facts


def gcs_entry(
    node_id: str, ip: str, alive: bool, cpus: float = 4, name: str | None = ""
) -> dict[str, Any]:
    """A GCS node as runtime.status reports it: nodeN (10.0.0.N) joined naming itself."""
    name = f"node{ip.rsplit('.', 1)[1]}" if name == "" else name
    resources: dict[str, float] = {"CPU": cpus}
    if name:
        resources[f"grid_node:{name}"] = 1.0
    return {"node_id": node_id, "ip": ip, "alive": alive, "resources": resources, "name": name}


def playbook(**hosts: HostResult | dict[str, Any]) -> PlaybookResult:
    out = {}
    for name, value in hosts.items():
        out[name] = value if isinstance(value, HostResult) else HostResult(name=name, facts=value)
    return PlaybookResult(
        playbook="ray_status",
        rc=0,
        status="successful",
        hosts=out,
        private_data_dir=Path("/nonexistent"),
        seconds=1.0,
    )


H1, W2, W3 = "a1" * 28, "b2" * 28, "c3" * 28


def rows(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["name"]: row for row in summary["nodes"]}


def test_status_all_alive() -> None:
    gcs = [
        gcs_entry(H1, "10.0.0.1", True, 8),
        gcs_entry(W2, "10.0.0.2", True, 4),
        gcs_entry(W3, "10.0.0.3", True, 2),
    ]
    result = playbook(
        node1=head_facts(node_id=H1, gcs=gcs),
        node2=ray_facts("10.0.0.2", True, node_id=W2),
        node3=ray_facts("10.0.0.3", True, node_id=W3),
    )
    summary = summarize(model.of(three_nodes()), result)
    assert summary["head"] == "node1"
    assert summary["address"] == "10.0.0.1:6379"
    by_name = rows(summary)
    assert [r["name"] for r in summary["nodes"]] == ["node1", "node2", "node3"]
    assert {n: r["ray"] for n, r in by_name.items()} == {
        "node1": "alive",
        "node2": "alive",
        "node3": "alive",
    }
    assert by_name["node1"]["role"] == "head"
    assert by_name["node2"]["role"] == by_name["node3"]["role"] == "worker"
    assert by_name["node2"]["node_id"] == W2
    assert by_name["node3"]["ip"] == "10.0.0.3"
    assert by_name["node1"]["resources"] == {"CPU": 8}
    assert by_name["node3"]["resources"] == {"CPU": 2}
    assert all(r["reachable"] for r in summary["nodes"])
    assert all(r["error"] is None for r in summary["nodes"])


def test_status_raylet_gone_but_gcs_still_alive_is_dead() -> None:
    """The GCS notices a lost raylet only after a timeout; the node itself knows now."""
    gcs = [
        gcs_entry(H1, "10.0.0.1", True),
        gcs_entry(W2, "10.0.0.2", True),
        gcs_entry(W3, "10.0.0.3", True),
    ]
    result = playbook(
        node1=head_facts(node_id=H1, gcs=gcs),
        node2=ray_facts("10.0.0.2", False),  # raylet killed a second ago
        node3=ray_facts("10.0.0.3", True, node_id=W3),
    )
    by_name = rows(summarize(model.of(three_nodes()), result))
    assert by_name["node2"]["ray"] == "dead"
    assert by_name["node2"]["reachable"] is True
    assert by_name["node2"]["node_id"] == W2  # the GCS's record of what died
    assert by_name["node3"]["ray"] == "alive"


def test_status_gcs_dead_and_no_raylet_is_dead() -> None:
    gcs = [gcs_entry(H1, "10.0.0.1", True), gcs_entry(W2, "10.0.0.2", False)]
    result = playbook(
        node1=head_facts(node_id=H1, gcs=gcs),
        node2=ray_facts("10.0.0.2", False),
        node3=ray_facts("10.0.0.3", True, node_id=W3),
    )
    by_name = rows(summarize(model.of(three_nodes()), result))
    assert by_name["node2"]["ray"] == "dead"
    assert by_name["node2"]["node_id"] == W2
    # node3 runs a raylet the GCS does not know (started against another head?): dead
    assert by_name["node3"]["ray"] == "dead"
    assert by_name["node3"]["node_id"] == W3
    assert by_name["node3"]["resources"] == {}


def test_status_no_raylet_and_unknown_to_gcs_is_absent() -> None:
    gcs = [gcs_entry(H1, "10.0.0.1", True), gcs_entry(W2, "10.0.0.2", True)]
    result = playbook(
        node1=head_facts(node_id=H1, gcs=gcs),
        node2=ray_facts("10.0.0.2", True, node_id=W2),
        node3=ray_facts("10.0.0.3", False),
    )
    by_name = rows(summarize(model.of(three_nodes()), result))
    assert by_name["node3"]["ray"] == "absent"
    assert by_name["node3"]["node_id"] is None
    assert by_name["node3"]["resources"] == {}
    assert by_name["node3"]["ip"] == "10.0.0.3"
    assert by_name["node2"]["ray"] == "alive"


def test_status_head_down_workers_with_raylets_are_dead() -> None:
    """No gcs_server on the head: status.yml skips the GCS query and records no nodes."""
    result = playbook(
        node1=head_facts(running=False, head=False, gcs=[]),
        node2=ray_facts("10.0.0.2", True, node_id=W2),
        node3=ray_facts("10.0.0.3", False),
    )
    summary = summarize(model.of(three_nodes()), result)
    assert summary["address"] is None
    by_name = rows(summary)
    assert by_name["node1"]["ray"] == "absent"
    assert by_name["node2"]["ray"] == "dead"  # a raylet with no head to register with
    assert by_name["node2"]["node_id"] == W2
    assert by_name["node3"]["ray"] == "absent"


def test_status_head_missing_from_results_gives_no_address() -> None:
    result = playbook(node2=ray_facts("10.0.0.2", True, node_id=W2))
    summary = summarize(model.of(three_nodes()), result)
    assert summary["address"] is None
    by_name = rows(summary)
    assert by_name["node1"]["reachable"] is False
    assert by_name["node1"]["ray"] == "absent"
    assert by_name["node2"]["ray"] == "dead"


UNREACHABLE_MSG = (
    "Failed to connect to the host via ssh: ssh: connect to host 10.0.0.3 port 22: No route to host"
)


def test_status_unreachable_host_uses_gcs_view_and_carries_error() -> None:
    """Lost after its facts arrived: the stale local view (no raylet) must not count."""
    gcs = [
        gcs_entry(H1, "10.0.0.1", True),
        gcs_entry(W2, "10.0.0.2", True),
        gcs_entry(W3, "10.0.0.3", True, 16),
    ]
    node3 = HostResult(
        name="node3",
        unreachable=1,
        msg=UNREACHABLE_MSG,
        failed_task="Look for this node's Ray processes",
        facts=ray_facts("10.0.0.3", False),
    )
    result = playbook(
        node1=head_facts(node_id=H1, gcs=gcs),
        node2=ray_facts("10.0.0.2", True, node_id=W2),
        node3=node3,
    )
    by_name = rows(summarize(model.of(three_nodes()), result))
    row = by_name["node3"]
    assert row["reachable"] is False
    assert row["ray"] == "alive"
    assert row["node_id"] == W3
    assert row["resources"] == {"CPU": 16}
    assert row["error"] == UNREACHABLE_MSG
    assert by_name["node2"]["error"] is None


def test_status_unreachable_host_unknown_to_gcs_is_absent() -> None:
    gcs = [gcs_entry(H1, "10.0.0.1", True)]
    node3 = HostResult(name="node3", unreachable=1, msg=UNREACHABLE_MSG)
    result = playbook(node1=head_facts(node_id=H1, gcs=gcs), node2={}, node3=node3)
    row = rows(summarize(model.of(three_nodes()), result))["node3"]
    assert row["reachable"] is False
    assert row["ray"] == "absent"
    assert row["error"] == UNREACHABLE_MSG


def test_status_unreachable_host_without_facts_still_gets_gcs_state() -> None:
    """The realistic unreachable worker: no facts at all, only the config's IP host."""
    gcs = [
        gcs_entry(H1, "10.0.0.1", True),
        gcs_entry(W2, "10.0.0.2", True),
        gcs_entry(W3, "10.0.0.3", True, 16),
    ]
    node3 = HostResult(name="node3", unreachable=1, msg=UNREACHABLE_MSG)
    result = playbook(
        node1=head_facts(node_id=H1, gcs=gcs),
        node2=ray_facts("10.0.0.2", True, node_id=W2),
        node3=node3,
    )
    row = rows(summarize(model.of(three_nodes()), result))["node3"]
    assert row["reachable"] is False
    assert row["error"] == UNREACHABLE_MSG
    assert row["ray"] == "alive"
    assert row["node_id"] == W3
    assert row["ip"] == "10.0.0.3"


def test_status_failed_host_carries_its_error() -> None:
    gcs = [gcs_entry(H1, "10.0.0.1", True), gcs_entry(W2, "10.0.0.2", True)]
    node2 = HostResult(
        name="node2",
        failed=1,
        msg="non-zero return code boom",
        facts=ray_facts("10.0.0.2", True, node_id=W2),
    )
    result = playbook(node1=head_facts(node_id=H1, gcs=gcs), node2=node2, node3={})
    by_name = rows(summarize(model.of(three_nodes()), result))
    assert by_name["node2"]["reachable"] is True
    assert by_name["node2"]["ray"] == "alive"
    assert by_name["node2"]["error"] == "non-zero return code boom"
    assert by_name["node3"]["error"] is None


@pytest.mark.parametrize("dead_first", [True, False])
def test_status_node_id_picks_the_current_entry_when_ips_repeat(dead_first: bool) -> None:
    """A restarted worker: the GCS keeps the old (dead) node and the new one, same IP."""
    old = gcs_entry("0ld" + "0" * 53, "10.0.0.2", False, 1)
    new = gcs_entry(W2, "10.0.0.2", True, 6)
    gcs = [gcs_entry(H1, "10.0.0.1", True), *([old, new] if dead_first else [new, old])]
    result = playbook(
        node1=head_facts(node_id=H1, gcs=gcs),
        node2=ray_facts("10.0.0.2", True, node_id=W2),
        node3=ray_facts("10.0.0.3", False),
    )
    row = rows(summarize(model.of(three_nodes()), result))["node2"]
    assert row["ray"] == "alive"
    assert row["node_id"] == W2
    assert row["resources"] == {"CPU": 6}


def test_status_raylet_id_not_among_alive_entries_is_dead() -> None:
    """Another alive entry on the same IP (e.g. a second Ray) is not this node's raylet."""
    other = gcs_entry("f" * 56, "10.0.0.2", True, 1, name=None)
    gcs = [gcs_entry(H1, "10.0.0.1", True), other]
    result = playbook(
        node1=head_facts(node_id=H1, gcs=gcs),
        node2=ray_facts("10.0.0.2", True, node_id=W2),
        node3=ray_facts("10.0.0.3", False),
    )
    row = rows(summarize(model.of(three_nodes()), result))["node2"]
    assert row["ray"] == "dead"


# ---------------------------------------------------------------------------------------
# roles/grid_venv/library/grid_wheelhouse.py


@pytest.fixture(scope="module")
def wheelhouse() -> ModuleType:
    spec = importlib.util.spec_from_file_location("grid_wheelhouse_under_test", WHEELHOUSE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_platform_tags_for_glibc_2_36(wheelhouse: ModuleType) -> None:
    tags = wheelhouse.platform_tags("x86_64", "2.36")
    for expected in (
        "manylinux_2_36_x86_64",
        "manylinux_2_28_x86_64",
        "manylinux_2_17_x86_64",
        "manylinux_2_5_x86_64",
        "manylinux2014_x86_64",
        "manylinux2010_x86_64",
        "manylinux1_x86_64",
        "linux_x86_64",
    ):
        assert expected in tags
    assert "manylinux_2_37_x86_64" not in tags
    assert "manylinux_2_4_x86_64" not in tags
    assert all(t.endswith("_x86_64") for t in tags)
    assert len(tags) == len(set(tags))


def test_platform_tags_respect_the_glibc_ceiling(wheelhouse: ModuleType) -> None:
    tags = wheelhouse.platform_tags("aarch64", "2.12")
    assert "manylinux_2_12_aarch64" in tags
    assert "manylinux2010_aarch64" in tags
    assert "manylinux1_aarch64" in tags
    assert "manylinux2014_aarch64" not in tags  # needs glibc 2.17
    assert "manylinux_2_17_aarch64" not in tags
    assert tags[-1] == "linux_aarch64"


@pytest.mark.parametrize("glibc", ["", "musl", "2"])
def test_platform_tags_without_a_usable_glibc_is_plain_linux(
    wheelhouse: ModuleType, glibc: str
) -> None:
    assert wheelhouse.platform_tags("x86_64", glibc) == ["linux_x86_64"]


NODE = {"python_tag": "cp311", "machine": "x86_64", "glibc": "2.36"}
REQS = ["ray[default]==2.60.0", "numpy==2.1.0"]


def test_platform_key_is_stable_and_order_free(wheelhouse: ModuleType) -> None:
    key = wheelhouse.platform_key(dict(NODE), list(REQS))
    assert key == wheelhouse.platform_key(dict(NODE), list(reversed(REQS)))
    assert key == wheelhouse.platform_key(dict(NODE), list(REQS))
    assert key.startswith("cp311-x86_64-glibc2.36-")
    # stable across processes too (a directory name on disk): no salted hash()
    code = (
        "import importlib.util, json, sys;"
        f"s = importlib.util.spec_from_file_location('w', {str(WHEELHOUSE)!r});"
        "m = importlib.util.module_from_spec(s); s.loader.exec_module(m);"
        f"print(m.platform_key({NODE!r}, {REQS!r}))"
    )
    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert other.stdout.strip() == key


@pytest.mark.parametrize(
    ("node", "reqs"),
    [
        (NODE, ["ray[default]==2.60.0"]),
        (NODE, [*REQS, "torch"]),
        (NODE, ["ray[default]==2.61.0", "numpy==2.1.0"]),
        ({**NODE, "python_tag": "cp312"}, REQS),
        ({**NODE, "machine": "aarch64"}, REQS),
        ({**NODE, "glibc": "2.31"}, REQS),
        ({**NODE, "glibc": ""}, REQS),
    ],
)
def test_platform_key_differs_when_inputs_differ(
    wheelhouse: ModuleType, node: dict[str, str], reqs: list[str]
) -> None:
    assert wheelhouse.platform_key(dict(node), reqs) != wheelhouse.platform_key(dict(NODE), REQS)


def test_wheelhouse_module_check_mode_dedupes_platforms_and_honours_markers(
    wheelhouse: ModuleType, tmp_path: Path
) -> None:
    """The module as Ansible runs it (args file), in check mode: no pip is run."""
    arm = {"python_tag": "cp311", "machine": "aarch64", "glibc": "2.35"}
    dest = tmp_path / "wheels"
    done = dest / wheelhouse.platform_key(arm, REQS)
    done.mkdir(parents=True)
    (done / wheelhouse.MARKER).write_text("{}", encoding="utf-8")
    args = {
        "ANSIBLE_MODULE_ARGS": {
            "nodes": {"node1": NODE, "node2": dict(NODE), "node3": arm},
            "requirements": list(reversed(REQS)),
            "dest": str(dest),
            "pip_python": "/nonexistent/python",
            "_ansible_check_mode": True,
        }
    }
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps(args), encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, str(WHEELHOUSE), str(args_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    out = json.loads(proc.stdout)
    assert not out.get("failed"), out
    x86 = wheelhouse.platform_key(NODE, REQS)
    assert out["host_dirs"] == {
        "node1": str(dest / x86),
        "node2": str(dest / x86),
        "node3": str(done),
    }
    assert out["downloaded"] == [x86]  # once per platform; the marked one is skipped
    assert out["changed"] is True
    assert not (dest / x86).exists()  # check mode wrote nothing


def test_two_provisions_at_once_build_a_platforms_wheelhouse_once(
    wheelhouse: ModuleType, tmp_path: Path
) -> None:
    """Another provision holds the platform's lock and finishes the wheelhouse while this
    one waits: this one then finds the marker and downloads nothing."""
    import fcntl

    dest = tmp_path / "wheels"
    dest.mkdir()
    key = wheelhouse.platform_key(NODE, REQS)
    calls = tmp_path / "pip-calls"
    fake_python = tmp_path / "python"
    fake_python.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    fake_python.chmod(0o755)
    args = {"ANSIBLE_MODULE_ARGS": {"nodes": {"node1": NODE}, "requirements": REQS,
                                    "dest": str(dest), "pip_python": str(fake_python)}}  # fmt: skip
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps(args), encoding="utf-8")
    with open(dest / f"{key}.lock", "a") as other:
        fcntl.flock(other, fcntl.LOCK_EX)  # the other provision is downloading
        waiting = subprocess.Popen(
            [sys.executable, str(WHEELHOUSE), str(args_file)], stdout=subprocess.PIPE, text=True
        )
        time.sleep(1.0)
        assert waiting.poll() is None  # it waits for the lock
        (dest / key).mkdir()
        (dest / key / wheelhouse.MARKER).write_text("{}", encoding="utf-8")
    out, _ = waiting.communicate(timeout=60)
    answer = json.loads(out)
    assert not answer.get("failed"), answer
    assert answer["downloaded"] == [] and answer["changed"] is False
    assert not calls.exists()  # pip never ran
    # alone, it downloads (the fake pip is called once) and marks it
    (dest / key / wheelhouse.MARKER).unlink()
    alone = subprocess.run([sys.executable, str(WHEELHOUSE), str(args_file)],
                           capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert json.loads(alone.stdout)["downloaded"] == [key]
    assert len(calls.read_text().splitlines()) == 1 and (dest / key / wheelhouse.MARKER).exists()


# ---------------------------------------------------------------------------------------
# grid_ops.drivers.remote: the script is executed locally by bash, as the node's shell would


PROBE = (
    "import json, os, sys; print(json.dumps({'cwd': os.getcwd(), "
    "'path': os.environ['PATH'].split(os.pathsep), "
    "'ray': os.environ.get('RAY_ADDRESS'), 'argv': sys.argv[1:]}))"
)


def remote_config(root: str, nodes: list[dict[str, Any]] | None = None, **extra: Any) -> Any:
    return parse(
        {
            "name": "units",
            "remote_root": root,
            "nodes": nodes
            or [
                {"name": "node1", "host": "10.0.0.1", "role": "head"},
                {"name": "node2", "host": "10.0.0.2", "user": "ops"},
            ],
            "ray": {"port": 7001},
            **extra,
        }
    )


def script(config: Any, *args: Any, **kwargs: Any) -> str:
    """The head's remote script (the nodes of these configs differ only in address)."""
    return remote.remote_script(model.of(config), config.head.name, *args, **kwargs)


def bash(script: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
        cwd="/",
    )


def probe(config: Any, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    proc = bash(script(config, [sys.executable, "-c", PROBE, *args]), env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "remote-root"
    (path / "venv" / "bin").mkdir(parents=True)
    return path


def test_remote_runs_in_root_with_venv_first_and_ray_address(root: Path) -> None:
    data = probe(remote_config(str(root)))
    assert Path(data["cwd"]) == root.resolve()
    assert data["path"][0] == f"{root}/venv/bin"
    assert data["ray"] == "10.0.0.1:7001"


def test_remote_venv_bin_shadows_other_commands(root: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    for where, label in ((root / "venv" / "bin", "venv"), (other, "system")):
        exe = where / "whichtool"
        exe.write_text(f"#!/bin/sh\necho {label}\n", encoding="utf-8")
        exe.chmod(0o755)
    env = dict(os.environ, PATH=f"{other}:/usr/bin:/bin")
    proc = bash(script(remote_config(str(root)), ["whichtool"]), env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "venv"


def test_remote_ray_address_uses_node_ip_override(root: Path) -> None:
    config = remote_config(
        str(root), ray={"port": 7001, "nodes": {"node1": {"node_ip": "192.168.7.1"}}}
    )
    assert probe(config)["ray"] == "192.168.7.1:7001"


def test_remote_ray_address_is_the_one_the_node_joined_with(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The head given by an ssh alias: the node's note from 'cluster start' wins; before
    any start, the address its SSH connection arrived on (recorded by the last probe)."""
    monkeypatch.setenv("GRID_OPS_STATE_DIR", str(tmp_path / "state"))
    config = remote_config(str(root), nodes=[{"name": "gpu1", "host": "gpu1"}])
    assert probe(config)["ray"] == "gpu1:7001"  # nothing known yet: the name itself
    from grid_ops import model

    model.record_facts(model.of(config), {"gpu1": {"root": str(root), "ssh_ip": "10.7.0.1"}})
    assert probe(config)["ray"] == "10.7.0.1:7001"
    (root / "state").mkdir()
    (root / "state" / "ray_address").write_text("10.7.0.9:7001\n")
    assert probe(config)["ray"] == "10.7.0.9:7001"


TRICKY = ["two words", "it's", '"double"', "$HOME", "a;b", "*", "", "$(echo hi)", "`id`", "x\ny"]


def test_remote_arguments_arrive_verbatim(root: Path) -> None:
    (root / "decoy.txt").write_text("", encoding="utf-8")  # something for * to match
    assert probe(remote_config(str(root)), *TRICKY)["argv"] == TRICKY


def test_remote_shell_mode_lets_the_shell_interpret(root: Path) -> None:
    config = remote_config(str(root))
    proc = bash(script(config, ["echo", "$((1+2))"], shell=True))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "3"
    proc = bash(script(config, ["echo $((2*3)) && pwd"], shell=True))
    assert proc.stdout.splitlines() == ["6", str(root)]
    # without shell=True the same words are data
    proc = bash(script(config, ["echo", "$((1+2))"]))
    assert proc.stdout.strip() == "$((1+2))"


def test_remote_missing_root_exits_127_and_says_provision(tmp_path: Path) -> None:
    missing = tmp_path / "never-provisioned"
    proc = bash(script(remote_config(str(missing)), ["true"]))
    assert proc.returncode == remote.MISSING_ROOT == 127
    assert "grid-ops provision" in proc.stderr
    assert str(missing) in proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize(
    ("command", "shell", "code"),
    [
        (["sh", "-c", "exit 7"], False, 7),
        (["false"], False, 1),
        (["true"], False, 0),
        (["exit 5"], True, 5),
        (["sh -c 'exit 9'; exit 3"], True, 3),
    ],
)
def test_remote_exit_codes_propagate(
    root: Path, command: list[str], shell: bool, code: int
) -> None:
    proc = bash(script(remote_config(str(root)), command, shell=shell))
    assert proc.returncode == code, proc.stderr


@pytest.mark.parametrize("rel", ["x", "my-dir/x"])
def test_remote_root_under_home_expands_tilde(tmp_path: Path, rel: str) -> None:
    home = tmp_path / "home"
    (home / rel).mkdir(parents=True)
    env = dict(os.environ, HOME=str(home))
    data = probe(remote_config(f"~/{rel}"), env=env)
    assert Path(data["cwd"]) == (home / rel).resolve()
    assert data["path"][0] == f"{home}/{rel}/venv/bin"


def test_remote_root_under_missing_home_dir_is_127(tmp_path: Path) -> None:
    env = dict(os.environ, HOME=str(tmp_path))
    proc = bash(script(remote_config("~/x"), ["true"]), env)
    assert proc.returncode == 127
    assert "~/x does not exist" in proc.stderr


def test_argv_for_a_local_node_is_bash_and_runs(root: Path) -> None:
    config = remote_config(
        str(root), nodes=[{"name": "here", "host": "localhost", "connection": "local"}]
    )
    argv = remote.argv(model.of(config), config.nodes[0].name, [sys.executable, "-c", PROBE, "a b"])
    assert argv[:2] == ["bash", "-c"]
    assert len(argv) == 3
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    data = json.loads(proc.stdout)
    assert Path(data["cwd"]) == root.resolve()
    assert data["argv"] == ["a b"]
    assert data["ray"] == f"127.0.0.1:{config.ray.port}"


def test_argv_for_an_ssh_node(root: Path) -> None:
    config = remote_config(str(root), ssh={"key_file": "/keys/id_ed25519"})
    node2 = config.node("node2")
    argv = remote.argv(model.of(config), node2.name, ["ray", "status"])
    assert argv[0] == "ssh"
    i = argv.index("-i")
    assert argv[i + 1] == "/keys/id_ed25519"
    assert argv[-2] == "ops@10.0.0.2"
    assert argv[-1] == remote.remote_script(model.of(config), node2.name, ["ray", "status"])
    # no user: the bare host is the target; no key: no -i
    plain = remote_config(str(root))
    argv = remote.argv(model.of(plain), "node1", ["true"])
    assert argv[0] == "ssh"
    assert argv[-2] == "10.0.0.1"
    assert "-i" not in argv


# ---------------------------------------------------------------------------------------
# grid_ops.drivers.ansible._Collector


def ev(kind: str, host: str | None = None, task: str = "", **data: Any) -> dict[str, Any]:
    return {"event": kind, "event_data": {"host": host, "task": task, **data}}


DIFF = {"before": "port: 6379\n", "after": "port: 7001\n", "before_header": "/etc/x"}
STDERR = "Traceback (most recent call last):\n  ...\nOSError: [Errno 28] No space left"


def play_events() -> list[dict[str, Any]]:
    return [
        ev("playbook_on_start"),
        ev("playbook_on_task_start", task="Probe"),
        ev("runner_on_start", "node1", "Probe"),
        ev("runner_on_start", "node2", "Probe"),
        ev("runner_on_start", "node3", "Probe"),
        ev(
            "runner_on_ok",
            "node1",
            "Probe",
            res={"changed": False, "ansible_facts": {"grid_node": {"machine": "x86_64"}}},
        ),
        ev(
            "runner_on_failed",
            "node2",
            "Probe",
            ignore_errors=False,
            res={"msg": "non-zero return code", "rc": 1, "stderr": STDERR},
        ),
        ev(
            "runner_on_unreachable",
            "node3",
            "Probe",
            res={"msg": "Failed to connect to the host via ssh: timeout", "unreachable": True},
        ),
        ev("runner_on_start", "node1", "Look for Ray"),
        ev(
            "runner_on_ok",
            "node1",
            "Look for Ray",
            res={
                "changed": False,
                "ansible_facts": {"grid_ray_node": {"running": True, "node_id": "n1"}},
            },
        ),
        ev("runner_on_start", "node1", "Write config"),
        ev(
            "runner_on_ok",
            "node1",
            "Write config",
            res={"changed": True, "diff": [DIFF, {"prepared": "not a before/after diff"}]},
        ),
        ev("runner_on_start", "node1", "Optional cleanup"),
        ev(
            "runner_on_failed",
            "node1",
            "Optional cleanup",
            ignore_errors=True,
            res={"msg": "nothing to clean", "rc": 2},
        ),
        ev("runner_on_start", "node1", "Head only"),
        ev("runner_on_skipped", "node1", "Head only", res={"skip_reason": "Conditional"}),
    ]


STATS = ev(
    "playbook_on_stats",
    ok={"node1": 9},  # the recap also counts tasks whose events we did not see
    changed={"node1": 1},
    failures={"node2": 1},
    dark={"node3": 1},
    skipped={"node1": 2},
    ignored={"node1": 1},
    rescued={},
)


def collect(events: list[dict[str, Any]]) -> tuple[dict[str, HostResult], list[tuple]]:
    calls: list[tuple] = []
    collector = _Collector(lambda host, task, status: calls.append((host, task, status)))
    for event in events:
        assert collector(event) is True  # ansible-runner keeps events only on True
    return collector.finish(), calls


def test_collector_counts_come_from_the_recap() -> None:
    hosts, _ = collect([*play_events(), STATS])
    assert list(hosts) == ["node1", "node2", "node3"]
    counts = {n: h.to_json() for n, h in hosts.items()}
    assert {k: counts["node1"][k] for k in ("ok", "changed", "failed", "unreachable")} == {
        "ok": 9,
        "changed": 1,
        "failed": 0,
        "unreachable": 0,
    }
    assert counts["node1"]["skipped"] == 2
    assert (counts["node2"]["failed"], counts["node2"]["ok"]) == (1, 0)
    assert (counts["node3"]["unreachable"], counts["node3"]["ok"]) == (1, 0)
    assert [h.status for h in hosts.values()] == ["changed", "failed", "unreachable"]


def test_collector_recap_names_hosts_without_events() -> None:
    stats = ev("playbook_on_stats", ok={"node4": 3}, skipped={"node4": 1})
    hosts, _ = collect([stats])
    assert hosts["node4"].ok == 3
    assert hosts["node4"].skipped == 1
    assert hosts["node4"].status == "ok"


def test_collector_counts_from_events_without_a_recap() -> None:
    hosts, _ = collect(play_events())
    node1 = hosts["node1"]
    # ok, ok, changed, ignored failure -> 4 ok (the changed and the ignored count as ok)
    assert (node1.ok, node1.changed, node1.failed, node1.skipped) == (4, 1, 0, 1)
    assert (hosts["node2"].failed, hosts["node2"].ok) == (1, 0)
    assert hosts["node3"].unreachable == 1
    result = PlaybookResult("x", 2, "failed", hosts, Path("/nonexistent"), 1.0)
    assert result.failed_hosts == ["node2", "node3"]
    assert result.unreachable_hosts == ["node3"]


def test_collector_facts_failures_changes_and_diffs() -> None:
    hosts, _ = collect([*play_events(), STATS])
    node1, node2, node3 = hosts["node1"], hosts["node2"], hosts["node3"]
    assert node1.facts == {
        "grid_node": {"machine": "x86_64"},
        "grid_ray_node": {"running": True, "node_id": "n1"},
    }
    assert node1.failed_task is None and node1.msg is None  # ignored errors are not failures
    assert node1.changed_tasks == ["Write config"]
    assert node1.diffs == [("Write config", DIFF)]
    assert node2.failed_task == "Probe"
    assert node2.msg == "non-zero return code OSError: [Errno 28] No space left"
    assert node3.failed_task == "Probe"
    assert node3.msg == "Failed to connect to the host via ssh: timeout"
    assert node2.facts == {} and node3.facts == {}
    assert set(node1.durations) == {
        "Probe",
        "Look for Ray",
        "Write config",
        "Optional cleanup",
        "Head only",
    }


def test_collector_single_diff_and_message_fallbacks() -> None:
    events = [
        ev("runner_on_ok", "n", "Template", res={"changed": True, "diff": DIFF}),
        ev("runner_on_ok", "n", "Unchanged", res={"changed": False, "diff": DIFF}),
        ev("runner_on_failed", "m", "Crash", res={"module_stderr": "a\nb\nlast line"}),
        ev("runner_on_failed", "k", "Quiet", res={}),
        ev(
            "runner_on_failed",
            "j",
            "Dup",
            res={"msg": "boom: disk full", "stderr": "disk full"},
        ),
    ]
    hosts, _ = collect(events)
    assert hosts["n"].diffs == [("Template", DIFF)]  # an unchanged task's diff is not a change
    assert hosts["n"].changed_tasks == ["Template"]
    assert hosts["m"].msg == "last line"
    assert hosts["k"].msg == "failed (no message)"
    assert hosts["j"].msg == "boom: disk full"


def test_collector_reports_progress_start_and_end() -> None:
    _, calls = collect([*play_events(), STATS])
    assert calls == [
        ("node1", "Probe", None),
        ("node2", "Probe", None),
        ("node3", "Probe", None),
        ("node1", "Probe", "ok"),
        ("node2", "Probe", "failed"),
        ("node3", "Probe", "unreachable"),
        ("node1", "Look for Ray", None),
        ("node1", "Look for Ray", "ok"),
        ("node1", "Write config", None),
        ("node1", "Write config", "changed"),
        ("node1", "Optional cleanup", None),
        ("node1", "Optional cleanup", "ignored"),
        ("node1", "Head only", None),
        ("node1", "Head only", "skipped"),
    ]


# ---------------------------------------------------------------------------------------
# grid_ops.drivers.inventory: ssh command and host vars


def inv_config() -> ClusterConfig:
    return parse(
        {
            "name": "units",
            "nodes": [
                {"name": "head", "host": "10.0.0.1", "port": 2222, "user": "ops"},
                {"name": "gpu2", "host": "gpu2"},  # an ~/.ssh/config alias
                {"name": "w3", "host": "10.0.0.3"},
                {"name": "here", "host": "localhost", "connection": "local"},
            ],
            "ssh": {
                "connect_timeout": 7,
                "key_file": "/keys/my key",
                "known_hosts_file": "/keys/known_hosts",
            },
            "ray": {"nodes": {"w3": {"node_ip": "192.168.50.3"}}},
        }
    )


def options(args: list[str]) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == "-o"]


def ssh_of(config: ClusterConfig, name: str) -> list[str]:
    """The ssh command of a node, as the model resolves it."""
    return list(model.resolve(config, recorded=False).node(name).ssh)


def test_ssh_command_has_port_key_known_hosts_and_multiplexing() -> None:
    config = inv_config()
    args = ssh_of(config, "head")
    assert args[0] == "ssh"
    assert args[args.index("-p") + 1] == "2222"
    assert args[args.index("-i") + 1] == "/keys/my key"
    opts = options(args)
    assert "UserKnownHostsFile=/keys/known_hosts" in opts
    assert "StrictHostKeyChecking=yes" in opts
    assert "ConnectTimeout=7" in opts
    assert "BatchMode=yes" in opts
    assert "ControlMaster=auto" in opts
    assert "ControlPersist=60s" in opts
    assert any(o.startswith("ControlPath=") for o in opts)


def test_ssh_command_defaults_without_port_key_or_known_hosts() -> None:
    config = parse({"name": "units", "nodes": ["gpu1"]})
    args = ssh_of(config, "gpu1")
    assert "-p" not in args
    assert "-i" not in args
    opts = options(args)
    assert "StrictHostKeyChecking=accept-new" in opts
    assert not any(o.startswith("UserKnownHostsFile=") for o in opts)
    assert "ConnectTimeout=10" in opts
    assert not any(o.startswith("ConnectionAttempts=") for o in opts)  # max_retries 0
    retried = parse({"name": "units", "nodes": ["gpu1"], "ssh": {"max_retries": 2}})
    assert "ConnectionAttempts=3" in options(ssh_of(retried, "gpu1"))
    # the very socket the inventory names for Ansible's own connections (formatted as
    # Ansible's ssh plugin does, in ansible.cfg's control_path_dir): one per node
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(REPO / "ansible.cfg")
    ours = next(o for o in opts if o.startswith("ControlPath=")).removeprefix("ControlPath=")
    directory = cfg["ssh_connection"]["control_path_dir"]
    theirs = inventory.cluster_vars(retried, model.resolve(retried, recorded=False))
    assert theirs["ansible_control_path"] % {"directory": directory} != ours  # other options
    mine = inventory.cluster_vars(config, model.resolve(config, recorded=False))
    assert mine["ansible_control_path"] % {"directory": directory} == ours


def hostvars(config: ClusterConfig) -> dict[str, dict[str, Any]]:
    resolved = model.resolve(config, recorded=False)
    return {n.name: inventory.host_vars(config, n, {}) for n in resolved.nodes}


def test_host_vars_rsync_settings() -> None:
    config = inv_config()
    hv = hostvars(config)
    head = hv["head"]
    assert shlex.split(head["grid_rsync_rsh"]) == ssh_of(config, "head")
    assert head["grid_rsync_dest"] == "ops@10.0.0.1:"
    alias = hv["gpu2"]
    assert alias["grid_rsync_dest"] == "gpu2:"
    assert "-p" not in shlex.split(alias["grid_rsync_rsh"])
    local = hv["here"]
    assert local["grid_rsync_rsh"] == ""
    assert local["grid_rsync_dest"] == ""
    assert local["ansible_connection"] == "local"


def test_host_vars_node_ip_without_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_dns(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"DNS lookup at render time: {args}")

    for name in ("getaddrinfo", "gethostbyname", "gethostbyname_ex"):
        monkeypatch.setattr(socket, name, no_dns)
    config = inv_config()
    hv = hostvars(config)
    assert hv["head"]["grid_node_ip"] == "10.0.0.1"
    assert hv["w3"]["grid_node_ip"] == "192.168.50.3"  # ray.nodes.w3.node_ip wins
    assert "grid_node_ip" not in hv["gpu2"]
    assert hv["here"]["grid_node_ip"] == "127.0.0.1"
    assert hv["head"]["grid_role"] == "head"
    assert {hv[n]["grid_role"] for n in ("gpu2", "w3", "here")} == {"worker"}
    # Ray's address of each node: the known one, else the host as written (no lookup)
    assert {n: v["grid_ray_address"] for n, v in hv.items()} == {
        "head": "10.0.0.1", "gpu2": "gpu2", "w3": "192.168.50.3", "here": "127.0.0.1"
    }  # fmt: skip


def test_the_inventory_carries_each_nodes_ray_address_as_the_model_knows_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The roles read grid_ray_address (and grid_node_ip) from the inventory; what a node
    reported (the address its SSH connection arrived on) is in the next render."""
    monkeypatch.setenv("GRID_OPS_STATE_DIR", str(tmp_path / "state"))
    config = inv_config()
    before = model.of(config)
    model.record_facts(before, {"gpu2": {"root": "/home/x/grid-ops", "ssh_ip": "10.9.0.2"}})
    after = model.of_cluster_again(before)
    files = inventory.render_text(after)
    import yaml

    hosts = yaml.safe_load(files["hosts.yml"].replace("!unsafe ", ""))
    gpu2 = hosts["all"]["hosts"]["gpu2"]
    assert (gpu2["grid_ray_address"], gpu2["grid_node_ip"]) == ("10.9.0.2", "10.9.0.2")
    assert after.node("gpu2").ray_address == "10.9.0.2"  # the same function's answer
    assert before.node("gpu2").ray_address == "gpu2"  # nothing reported yet: the host
    for role in (REPO / "roles").rglob("*.yml"):  # the roles derive no address
        text = role.read_text()
        assert "ssh_ip" not in text and "ansible_host" not in text, role


def test_remote_run_notes_its_process_group_for_stop_and_removes_the_note(root: Path) -> None:
    config = remote_config(str(root))
    run_id = "aa11aa11"
    noted = script(config, ["sh", "-c", "cat state/run/$1.pid", "-", run_id], run_id=run_id)
    proc = subprocess.run(["bash", "-c", noted], capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and proc.stdout.strip().isdigit()  # the shell's pid, noted
    assert not (root / "state" / "run" / f"{run_id}.pid").exists()  # removed at the end
    assert (root / "state" / "run").stat().st_mode & 0o777 == 0o700  # private to the user
    failing = script(config, ["sh", "-c", "exit 9"], run_id="bb22bb22")
    assert subprocess.run(["bash", "-c", failing], check=False).returncode == 9
    assert "exec " not in script(config, ["true"], run_id="cc33cc33")
    assert "exec true" in script(config, ["true"])
    with pytest.raises(ValueError):
        script(config, ["true"], run_id="../../x")


def _local(root: Path) -> Any:
    return remote_config(
        str(root), nodes=[{"name": "h", "host": "localhost", "connection": "local"}]
    )


def test_stop_signals_only_a_plain_note_of_ours(root: Path, tmp_path: Path) -> None:
    config = _local(root)
    here = config.nodes[0]
    notes = root / "state" / "run"
    notes.mkdir(parents=True)
    victim = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        # a note that is a link to some other file is not followed
        target = tmp_path / "elsewhere.pid"
        target.write_text(str(victim.pid), encoding="utf-8")
        (notes / "dd44dd44.pid").symlink_to(target)
        remote.stop(model.of(config), here.name, "dd44dd44")
        time.sleep(0.3)
        assert victim.poll() is None
        # a note that holds more than a number is ignored, never run
        (notes / "ee55ee55.pid").write_text(
            f"{victim.pid}; touch {tmp_path}/MARK", encoding="utf-8"
        )
        remote.stop(model.of(config), here.name, "ee55ee55")
        time.sleep(0.3)
        assert victim.poll() is None
        assert not (tmp_path / "MARK").exists()
        # the real note stops the group, and is removed
        (notes / "ff66ff66.pid").write_text(str(victim.pid), encoding="utf-8")
        remote.stop(model.of(config), here.name, "ff66ff66")
        assert victim.wait(timeout=10) != 0
        assert not (notes / "ff66ff66.pid").exists()
    finally:
        victim.kill()
        victim.wait()


def test_user_commands_run_in_the_code_directory(root: Path) -> None:
    (root / "code").mkdir()
    config = _local(root)
    argv = remote.argv(
        model.of(config), config.nodes[0].name, [sys.executable, "-c", PROBE], in_code=True
    )
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    data = json.loads(proc.stdout)
    assert Path(data["cwd"]) == (root / "code").resolve()
    assert data["path"][0] == f"{root}/venv/bin"


def test_ssh_argv_ends_options_before_the_target(root: Path) -> None:
    config = remote_config(str(root))
    argv = remote.argv(model.of(config), "node2", ["true"])
    assert argv[-3:-1] == ["--", "ops@10.0.0.2"]


def test_a_user_command_without_the_code_directory_says_to_provision(root: Path) -> None:
    config = _local(root)
    argv = remote.argv(model.of(config), config.nodes[0].name, ["true"], in_code=True)
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == remote.MISSING_ROOT
    assert f"{root}/code does not exist" in proc.stderr and "grid-ops provision" in proc.stderr


def test_extra_environment_names_are_checked_and_values_quoted(root: Path) -> None:
    config = remote_config(str(root))
    from grid_ops.errors import UsageError

    with pytest.raises(UsageError, match="not an environment variable name"):
        script(config, ["true"], env={"A;touch x": "1"})
    line = script(config, ["sh", "-c", 'printf %s "$V"'], env={"V": "$(id) `x`"})
    proc = bash(line)
    assert proc.returncode == 0 and proc.stdout == "$(id) `x`"


def test_remote_root_expands_once_the_same_way_for_every_reader(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """grid_root.expand_root: the fact modules, the health probe and local nodes."""
    from grid_ops import model
    from grid_ops.module_utils.grid_root import expand_root

    monkeypatch.setenv("HOME", str(tmp_path))
    assert expand_root("~/grid-ops") == f"{tmp_path}/grid-ops"
    assert expand_root("~") == str(tmp_path)
    assert expand_root("/srv/~x") == "/srv/~x" and expand_root("~other/x") == "~other/x"
    assert model._local_root("~/g") == f"{tmp_path}/g"
