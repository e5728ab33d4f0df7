"""The operators' path (plain ansible-playbook on a rendered inventory) against this machine
through a local connection: no lab, real Ansible.

- roles/grid_validate checks the inventory's variables first and ends the play, naming
  the variable, before any node is touched (not even the read-only probe);
- the playbook's sync and grid-ops' own rsync (the quick path, job --workdir) build one
  command: the role's filter plugin, called through Ansible and through grid_ops.drivers.rsync;
- every variable the roles read is rendered by grid-ops, and role defaults restate no
  config default.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from grid_ops import layout, model
from grid_ops.drivers import ansible, inventory, rsync
from grid_ops.model import config
from tests.conftest import REPO, grid_ops


def _config(tmp_path: Path) -> config.ClusterConfig:
    return config.parse(
        {
            "name": "operator",
            "remote_root": str(tmp_path / "root"),
            "nodes": [{"name": "here", "host": "localhost", "connection": "local"}],
            "sync": {"exclude_patterns": ["*.log", "build"], "use_checksums": True},
        }
    )


def _playbook(inv: Path, playbook: str, *extra: str) -> subprocess.CompletedProcess[str]:
    bin_dir = Path(sys.executable).parent
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", ANSIBLE_NOCOLOR="1")
    env.pop("ANSIBLE_CONFIG", None)
    return subprocess.run(
        [str(bin_dir / "ansible-playbook"), "-i", str(inv / "hosts.yml"),
         f"playbooks/{playbook}.yml", *extra],
        cwd=REPO, capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip


def _edit(path: Path, change: Any) -> None:
    """Load a rendered YAML file as plain data, change it, write it back (as an operator
    editing it by hand would; the !unsafe tags are dropped on the way)."""

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))
    data = yaml.load(path.read_text(), Loader=Loader)
    change(data)
    path.write_text(yaml.safe_dump(data))


@pytest.mark.parametrize(
    ("where", "change", "named"),
    [
        ("group_vars/all.yml", lambda d: d["grid_ray"].update(port="6379; x"), "grid_ray.port"),
        ("group_vars/all.yml", lambda d: d.pop("grid_remote_root"), "grid_remote_root"),
        ("group_vars/all.yml", lambda d: d.update(grid_remote_root="~/a/../b"),
         "grid_remote_root"),
        ("group_vars/all.yml", lambda d: d.update(grid_remote_root="~/."), "grid_remote_root"),
        ("group_vars/all.yml", lambda d: d.update(grid_remote_root="//"), "grid_remote_root"),
        ("group_vars/all.yml", lambda d: d.update(grid_cluster_id="../x"), "grid_cluster_id"),
        ("group_vars/all.yml", lambda d: d["grid_sync"].update(parallel=0), "grid_sync"),
        ("group_vars/all.yml", lambda d: d.update(grid_head_node="nobody"), "grid_head_node"),
        ("hosts.yml", lambda d: d["all"]["hosts"]["here"].update(grid_role="boss"),
         "grid_role"),
        ("hosts.yml", lambda d: d["all"]["hosts"]["here"].pop("grid_ray_start"),
         "grid_ray_start"),
    ],
)  # fmt: skip
def test_a_hand_edited_inventory_fails_before_any_node_is_touched(
    tmp_path: Path, where: str, change: Any, named: str
) -> None:
    inv = tmp_path / "inv"
    inventory.render(model.of(_config(tmp_path)), inv)
    _edit(inv / where, change)
    proc = _playbook(inv, "ray_status")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert f"Inventory variable {named} of here" in out, out[-3000:]
    assert "Probe the node" not in out  # the play ended before the first node task
    assert not (tmp_path / "root").exists()


def test_the_rendered_inventory_passes_the_checks_and_the_play_goes_on(tmp_path: Path) -> None:
    inv = tmp_path / "inv"
    inventory.render(model.of(_config(tmp_path)), inv)
    proc = _playbook(inv, "ping")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert "Probe the node" in proc.stdout


def test_playbook_and_grid_ops_build_the_same_rsync_command(tmp_path: Path) -> None:
    """The command the grid_sync role ran (through Ansible, its filter plugin fed from the
    rendered group_vars) is the one grid_ops.drivers.rsync builds from the resolved model."""
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(config.dump(_config(tmp_path)))
    src = tmp_path / "proj"
    src.mkdir()
    (src / "a.py").write_text("A = 1\n")
    env = dict(os.environ, GRID_OPS_STATE_DIR=str(tmp_path / "state"), GRID_OPS_QUICK="0")
    proc = grid_ops("sync", str(src), "-c", str(cfg_path), "--json", "--dry-run", "--delete",
                    env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    host = json.loads(proc.stdout)["hosts"]["here"]
    cluster = model.resolve(config.load(cfg_path))
    node = cluster.node("here")
    dest = rsync.dest(str(node.root), layout.CODE, str(src))
    assert host["dest"] == dest
    ours = rsync.argv(cluster.sync, str(src), node.dest_prefix + dest, node.rsh,
                      delete=True, dry_run=True)  # fmt: skip
    assert host["command"] == ours
    assert "--exclude=build" in ours and "--checksum" in ours  # the config's settings


def _role_texts() -> dict[Path, str]:
    return {
        p: p.read_text()
        for p in sorted((REPO / "roles").glob("*/*/*.yml"))
        if p.parent.name in ("defaults", "tasks", "vars", "handlers")
    }


def test_every_inventory_variable_the_roles_read_is_rendered_by_grid_ops(
    tmp_path: Path,
) -> None:
    """Each grid_* variable a role uses is a role's own, a fact, or one grid-ops renders;
    the validation role checks each rendered one."""
    cfg = _config(tmp_path)
    resolved = model.resolve(cfg, recorded=False)
    rendered = set(inventory.cluster_vars(cfg, resolved))
    rendered |= set(inventory.host_vars(cfg, resolved.nodes[0], {}))
    ssh_cfg = config.parse({"name": "x", "nodes": [{"name": "a", "host": "10.0.0.1"}]})
    rendered |= set(inventory.host_vars(ssh_cfg, model.resolve(ssh_cfg).nodes[0], {}))
    rendered.add(ansible.RUNTIME_VAR)  # an extra var of every grid-ops run
    facts = {"grid_node", "grid_ray_node", "grid_health", "grid_sync_stats", "grid_reset"}
    # names that are not variables: roles, modules, filters, the package
    names = {p.name for p in (REPO / "roles").iterdir()}
    names |= {p.stem for p in (REPO / "roles").glob("*/library/*.py")}
    names |= {p.stem for p in (REPO / "grid_ops" / "module_utils").glob("grid_*.py")}
    names |= {p.stem for p in (REPO / "roles").glob("*/filter_plugins/*.py")}
    names |= set(re.findall(r'"(grid_rsync_\w+)"', Path(rsync.plugin_path()).read_text()))
    names |= {"grid_ops", "grid_ops_runtime"}
    role_own = ("grid_ray_", "grid_sync_", "grid_venv_", "grid_facts_", "grid_bootstrap_",
                "grid_ping_", "grid_validate_")  # fmt: skip
    used: set[str] = set()
    for text in _role_texts().values():
        used |= set(re.findall(r"\b(grid_[a-z0-9_]+)", text))
    outside = sorted(v for v in used - facts - rendered - names if not v.startswith(role_own))
    # role-prefixed names that are rendered (grid_ray, grid_sync) are not role-own ones
    assert outside == [], outside
    for name in ("grid_ray", "grid_sync"):
        assert name in rendered
    checks = yaml.safe_load((REPO / "roles/grid_validate/vars/main.yml").read_text())
    checked = {c["var"].split(".")[0] for c in checks["grid_validate_checks"]}
    unchecked = sorted(
        v
        for v in rendered - checked
        if v.startswith("grid_") and v not in ("grid_node_ip", ansible.RUNTIME_VAR)
    )
    assert unchecked == [], f"rendered but not checked by grid_validate: {unchecked}"


def _config_defaults(model_type: Any = config.ClusterConfig) -> list[Any]:
    """Every default value of the config schema (numbers, text, lists), recursively."""
    from pydantic import BaseModel

    found: list[Any] = []
    for field in model_type.model_fields.values():
        value = field.get_default(call_default_factory=True)
        if isinstance(value, BaseModel):
            found += _config_defaults(type(value))
        elif value is not None and not isinstance(value, bool | dict):
            found.append(value)
    return found


def test_role_defaults_restate_no_config_default(tmp_path: Path) -> None:
    """A role that writes ``| default(6379)`` holds a second copy of a config default; one
    that defaults a rendered variable hides a broken inventory. Roles read the rendered
    values, and grid_validate checks them, so neither may appear."""
    defaults = _config_defaults()
    assert 6379 in defaults and "~/grid-ops" in defaults  # the walk finds them
    cfg = _config(tmp_path)
    resolved = model.resolve(cfg, recorded=False)
    rendered = set(inventory.cluster_vars(cfg, resolved))
    rendered |= set(inventory.host_vars(cfg, resolved.nodes[0], {})) - {"grid_node_ip"}
    problems = []
    for path, text in _role_texts().items():
        if path.parts[-3] == "grid_validate":
            continue  # the checker itself: default(none) tells "missing" from "wrong"
        for var, arg in re.findall(
            r"\b(grid_[a-z0-9_]+)[.\w\[\]']*\s*\|\s*default\(([^()]*)\)", text
        ):
            where = f"{path.relative_to(REPO)}: {var} | default({arg})"
            if var in rendered:
                problems.append(where)
                continue
            try:
                literal = yaml.safe_load(arg) if arg.strip() else None
            except yaml.YAMLError:
                continue
            if literal is not None and not isinstance(literal, bool) and literal in defaults:
                problems.append(where)
    assert problems == [], problems
