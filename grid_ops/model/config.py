"""The cluster config: pydantic models of ``cluster.yaml``, loading and validation.

This is the one source of truth every other part reads. It accepts the three shapes our
users already have: the mapping form (``nodes: [{name, host, port, user, ...}]``), the
same with ``role: head|worker``, and the SSH-alias form (``nodes: [gpu1, gpu2]``, resolved
by ``~/.ssh/config``). Unknown keys are rejected so a typo never passes silently.

Every value ends up in a shell, ssh, rsync, pip, a path or Ansible, so values are data,
never code: each string field has a type that allows only what that field can mean (no
template syntax, no control characters, no leading '-', no shell characters where a
command line reads them), every number is finite and bounded, and the file itself is
read with bounds (size, nesting, alias expansion, regular files only).
"""

from __future__ import annotations

import difflib
import errno
import ipaddress
import os
import re
import stat
from pathlib import Path, PurePath
from typing import Annotated, Any, Literal, get_args, get_origin

import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import InvalidVersion, Version
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from grid_ops.errors import ConfigError

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"

# ---------------------------------------------------------------------------------------
# value types: each string type allows only what its field can mean

# Jinja's statement, expression and comment openers: Ansible would evaluate them.
TEMPLATE_MARKERS = ("{{", "{%", "{#")
# C0/C1 controls, and invisible format characters that hide what a value really is.
_CONTROL = re.compile(
    r"[\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]"
)
_NAME = re.compile(NAME_PATTERN)
_LABEL = r"[A-Za-z0-9_][A-Za-z0-9_-]{0,62}"
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_IPV4ISH = re.compile(r"[0-9.]+")
_ZONE = re.compile(r"[A-Za-z0-9_.-]{1,15}")  # an IPv6 zone is an interface name
_USER = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}")
_PATH_CHARS = "letters, digits and / . _ - + @ % , ="
_SAFE_PATH = re.compile(r"[A-Za-z0-9/._+@%,=-]+")
_SSH_OPTION = re.compile(r"([A-Za-z][A-Za-z0-9]*)(?:\s*=\s*|\s+)(.+)")
_SSH_VALUE = re.compile(r"[A-Za-z0-9 _.,:/@%+=~*\[\]-]+")
SAFE_SSH_FLAGS = ("-4", "-6", "-a", "-C", "-k", "-q", "-T", "-v", "-vv", "-vvv", "-x")
# ssh options whose value is run as a command (or loads code): never from the config.
COMMAND_SSH_OPTIONS = (
    "ProxyCommand",
    "LocalCommand",
    "PermitLocalCommand",
    "KnownHostsCommand",
    "RemoteCommand",
    "Match",
    "Include",
    "PKCS11Provider",
    "SecurityKeyProvider",
)

HOST_RULE = (
    "must be a hostname, an IPv4 or IPv6 address or an ssh alias: letters, digits, "
    "'.', '-' and '_', not starting with '-' or '.' (at most 253 characters)"
)
USER_RULE = (
    "must be a user name: letters, digits, '_', '.' and '-', starting with a letter or '_' "
    "(at most 32 characters)"
)
NAME_RULE = (
    "must be a name: letters, digits, '_', '.' and '-', starting with a letter or digit "
    "(at most 63 characters)"
)
REMOTE_ROOT_RULE = (
    "must be an absolute path (/srv/grid-ops) or one under the home directory "
    f"(~/grid-ops), not / or ~ itself, without '..', of {_PATH_CHARS} only "
    "(at most 200 characters)"
)
INTERPRETER_RULE = (
    f"must be an absolute path (/usr/bin/python3) of {_PATH_CHARS} only, without '..' "
    "(at most 200 characters)"
)
VERSION_RULE = "must be a PEP 440 version such as 2.60.0 (at most 64 characters)"
IP_RULE = "must be an IPv4 or IPv6 address such as 10.0.0.5 or fd00::5"
BIND_RULE = "must be an IP address to bind to (127.0.0.1, ::1, 0.0.0.0, 10.0.0.5) or localhost"
PACKAGE_RULE = (
    "must be a pip requirement such as 'torch==2.13.0', 'numpy>=1.26,<3' or "
    "'ray[default]==2.60.0' (no pip options, no URLs; at most 200 characters)"
)
EXCLUDE_RULE = (
    "must be an rsync exclude pattern, not empty and not starting with '-' (at most 200 characters)"
)
SSH_ARG_RULE = (
    "must be one '-oName=value' option (one list entry each) or one of the flags "
    f"{' '.join(SAFE_SSH_FLAGS)} (at most 200 characters)"
)
SSH_VALUE_RULE = (
    "an ssh option's value may not start with '-' and may use only letters, digits, "
    "spaces and _ . , : / @ % + = ~ * [ ] -"
)
PATH_RULE = "must be a file path of printable characters (at most 4096 characters)"


def _plain(value: str, most: int, rule: str) -> str:
    """What every config string must be: literal data, printable, of a bounded length."""
    for marker in TEMPLATE_MARKERS:
        if marker in value:
            raise ValueError(
                f"contains template syntax '{marker}'; config values are data and are never "
                "templated: write the literal value"
            )
    if _CONTROL.search(value):
        raise ValueError(
            "contains a control character (newline, tab, escape, ...); "
            "only printable characters are allowed"
        )
    if len(value) > most:
        raise ValueError(f"is {len(value)} characters long; {rule}")
    return value


def _cluster_id(value: str) -> str:
    from grid_ops import identity

    if not identity.valid(_plain(value, 63, identity.ID_RULE)):
        raise ValueError(identity.ID_RULE)
    return value


def _name(value: str) -> str:
    # fullmatch: a pattern's '$' would also match before a trailing newline.
    if not _NAME.fullmatch(_plain(value, 63, NAME_RULE)):
        raise ValueError(NAME_RULE)
    return value


def _ipv6(value: str) -> str:
    address, percent, zone = value.partition("%")
    try:
        ipaddress.IPv6Address(address)
    except ValueError:
        raise ValueError(f"is not a valid IPv6 address; {HOST_RULE}") from None
    if percent and not _ZONE.fullmatch(zone):
        raise ValueError("has an IPv6 zone that is not an interface name (fe80::1%eth0)")
    return value


def _host(value: str) -> str:
    _plain(value, 253, HOST_RULE)
    if ":" in value:
        return _ipv6(value)
    if _IPV4ISH.fullmatch(value):  # ssh would read any digits-and-dots as an address
        try:
            ipaddress.IPv4Address(value)
        except ValueError:
            raise ValueError(f"is not a valid IPv4 address; {HOST_RULE}") from None
        return value
    if not _HOSTNAME.fullmatch(value):
        raise ValueError(HOST_RULE)
    return value


def _user(value: str) -> str:
    if not _USER.fullmatch(_plain(value, 32, USER_RULE)):
        raise ValueError(USER_RULE)
    return value


def _remote_root(value: str) -> str:
    path = _plain(value, 200, REMOTE_ROOT_RULE).rstrip("/")
    if value.startswith("~/"):
        rest = path[2:]
    elif value.startswith("/"):
        rest = path[1:]
    else:
        raise ValueError(REMOTE_ROOT_RULE)
    if not rest or not _SAFE_PATH.fullmatch(rest) or ".." in rest.split("/"):
        raise ValueError(REMOTE_ROOT_RULE)
    if not [part for part in rest.split("/") if part not in ("", ".")]:
        raise ValueError(REMOTE_ROOT_RULE)  # /. ~/./ //.: / or ~ itself, spelled longer
    return path


def _interpreter(value: str) -> str:
    _plain(value, 200, INTERPRETER_RULE)
    if (
        not value.startswith("/")
        or value.endswith("/")
        or not _SAFE_PATH.fullmatch(value)
        or ".." in value.split("/")
    ):
        raise ValueError(INTERPRETER_RULE)
    return value


def _version(value: str) -> str:
    try:
        return str(Version(_plain(value, 64, VERSION_RULE)))
    except InvalidVersion:
        raise ValueError(VERSION_RULE) from None


def _ip(value: str) -> str:
    if "%" in _plain(value, 64, IP_RULE):  # a zone (fe80::1%eth0) is no address to bind to
        raise ValueError(IP_RULE)
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(IP_RULE) from None


def _bind_address(value: str) -> str:
    if _plain(value, 64, BIND_RULE) == "localhost":
        return value
    try:
        return _ip(value)
    except ValueError:
        raise ValueError(BIND_RULE) from None


def _requirement(value: str) -> str:
    if _plain(value, 200, PACKAGE_RULE).lstrip().startswith("-"):
        raise ValueError(f"is a pip option, not a requirement; {PACKAGE_RULE}")
    try:
        requirement = Requirement(value)
    except InvalidRequirement:
        raise ValueError(PACKAGE_RULE) from None
    if requirement.url:
        raise ValueError(f"installs from a URL; {PACKAGE_RULE}")
    return str(requirement)


def _exclude_pattern(value: str) -> str:
    if not _plain(value, 200, EXCLUDE_RULE) or value.startswith("-"):
        raise ValueError(EXCLUDE_RULE)
    return value


def _ssh_arg(value: str) -> str:
    if _plain(value, 200, SSH_ARG_RULE) in SAFE_SSH_FLAGS:
        return value
    match = _SSH_OPTION.fullmatch(value[2:].strip()) if value.startswith("-o") else None
    if match is None:
        raise ValueError(SSH_ARG_RULE)
    name, setting = match.groups()
    dangerous = {o.lower(): o for o in COMMAND_SSH_OPTIONS}.get(name.lower())
    if dangerous:
        raise ValueError(
            f"ssh option {dangerous} runs a command or loads code, so grid-ops does not "
            "take it from the cluster config; set it in your own ~/.ssh/config if you must"
        )
    if setting.startswith("-") or not _SSH_VALUE.fullmatch(setting):
        raise ValueError(SSH_VALUE_RULE)
    return value


def _upper(value: Any) -> Any:
    """Log levels as the earlier tools wrote them: 'info' is INFO."""
    return value.upper() if isinstance(value, str) else value


def _controller_path(value: Any) -> Any:
    """A path on this machine: any file name, but printable and never a template."""
    if isinstance(value, str | PurePath):
        text = str(value)
        if not text:
            raise ValueError(PATH_RULE)
        _plain(text, 4096, PATH_RULE)
    return value


Name = Annotated[str, Field(strict=True), AfterValidator(_name)]
ClusterId = Annotated[str, Field(strict=True), AfterValidator(_cluster_id)]
Host = Annotated[str, Field(strict=True), AfterValidator(_host)]
User = Annotated[str, Field(strict=True), AfterValidator(_user)]
RemoteRoot = Annotated[str, Field(strict=True), AfterValidator(_remote_root)]
NodeFile = Annotated[str, Field(strict=True), AfterValidator(_remote_root)]  # same rule
Interpreter = Annotated[str, Field(strict=True), AfterValidator(_interpreter)]
PepVersion = Annotated[str, Field(strict=True), AfterValidator(_version)]
IPAddress = Annotated[str, Field(strict=True), AfterValidator(_ip)]
BindAddress = Annotated[str, Field(strict=True), AfterValidator(_bind_address)]
PipRequirement = Annotated[str, Field(strict=True), AfterValidator(_requirement)]
ExcludePattern = Annotated[str, Field(strict=True), AfterValidator(_exclude_pattern)]
SshArg = Annotated[str, Field(strict=True), AfterValidator(_ssh_arg)]
ControllerPath = Annotated[Path, BeforeValidator(_controller_path)]

# Numbers: strict (no bools, no strings, no floats for ints), finite, bounded.
Port = Annotated[int, Field(strict=True, ge=1, le=65535)]
Count = Annotated[int, Field(strict=True, ge=0, le=1024)]  # GPUs, nodes, batch sizes
Workers = Annotated[int, Field(strict=True, ge=1, le=1024)]  # pools, parallelism
Retries = Annotated[int, Field(strict=True, ge=0, le=20)]
Cpus = Annotated[int, Field(strict=True, ge=0, le=100_000)]
Seconds = Annotated[float, Field(strict=True, allow_inf_nan=False, gt=0, le=86_400)]
NonNegSeconds = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=0, le=86_400)]
Gigabytes = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=0, le=1e6)]
PosGigabytes = Annotated[float, Field(strict=True, allow_inf_nan=False, gt=0, le=1e6)]
Weight = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=0, le=1000)]
Percent = Annotated[float, Field(strict=True, allow_inf_nan=False, gt=0, le=100)]
Days = Annotated[float, Field(strict=True, allow_inf_nan=False, gt=0, le=3650)]
Kept = Annotated[int, Field(strict=True, ge=1, le=100_000)]
Fraction = Annotated[float, Field(strict=True, allow_inf_nan=False, gt=0, le=1)]

DEFAULT_EXCLUDES = [
    ".git",
    "__pycache__",
    ".env",
    "*.pyc",
    "node_modules",
    ".next",
    ".venv",
    "venv",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
]


class Strict(BaseModel):
    """Base for every section: unknown keys are errors, values are checked on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class NodeConfig(Strict):
    """One machine of the cluster."""

    name: Name
    host: Host
    port: Port | None = Field(default=None, description="SSH port; unset = ssh config or 22")
    user: User | None = Field(default=None, description="SSH user; unset = ssh config")
    role: Literal["head", "worker"] | None = None
    gpu_count: Count = 0
    memory_gb: Gigabytes | None = None
    tags: Annotated[list[Name], Field(max_length=64)] = Field(default_factory=list)
    connection: Literal["ssh", "local"] = "ssh"

    @property
    def address(self) -> str:
        """``host:port`` as SSH will reach it (22 when no port is set)."""
        return f"{self.host}:{self.port or 22}"


class SSHConfig(Strict):
    connect_timeout: Annotated[int, Field(strict=True, ge=1, le=600)] = 10
    max_retries: Retries = Field(
        default=0, description="more connection attempts after a failed one (ssh's own)"
    )
    pool_size: Workers | None = Field(
        default=None,
        description="most parallel SSH connections (Ansible forks); default: one per node",
    )
    key_file: ControllerPath | None = None
    config_file: ControllerPath | None = Field(
        default=None, description="an ssh_config file (ssh -F)"
    )
    known_hosts_file: ControllerPath | None = None
    extra_args: Annotated[list[SshArg], Field(max_length=40)] = Field(default_factory=list)


class HealthCheckConfig(Strict):
    timeout: Seconds = Field(default=3, description="seconds one nvidia-smi call may take")
    max_workers: Workers = 20
    cpu_weight: Weight = 1.0
    gpu_weight: Weight = 3.0
    refresh_interval: NonNegSeconds = 60
    quarantine: bool = Field(
        default=True,
        description="drain a node a health round finds sick until a later round finds it well",
    )
    repair: bool = Field(
        default=True,
        description="a watch round ('health --watch', 'serve') restarts Ray on a node where "
        "it should run but does not",
    )
    repair_attempts: Annotated[int, Field(strict=True, ge=1, le=100)] = Field(
        default=3, description="failed repairs in a row before the node is quarantined"
    )
    repair_backoff: Seconds = Field(
        default=30,
        description="seconds before the next try after a failed repair, doubled after each "
        "one (at most an hour)",
    )
    min_disk_free_gb: Gigabytes = Field(
        default=2.0, description="free space under remote_root below this: the node is sick"
    )
    max_clock_offset: Seconds = Field(
        default=5.0, description="a node's clock further off this machine's: a warning"
    )
    nvidia_smi: NodeFile | None = Field(
        default=None,
        description="nvidia-smi on the nodes (absolute or ~/…, each node user's home); "
        "unset: the one on PATH",
    )


class SyncConfig(Strict):
    exclude_patterns: Annotated[list[ExcludePattern], Field(max_length=200)] = Field(
        default_factory=lambda: list(DEFAULT_EXCLUDES)
    )
    use_checksums: bool = False
    follow_symlinks: bool = False
    max_parallel_transfers: Workers = Field(default=5, description="nodes an rsync runs to at once")
    respect_gitignore: bool = True


class RayNodeOverride(Strict):
    node_ip: IPAddress | None = Field(default=None, description="address Ray uses for this node")
    num_cpus: Cpus | None = None
    num_gpus: Count | None = None
    memory_gb: PosGigabytes | None = None
    object_store_memory_gb: PosGigabytes | None = None


class RayConfig(Strict):
    version: PepVersion = "2.60.0"
    port: Port = Field(default=6379, description="GCS port on the head")
    dashboard_port: Port = 8265
    dashboard_host: BindAddress = Field(
        default="127.0.0.1", description="loopback unless you say so"
    )
    auth: Literal["token", "none"] = Field(
        default="token", description="Ray token authentication; none: GCS and dashboard open"
    )
    worker_start_batch: Count = Field(
        default=0, description="workers started at once; 0 = all in parallel"
    )
    nodes: dict[Name, RayNodeOverride] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _legacy_keys(cls, data: Any) -> Any:
        """Accept the older tool's spellings: ``redis_port`` and ``head_bind_all``."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if "redis_port" in data:
            if "port" in data:
                raise ValueError(
                    "both 'port' and its older name 'redis_port' are set; keep only 'port'"
                )
            data["port"] = data.pop("redis_port")
        if "head_bind_all" in data:
            bind_all = data.pop("head_bind_all")
            if not isinstance(bind_all, bool):
                raise ValueError(
                    f"head_bind_all must be true or false (got {_shown(bind_all)}); "
                    "or set dashboard_host instead"
                )
            if bind_all and "dashboard_host" in data:
                raise ValueError(
                    "both 'dashboard_host' and its older form 'head_bind_all' are set; "
                    "keep only 'dashboard_host'"
                )
            if bind_all:
                data["dashboard_host"] = "0.0.0.0"
        return data


class ProvisionConfig(Strict):
    packages: Annotated[list[PipRequirement], Field(max_length=100)] = Field(
        default_factory=list, description="extra pip requirements for the node venvs"
    )
    wheelhouse: ControllerPath | None = Field(
        default=None, description="controller dir caching wheels; default ~/.cache/grid-ops"
    )


class LoggingConfig(Strict):
    level: Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR"], BeforeValidator(_upper)] = Field(
        default="WARNING", description="grid-ops' own log on stderr (--log-level wins)"
    )
    format: Literal["text", "json"] = "text"


class ExecutionConfig(Strict):
    default_nodes: Workers = Field(default=1, description="'job launch --nodes' default")
    default_gpus_per_node: Count = Field(
        default=0, description="'job launch --gpus' default (GPUs per rank)"
    )
    timeout_seconds: Seconds = Field(default=1800, description="'run --timeout' default")
    retry_attempts: Retries = 3
    job_max_retries: Retries = Field(
        default=2,
        description="'job launch --max-retries' default: attempts after a lost node or a "
        "restarted head (a plain failure is never retried)",
    )
    job_reserve_after: Seconds = Field(
        default=600,
        description="a high-priority job queued this long holds the nodes it needs "
        "(smaller jobs stop taking them)",
    )
    job_usage_half_life: Seconds = Field(
        default=86_400,
        description="fair share: a submitter's GPU-hours count half after this long",
    )
    job_keep: Kept = Field(
        default=200,
        description="ended jobs kept in the queue, with their logs and checkpoints on the "
        "nodes (the oldest go first)",
    )
    job_keep_days: Days = Field(default=30, description="and for how many days at most")


class ResourceSharingConfig(Strict):
    enabled: bool = Field(default=True, description="false: 'resource-sharing' is refused")
    max_share_fraction: Fraction = 0.5
    memory_pool_gb: Gigabytes = 1.0


class OffloadThresholds(Strict):
    cpu: Percent = 80
    memory: Percent = 70
    gpu: Percent = 90


class OffloadConfig(Strict):
    enabled: bool = False
    thresholds: OffloadThresholds = Field(default_factory=OffloadThresholds)
    check_interval: Seconds = 5


# Keys that never changed anything and are gone: a config that still has them loads,
# with one warning line each (ClusterConfig.deprecations), and they are ignored.
DEPRECATED: dict[tuple[str, ...], str] = {
    ("ssh", "timeout"): (
        "ssh.timeout is ignored and may be removed: remote commands are bounded by "
        "ssh.connect_timeout and 'run --timeout' (default execution.timeout_seconds)"
    ),
    ("ray", "namespace"): (
        "ray.namespace is ignored and may be removed: jobs and drivers choose their own "
        "Ray namespace (ray.init(namespace=...))"
    ),
    ("ray", "log_level"): (
        "ray.log_level is ignored and may be removed: Ray's own logs are under the "
        "node's Ray temp dir"
    ),
}


def _drop_deprecated(data: Any) -> tuple[Any, list[str]]:
    """``data`` without the DEPRECATED keys, and a warning for each one found."""
    if not isinstance(data, dict):
        return data, []
    data = dict(data)
    found = []
    for path, message in DEPRECATED.items():
        parent: Any = data
        for key in path[:-1]:
            child = parent.get(key) if isinstance(parent, dict) else None
            if not isinstance(child, dict):
                parent = None
                break
            copy = dict(child)
            parent[key] = copy
            parent = copy
        if isinstance(parent, dict) and path[-1] in parent:
            del parent[path[-1]]
            found.append(message)
    return data, found


GpuAmount = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=0, le=100_000)]
GpuHours = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=0, le=10_000_000)]


class QuotaConfig(Strict):
    """What one user's jobs may hold: unset = no limit."""

    gpus: GpuAmount | None = Field(
        default=None, description="GPUs their running jobs may hold at once"
    )
    gpu_hours_per_week: GpuHours | None = Field(
        default=None, description="GPU-hours their jobs may use in any 7 days (rolling)"
    )


class UserConfig(Strict):
    """One person who uses the cluster (identified by a token: 'grid-ops user token')."""

    name: Name
    role: Literal["admin", "member"] = Field(
        default="member",
        description="admin: may stop, release and delete anyone's work and make tokens; "
        "member: only their own",
    )
    quota: QuotaConfig = Field(default_factory=QuotaConfig)


class ClusterConfig(Strict):
    """The whole ``cluster.yaml``."""

    _deprecations: list[str] = PrivateAttr(default_factory=list)
    _source: str | None = PrivateAttr(default=None)  # the file it was read from (load)
    _id: str | None = PrivateAttr(default=None)  # the id once known (property id)

    name: Name
    cluster_id: ClusterId | None = Field(
        default=None,
        description="the cluster's identity; unset = made once for this config file and "
        "kept in this machine's state dir (set it where several operators share a config)",
    )
    nodes: Annotated[list[NodeConfig], Field(min_length=1, max_length=1024)]
    remote_root: RemoteRoot = "~/grid-ops"
    python_interpreter: Interpreter | None = Field(
        default=None, description="Python on the nodes; unset = Ansible discovers it"
    )
    become: bool = Field(default=False, description="may use sudo to install system packages")
    ssh: SSHConfig = Field(default_factory=SSHConfig)
    provision: ProvisionConfig = Field(default_factory=ProvisionConfig)
    health_check: HealthCheckConfig = Field(default_factory=HealthCheckConfig)
    sync: SyncConfig = Field(default_factory=SyncConfig)
    ray: RayConfig = Field(default_factory=RayConfig)
    execution: ExecutionConfig = Field(default_factory=ExecutionConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    resource_sharing: ResourceSharingConfig = Field(default_factory=ResourceSharingConfig)
    offload: OffloadConfig = Field(default_factory=OffloadConfig)
    users: Annotated[list[UserConfig], Field(max_length=1024)] = Field(
        default_factory=list,
        description="who uses the cluster; unset = one user, no tokens (everyone is admin)",
    )

    @model_validator(mode="wrap")
    @classmethod
    def _deprecated_keys(cls, data: Any, handler: Any) -> Any:
        data, found = _drop_deprecated(data)
        config = handler(data)
        if found:
            config._deprecations = found
        return config

    @property
    def id(self) -> str:
        """The cluster's identity (grid_ops.identity): ``cluster_id`` when set, else the
        id made once for the file this config was read from. Every token, record and
        cache is kept under it, never under the name."""
        if self.cluster_id:
            return self.cluster_id
        if self._id is not None:
            return self._id
        from grid_ops import identity

        source = self._source or f"name:{self.name}"
        try:
            self._id = identity.of_source(source, self.name)
        except OSError as exc:
            raise ConfigError(
                f"Cannot keep the identity of cluster '{self.name}' in "
                f"{identity.registry_file(source)}: {exc.strerror or exc}.",
                "Check that grid-ops' state dir ($GRID_OPS_STATE_DIR, else "
                "~/.local/state/grid-ops) is yours and writable.",
            ) from None
        return self._id

    @property
    def deprecations(self) -> list[str]:
        """One line per ignored old key the config still has."""
        return list(self._deprecations)

    def __eq__(self, other: object) -> bool:
        """The same settings (whatever old keys either file also had)."""
        if not isinstance(other, ClusterConfig):
            return NotImplemented
        return self.model_dump() == other.model_dump()

    __hash__ = None  # type: ignore[assignment]

    @field_validator("nodes", mode="before")
    @classmethod
    def _alias_nodes(cls, value: Any) -> Any:
        """``nodes: [gpu1, gpu2]``: each entry is an SSH alias, used as name and host."""
        if not isinstance(value, list):
            return value
        return [{"name": n, "host": n} if isinstance(n, str) else n for n in value]

    @model_validator(mode="after")
    def _cluster_rules(self) -> ClusterConfig:
        seen_names: dict[str, int] = {}
        seen_addr: dict[str, str] = {}
        for i, node in enumerate(self.nodes):
            if node.name in seen_names:
                raise ValueError(
                    f"nodes[{i}].name: '{node.name}' is used twice "
                    f"(also nodes[{seen_names[node.name]}]); node names must be unique"
                )
            seen_names[node.name] = i
            addr = f"{node.host.lower()}:{node.port or 22}"
            if node.connection != "ssh":
                continue
            if addr in seen_addr:
                raise ValueError(
                    f"nodes[{i}]: '{node.name}' has the same host:port ({addr}) as "
                    f"'{seen_addr[addr]}'; each node needs its own address"
                )
            seen_addr[addr] = node.name
        heads = [n.name for n in self.nodes if n.role == "head"]
        if len(heads) > 1:
            raise ValueError(
                f"nodes: more than one node has role head ({', '.join(heads)}); "
                "mark exactly one node as head (or none: the first node is the head)"
            )
        users = [u.name for u in self.users]
        twice = sorted({u for u in users if users.count(u) > 1})
        if twice:
            raise ValueError(f"users: {', '.join(twice)} listed twice; user names must be unique")
        if users and not any(u.role == "admin" for u in self.users):
            raise ValueError(
                "users: nobody has role admin; give at least one user 'role: admin' "
                "(an admin makes the others' tokens)"
            )
        unknown = sorted(set(self.ray.nodes) - set(seen_names))
        if unknown:
            raise ValueError(
                f"ray.nodes: overrides for unknown node(s) {', '.join(unknown)}; "
                f"known nodes: {', '.join(seen_names)}"
            )
        return self

    @property
    def head(self) -> NodeConfig:
        """The node with role head, else the first node."""
        for node in self.nodes:
            if node.role == "head":
                return node
        return self.nodes[0]

    @property
    def node_names(self) -> list[str]:
        return [n.name for n in self.nodes]

    @property
    def workers(self) -> list[NodeConfig]:
        head = self.head.name
        return [n for n in self.nodes if n.name != head]

    def node(self, name: str) -> NodeConfig:
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
    def forks(self) -> int:
        """Parallel SSH connections: ``ssh.pool_size`` if set, else one per node."""
        return self.ssh.pool_size or max(len(self.nodes), 1)

    def warnings(self) -> list[str]:
        """Valid settings that open the cluster to its network, or (ssh.config_file)
        run commands on this machine or open the way back to it, one sentence each."""
        ray = self.ray
        found = []
        if not _is_loopback(ray.dashboard_host):
            legacy = " (as ray.head_bind_all: true sets it)" * (ray.dashboard_host == "0.0.0.0")
            found.append(
                f"ray.dashboard_host is {ray.dashboard_host}{legacy}: the Ray dashboard and its "
                f"job API on port {ray.dashboard_port} are open beyond the head's loopback, and "
                "whoever reaches them can run code on the cluster; keep 127.0.0.1 and reach it "
                "through an SSH tunnel"
            )
        if ray.auth == "none":
            found.append(
                f"ray.auth is none: the Ray GCS (port {ray.port}) and dashboard accept anyone "
                "who reaches them, without a token; use ray.auth: token unless the network is "
                "closed to everyone else"
            )
        if self.ssh.config_file is not None:
            found += ssh_config_warnings(self.ssh.config_file)
        return found


def _is_loopback(host: str) -> bool:
    return host == "localhost" or ipaddress.ip_address(host).is_loopback


# ---------------------------------------------------------------------------------------
# ssh.config_file: the entries that run commands here or open the way back to this machine

SSH_INCLUDE_DEPTH = 16  # as ssh's own limit on nested Include
SSH_MAX_FILES = 64
SSH_MAX_BYTES = 1024 * 1024
MAX_SSH_WARNINGS = 20
_SSH_LINE = re.compile(r"\s*([A-Za-z][A-Za-z0-9]*)(?:\s*=\s*|\s+)(.*)")
# keyword (lower case) -> (first arguments that are harmless, what the entry does)
_SSH_RISKS: dict[str, tuple[tuple[str, ...], str]] = {
    "proxycommand": (
        ("none",),
        "runs that command on this machine for every connection grid-ops makes "
        "(ProxyJump is the plain way through a bastion)",
    ),
    "localcommand": ((), "runs that command on this machine after every connection"),
    "permitlocalcommand": (
        ("no",),
        "lets a LocalCommand run on this machine after every connection",
    ),
    "forwardagent": (
        ("no",),
        "forwards your SSH agent to the nodes: whoever is root on a node (or its user) "
        "can sign with your keys while grid-ops is connected",
    ),
    "remoteforward": ((), "opens a port on the nodes into this machine's network"),
    "knownhostscommand": (
        ("none",),
        "runs that command on this machine to look up host keys for every connection",
    ),
}


def _ssh_words(text: str) -> list[str]:
    """A config line's arguments as ssh splits them (quotes honoured)."""
    import shlex

    try:
        return shlex.split(text, comments=False)
    except ValueError:  # an unbalanced quote: ssh refuses the line, plain words will do
        return text.split()


def _ssh_includes(words: list[str], home: Path) -> list[Path]:
    """The files an Include names: ``~`` expanded, relative paths under ~/.ssh (as ssh
    reads them in a user's config, which ``ssh -F`` makes of this file), globs sorted."""
    import glob

    found: list[Path] = []
    for word in words:
        pattern = os.path.expanduser(word)
        if not os.path.isabs(pattern):
            pattern = str(home / ".ssh" / pattern)
        found += [Path(name) for name in sorted(glob.glob(pattern))]
    return found


def _ssh_lines(path: Path) -> list[str] | str:
    """The lines of an ssh config file (a regular file, at most SSH_MAX_BYTES), or why
    they cannot be read."""
    try:
        with open(path, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                return "it is not a regular file"
            data = handle.read(SSH_MAX_BYTES + 1)
    except OSError as exc:
        return str(exc.strerror or exc)
    if len(data) > SSH_MAX_BYTES:
        return f"it is larger than {SSH_MAX_BYTES // 1024} KiB"
    return data.decode("utf-8", errors="replace").splitlines()


def ssh_config_warnings(path: Path) -> list[str]:
    """One sentence for each entry of the ssh config file ``path`` (and the files its
    Include lines name, followed as ssh would: nested at most SSH_INCLUDE_DEPTH deep,
    each file once) that runs a command on this machine or opens the way back to it:
    ProxyCommand, LocalCommand, PermitLocalCommand yes, ForwardAgent, RemoteForward,
    KnownHostsCommand and ``Match exec``. ProxyJump is not among them. Keywords are
    matched as ssh matches them: in any case, as ``Keyword value`` or ``Keyword=value``.
    The file is only read, never run."""
    home = Path(os.path.expanduser("~"))
    found: list[str] = []
    seen: set[str] = set()

    def scan(current: Path, depth: int) -> None:
        real = os.path.realpath(current)
        if real in seen or len(seen) >= SSH_MAX_FILES:
            return
        seen.add(real)
        lines = _ssh_lines(current)
        if isinstance(lines, str):
            found.append(
                f"ssh.config_file: cannot read {current} ({lines}); ssh will fail on it, and "
                "grid-ops could not check it for entries that run commands on this machine"
            )
            return
        for number, line in enumerate(lines, 1):
            match = _SSH_LINE.fullmatch(line.strip())
            if match is None or line.lstrip().startswith("#"):
                continue
            keyword, words = match[1].lower(), _ssh_words(match[2])
            if not words:
                continue
            where = f"ssh.config_file: {current}, line {number}"
            if keyword == "include":
                if depth >= SSH_INCLUDE_DEPTH:
                    found.append(f"{where}: Include is nested too deep to follow")
                    continue
                for included in _ssh_includes(words, home):
                    scan(included, depth + 1)
            elif keyword == "match" and "exec" in (w.lower() for w in words):
                found.append(
                    f"{where}: Match exec runs a command on this machine for every "
                    "connection grid-ops makes, to decide whether the block applies"
                )
            elif keyword in _SSH_RISKS:
                harmless, what = _SSH_RISKS[keyword]
                if words[0].lower() not in harmless:
                    found.append(f"{where}: {match[1]} {what}")

    scan(path, 0)
    if len(found) > MAX_SSH_WARNINGS:
        more = len(found) - MAX_SSH_WARNINGS
        found = [*found[:MAX_SSH_WARNINGS], f"ssh.config_file: and {more} more such entries"]
    return found


# ---------------------------------------------------------------------------------------
# loading


def _sanitize_name(stem: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-._") or "cluster"
    return name[:63]


SHOWN_CHARS = 60  # of a rejected value, in an error message
MAX_PROBLEMS = 20  # listed in one error message


def _shown(value: Any) -> str:
    """``repr(value)`` for a message: control characters escaped, long values cut."""
    try:
        text = repr(value)
    except ValueError:  # an int too long to print
        text = f"<a {type(value).__name__}>"
    if len(text) <= SHOWN_CHARS + 20:
        return text
    size = len(value) if isinstance(value, str | bytes) else len(text)
    return f"{text[:SHOWN_CHARS]}…({size} chars)"


def _segment(part: str) -> str:
    """A key in a field path, as typed when it is a plain word, else quoted and cut."""
    return part if re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", part) else _shown(part)


def _field_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]" or part.startswith(
            ("function-", "list[", "dict[", "literal[", "constrained")
        ):
            continue
        else:
            out += f".{_segment(part)}" if out else _segment(part)
    return out or "(top level)"


def _submodel(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _submodel(arg)
        if found is not None:
            return found
    return None


def _known_fields(loc: tuple[int | str, ...]) -> list[str]:
    """Field names allowed where ``loc`` points (to suggest a fix for a typo)."""
    model: type[BaseModel] = ClusterConfig
    parts = list(loc[:-1])
    while parts:
        field = model.model_fields.get(str(parts.pop(0)))
        sub = _submodel(field.annotation) if field is not None else None
        if field is None or sub is None:
            return []
        if get_origin(field.annotation) in (list, dict) and parts:
            parts.pop(0)  # the list index or dict key
        model = sub
    return list(model.model_fields)


def _describe(err: Any) -> str:
    loc = tuple(err.get("loc", ()))
    path = _field_path(loc)
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        key = loc[-1] if loc else "?"
        return f"{path}: unknown key {_shown(str(key))} ({_suggest(loc)})"
    if kind == "missing":
        return f"{path}: required but missing"
    msg = str(err.get("msg", "invalid value"))
    msg = msg.removeprefix("Value error, ")
    if kind.startswith("value_error") and not loc:
        return msg
    got = err.get("input")
    shown = "" if isinstance(got, dict | list) or got is None else f" (got {_shown(got)})"
    return f"{path}: {msg}{shown}"


def _suggest(loc: tuple[int | str, ...]) -> str:
    """For an unknown key: the known key it most likely means, else 'remove it'."""
    key = str(loc[-1]) if loc else ""
    if len(key) > 64:  # difflib on a huge key is slow, and nothing is that close anyway
        return "remove it"
    known = _known_fields(loc)
    close = (
        difflib.get_close_matches(key, known, n=1)
        or [k for k in known if len(key) >= 3 and k.startswith(key[:3])][:1]
    )
    return f"did you mean '{close[0]}'?" if close else "remove it"


def parse(data: Any, source: str = "<config>", default_name: str = "cluster") -> ClusterConfig:
    """Validate already-loaded YAML data; raise ConfigError with every problem named."""
    if not isinstance(data, dict):
        kind = "empty" if data is None else f"a {type(data).__name__}"
        raise ConfigError(
            f"{source}: the top level is {kind}, not a mapping.",
            "A cluster config is a YAML mapping with at least 'nodes:'; "
            "run 'grid-ops init' for a commented example.",
        )
    data = dict(data)
    data.setdefault("name", _sanitize_name(default_name))
    try:
        return ClusterConfig.model_validate(data)
    except ValidationError as exc:
        problems = list(dict.fromkeys(_describe(e) for e in exc.errors()))
        count = len(problems)
        listing = "; ".join(problems[:MAX_PROBLEMS])
        if count > MAX_PROBLEMS:
            listing += f"; and {count - MAX_PROBLEMS} more"
        raise ConfigError(
            f"{source} is not a valid cluster config ({count} problem{'s' * (count > 1)}): "
            f"{listing}.",
            "Fix the field(s) named and run 'grid-ops config validate' again.",
        ) from None


def _resolve_paths(config: ClusterConfig, base: Path) -> ClusterConfig:
    """Make controller-side file paths absolute (relative ones are relative to the file)."""
    for section, attr in (
        (config.ssh, "key_file"),
        (config.ssh, "config_file"),
        (config.ssh, "known_hosts_file"),
        (config.provision, "wheelhouse"),
    ):
        value: Path | None = getattr(section, attr)
        if value is not None:
            path = value.expanduser()
            setattr(section, attr, path if path.is_absolute() else (base / path).resolve())
    return config


MAX_CONFIG_BYTES = 1024 * 1024
MAX_DEPTH = 100  # levels of nesting; a real config has fewer than ten
MAX_EXPANDED = 100_000  # values a document with aliases may expand to


class _Refused(Exception):
    """The YAML is well-formed but refused: too deep, or an alias bomb."""

    def __init__(self, problem: str, mark: Any) -> None:
        where = f" at line {mark.line + 1}" if mark is not None else ""
        super().__init__(f"{problem}{where}")


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [child for pair in node.value for child in pair]
    return []


def _check_expansion(root: yaml.Node) -> None:
    """Refuse aliases that expand the document past MAX_EXPANDED values, or into itself.

    PyYAML builds an aliased value once and shares it, but everything that walks the data
    afterwards (validation, dumping) sees each alias expanded: 'billion laughs'.
    """
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            open_nodes.discard(key)
            sizes[key] = 1 + sum(sizes[id(child)] for child in _children(node))
            if sizes[key] > MAX_EXPANDED:
                raise _Refused(
                    f"its aliases expand it to more than {MAX_EXPANDED:,} values (an alias bomb?)",
                    node.start_mark,
                )
        elif key in open_nodes:
            raise _Refused("an alias refers to a value that contains it", node.start_mark)
        elif key not in sizes:
            open_nodes.add(key)
            stack.append((node, True))
            stack.extend((child, False) for child in _children(node))


class _ConfigLoader(yaml.SafeLoader):
    """SafeLoader that refuses repeated keys, deep nesting and alias bombs."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
        if self._depth >= MAX_DEPTH:
            mark = parent.start_mark if parent is not None else None
            raise _Refused(f"values are nested more than {MAX_DEPTH} levels deep", mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self) -> yaml.Node | None:
        node = super().compose_document()
        if node is not None and self._aliases:
            _check_expansion(node)
        return node


def _unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    """A mapping that refuses a key repeated in it (the last would win silently)."""
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # '<<: *base': its keys may be overridden
            continue
        key = loader.construct_object(key_node, deep=deep)
        if isinstance(key, list | dict):
            continue
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {_shown(key)} is repeated in one mapping", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_ConfigLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)

_FILE_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _not_a_file(path: Path, mode: int) -> ConfigError:
    if stat.S_ISDIR(mode):
        return ConfigError(f"{path} is a directory, not a config file.", "Pass a YAML file.")
    kind = next((name for test, name in _FILE_KINDS if test(mode)), "not a regular file")
    return ConfigError(
        f"{path} is {kind}; grid-ops reads its config from a regular file.",
        "Pass a YAML file.",
    )


def _too_large(path: Path) -> ConfigError:
    return ConfigError(
        f"{path} is larger than {MAX_CONFIG_BYTES // 1024} KiB; no cluster config is that big.",
        "Check that -c names the right file.",
    )


def _read_bytes(path: Path) -> bytes:
    """At most MAX_CONFIG_BYTES + 1 bytes of a regular file; never blocks on a FIFO."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ConfigError(
            f"Config file {path} does not exist.",
            "Pass one with -c PATH, set GRID_OPS_CONFIG, or create one with "
            "'grid-ops init' (or 'grid-ops lab up' for a local lab).",
        ) from None
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a socket, or a device with no driver
            raise _not_a_file(path, 0) from None
        raise ConfigError(
            f"Cannot read {path}: {exc.strerror or exc}.", "Check the path and its permissions."
        ) from None
    except ValueError:  # a NUL byte in the path
        raise ConfigError(
            f"Cannot read {str(path)!r}: not a valid path.", "Check the path."
        ) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise _not_a_file(path, mode)
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_CONFIG_BYTES:
            chunk = os.read(fd, MAX_CONFIG_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise ConfigError(
            f"Cannot read {path}: {exc.strerror or exc}.", "Check the path and its permissions."
        ) from None
    finally:
        os.close(fd)


def _read_text(path: Path) -> str:
    raw = _read_bytes(path)
    if len(raw) > MAX_CONFIG_BYTES:
        raise _too_large(path)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path} is not UTF-8 text (byte {exc.start} is not).",
            "Save the config as UTF-8 YAML.",
        ) from None


def _load_yaml(text: str, path: Path) -> Any:
    try:
        return yaml.load(text, Loader=_ConfigLoader)
    except _Refused as exc:
        raise ConfigError(
            f"{path} is refused: {exc}.",
            "A cluster config is a few levels deep and needs no tricks; write it out plainly.",
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(
            f"{path} is not valid YAML{where}: {_clip(problem)}.",
            "Fix the YAML there (indentation, ':' and repeated keys are the usual suspects).",
        ) from None
    except ValueError as exc:  # a scalar PyYAML cannot build: a date like 2024-13-45, ...
        raise ConfigError(
            f"{path} has a value YAML cannot read: {_clip(str(exc))}.",
            "Quote the value if it is meant as text.",
        ) from None


def _clip(text: str) -> str:
    """A message from elsewhere (YAML, the OS), printable and of a readable length."""
    text = _CONTROL.sub("?", text)
    return text if len(text) <= 200 else f"{text[:200]}…"


def load(path: Path | str) -> ClusterConfig:
    """Read, parse and validate a cluster config file."""
    path = Path(path)
    text = _read_text(path)
    try:
        data = _load_yaml(text, path)
        config = parse(data, source=str(path), default_name=path.stem)
    except RecursionError:
        raise ConfigError(
            f"{path} is nested too deeply to load.",
            "A cluster config is a few levels deep; write it out plainly.",
        ) from None
    except MemoryError:
        raise ConfigError(
            f"{path} is too large to load.",
            "A cluster config is a few KiB; check that -c names the right file.",
        ) from None
    config = _resolve_paths(config, path.resolve().parent)
    config._source = str(path.resolve())
    return config


def dump(config: ClusterConfig) -> str:
    """The config as YAML (defaults included), e.g. for a lab-written file."""
    data = config.model_dump(mode="json", exclude_none=True)
    return yaml.safe_dump(data, sort_keys=False)
