"""Cluster config -> Ansible inventory (``hosts.yml`` + ``group_vars/all.yml``).

The rendered directory is what operators pass to ``ansible-playbook -i``; grid-ops renders
the same files into each run's private data dir, so both paths see identical inventories.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shlex
import sys
from pathlib import Path
from typing import Any

from grid_ops import layout
from grid_ops.config import ClusterConfig, NodeConfig
from grid_ops.fsutil import write_file
from grid_ops.paths import state_dir


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


def ssh_args(config: ClusterConfig) -> list[str]:
    """The ssh options every connection to this cluster needs (beyond ansible.cfg's)."""
    ssh = config.ssh
    args: list[str] = []
    if ssh.config_file:
        args += ["-F", str(ssh.config_file)]
    if ssh.known_hosts_file:
        args += ["-o", f"UserKnownHostsFile={ssh.known_hosts_file}"]
        args += ["-o", "StrictHostKeyChecking=yes"]
    else:
        # New hosts are learned once; a changed host key is always refused.
        args += ["-o", "StrictHostKeyChecking=accept-new"]
    if ssh.key_file:
        args += ["-o", "IdentitiesOnly=yes"]
    args += ["-o", f"ConnectTimeout={ssh.connect_timeout}"]
    args += list(ssh.extra_args)
    return args


def node_ip(config: ClusterConfig, node: NodeConfig) -> str | None:
    """The address Ray should use for ``node`` when the config says it: override or IP.

    Names are not resolved here (that would be a DNS query from the controller); for them
    the node reports the address its SSH connection arrived on (fact grid_node.ssh_ip).
    """
    override = config.ray.nodes.get(node.name)
    if override and override.node_ip:
        return override.node_ip
    if node.connection == "local":
        return "127.0.0.1"
    try:
        return str(ipaddress.ip_address(node.host))
    except ValueError:
        return None


def ssh_command(config: ClusterConfig, node: NodeConfig) -> list[str]:
    """``ssh`` with the cluster's settings for ``node`` (add the target and command).

    Connections are multiplexed (ControlPersist) so rsync and ``grid-ops run`` after the
    first pay no new handshake.
    """
    args = ["ssh", "-o", "BatchMode=yes"]
    if node.port:
        args += ["-p", str(node.port)]
    if config.ssh.key_file:
        args += ["-i", str(config.ssh.key_file)]
    args += ssh_args(config)
    args += ["-o", "ControlMaster=auto", "-o", "ControlPersist=60s"]
    args += ["-o", "ControlPath=~/.ansible/cp/grid-%C"]
    return args


def ssh_argv(config: ClusterConfig, node: NodeConfig, command: str) -> list[str]:
    """ssh to ``node`` running one remote command line: ``--`` ends ssh's options, so
    nothing after it (the target included) is ever read as one."""
    return [*ssh_command(config, node), "--", ssh_target(node), command]


def ensure_control_dir() -> None:
    """ssh refuses a ControlPath whose directory is missing (Ansible makes it on first use)."""
    Path("~/.ansible/cp").expanduser().mkdir(mode=0o700, parents=True, exist_ok=True)


def ssh_target(node: NodeConfig) -> str:
    return f"{node.user}@{node.host}" if node.user else node.host


def host_vars(config: ClusterConfig, node: NodeConfig) -> dict[str, Any]:
    """What Ansible needs to reach ``node``, plus the node's grid-ops facts."""
    out: dict[str, Any] = {"ansible_host": node.host}
    if node.connection == "local":
        out["ansible_connection"] = "local"
        out["ansible_python_interpreter"] = config.python_interpreter or local_python()
    else:
        if node.port:
            out["ansible_port"] = node.port
        if node.user:
            out["ansible_user"] = node.user
        if config.ssh.key_file:
            out["ansible_ssh_private_key_file"] = str(config.ssh.key_file)
        out["ansible_ssh_common_args"] = shlex.join(ssh_args(config))
        out["ansible_ssh_timeout"] = config.ssh.connect_timeout
        if config.python_interpreter:
            out["ansible_python_interpreter"] = config.python_interpreter
    if node.connection == "local":
        out.update(grid_rsync_rsh="", grid_rsync_dest="")
    else:
        out.update(
            grid_rsync_rsh=shlex.join(ssh_command(config, node)),
            grid_rsync_dest=f"{ssh_target(node)}:",
        )
    ip = node_ip(config, node)
    if ip:
        out["grid_node_ip"] = ip
    override = config.ray.nodes.get(node.name)
    out.update(
        grid_role="head" if node.name == config.head.name else "worker",
        grid_gpu_count=node.gpu_count,
        grid_memory_gb=node.memory_gb,
        grid_tags=list(node.tags),
        grid_ray_overrides=override.model_dump(exclude_none=True) if override else {},
    )
    return out


def cluster_vars(config: ClusterConfig) -> dict[str, Any]:
    """Cluster-wide variables (group_vars/all.yml) the roles read."""
    dump = config.model_dump(mode="json")
    return {
        "grid_cluster_name": config.name,
        "grid_remote_root": config.remote_root,
        "grid_layout": layout.as_vars(),
        "grid_ray_token_file": _home_relative(ray_token_file(config)),
        "grid_become": config.become,
        "grid_provision": dump["provision"],
        "grid_head_node": config.head.name,
        "grid_head_host": config.head.host,
        "grid_node_hosts": {n.name: node_ip(config, n) or n.host for n in config.nodes},
        "grid_ray": {k: v for k, v in dump["ray"].items() if k != "nodes"},
        "grid_sync": dump["sync"],
        "grid_health_check": dump["health_check"],
        "grid_execution": dump["execution"],
        "grid_resource_sharing": dump["resource_sharing"],
        "grid_offload": dump["offload"],
    }


def ray_token_file(config: ClusterConfig) -> Path:
    """The cluster's Ray token on this machine (made 0600 by the grid_ray role)."""
    return state_dir() / "secrets" / config.name / "ray_auth_token"


def _home_relative(path: Path) -> str:
    """``~/…`` for a path under the home directory (the same file for whoever renders)."""
    home = Path.home()
    return f"~/{path.relative_to(home)}" if path.is_relative_to(home) else str(path)


def render_text(config: ClusterConfig, source: str = "cluster.yaml") -> dict[str, str]:
    """The inventory files as ``{relative path: text}``."""
    env = _environment()
    context = {
        "config": config,
        "source": source,
        "hostvars": {n.name: host_vars(config, n) for n in config.nodes},
        "groups": groups(config),
        "cluster_vars": cluster_vars(config),
    }
    return {
        "hosts.yml": env.get_template("hosts.yml.j2").render(context),
        "group_vars/all.yml": env.get_template("group_vars_all.yml.j2").render(context),
    }


def default_dir(config: ClusterConfig, root: Path | None = None) -> Path:
    """``inventory/<cluster name>/`` under ``root`` (default: the current directory)."""
    return (root or Path.cwd()) / "inventory" / config.name


def render(config: ClusterConfig, out_dir: Path, source: str = "cluster.yaml") -> Path:
    """Write the inventory into ``out_dir``; returns the path of ``hosts.yml``."""
    for rel, text in render_text(config, source).items():
        write_file(out_dir / rel, text)
    return out_dir / "hosts.yml"
