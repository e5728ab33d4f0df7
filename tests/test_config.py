"""The cluster config: the shapes users already have, every error, and the CLI around it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from grid_ops.cli.config_cmd import starter_text
from grid_ops.errors import ConfigError
from grid_ops.model import config

FIXTURES = Path(__file__).parent / "fixtures" / "configs"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load_error(tmp_path: Path, text: str, name: str = "cluster.yaml") -> ConfigError:
    """Load ``text`` as a config file and return the ConfigError it must raise."""
    path = write(tmp_path / name, text)
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert info.value.exit_code == 2
    return info.value


def cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m grid_ops ARGS`` in ``cwd`` without any inherited GRID_OPS_CONFIG."""
    full_env = {k: v for k, v in os.environ.items() if k != "GRID_OPS_CONFIG"}
    full_env["COLUMNS"] = "160"
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "grid_ops", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def assert_user_error(result: subprocess.CompletedProcess[str]) -> None:
    """Exit 2, a one-paragraph 'error:' on stderr, never a traceback."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "error:" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


# ---------------------------------------------------------------------------------------
# 1. the shapes users already have


def test_distributed_grid_mapping_form() -> None:
    cfg = config.load(FIXTURES / "distributed_grid.yaml")

    assert cfg.name == "my-cluster"
    assert [n.name for n in cfg.nodes] == ["node-01", "node-02"]
    first = cfg.nodes[0]
    assert (first.host, first.port, first.user) == ("192.168.1.100", 22, "username")
    assert first.gpu_count == 4
    assert first.memory_gb == 64
    assert first.tags == ["gpu", "cuda"]
    assert first.connection == "ssh"
    assert cfg.nodes[1].host == "192.168.1.101"
    # No role anywhere: the first node is the head.
    assert cfg.head.name == "node-01"
    assert [n.name for n in cfg.workers] == ["node-02"]
    assert cfg.execution.default_nodes == 1
    assert cfg.execution.default_gpus_per_node == 1
    assert cfg.execution.timeout_seconds == 1800
    assert cfg.execution.retry_attempts == 3
    # The logging section sets grid-ops' own log ('INFO' as the status page wrote it).
    assert (cfg.logging.level, cfg.logging.format) == ("INFO", "json")
    assert cfg.deprecations == []
    # Sections the file leaves out get safe defaults.
    assert cfg.ray.port == 6379
    assert cfg.ray.dashboard_host == "127.0.0.1"
    assert cfg.forks == 2


def test_role_form_head_is_the_node_marked_head() -> None:
    cfg = config.load(FIXTURES / "distributed_grid_roles.yaml")

    assert cfg.head.name == "node-02"
    assert cfg.head.host == "192.168.1.101"
    assert [n.name for n in cfg.workers] == ["node-01"]


def test_grid_cluster_alias_form() -> None:
    cfg = config.load(FIXTURES / "grid_cluster.yaml")

    # No name key: the file stem names the cluster.
    assert cfg.name == "grid_cluster"
    assert [n.name for n in cfg.nodes] == ["gpu1", "gpu2", "gpu3"]
    for node in cfg.nodes:
        assert node.host == node.name
        assert node.port is None
        assert node.user is None
        assert node.gpu_count == 0
    assert cfg.head.name == "gpu1"
    assert [n.name for n in cfg.workers] == ["gpu2", "gpu3"]
    assert cfg.remote_root == "~/grid_workspace"

    assert cfg.ssh.connect_timeout == 5
    assert cfg.ssh.max_retries == 3
    assert cfg.ssh.pool_size == 10
    assert cfg.ssh.key_file is None
    assert cfg.forks == 10

    assert cfg.health_check.max_workers == 20
    assert cfg.health_check.gpu_weight == 3.0
    assert cfg.health_check.refresh_interval == 60

    assert cfg.sync.exclude_patterns == [
        ".git",
        "__pycache__",
        ".env",
        "*.pyc",
        "node_modules",
        ".next",
    ]
    assert cfg.sync.use_checksums is True
    assert cfg.sync.follow_symlinks is False
    assert cfg.sync.max_parallel_transfers == 5

    # The older tool's spellings: redis_port is the GCS port, head_bind_all opens the
    # dashboard on every interface.
    assert cfg.ray.port == 6379
    assert cfg.ray.dashboard_port == 8265
    assert cfg.ray.dashboard_host == "0.0.0.0"
    assert cfg.deprecations == [
        config.DEPRECATED[key] for key in (("ssh", "timeout"), ("ray", "namespace"),
                                           ("ray", "log_level"))
    ]  # fmt: skip


def test_head_bind_all_false_keeps_dashboard_on_loopback(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "nodes: [gpu1]\nray: {head_bind_all: false}\n")
    assert config.load(path).ray.dashboard_host == "127.0.0.1"


def test_forks_default_to_one_per_node(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "nodes: [a, b, c, d]\n")
    assert config.load(path).forks == 4


def test_name_from_file_stem_is_sanitized(tmp_path: Path) -> None:
    path = write(tmp_path / "my lab cluster!.yaml", "nodes: [gpu1]\n")
    assert config.load(path).name == "my-lab-cluster"


def test_starter_config_validates() -> None:
    data = yaml.safe_load(starter_text())
    cfg = config.parse(data, source="starter")

    assert cfg.name == "my-cluster"
    assert cfg.head.name == "gpu-master"
    assert [n.name for n in cfg.nodes] == ["gpu-master", "gpu-worker-1"]
    assert cfg.ray.dashboard_host == "127.0.0.1"


def test_dump_round_trips(tmp_path: Path) -> None:
    cfg = config.load(FIXTURES / "grid_cluster.yaml")
    again = write(tmp_path / "again.yaml", config.dump(cfg))
    assert config.load(again) == cfg


# ---------------------------------------------------------------------------------------
# 2. every bad input: ConfigError, exit code 2, the field path named


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "nodes: [gpu1]\nremote_rot: ~/x\n",
            ["remote_rot: unknown key 'remote_rot'", "did you mean 'remote_root'?"],
            id="typo-top-level",
        ),
        pytest.param(
            "node: [gpu1]\n",
            ["node: unknown key 'node'", "did you mean 'nodes'?", "nodes: required but missing"],
            id="typo-nodes-key",
        ),
        pytest.param(
            "nodes: [gpu1]\nzzzz: 1\n",
            ["zzzz: unknown key 'zzzz' (remove it)"],
            id="unknown-key-no-suggestion",
        ),
        pytest.param(
            "nodes:\n  - {name: a, host: h1, gpus: 2}\n",
            ["nodes[0].gpus: unknown key 'gpus'", "did you mean 'gpu_count'?"],
            id="typo-in-node",
        ),
        pytest.param(
            "nodes:\n  - {name: a, host: h1}\n  - {name: b, host: h2, hots: x}\n",
            ["nodes[1].hots: unknown key 'hots'", "did you mean 'host'?"],
            id="typo-in-second-node",
        ),
        pytest.param(
            "nodes: [gpu1]\nray: {dashbord_port: 8265}\n",
            ["ray.dashbord_port: unknown key 'dashbord_port'", "did you mean 'dashboard_port'?"],
            id="typo-in-ray",
        ),
        pytest.param(
            "nodes: [gpu1]\nssh: {keyfile: ~/.ssh/id}\n",
            ["ssh.keyfile: unknown key 'keyfile'", "did you mean 'key_file'?"],
            id="typo-in-ssh",
        ),
        pytest.param(
            "nodes: [gpu1]\nray: {nodes: {gpu1: {num_cpu: 4}}}\n",
            ["ray.nodes.gpu1.num_cpu: unknown key 'num_cpu'", "did you mean 'num_cpus'?"],
            id="typo-in-ray-node-override",
        ),
        pytest.param(
            "nodes: [gpu1]\noffload: {thresholds: {cpuu: 50}}\n",
            ["offload.thresholds.cpuu: unknown key 'cpuu'", "did you mean 'cpu'?"],
            id="typo-two-levels-deep",
        ),
        pytest.param(
            "nodes:\n  - {name: a, host: h1}\n  - {name: a, host: h2}\n",
            ["nodes[1].name", "'a' is used twice", "nodes[0]"],
            id="duplicate-node-name",
        ),
        pytest.param(
            "nodes: [gpu1, gpu1]\n",
            ["nodes[1].name", "'gpu1' is used twice"],
            id="duplicate-alias",
        ),
        pytest.param(
            "nodes:\n  - {name: a, host: h1}\n  - {name: b, host: H1, port: 22}\n",
            ["nodes[1]", "'b'", "same host:port (h1:22)", "'a'"],
            id="duplicate-host-port-default-port-and-case",
        ),
        pytest.param(
            "nodes:\n  - {name: a, host: 10.0.0.1, port: 2222}\n"
            "  - {name: b, host: 10.0.0.1, port: 2222}\n",
            ["nodes[1]", "same host:port (10.0.0.1:2222)"],
            id="duplicate-host-port",
        ),
        pytest.param(
            "nodes:\n  - {name: a, host: h1, role: head}\n  - {name: b, host: h2, role: head}\n",
            ["nodes: more than one node has role head (a, b)"],
            id="two-heads",
        ),
        pytest.param(
            "nodes: []\n",
            ["nodes: List should have at least 1 item"],
            id="empty-node-list",
        ),
        pytest.param(
            "name: x\n",
            ["nodes: required but missing"],
            id="no-nodes",
        ),
        pytest.param(
            "nodes:\n  - {name: a, host: h1, port: 0}\n",
            ["nodes[0].port", "greater than or equal to 1", "(got 0)"],
            id="port-0",
        ),
        pytest.param(
            "nodes:\n  - {name: a, host: h1, port: 70000}\n",
            ["nodes[0].port", "less than or equal to 65535", "(got 70000)"],
            id="port-70000",
        ),
        pytest.param(
            "nodes: [gpu1]\nray: {dashboard_port: 70000}\n",
            ["ray.dashboard_port", "less than or equal to 65535"],
            id="ray-port-70000",
        ),
        pytest.param(
            "nodes:\n  - {name: a, host: h1, gpu_count: -1}\n",
            ["nodes[0].gpu_count", "greater than or equal to 0", "(got -1)"],
            id="negative-gpu-count",
        ),
        pytest.param(
            "nodes:\n  - {name: a, host: h1, memory_gb: -8}\n",
            ["nodes[0].memory_gb", "greater than or equal to 0", "(got -8)"],
            id="negative-memory",
        ),
        pytest.param(
            "nodes:\n  - {name: a, host: h1, gpu_count: many}\n",
            ["nodes[0].gpu_count", "valid integer", "(got 'many')"],
            id="gpu-count-wrong-type",
        ),
        pytest.param(
            "nodes:\n  - {name: a, host: h1, role: leader}\n",
            ["nodes[0].role", "'head' or 'worker'", "(got 'leader')"],
            id="bad-role",
        ),
        pytest.param(
            "nodes:\n  - {name: a, host: h1, tags: [has space]}\n",
            ["nodes[0].tags[0]", "(got 'has space')"],
            id="bad-tag",
        ),
        pytest.param(
            "nodes: [user@gpu1]\n",
            ["nodes[0].name", "(got 'user@gpu1')"],
            id="alias-not-a-valid-name",
        ),
        pytest.param(
            "nodes:\n  - {name: a}\n",
            ["nodes[0].host: required but missing"],
            id="node-without-host",
        ),
        pytest.param(
            "nodes: [gpu1]\nssh: {connect_timeout: 0}\n",
            ["ssh.connect_timeout", "greater than or equal to 1"],
            id="ssh-connect-timeout-0",
        ),
        pytest.param(
            "nodes: [gpu1, gpu2]\nray: {nodes: {gpu3: {num_cpus: 4}}}\n",
            ["ray.nodes", "unknown node(s) gpu3", "known nodes: gpu1, gpu2"],
            id="ray-override-unknown-node",
        ),
    ],
)
def test_bad_config_names_the_field(tmp_path: Path, text: str, expected: list[str]) -> None:
    err = load_error(tmp_path, text)
    assert err.message.startswith(f"{tmp_path / 'cluster.yaml'} is not a valid cluster config")
    for part in expected:
        assert part in err.message, err.message
    assert err.hint  # always tells the user what to do next


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    err = load_error(
        tmp_path,
        """\
        nodes:
          - {name: a, host: h1, port: 0}
          - {name: b, host: h2, gpu_count: -2}
        ray: {dashbord_port: 1}
        """,
    )
    assert "(3 problems)" in err.message
    for path in ("nodes[0].port", "nodes[1].gpu_count", "ray.dashbord_port"):
        assert path in err.message


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    err = load_error(
        tmp_path,
        """\
        name: broken
        nodes:
          - name: a
            host: [h1
        ray: {port: 1}
        """,
    )
    assert "is not valid YAML at line 5" in err.message
    assert "Traceback" not in str(err)


def test_yaml_indentation_error_names_the_line(tmp_path: Path) -> None:
    err = load_error(tmp_path, "nodes:\n  - name: a\n   host: h\n")
    assert "is not valid YAML at line 3" in err.message


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        config.load(missing)
    assert info.value.exit_code == 2
    assert f"Config file {missing} does not exist." in info.value.message
    assert "grid-ops init" in (info.value.hint or "")


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        config.load(tmp_path)
    assert info.value.exit_code == 2
    assert "is a directory" in info.value.message


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        pytest.param("- gpu1\n- gpu2\n", "a list", id="list"),
        pytest.param("just a string\n", "a str", id="scalar-string"),
        pytest.param("42\n", "a int", id="scalar-int"),
        pytest.param("", "empty", id="empty-file"),
        pytest.param("# only a comment\n", "empty", id="only-comments"),
    ],
)
def test_top_level_not_a_mapping(tmp_path: Path, text: str, kind: str) -> None:
    err = load_error(tmp_path, text)
    assert f"the top level is {kind}, not a mapping" in err.message
    assert "nodes:" in (err.hint or "")


# ---------------------------------------------------------------------------------------
# 3. the CLI: config validate, init, config path resolution


def test_cli_validate_prints_table(tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "distributed_grid_roles.yaml", tmp_path / "dg.yaml")
    result = cli("config", "validate", "dg.yaml", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    row_01 = next(line for line in lines if "node-01" in line)
    row_02 = next(line for line in lines if "node-02" in line)
    assert "worker" in row_01
    assert "192.168.1.100:22" in row_01
    assert "head" in row_02
    assert "192.168.1.101:22" in row_02
    assert "valid: 2 node(s), head node-02, 6 GPU(s)" in result.stdout


def test_cli_validate_alias_form(tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "grid_cluster.yaml", tmp_path / "grid_cluster.yaml")
    result = cli("config", "validate", "grid_cluster.yaml", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    for name in ("gpu1", "gpu2", "gpu3"):
        assert name in result.stdout
    assert "valid: 3 node(s), head gpu1, 0 GPU(s)" in result.stdout


def test_cli_validate_json(tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "distributed_grid.yaml", tmp_path / "dg.yaml")
    result = cli("config", "validate", "--json", "dg.yaml", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)  # one JSON document, nothing else on stdout
    assert doc["valid"] is True
    assert doc["name"] == "my-cluster"
    assert doc["head"] == "node-01"
    assert doc["gpus"] == 6
    assert [n["name"] for n in doc["nodes"]] == ["node-01", "node-02"]
    first = doc["nodes"][0]
    assert first == {
        "name": "node-01",
        "host": "192.168.1.100",
        "port": 22,
        "user": "username",
        "role": "head",
        "gpu_count": 4,
        "memory_gb": 64,
        "tags": ["gpu", "cuda"],
    }
    assert doc["nodes"][1]["role"] == "worker"


@pytest.mark.parametrize(
    ("text", "in_stderr"),
    [
        pytest.param("nodes:\n  - {name: a, host: h, gpus: 2}\n", "nodes[0].gpus", id="typo"),
        pytest.param("nodes:\n  - name: a\n    host: [h\nx: 1\n", "line 4", id="yaml-syntax"),
        pytest.param("- a\n- b\n", "not a mapping", id="list"),
        pytest.param("", "empty", id="empty"),
        pytest.param("nodes: [a, a]\n", "used twice", id="duplicate"),
    ],
)
def test_cli_validate_bad_config(tmp_path: Path, text: str, in_stderr: str) -> None:
    write(tmp_path / "bad.yaml", text)
    for args in (["config", "validate", "bad.yaml"], ["config", "validate", "--json", "bad.yaml"]):
        result = cli(*args, cwd=tmp_path)
        assert_user_error(result)
        assert in_stderr in result.stderr
        assert result.stdout == ""


def test_cli_validate_missing_file(tmp_path: Path) -> None:
    result = cli("config", "validate", "nope.yaml", cwd=tmp_path)
    assert_user_error(result)
    assert "nope.yaml does not exist" in result.stderr


def test_cli_no_config_anywhere(tmp_path: Path) -> None:
    result = cli("config", "validate", cwd=tmp_path)
    assert_user_error(result)
    assert "cluster.yaml does not exist" in result.stderr


def test_cli_init_writes_a_valid_config(tmp_path: Path) -> None:
    result = cli("init", "new.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    written = tmp_path / "new.yaml"
    made = yaml.safe_load(written.read_text(encoding="utf-8"))["cluster_id"]
    assert written.read_text(encoding="utf-8") == starter_text(made)

    check = cli("config", "validate", "--json", "new.yaml", cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    doc = json.loads(check.stdout)
    assert doc["name"] == "my-cluster"
    assert doc["head"] == "gpu-master"
    assert doc["id"] == made
    # everyone's init writes the same name, never the same identity
    assert cli("init", "other.yaml", cwd=tmp_path).returncode == 0
    other = yaml.safe_load((tmp_path / "other.yaml").read_text(encoding="utf-8"))
    assert other["name"] == "my-cluster" and other["cluster_id"] != made


def test_cli_init_default_path_is_cluster_yaml(tmp_path: Path) -> None:
    result = cli("init", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "cluster.yaml").is_file()
    # ./cluster.yaml is also where validate looks by default.
    assert cli("config", "validate", cwd=tmp_path).returncode == 0


def test_cli_init_refuses_to_overwrite(tmp_path: Path) -> None:
    target = write(tmp_path / "cluster.yaml", "nodes: [mine]\n")
    result = cli("init", "cluster.yaml", cwd=tmp_path)

    assert_user_error(result)
    assert "already exists" in result.stderr
    assert "--force" in result.stderr
    assert target.read_text(encoding="utf-8") == "nodes: [mine]\n"

    forced = cli("init", "cluster.yaml", "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    made = yaml.safe_load(target.read_text(encoding="utf-8"))["cluster_id"]
    assert target.read_text(encoding="utf-8") == starter_text(made)


@pytest.fixture
def three_configs(tmp_path: Path) -> Path:
    """./cluster.yaml, env.yaml and explicit.yaml, each with its own cluster name."""
    for stem in ("cluster", "env", "explicit"):
        write(tmp_path / f"{stem}.yaml", f"name: from-{stem}\nnodes: [gpu1]\n")
    return tmp_path


def _validated_name(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    result = cli("config", "validate", "--json", *args, cwd=cwd, env=env)
    assert result.returncode == 0, result.stderr
    return str(json.loads(result.stdout)["name"])


def test_config_path_default_is_cwd_cluster_yaml(three_configs: Path) -> None:
    assert _validated_name(three_configs) == "from-cluster"


def test_config_path_env_beats_cwd(three_configs: Path) -> None:
    env = {"GRID_OPS_CONFIG": str(three_configs / "env.yaml")}
    assert _validated_name(three_configs, env=env) == "from-env"


def test_config_path_option_beats_env(three_configs: Path) -> None:
    env = {"GRID_OPS_CONFIG": str(three_configs / "env.yaml")}
    assert _validated_name(three_configs, "-c", "explicit.yaml", env=env) == "from-explicit"
    assert _validated_name(three_configs, "--config", "explicit.yaml", env=env) == "from-explicit"


def test_config_path_env_pointing_nowhere_is_an_error(three_configs: Path) -> None:
    result = cli(
        "config",
        "validate",
        cwd=three_configs,
        env={"GRID_OPS_CONFIG": str(three_configs / "gone.yaml")},
    )
    assert_user_error(result)
    assert "gone.yaml does not exist" in result.stderr


# ---------------------------------------------------------------------------------------
# silent-acceptance holes: repeated keys, conflicting old/new spellings, order dependence


def test_repeated_key_is_an_error_with_its_line(tmp_path: Path) -> None:
    err = load_error(tmp_path, "nodes: [a]\nray:\n  port: 1\nray:\n  port: 2\n")
    assert "line 4" in str(err) and "'ray' is repeated" in str(err)
    err = load_error(tmp_path, "nodes:\n  - name: a\n    host: h\n    port: 22\n    port: 23\n")
    assert "line 5" in str(err) and "'port' is repeated" in str(err)


def test_port_and_redis_port_together_is_an_error(tmp_path: Path) -> None:
    err = load_error(tmp_path, "nodes: [a]\nray: {port: 1234, redis_port: 6379}\n")
    assert "redis_port" in str(err) and "keep only 'port'" in str(err)


@pytest.mark.parametrize("value", ['"true"', "yes_please", "1"])
def test_head_bind_all_must_be_a_boolean(tmp_path: Path, value: str) -> None:
    err = load_error(tmp_path, f"nodes: [a]\nray: {{head_bind_all: {value}}}\n")
    assert "head_bind_all must be true or false" in str(err)


def test_local_node_does_not_claim_an_ssh_address(tmp_path: Path) -> None:
    local = "- {name: here, host: localhost, connection: local}"
    remote = "- {name: there, host: localhost}"
    for first, second in ((local, remote), (remote, local)):
        path = write(tmp_path / "c.yaml", f"nodes:\n  {first}\n  {second}\n")
        assert len(config.load(path).nodes) == 2


def test_boolean_gpu_count_is_rejected(tmp_path: Path) -> None:
    err = load_error(tmp_path, "nodes:\n  - {name: a, host: h, gpu_count: true}\n")
    assert "nodes[0].gpu_count" in str(err)


def test_init_into_a_directory_is_a_clear_error(tmp_path: Path) -> None:
    result = cli("init", str(tmp_path), "--force", cwd=tmp_path)
    assert_user_error(result)
    assert "is a directory" in result.stderr


def test_inventory_render_onto_a_file_is_a_clear_error(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.yaml", "nodes: [a]\n")
    blocker = write(tmp_path / "blocker", "not a directory\n")
    result = cli("inventory", "render", "-c", str(cfg), "-o", str(blocker), cwd=tmp_path)
    assert_user_error(result)
    assert "Cannot write" in result.stderr
    assert blocker.read_text() == "not a directory\n"
