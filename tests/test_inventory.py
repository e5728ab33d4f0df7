"""Cluster config -> Ansible inventory, checked through the real ``ansible-inventory``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from grid_ops import model
from grid_ops.drivers import inventory
from grid_ops.model import config
from grid_ops.paths import ansible_root

FIXTURES = Path(__file__).parent / "fixtures" / "configs"
ANSIBLE_INVENTORY = Path(sys.executable).parent / "ansible-inventory"

MIXED = """\
name: inv-test
remote_root: /srv/grid
nodes:
  - {name: head-1, host: 10.0.0.1, port: 2222, user: ops, role: head, tags: [cpu]}
  - {name: w1, host: 10.0.0.2, user: ops, gpu_count: 2, memory_gb: 128, tags: [gpu, cuda-12]}
  - {name: w2, host: w2.example.org, gpu_count: 1, tags: [cuda-12, gpu]}
  - {name: w3, host: 10.0.0.4, gpu_count: 0}
ssh:
  connect_timeout: 7
  key_file: keys/id_ed25519
  known_hosts_file: kh/known_hosts
ray:
  port: 6380
  dashboard_port: 8266
  nodes:
    w1: {num_cpus: 4, num_gpus: 2}
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def ansible_list(hosts_file: Path) -> dict[str, Any]:
    """``ansible-inventory -i HOSTS --list`` as JSON; fails if Ansible cannot parse it."""
    assert ANSIBLE_INVENTORY.exists(), f"{ANSIBLE_INVENTORY} is missing"
    env = dict(os.environ)
    env.update(
        # Only the YAML plugin, and a file it cannot parse is an error, not a warning.
        ANSIBLE_INVENTORY_ENABLED="yaml",
        ANSIBLE_INVENTORY_UNPARSED_FAILED="True",
        # The project's ansible.cfg, as operators use it (not ~/.ansible.cfg).
        ANSIBLE_CONFIG=str(ansible_root() / "ansible.cfg"),
        ANSIBLE_HOME=str(hosts_file.parent / ".ansible-home"),
        ANSIBLE_NOCOLOR="1",
    )
    result = subprocess.run(
        [str(ANSIBLE_INVENTORY), "-i", str(hosts_file), "--list"],
        cwd=hosts_file.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "[WARNING]" not in result.stderr, result.stderr
    data: dict[str, Any] = _plain(json.loads(result.stdout))
    return data


UNSAFE = "__ansible_unsafe"


def _plain(value: Any) -> Any:
    """ansible-inventory's JSON with each ``{"__ansible_unsafe": v}`` (a value Ansible will
    never template) replaced by ``v``; every string must carry that mark."""
    if isinstance(value, dict):
        if set(value) == {UNSAFE}:
            return value[UNSAFE]
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _strings_not_marked(value: Any, where: str = "") -> list[str]:
    if isinstance(value, dict):
        if set(value) == {UNSAFE}:
            return []
        return [p for k, v in value.items() for p in _strings_not_marked(v, f"{where}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _strings_not_marked(v, f"{where}[{i}]")]
    return [where] if isinstance(value, str) else []


def members(data: dict[str, Any], group: str) -> list[str]:
    return list(data.get(group, {}).get("hosts", []))


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "GRID_OPS_CONFIG"}
    return subprocess.run(
        [sys.executable, "-m", "grid_ops", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The mixed config (in conf/), rendered into out/ and listed by ansible-inventory."""
    root = tmp_path_factory.mktemp("mixed")
    cfg = config.load(write(root / "conf" / "cluster.yaml", MIXED))
    hosts = inventory.render(model.of(cfg), root / "out")
    return root, ansible_list(hosts)


@pytest.fixture(scope="module")
def alias_form(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("alias")
    cfg = config.load(FIXTURES / "grid_cluster.yaml")
    return ansible_list(inventory.render(model.of(cfg), root / "out"))


# ---------------------------------------------------------------------------------------
# groups


def test_groups(mixed: tuple[Path, dict[str, Any]]) -> None:
    _, data = mixed
    assert members(data, "grid_head") == ["head-1"]
    assert sorted(members(data, "grid_workers")) == ["w1", "w2", "w3"]
    # Only nodes with GPUs.
    assert sorted(members(data, "grid_gpu")) == ["w1", "w2"]
    assert set(data["all"]["children"]) >= {"grid_head", "grid_workers", "grid_gpu"}


def test_tag_groups(mixed: tuple[Path, dict[str, Any]]) -> None:
    _, data = mixed
    assert members(data, "tag_cpu") == ["head-1"]
    assert sorted(members(data, "tag_gpu")) == ["w1", "w2"]
    # "cuda-12" is not a valid Ansible group name: it becomes tag_cuda_12.
    assert sorted(members(data, "tag_cuda_12")) == ["w1", "w2"]
    assert "tag_cuda-12" not in data
    tag_groups = {g for g in data if g.startswith("tag_")}
    assert tag_groups == {"tag_cpu", "tag_gpu", "tag_cuda_12"}


def test_group_name_sanitizes_tags() -> None:
    assert inventory.group_name("cuda-12") == "tag_cuda_12"
    assert inventory.group_name("v1.2") == "tag_v1_2"
    assert inventory.group_name("gpu") == "tag_gpu"


def test_single_node_cluster_has_empty_worker_and_gpu_groups(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path / "one.yaml", "nodes: [solo]\n"))
    data = ansible_list(inventory.render(model.of(cfg), tmp_path / "out"))
    assert members(data, "grid_head") == ["solo"]
    assert members(data, "grid_workers") == []
    assert members(data, "grid_gpu") == []
    assert "solo" in data["_meta"]["hostvars"]


# ---------------------------------------------------------------------------------------
# host vars


def test_ssh_hostvars(mixed: tuple[Path, dict[str, Any]]) -> None:
    root, data = mixed
    hostvars = data["_meta"]["hostvars"]
    assert set(hostvars) == {"head-1", "w1", "w2", "w3"}

    head = hostvars["head-1"]
    assert head["ansible_host"] == "10.0.0.1"
    assert head["ansible_port"] == 2222
    assert head["ansible_user"] == "ops"
    assert head["grid_role"] == "head"

    # No port in the config: left to ssh config / 22. No user: left to ssh config.
    assert "ansible_port" not in hostvars["w1"]
    assert hostvars["w1"]["ansible_user"] == "ops"
    assert hostvars["w2"]["ansible_host"] == "w2.example.org"
    assert "ansible_user" not in hostvars["w2"]
    assert "ansible_connection" not in hostvars["w2"]

    # Relative key_file / known_hosts_file: relative to the config file's directory.
    key = root / "conf" / "keys" / "id_ed25519"
    known = root / "conf" / "kh" / "known_hosts"
    for name, host in hostvars.items():
        assert host["ansible_ssh_private_key_file"] == str(key), name
        args = host["ansible_ssh_common_args"]
        assert f"UserKnownHostsFile={known}" in args, name
        assert "StrictHostKeyChecking=yes" in args, name
        assert "accept-new" not in args, name
        assert "IdentitiesOnly=yes" in args, name
        assert "ConnectTimeout=7" in args, name
        assert host["grid_role"] == ("head" if name == "head-1" else "worker")


def test_node_facts_and_ray_overrides(mixed: tuple[Path, dict[str, Any]]) -> None:
    _, data = mixed
    w1 = data["_meta"]["hostvars"]["w1"]
    assert w1["grid_gpu_count"] == 2
    # what 'ray start' gets there: tags and the node's own name as resources, the
    # overrides, memory in bytes and the object store at 30 % of it
    assert w1["grid_ray_start"] == {
        "resources": {"tag:gpu": 1, "tag:cuda-12": 1, "grid_node:w1": 1},
        "num_cpus": 4,
        "num_gpus": 2,
        "memory": 128 * 2**30,
        "object_store_memory": int(128 * 2**30 * 0.3),
    }
    w2 = data["_meta"]["hostvars"]["w2"]["grid_ray_start"]
    assert (w2["num_cpus"], w2["num_gpus"]) == (None, None)
    assert w2["resources"] == {"tag:cuda-12": 1, "tag:gpu": 1, "grid_node:w2": 1}


def test_cluster_vars_reach_every_host(mixed: tuple[Path, dict[str, Any]]) -> None:
    root, data = mixed
    assert (root / "out" / "group_vars" / "all.yml").is_file()
    for name, host in data["_meta"]["hostvars"].items():
        assert host["grid_cluster_name"] == "inv-test", name
        assert host["grid_remote_root"] == "/srv/grid", name
        assert host["grid_head_node"] == "head-1", name
        assert host["grid_controller"]["head"] == "head-1", name
        assert host["grid_controller"]["nodes"] == list(data["_meta"]["hostvars"]), name
        ray = host["grid_ray"]
        assert ray["port"] == 6380, name
        assert ray["dashboard_port"] == 8266, name
        assert ray["dashboard_host"] == "127.0.0.1", name
        assert "nodes" not in ray, name


def test_without_known_hosts_new_keys_are_accepted(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path / "c.yaml", "nodes: [a, b]\n"))
    data = ansible_list(inventory.render(model.of(cfg), tmp_path / "out"))
    for name, host in data["_meta"]["hostvars"].items():
        args = host["ansible_ssh_common_args"]
        assert "StrictHostKeyChecking=accept-new" in args, name
        assert "StrictHostKeyChecking=yes" not in args, name
        assert "UserKnownHostsFile" not in args, name
        assert "IdentitiesOnly" not in args, name
        assert "ansible_ssh_private_key_file" not in host, name


def test_alias_form_leaves_user_and_port_to_ssh_config(alias_form: dict[str, Any]) -> None:
    hostvars = alias_form["_meta"]["hostvars"]
    assert set(hostvars) == {"gpu1", "gpu2", "gpu3"}
    for name, host in hostvars.items():
        assert host["ansible_host"] == name
        assert "ansible_user" not in host, name
        assert "ansible_port" not in host, name
        assert "ansible_ssh_private_key_file" not in host, name
        assert "ConnectTimeout=5" in host["ansible_ssh_common_args"], name
        assert host["grid_cluster_name"] == "grid_cluster", name
        assert host["grid_remote_root"] == "~/grid_workspace", name
        assert host["grid_ray"]["port"] == 6379, name
        assert host["grid_ray"]["dashboard_host"] == "0.0.0.0", name
    assert members(alias_form, "grid_head") == ["gpu1"]
    assert members(alias_form, "grid_workers") == ["gpu2", "gpu3"]
    assert members(alias_form, "grid_gpu") == []


def test_distributed_grid_form(tmp_path: Path) -> None:
    cfg = config.load(FIXTURES / "distributed_grid_roles.yaml")
    data = ansible_list(inventory.render(model.of(cfg), tmp_path / "out"))
    hostvars = data["_meta"]["hostvars"]
    assert hostvars["node-01"]["ansible_host"] == "192.168.1.100"
    assert hostvars["node-01"]["ansible_port"] == 22
    assert hostvars["node-01"]["ansible_user"] == "username"
    assert members(data, "grid_head") == ["node-02"]
    assert members(data, "grid_workers") == ["node-01"]
    assert sorted(members(data, "grid_gpu")) == ["node-01", "node-02"]
    assert members(data, "tag_cuda") == ["node-01"]
    assert sorted(members(data, "tag_gpu")) == ["node-01", "node-02"]


def test_key_file_home_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    cfg = config.load(write(tmp_path / "c.yaml", "nodes: [a]\nssh: {key_file: ~/.ssh/id}\n"))
    data = ansible_list(inventory.render(model.of(cfg), tmp_path / "out"))
    key = data["_meta"]["hostvars"]["a"]["ansible_ssh_private_key_file"]
    assert key == str(tmp_path / "home" / ".ssh" / "id")


def test_local_connection_node(tmp_path: Path) -> None:
    cfg = config.load(
        write(
            tmp_path / "c.yaml",
            """\
            nodes:
              - {name: here, host: localhost, connection: local, gpu_count: 1}
              - {name: there, host: 10.0.0.9, user: ops}
            ssh: {key_file: /keys/id}
            """,
        )
    )
    data = ansible_list(inventory.render(model.of(cfg), tmp_path / "out"))
    here = data["_meta"]["hostvars"]["here"]
    assert here["ansible_connection"] == "local"
    # Nothing SSH-specific on a local node.
    for key in ("ansible_ssh_common_args", "ansible_ssh_private_key_file", "ansible_user"):
        assert key not in here
    there = data["_meta"]["hostvars"]["there"]
    assert "ansible_connection" not in there
    assert there["ansible_ssh_private_key_file"] == "/keys/id"
    assert members(data, "grid_head") == ["here"]
    assert members(data, "grid_gpu") == ["here"]


# ---------------------------------------------------------------------------------------
# grid-ops inventory render


def test_cli_render_default_dir_under_cwd(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    shutil.copy(FIXTURES / "distributed_grid.yaml", conf / "dg.yaml")
    result = cli("inventory", "render", "-c", "conf/dg.yaml", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    out = tmp_path / "inventory" / "my-cluster"
    assert (out / "hosts.yml").is_file()
    assert (out / "group_vars" / "all.yml").is_file()
    assert not (conf / "inventory").exists()
    data = ansible_list(out / "hosts.yml")
    assert members(data, "grid_head") == ["node-01"]


def test_cli_render_output_dir_and_json(tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "grid_cluster.yaml", tmp_path / "grid_cluster.yaml")
    args = ["inventory", "render", "-c", "grid_cluster.yaml", "-o", "elsewhere/inv", "--json"]
    result = cli(*args, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert Path(doc["hosts_file"]) == Path("elsewhere/inv/hosts.yml")
    assert doc["groups"]["grid_head"] == ["gpu1"]
    assert not (tmp_path / "inventory").exists()
    data = ansible_list(tmp_path / "elsewhere" / "inv" / "hosts.yml")
    assert sorted(data["_meta"]["hostvars"]) == ["gpu1", "gpu2", "gpu3"]


def test_cli_rerender_is_byte_identical(tmp_path: Path) -> None:
    write(tmp_path / "cluster.yaml", MIXED)
    files = ("hosts.yml", "group_vars/all.yml")
    out = tmp_path / "inventory" / "inv-test"

    first = cli("inventory", "render", "-c", "cluster.yaml", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    before = {f: (out / f).read_bytes() for f in files}
    second = cli("inventory", "render", "-c", "cluster.yaml", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert {f: (out / f).read_bytes() for f in files} == before
    # Only the two inventory files: no temp files left behind.
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == sorted(files)


def test_cli_render_bad_config(tmp_path: Path) -> None:
    write(tmp_path / "cluster.yaml", "nodes: [a]\nray: {dashbord_port: 1}\n")
    result = cli("inventory", "render", cwd=tmp_path)

    assert result.returncode == 2
    assert "error:" in result.stderr
    assert "ray.dashbord_port" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / "inventory").exists()


def test_committed_example_inventory_is_the_render_of_the_starter_config(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import yaml

    for var in ("GRID_OPS_STATE_DIR", "XDG_STATE_HOME", "XDG_CACHE_HOME"):  # the defaults
        monkeypatch.delenv(var, raising=False)
    from grid_ops.cli.config_cmd import STARTER_ID, starter_text

    cfg = config.parse(yaml.safe_load(starter_text(STARTER_ID)))
    source = "grid_ops/templates/cluster.example.yaml"
    repo = Path(__file__).resolve().parent.parent
    for rel, text in inventory.render_text(model.of(cfg), source=source).items():
        assert (repo / "inventory" / "example" / rel).read_text() == text, rel


def test_every_config_string_reaches_ansible_marked_unsafe(tmp_path: Path) -> None:
    """A second wall behind validation: even a value that slipped past it would be data."""
    from grid_ops.drivers import inventory as inv

    cfg = config.load(write(tmp_path / "cluster.yaml", MIXED))
    out = tmp_path / "inv"
    inv.render(model.of(cfg), out)
    # bypass validation on purpose: a template in a value must stay text
    text = (out / "hosts.yml").read_text()
    text = text.replace('"w2.example.org"', "\"{{ lookup('pipe', 'touch INJECTED') }}\"")
    (out / "hosts.yml").write_text(text)
    env = dict(os.environ, ANSIBLE_CONFIG=str(ansible_root() / "ansible.cfg"),
               ANSIBLE_HOME=str(tmp_path / ".ansible-home"))  # fmt: skip
    result = subprocess.run(
        [str(ANSIBLE_INVENTORY), "-i", str(out / "hosts.yml"), "--list"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    raw = json.loads(result.stdout)
    hostvars = raw["_meta"]["hostvars"]
    for name, hv in hostvars.items():
        assert _strings_not_marked(hv) == [], name
    assert _plain(hostvars["w2"]["ansible_host"]).startswith("{{ lookup(")
    assert not (tmp_path / "INJECTED").exists()


@pytest.mark.parametrize("text", ["", "123", "true", "yes", "null", "2.60", "1e3", "~", "0x1f"])
def test_text_that_looks_like_another_type_stays_text(tmp_path: Path, text: str) -> None:
    """Ansible reads '!unsafe' scalars as plain ones; such text goes untagged instead."""
    from grid_ops.drivers import inventory as inv

    hosts = tmp_path / "hosts.yml"
    hosts.write_text(f"all:\n  hosts:\n    h1:\n      v: {inv.to_yaml(text)}\n      "
                     f"w: {inv.to_yaml([text, {'k': text}])}\n")  # fmt: skip
    hv = ansible_list(hosts)["_meta"]["hostvars"]["h1"]
    assert hv["v"] == text and hv["w"] == [text, {"k": text}]
