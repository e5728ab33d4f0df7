"""The cluster config: pydantic models of ``cluster.yaml``, loading and validation.

This is the one source of truth every other part reads. It accepts the three shapes our
users already have: the mapping form (``nodes: [{name, host, port, user, ...}]``), the
same with ``role: head|worker``, and the SSH-alias form (``nodes: [gpu1, gpu2]``, resolved
by ``~/.ssh/config``). Unknown keys are rejected so a typo never passes silently.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from grid_ops.errors import ConfigError

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
Port = Annotated[int, Field(ge=1, le=65535)]
NonNegInt = Annotated[int, Field(ge=0)]
NonNegFloat = Annotated[float, Field(ge=0)]
PosFloat = Annotated[float, Field(gt=0)]
Percent = Annotated[float, Field(gt=0, le=100)]

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

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    host: Annotated[str, Field(min_length=1)]
    port: Port | None = Field(default=None, description="SSH port; unset = ssh config or 22")
    user: str | None = Field(default=None, description="SSH user; unset = ssh config")
    role: Literal["head", "worker"] | None = None
    gpu_count: Annotated[int, Field(ge=0, strict=True)] = 0
    memory_gb: NonNegFloat | None = None
    tags: list[Annotated[str, Field(pattern=NAME_PATTERN)]] = Field(default_factory=list)
    connection: Literal["ssh", "local"] = "ssh"

    @property
    def address(self) -> str:
        """``host:port`` as SSH will reach it (22 when no port is set)."""
        return f"{self.host}:{self.port or 22}"


class SSHConfig(Strict):
    timeout: PosFloat = Field(default=30, description="seconds a remote command may take")
    connect_timeout: Annotated[int, Field(ge=1, le=600)] = 10
    max_retries: Annotated[int, Field(ge=0, le=20)] = 3
    pool_size: Annotated[int, Field(ge=1)] | None = Field(
        default=None,
        description="most parallel SSH connections (Ansible forks); default: one per node",
    )
    key_file: Path | None = None
    config_file: Path | None = Field(default=None, description="an ssh_config file (ssh -F)")
    known_hosts_file: Path | None = None
    extra_args: list[str] = Field(default_factory=list)


class HealthCheckConfig(Strict):
    timeout: PosFloat = 3
    max_workers: Annotated[int, Field(ge=1)] = 20
    cpu_weight: NonNegFloat = 1.0
    gpu_weight: NonNegFloat = 3.0
    refresh_interval: NonNegFloat = 60


class SyncConfig(Strict):
    exclude_patterns: list[str] = Field(default_factory=lambda: list(DEFAULT_EXCLUDES))
    use_checksums: bool = False
    follow_symlinks: bool = False
    max_parallel_transfers: Annotated[int, Field(ge=1)] = 5
    respect_gitignore: bool = True


class RayNodeOverride(Strict):
    node_ip: str | None = Field(default=None, description="address Ray uses for this node")
    num_cpus: NonNegInt | None = None
    num_gpus: NonNegInt | None = None
    memory_gb: PosFloat | None = None
    object_store_memory_gb: PosFloat | None = None


class RayConfig(Strict):
    version: str = "2.60.0"
    port: Port = Field(default=6379, description="GCS port on the head")
    dashboard_port: Port = 8265
    dashboard_host: str = Field(default="127.0.0.1", description="loopback unless you say so")
    namespace: str = "grid_ops"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    worker_start_batch: Annotated[int, Field(ge=0)] = Field(
        default=0, description="workers started at once; 0 = all in parallel"
    )
    nodes: dict[str, RayNodeOverride] = Field(default_factory=dict)

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
                    f"head_bind_all must be true or false (got {bind_all!r}); "
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
    packages: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list, description="extra pip requirements for the node venvs"
    )
    wheelhouse: Path | None = Field(
        default=None, description="controller dir caching wheels; default ~/.cache/grid-ops"
    )


class ExecutionConfig(Strict):
    default_nodes: Annotated[int, Field(ge=1)] = 1
    default_gpus_per_node: NonNegInt = 1
    timeout_seconds: PosFloat = 1800
    retry_attempts: Annotated[int, Field(ge=0, le=20)] = 3


class LoggingConfig(Strict):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    format: Literal["json", "text", "console"] = "text"
    file: Path | None = None

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class ResourceSharingConfig(Strict):
    enabled: bool = True
    max_share_fraction: Annotated[float, Field(gt=0, le=1)] = 0.5
    memory_pool_gb: NonNegFloat = 1.0


class OffloadThresholds(Strict):
    cpu: Percent = 80
    memory: Percent = 70
    gpu: Percent = 90


class OffloadConfig(Strict):
    enabled: bool = False
    thresholds: OffloadThresholds = Field(default_factory=OffloadThresholds)
    check_interval: PosFloat = 5


class ClusterConfig(Strict):
    """The whole ``cluster.yaml``."""

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    nodes: Annotated[list[NodeConfig], Field(min_length=1)]
    remote_root: str = "~/grid-ops"
    python_interpreter: str | None = Field(
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
    def workers(self) -> list[NodeConfig]:
        head = self.head.name
        return [n for n in self.nodes if n.name != head]

    def node(self, name: str) -> NodeConfig:
        """The node called ``name``; a clear error naming the known nodes otherwise."""
        for node in self.nodes:
            if node.name == name:
                return node
        from grid_ops.errors import UsageError

        raise UsageError(
            f"Unknown node '{name}'.",
            f"This cluster has: {', '.join(n.name for n in self.nodes)}.",
        )

    @property
    def forks(self) -> int:
        """Parallel SSH connections: ``ssh.pool_size`` if set, else one per node."""
        return self.ssh.pool_size or max(len(self.nodes), 1)


# ---------------------------------------------------------------------------------------
# loading


def _sanitize_name(stem: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-._") or "cluster"
    return name[:63]


def _field_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith(("function-", "list[", "dict[", "literal[", "constrained")):
            continue
        else:
            out += f".{part}" if out else part
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
        known = _known_fields(loc)
        key = str(loc[-1]) if loc else "?"
        close = (
            difflib.get_close_matches(key, known, n=1)
            or [k for k in known if len(key) >= 3 and k.startswith(key[:3])][:1]
        )
        suggestion = f"did you mean '{close[0]}'?" if close else "remove it"
        return f"{path}: unknown key '{key}' ({suggestion})"
    if kind == "missing":
        return f"{path}: required but missing"
    msg = str(err.get("msg", "invalid value"))
    msg = msg.removeprefix("Value error, ")
    if kind.startswith("value_error") and not loc:
        return msg
    got = err.get("input")
    shown = "" if isinstance(got, dict | list) or got is None else f" (got {got!r})"
    return f"{path}: {msg}{shown}"


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
        problems = [_describe(e) for e in exc.errors()]
        listing = "; ".join(dict.fromkeys(problems))
        count = len(problems)
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


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key repeated in one mapping (the last would win silently)."""


def _unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if isinstance(key, list | dict):
            continue
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key '{key}' is repeated in one mapping", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _unique_mapping,
)


def load(path: Path | str) -> ClusterConfig:
    """Read, parse and validate a cluster config file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"Config file {path} does not exist.",
            "Pass one with -c PATH, set GRID_OPS_CONFIG, or create one with "
            "'grid-ops init' (or 'grid-ops lab up' for a local lab).",
        ) from None
    except IsADirectoryError:
        raise ConfigError(
            f"{path} is a directory, not a config file.", "Pass a YAML file."
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"Cannot read {path}: {exc}.", "Check the path and its permissions."
        ) from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(
            f"{path} is not valid YAML{where}: {problem}.",
            "Fix the YAML there (indentation, ':' and repeated keys are the usual suspects).",
        ) from None
    config = parse(data, source=str(path), default_name=path.stem)
    return _resolve_paths(config, path.resolve().parent)


def dump(config: ClusterConfig) -> str:
    """The config as YAML (defaults included), e.g. for a lab-written file."""
    data = config.model_dump(mode="json", exclude_none=True)
    return yaml.safe_dump(data, sort_keys=False)
