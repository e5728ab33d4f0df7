"""The resolved cluster: every value grid-ops derives from the config, computed once.

``config`` validates what the user wrote; ``resolve`` turns it into plain data that the
rest of grid-ops reads instead of deriving anything again:

    cluster.yaml -> config.ClusterConfig -> model.ClusterModel -> inventory (hosts.yml,
    group_vars) for the roles; ssh/rsync argv for remote, jobs, control, probe and sync;
    deadlines; the controller's settings; and, as JSON, the quick path's cache.

What only a node knows (remote_root with ``~`` expanded, the address its SSH connection
arrived on) is reported by the facts module at every playbook run and recorded per
cluster (``record_facts``); ``resolve`` attaches it to each node.

Standard library only at import: the quick path rebuilds a ClusterModel from its JSON
without loading pydantic.
"""

from __future__ import annotations

import contextlib
import json
import os

from grid_ops import layout
from grid_ops.paths import state_dir_name
from grid_ops.record import as_dict, factory, record, replace

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from grid_ops.model.config import ClusterConfig, NodeConfig

FORMAT = 5  # of the JSON form; bump when its shape changes
CONTROL_DIR = "~/.ansible/cp"
# One ControlMaster socket per node and cluster, shared by Ansible (the inventory's
# ansible_control_path names the same file) and by grid-ops' own ssh/rsync: %C is ssh's
# hash of the connection, the key (control_key) the cluster's id and ssh options, so a
# master opened under one cluster's settings never serves another's.
CONTROL_PATH = CONTROL_DIR + "/grid-{key}-%C"
CONTROL_PERSIST = "60s"
# Beyond the ssh connect timeout: a short grid-ops call on a node (stop a run, reach it).
COMMAND_GRACE_S = 5
# Beyond connect + nvidia-smi: the probe's own work (a Python start, /proc reads).
PROBE_GRACE_S = 5
# Beyond connect: an rsync dry run of a source tree (the quick sync's check).
SYNC_CHECK_S = 60
# Fixed limits (seconds) of calls whose work does not scale with a config setting.
CONTROLLER_S = 180  # one call to the head's controller (it may place or move things)
HEAD_CALL_S = 120  # one call to the head's Ray Jobs server
DRAIN_S = 360  # a node's drain (evacuation and Ray's drain included)
UNDRAIN_S = 60  # clearing a node's drain note
BANDWIDTH_S = 300  # doctor --deep's ring exchange
JOB_STOP_S = 30  # waiting for a cancelled job to end
PORT_CHECK_S = 3.0  # one TCP connect in doctor's reachability check
STOP_GRACE_S = 5  # between SIGTERM and SIGKILL of a stopped remote command
MIB = 2**20
GIB = 2**30


@record
class Deadlines:
    """Every time limit grid-ops applies, from named config keys (seconds)."""

    connect: int  # ssh.connect_timeout: ssh's ConnectTimeout, Ansible's timeout
    command: float  # connect + COMMAND_GRACE_S: a short grid-ops call on a node
    nvidia_smi: float  # health_check.timeout: one nvidia-smi call on a node
    probe: float  # connect + nvidia_smi + PROBE_GRACE_S: one node's health probe
    sync_check: float  # connect + SYNC_CHECK_S: the quick sync's rsync dry run
    run: float  # execution.timeout_seconds: the default of 'run --timeout'
    controller: float = CONTROLLER_S
    head_call: float = HEAD_CALL_S
    drain: float = DRAIN_S
    undrain: float = UNDRAIN_S
    bandwidth: float = BANDWIDTH_S
    job_stop: float = JOB_STOP_S
    port_check: float = PORT_CHECK_S
    stop_grace: float = STOP_GRACE_S


@record
class NodeModel:
    """One node, resolved: how to reach it and what Ray starts there."""

    name: str
    role: str  # head | worker
    local: bool  # connection: local (no ssh)
    host: str
    port: int | None
    user: str | None
    ssh: tuple[str, ...]  # ssh and its options for this node; empty for a local node
    address: str | None  # the address Ray uses for it when the config says so
    ray_start: dict[str, Any]  # resources, num_cpus, num_gpus, memory, object_store_memory
    gpu_count: int
    root: str | None = None  # remote_root as the node expanded it (recorded), if known
    ssh_ip: str | None = None  # the address its SSH connection arrived on (recorded)

    @property
    def target(self) -> str:
        """What follows ``--`` on the ssh line: ``user@host`` or ``host``."""
        return f"{self.user}@{self.host}" if self.user else self.host

    @property
    def rsh(self) -> str:
        """rsync's ``-e`` value ('' for a local node)."""
        if self.local:
            return ""
        import shlex

        return shlex.join(self.ssh)

    @property
    def dest_prefix(self) -> str:
        """What goes before a path in an rsync destination ('' for a local node)."""
        return "" if self.local else f"{self.target}:"

    @property
    def known_address(self) -> str | None:
        """The node's address as grid-ops knows it: the config's, else the one its SSH
        connection arrived on when last probed (None: neither)."""
        return self.address or self.ssh_ip

    @property
    def ray_address(self) -> str:
        """The address Ray uses for this node: the known one, else its host as the
        config gives it. The inventory carries it (grid_ray_address, and grid_node_ip
        for the known one), so the grid_ray role reads it and derives nothing."""
        return self.known_address or self.host

    @property
    def identity(self) -> list[Any]:
        """What a recorded fact of this node is valid for."""
        return [self.host, self.port, self.user]

    def argv(self, command: str) -> list[str]:
        """The local argv that runs one shell command line on the node: ``--`` ends
        ssh's options, so nothing after it (the target included) is read as one."""
        if self.local:
            return ["bash", "-c", command]
        return [*self.ssh, "--", self.target, command]


@record
class ClusterModel:
    """The whole cluster, resolved."""

    name: str
    id: str  # the cluster's identity (grid_ops.identity): what its state is kept under
    remote_root: str  # as the config says it (``~/…`` or absolute)
    head: str
    nodes: tuple[NodeModel, ...]
    forks: int
    deadlines: Deadlines
    python: str  # the nodes' Python for grid-ops' own probes
    sync: dict[str, Any]  # exclude, gitignore, checksums, follow_symlinks, parallel
    health: dict[str, Any]  # weights, refresh_interval, max_workers, the checks' settings
    ray: dict[str, Any]  # version, port, dashboard_host, dashboard_port, auth
    requirements: tuple[str, ...]  # the node venv's: Ray pinned, then provision.packages
    controller: dict[str, Any] = factory(dict)  # the controller's settings
    # The validated config this model was resolved from (None: rebuilt from the quick
    # path's JSON, which has none). Not part of the JSON form.
    source: ClusterConfig | None = None

    @property
    def config(self) -> ClusterConfig:
        """The validated config behind this model (what the inventory and the plans read)."""
        if self.source is None:
            raise RuntimeError("this model was rebuilt from JSON and has no config")
        return self.source

    @property
    def venv_id(self) -> str:
        """The name of the nodes' venv build for these requirements and this Python
        (a new build sits beside the one in use until Ray restarts on it)."""
        import hashlib

        text = json.dumps([list(self.requirements), self.python])
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def node(self, name: str) -> NodeModel:
        """The node called ``name``; a clear error naming the known nodes otherwise."""
        for node in self.nodes:
            if node.name == name:
                return node
        from grid_ops.errors import NotFound

        raise NotFound(
            f"Unknown node '{name}'.",
            f"This cluster has: {', '.join(n.name for n in self.nodes)}.",
        )

    @property
    def names(self) -> list[str]:
        """The nodes' names, in config order."""
        return [n.name for n in self.nodes]

    @property
    def head_node(self) -> NodeModel:
        return self.node(self.head)

    @property
    def head_address(self) -> str:
        """The head's Ray address (GCS): its Ray address and the config's port."""
        return f"{self.head_node.ray_address}:{self.ray['port']}"

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = as_dict(replace(self, source=None))
        del data["source"]
        return {"format": FORMAT, **data}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ClusterModel:
        if data.get("format") != FORMAT:
            raise ValueError("another format")
        fields = {k: v for k, v in data.items() if k != "format"}
        fields["nodes"] = tuple(NodeModel(**{**n, "ssh": tuple(n["ssh"])}) for n in fields["nodes"])
        fields["deadlines"] = Deadlines(**fields["deadlines"])
        fields["requirements"] = tuple(fields["requirements"])
        return cls(**fields)


# ---------------------------------------------------------------------------------------
# from the config


def ssh_options(config: ClusterConfig) -> list[str]:
    """The ssh options every connection to this cluster needs (beyond ansible.cfg's,
    which Ansible adds itself): host keys, the ssh config file, the connect timeout."""
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
    if ssh.max_retries:
        args += ["-o", f"ConnectionAttempts={ssh.max_retries + 1}"]
    args += list(ssh.extra_args)
    return args


def _ssh(config: ClusterConfig, node: NodeConfig, control: str) -> tuple[str, ...]:
    """``ssh`` with the cluster's settings for ``node`` (the target and command follow).

    Connections are multiplexed (ControlPersist) through the very socket Ansible uses,
    so rsync, probes and ``grid-ops run`` after the first pay no new handshake.
    """
    if node.connection == "local":
        return ()
    args = ["ssh", "-o", "BatchMode=yes"]
    if node.port:
        args += ["-p", str(node.port)]
    if config.ssh.key_file:
        args += ["-i", str(config.ssh.key_file)]
    args += ssh_options(config)
    args += ["-o", "ControlMaster=auto", "-o", f"ControlPersist={CONTROL_PERSIST}"]
    args += ["-o", f"ControlPath={control}"]
    return tuple(args)


def control_key(config: ClusterConfig) -> str:
    """What the cluster's ssh masters are told apart by: its id and every ssh option it
    connects with (host keys, config file, key), so another cluster, or this one with
    other host-key settings, never rides on a master opened under different rules."""
    import hashlib

    text = json.dumps([config.id, ssh_options(config), str(config.ssh.key_file or "")])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def control_path(config: ClusterConfig) -> str:
    """The cluster's ssh ControlPath (ssh's own form: %C is expanded by ssh)."""
    return CONTROL_PATH.format(key=control_key(config))


def ansible_control_path(config: ClusterConfig) -> str:
    """``control_path`` as Ansible's ssh plugin takes it (the same socket): the control
    dir as ``%(directory)s``, ``%%`` for ssh's own ``%``."""
    rest = control_path(config)[len(CONTROL_DIR) :]
    return "%(directory)s" + rest.replace("%", "%%")


def config_address(config: ClusterConfig, node: NodeConfig) -> str | None:
    """The address Ray uses for ``node`` when the config says it: override, else an IP
    host, else loopback for a local node. Host names are not resolved here (the
    controller's DNS may differ from the nodes'): for them the grid_ray role uses the
    address the node's SSH connection arrived on (fact grid_node.ssh_ip)."""
    import ipaddress

    override = config.ray.nodes.get(node.name)
    if override and override.node_ip:
        return override.node_ip
    if node.connection == "local":
        return "127.0.0.1"
    try:
        return str(ipaddress.ip_address(node.host))
    except ValueError:
        return None


def _ray_start(config: ClusterConfig, node: NodeConfig) -> dict[str, Any]:
    """What ``ray start`` gets on this node beyond the facts: its resources (tags and the
    node's own name), and the config's CPU, GPU and memory settings (None: Ray's or the
    node's own count)."""
    override = config.ray.nodes.get(node.name)
    memory_gb = (override.memory_gb if override else None) or node.memory_gb
    memory = int(memory_gb * GIB) if memory_gb else None
    store_gb = override.object_store_memory_gb if override else None
    object_store = int(store_gb * GIB) if store_gb else (int(memory * 0.3) if memory else None)
    resources: dict[str, float] = {f"tag:{tag}": 1 for tag in node.tags}
    resources[layout.node_resource(node.name)] = 1
    return {
        "resources": resources,
        "num_cpus": override.num_cpus if override else None,
        "num_gpus": override.num_gpus if override else None,
        "memory": memory,
        "object_store_memory": object_store,
    }


def _controller(config: ClusterConfig) -> dict[str, Any]:
    """The grid-ops controller's settings (it is replaced when they change)."""
    sharing = config.resource_sharing
    return {
        "head": config.head.name,
        "nodes": [n.name for n in config.nodes],
        "pool_capacity": int(sharing.memory_pool_gb * GIB),
        "max_share_fraction": sharing.max_share_fraction,
        "sharing": sharing.enabled,
        "offload": config.offload.model_dump(mode="json"),
        "nvidia_smi": config.health_check.nvidia_smi,
        "dashboard_port": config.ray.dashboard_port,
        "jobs": {
            "reserve_after": config.execution.job_reserve_after,
            "usage_half_life": config.execution.job_usage_half_life,
            "keep": config.execution.job_keep,
            "keep_days": config.execution.job_keep_days,
        },
        "users": [u.model_dump(mode="json") for u in config.users],
    }


def resolve(config: ClusterConfig, recorded: bool = True) -> ClusterModel:
    """The model of a validated config (``recorded``: with what the nodes reported)."""
    static = _static(config)
    return with_recorded(static) if recorded else static


def _static(config: ClusterConfig) -> ClusterModel:
    head = config.head.name
    control = control_path(config)
    nodes = []
    for node in config.nodes:
        nodes.append(
            NodeModel(
                name=node.name,
                role="head" if node.name == head else "worker",
                local=node.connection == "local",
                host=node.host,
                port=node.port,
                user=node.user,
                ssh=_ssh(config, node, control),
                address=config_address(config, node),
                ray_start=_ray_start(config, node),
                gpu_count=node.gpu_count,
            )
        )
    ssh, hc, sync = config.ssh, config.health_check, config.sync
    return ClusterModel(
        name=config.name,
        id=config.id,
        remote_root=config.remote_root,
        head=head,
        nodes=tuple(nodes),
        forks=config.forks,
        deadlines=Deadlines(
            connect=ssh.connect_timeout,
            command=ssh.connect_timeout + COMMAND_GRACE_S,
            nvidia_smi=hc.timeout,
            probe=ssh.connect_timeout + hc.timeout + PROBE_GRACE_S,
            sync_check=ssh.connect_timeout + SYNC_CHECK_S,
            run=config.execution.timeout_seconds,
        ),
        python=config.python_interpreter or "python3",
        sync={
            "exclude": list(sync.exclude_patterns),
            "gitignore": sync.respect_gitignore,
            "checksums": sync.use_checksums,
            "follow_symlinks": sync.follow_symlinks,
            "parallel": min(sync.max_parallel_transfers, config.forks),
        },
        health={
            "cpu_weight": hc.cpu_weight,
            "gpu_weight": hc.gpu_weight,
            "refresh_interval": hc.refresh_interval,
            "max_workers": hc.max_workers,
            "quarantine": hc.quarantine,
            "min_disk_free_bytes": int(hc.min_disk_free_gb * GIB),
            "max_clock_offset": hc.max_clock_offset,
            "nvidia_smi": hc.nvidia_smi,  # None: the one on PATH
        },
        ray={
            "version": config.ray.version,
            "port": config.ray.port,
            "dashboard_host": config.ray.dashboard_host,
            "dashboard_port": config.ray.dashboard_port,
            "auth": config.ray.auth,
        },
        requirements=(f"ray[default]=={config.ray.version}", *config.provision.packages),
        controller=_controller(config),
        source=config,
    )


def with_recorded(static: ClusterModel) -> ClusterModel:
    """``static`` with what its nodes last reported (valid only for the same host, port,
    user and remote_root); a local node is this machine, so its root is known here."""
    facts = read_facts(static.id)
    nodes = []
    for node in static.nodes:
        known = facts.get(node.name) or {}
        if known.get("identity") != [*node.identity, static.remote_root]:
            known = {"root": _local_root(static.remote_root)} if node.local else {}
        root, ip = known.get("root"), known.get("ssh_ip")
        nodes.append(
            replace(
                node,
                root=root if isinstance(root, str) and root.startswith("/") else None,
                ssh_ip=ip if isinstance(ip, str) and ip else None,
            )
        )
    return replace(static, nodes=tuple(nodes))


def _local_root(remote_root: str) -> str:
    """remote_root on this machine, for a node of connection: local."""
    from grid_ops.module_utils.grid_root import expand_root

    return expand_root(remote_root)


def of_cluster_again(cluster: ClusterModel) -> ClusterModel:
    """``cluster`` with what its nodes reported since it was resolved (a playbook run
    records the remote_root of nodes it reached for the first time)."""
    return with_recorded(cluster)


def of(config: ClusterConfig) -> ClusterModel:
    """The model of ``config`` with what its nodes reported: what a command builds once,
    when it has loaded the config, and passes to the actions and drivers it calls."""
    return resolve(config)


def root_expr(root: str) -> str:
    """remote_root for the remote shell: ``~/`` expanded by the node's shell, the rest
    quoted (data, never code)."""
    import shlex

    root = root.rstrip("/") or "/"
    if root.startswith("~/"):
        return '"$HOME"/' + shlex.quote(root[2:])
    return shlex.quote(root)


def ensure_control_dir() -> None:
    """ssh refuses a ControlPath whose directory is missing (Ansible makes it on first use)."""
    os.makedirs(os.path.expanduser(CONTROL_DIR), mode=0o700, exist_ok=True)


# ---------------------------------------------------------------------------------------
# what the nodes reported, recorded per cluster


def facts_file(cluster: str) -> str:
    return os.path.join(state_dir_name(), "clusters", cluster, "nodes.json")


def read_facts(cluster: str) -> dict[str, dict[str, Any]]:
    """``{node: {"identity", "root", "ssh_ip"}}`` as the nodes last reported them."""
    try:
        with open(facts_file(cluster), encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def record_facts(cluster: ClusterModel, reported: dict[str, Any]) -> None:
    """Record each node's ``grid_node`` facts (from a playbook run) that the model keeps:
    remote_root as the node expanded it, and the address SSH arrived on."""
    from grid_ops.fsutil import write_atomic

    known = read_facts(cluster.id)
    before = json.dumps(known, sort_keys=True)
    for node in cluster.nodes:
        facts = reported.get(node.name)
        if not isinstance(facts, dict) or not isinstance(facts.get("root"), str):
            continue
        known[node.name] = {
            "identity": [*node.identity, cluster.remote_root],
            "root": facts["root"],
            "ssh_ip": facts.get("ssh_ip") or None,
        }
    text = json.dumps(known, sort_keys=True)
    if text != before:
        # a note for later commands: the run itself has worked, whatever happens here
        with contextlib.suppress(OSError):
            write_atomic(facts_file(cluster.id), text + "\n", mode=0o600)


# ---------------------------------------------------------------------------------------
# the quick path's cache: the static model of a config file, keyed by its content


def code_version() -> str:
    """grid-ops' version, and for a source checkout the state of the modules that build
    the model (this package's and the shared top-level ones: an edit there must not be
    answered by a model an older code built)."""
    from grid_ops import __version__
    from grid_ops.paths import package_dir_name

    here = package_dir_name()
    if not os.path.exists(os.path.join(os.path.dirname(here), ".git")):
        return __version__
    stamps = sorted(
        f"{folder}/{entry.name}:{entry.stat().st_size}:{entry.stat().st_mtime_ns}"
        for folder in ("", "model")
        for entry in os.scandir(os.path.join(here, folder))
        if entry.name.endswith(".py")
    )
    return __version__ + "+" + ",".join(stamps)


def cache_key(config_bytes: bytes, config_abs: str) -> list[Any]:
    """What a cached model is valid for: the file's whole content (compared, not
    hashed: no collision, and cheaper than loading hashlib) and place (relative key
    paths are relative to it), the home and state dirs, the model's format and
    grid-ops' version."""
    home = os.path.expanduser("~")
    text = config_bytes.decode("utf-8", errors="replace")
    return [FORMAT, code_version(), config_abs, home, state_dir_name(), text]


def cache_file(config_abs: str) -> str:
    import zlib

    key = zlib.crc32(config_abs.encode())
    name = f"{os.path.basename(config_abs)}-{key:08x}.json"
    return os.path.join(state_dir_name(), "quick", name)


def read_config_bytes(config_abs: str) -> bytes | None:
    """The config file's bytes (at most what config.load accepts), None if unreadable."""
    try:
        with open(config_abs, "rb") as handle:
            return handle.read(4 * 1024 * 1024)
    except OSError:
        return None


def save_cache(static: ClusterModel, config_abs: str, key: list[Any]) -> None:
    """Keep the static model of the config at ``config_abs`` (read with ``key``)."""
    from grid_ops.fsutil import write_atomic

    text = json.dumps({"key": key, "model": static.to_json()}, indent=1) + "\n"
    target = cache_file(config_abs)
    try:
        with open(target, encoding="utf-8") as handle:
            if handle.read() == text:
                return
    except OSError:
        pass
    with contextlib.suppress(OSError):  # only a shortcut: the command itself has worked
        write_atomic(target, text, mode=0o600)


def load_cache(config_path: str) -> ClusterModel | None:
    """The model of this config with its nodes' record, if the cache holds it for the
    file's current content; None otherwise (the full CLI then loads the config)."""
    config_abs = os.path.abspath(config_path)
    data = read_config_bytes(config_abs)
    if data is None:
        return None
    try:
        with open(cache_file(config_abs), encoding="utf-8") as handle:
            cached = json.load(handle)
    except (OSError, ValueError):
        return None
    if not isinstance(cached, dict) or cached.get("key") != cache_key(data, config_abs):
        return None
    try:
        static = ClusterModel.from_json(cached["model"])
    except (KeyError, TypeError, ValueError):
        return None
    return with_recorded(static)
