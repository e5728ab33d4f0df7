"""Cluster config -> Ansible inventory (``hosts.yml`` + ``group_vars/all.yml``).

The rendered directory is what operators pass to ``ansible-playbook -i``; grid-ops renders
the same files into each run's private data dir, so both paths see identical inventories.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
from pathlib import Path
from typing import Any

from grid_ops import layout, model
from grid_ops.drivers import probe
from grid_ops.fsutil import write_file
from grid_ops.model import NodeModel
from grid_ops.model.config import ClusterConfig
from grid_ops.paths import state_dir
from grid_ops.record import as_dict


def local_python() -> str:
    """Python for ``connection: local`` nodes: the system one, else the one running us."""
    return "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable


def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("grid_ops", "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["to_yaml"] = to_yaml
    env.filters["quoted"] = _quoted
    return env


def to_yaml(value: Any) -> str:
    """``value`` as one line of YAML for Ansible, every string tagged ``!unsafe``.

    Values come from the cluster config (and the command line, for extra vars): they are
    data, never templates. ``!unsafe`` makes Ansible take them literally whoever runs the
    play, a second wall behind the config's own validation. Mappings and lists are written
    in flow style so each string inside carries its own tag.
    """
    if isinstance(value, str):
        # Ansible reads an '!unsafe' scalar as if it were plain: "", "123", "true", "null"
        # would become other types. Such text holds no template, so it goes untagged.
        return ("!unsafe " if _reads_as_text(value) else "") + _quoted(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_quoted(str(k))}: {to_yaml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(to_yaml(v) for v in value) + "]"
    if value is None or isinstance(value, bool | int | float):
        return json.dumps(value)
    raise TypeError(f"cannot write a {type(value).__name__} into the inventory")


def _reads_as_text(text: str) -> bool:
    """Does ``text``, written plain, read back as a string (not a number, bool or null)?"""
    import yaml

    resolver = yaml.resolver.Resolver()
    tag = resolver.resolve(yaml.ScalarNode, text, (True, False))  # type: ignore[no-untyped-call]
    return bool(tag == "tag:yaml.org,2002:str")


def _quoted(text: str) -> str:
    """A YAML double-quoted scalar (PyYAML escapes what YAML needs escaped)."""
    import yaml

    dumped: str = yaml.safe_dump(text, default_style='"', width=1 << 30, allow_unicode=True)
    return dumped.removesuffix("\n...\n").removesuffix("\n")


def group_name(tag: str) -> str:
    """Ansible group for a node tag (group names allow only letters, digits and _)."""
    return "tag_" + re.sub(r"[^A-Za-z0-9_]", "_", tag)


def groups(config: ClusterConfig) -> dict[str, list[str]]:
    """grid_head, grid_workers, grid_gpu and one tag_<tag> group per tag."""
    out: dict[str, list[str]] = {
        "grid_head": [config.head.name],
        "grid_workers": [n.name for n in config.workers],
        "grid_gpu": [n.name for n in config.nodes if n.gpu_count > 0],
    }
    for node in config.nodes:
        for tag in node.tags:
            members = out.setdefault(group_name(tag), [])
            if node.name not in members:
                members.append(node.name)
    return out


def host_vars(config: ClusterConfig, node: NodeModel, stamp: dict[str, Any]) -> dict[str, Any]:
    """What Ansible needs to reach ``node``, plus the node's grid-ops settings and the
    stamp it carries once they are applied (grid_ops.model.stamp)."""
    out: dict[str, Any] = {"ansible_host": node.host}
    if node.local:
        out["ansible_connection"] = "local"
        out["ansible_python_interpreter"] = config.python_interpreter or local_python()
    else:
        if node.port:
            out["ansible_port"] = node.port
        if node.user:
            out["ansible_user"] = node.user
        if config.ssh.key_file:
            out["ansible_ssh_private_key_file"] = str(config.ssh.key_file)
        out["ansible_ssh_common_args"] = shlex.join(model.ssh_options(config))
        out["ansible_ssh_timeout"] = config.ssh.connect_timeout
        if config.python_interpreter:
            out["ansible_python_interpreter"] = config.python_interpreter
    out.update(grid_rsync_rsh=node.rsh, grid_rsync_dest=node.dest_prefix)
    # The node's Ray address, as the model gives it (NodeModel.ray_address: the one
    # function): the roles read these and derive none. grid_node_ip (Ray's
    # --node-ip-address) only where an address is known; else Ray picks its own.
    if node.known_address:
        out["grid_node_ip"] = node.known_address
    out["grid_ray_address"] = node.ray_address
    out.update(grid_role=node.role, grid_gpu_count=node.gpu_count, grid_ray_start=node.ray_start)
    out["grid_stamp"] = stamp
    return out


def cluster_vars(config: ClusterConfig, resolved: model.ClusterModel) -> dict[str, Any]:
    """Cluster-wide variables (group_vars/all.yml): what the roles read, from the model."""
    ray = config.ray
    return {
        "grid_cluster_name": config.name,
        "grid_cluster_id": resolved.id,
        "ansible_control_path": model.ansible_control_path(config),
        "grid_remote_root": config.remote_root,
        "grid_layout": layout.as_vars(),
        "grid_ray_token_file": _home_relative(ray_token_file(config.id)),
        "grid_become": config.become,
        "grid_provision": {
            "requirements": list(resolved.requirements),
            "venv_id": resolved.venv_id,
            "wheelhouse": _home_relative(wheelhouse_dir(config)),
        },
        "grid_head_node": resolved.head,
        "grid_ray": {
            **{k: resolved.ray[k] for k in ("port", "dashboard_host", "dashboard_port", "auth")},
            "worker_start_batch": ray.worker_start_batch,
        },
        "grid_sync": resolved.sync,
        "grid_deadlines": as_dict(resolved.deadlines),
        "grid_health_args": probe.cluster_args(resolved),
        "grid_controller": resolved.controller,
    }


def wheelhouse_dir(config: ClusterConfig) -> Path:
    """The controller's wheel cache: provision.wheelhouse, else the user's cache dir."""
    if config.provision.wheelhouse is not None:
        return config.provision.wheelhouse
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "grid-ops" / "wheelhouse"


def ray_token_file(key: str) -> Path:
    """The Ray token on this machine of the cluster kept under ``key`` (its id; made
    0600 by the grid_ray role)."""
    return state_dir() / "secrets" / key / "ray_auth_token"


def _home_relative(path: Path) -> str:
    """``~/…`` for a path under the home directory (the same file for whoever renders)."""
    home = Path.home()
    return f"~/{path.relative_to(home)}" if path.is_relative_to(home) else str(path)


def render_text(cluster: model.ClusterModel, source: str = "cluster.yaml") -> dict[str, str]:
    """The inventory files of ``cluster`` as ``{relative path: text}``: what the config
    gives, and each node's addresses as the model knows them (the config's, else the
    one its SSH connection arrived on when last reached)."""
    env = _environment()
    from grid_ops.model import stamp

    config, resolved = cluster.config, cluster
    context = {
        "config": config,
        "source": source,
        "hostvars": {
            n.name: host_vars(config, n, stamp.node_stamp(resolved, n)) for n in resolved.nodes
        },
        "groups": groups(config),
        "cluster_vars": cluster_vars(config, resolved),
    }
    return {
        "hosts.yml": env.get_template("hosts.yml.j2").render(context),
        "group_vars/all.yml": env.get_template("group_vars_all.yml.j2").render(context),
    }


def default_dir(config: ClusterConfig, root: Path | None = None) -> Path:
    """``inventory/<cluster name>/`` under ``root`` (default: the current directory)."""
    return (root or Path.cwd()) / "inventory" / config.name


def render(cluster: model.ClusterModel, out_dir: Path, source: str = "cluster.yaml") -> Path:
    """Write the inventory into ``out_dir``; returns the path of ``hosts.yml``."""
    for rel, text in render_text(cluster, source).items():
        write_file(out_dir / rel, text)
    return out_dir / "hosts.yml"
