"""CLI start-up, help text and error handling as a user sees them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ctrl_c_reaches_it, grid_ops

HEAVY = ("ansible", "ansible_runner", "ray", "jinja2", "fastapi", "uvicorn", "starlette")


def _imported_modules(*args: str) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "grid_ops", *args],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    names = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip())
    return names


@pytest.mark.parametrize(
    "args",
    [
        ("--help",),
        ("lab", "--help"),
        ("config", "--help"),
        ("cluster", "--help"),
        ("serve", "--help"),
    ],
)
def test_help_imports_no_ansible_or_ray(args: tuple[str, ...]) -> None:
    loaded = _imported_modules(*args)
    heavy = sorted(m for m in loaded if m.split(".")[0] in HEAVY)
    assert heavy == []
    assert not {"grid_ops.model.config", "grid_ops.drivers.ansible", "grid_ops.lab"} & loaded


@pytest.mark.parametrize(
    "args",
    [
        ("--help",),
        ("init", "--help"),
        ("ping", "--help"),
        ("demo", "--help"),
        ("config", "validate", "--help"),
        ("inventory", "render", "--help"),
        ("lab", "up", "--help"),
        ("lab", "down", "--help"),
        ("lab", "status", "--help"),
        ("lab", "kill", "--help"),
        ("lab", "revive", "--help"),
        ("provision", "--help"),
        ("up", "--help"),
        ("apply", "--help"),
        ("node", "drain", "--help"),
        ("node", "undrain", "--help"),
        ("rollback", "--help"),
        ("reset", "--help"),
        ("run", "--help"),
        ("cluster", "start", "--help"),
        ("cluster", "stop", "--help"),
        ("cluster", "status", "--help"),
        ("cluster", "restart", "--help"),
        ("health", "--help"),
        ("sync", "--help"),
        ("metrics", "--help"),
        ("metrics", "serve", "--help"),
        ("job", "launch", "--help"),
        ("job", "status", "--help"),
        ("job", "logs", "--help"),
        ("job", "list", "--help"),
        ("job", "cancel", "--help"),
        ("job", "results", "--help"),
        ("serve", "--help"),
        ("serve", "token", "--help"),
    ],
)
def test_every_command_explains_itself(args: tuple[str, ...]) -> None:
    proc = grid_ops(*args)
    assert proc.returncode == 0, proc.stderr
    assert "Usage:" in proc.stdout
    words = proc.stdout.split("Usage:")[1]
    assert len(words.split()) > 8  # more than a bare usage line


def test_version() -> None:
    proc = grid_ops("--version")
    assert proc.returncode == 0
    assert proc.stdout.startswith("grid-ops ")


def test_ping_without_config_is_a_clear_error(tmp_path: object) -> None:
    proc = grid_ops("ping", cwd=tmp_path, env={"PATH": "/usr/bin:/bin"})  # type: ignore[arg-type]
    assert proc.returncode == 2
    assert "cluster.yaml does not exist" in proc.stderr
    assert "grid-ops init" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_ping_unknown_limit_node_is_a_clear_error(tmp_path: object) -> None:
    from pathlib import Path

    cfg = Path(str(tmp_path)) / "c.yaml"
    cfg.write_text("nodes:\n  - {name: a, host: localhost, connection: local}\n")
    proc = grid_ops("ping", "-c", str(cfg), "--limit", "zz")
    assert proc.returncode == 2
    assert "Unknown node 'zz'" in proc.stderr and "a" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("node", "drain", "zz"),
        ("node", "undrain", "zz"),
        ("reset", "--limit", "zz", "--yes"),
        ("cluster", "start", "--limit", "zz"),
    ],
)
def test_lifecycle_commands_refuse_an_unknown_node(tmp_path: Path, args: tuple[str, ...]) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("nodes:\n  - {name: a, host: 10.0.0.1}\n  - {name: b, host: 10.0.0.2}\n")
    proc = grid_ops(*args, "-c", str(cfg))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Unknown node 'zz'" in proc.stderr and "a, b" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_reset_and_rollback_ask_first_and_change_nothing_without_yes(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("nodes:\n  - {name: a, host: 10.0.0.1}\n")
    env = dict(os.environ, GRID_OPS_STATE_DIR=str(tmp_path))
    for args in (("reset",), ("rollback",)):
        proc = grid_ops(*args, "-c", str(cfg), env=env)
        assert proc.returncode == 2 and "--yes" in proc.stderr, proc.stderr
        assert not (tmp_path / "runs").exists()  # no playbook ran


def test_health_watch_probes_every_interval_until_interrupted(tmp_path: Path) -> None:
    """--watch on this machine as a one-node cluster (local connection, no lab needed)."""
    cfg = tmp_path / "local.yaml"
    cfg.write_text("nodes:\n  - {name: here, host: localhost, connection: local}\n")
    env = dict(os.environ, GRID_OPS_STATE_DIR=str(tmp_path / "state"), COLUMNS="160")
    proc = subprocess.Popen(
        [sys.executable, "-m", "grid_ops", "health", "-c", str(cfg), "--watch", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        preexec_fn=ctrl_c_reaches_it,
    )  # fmt: skip
    assert proc.stdout is not None
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(proc.stdout or []), daemon=True)
    reader.start()
    deadline = time.monotonic() + 60  # a loaded box starts the CLI slowly
    while sum("health of local at " in line for line in list(seen)) < 2:
        assert time.monotonic() < deadline and proc.poll() is None, "".join(seen)
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)
    reader.join(timeout=10)
    stderr = proc.stderr.read() if proc.stderr else ""
    stdout = "".join(seen)
    assert proc.returncode == 0, stderr
    assert stdout.count("health of local at ") >= 2  # one table per round when piped
    assert "│ here " in stdout and "stopped" in stderr and "Traceback" not in stderr


def test_the_earlier_tools_spellings_answer_with_a_hint(tmp_path: Path) -> None:
    """`config PATH` is `config validate PATH`; `cluster install` is `provision`."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("nodes: [gpu1, gpu2]\n")
    proc = grid_ops("config", str(cfg), "--json")
    assert proc.returncode == 0, proc.stderr
    assert "'config PATH' is 'grid-ops config validate PATH'" in proc.stderr
    assert json.loads(proc.stdout)["valid"] is True
    missing = grid_ops("config", str(tmp_path / "none.yaml"))
    assert missing.returncode != 0 and "none.yaml" in missing.stderr
    install = grid_ops("cluster", "install", "--help")
    assert install.returncode == 0 and "provision [OPTIONS]" in install.stdout
    assert "'cluster install' is 'grid-ops provision'" in install.stderr
    assert "cluster install" in grid_ops("provision", "--help").stdout
    assert "install" not in grid_ops("cluster", "--help").stdout  # not listed twice
    made = grid_ops("init", "--config", str(tmp_path / "new.yaml"))
    assert made.returncode == 0 and (tmp_path / "new.yaml").is_file()


def test_an_unknown_log_level_is_a_usage_error() -> None:
    proc = grid_ops("--log-level", "LOUD", "config", "validate", "none.yaml")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--log-level LOUD" in proc.stderr and "DEBUG, INFO, WARNING, ERROR" in proc.stderr
    assert "--log-level" in grid_ops("--help").stdout


def test_every_options_help_reaches_the_screen_whole() -> None:
    """Help is printed through Rich, which takes '[...]' for markup and drops it: every
    word of every command's, option's and argument's help must be on its --help page."""
    import typer
    from typer.testing import CliRunner

    from grid_ops.cli.app import app

    def commands(cmd: Any, path: tuple[str, ...]) -> list[tuple[tuple[str, ...], Any]]:
        found = [(path, cmd)]
        for name, sub in sorted(getattr(cmd, "commands", {}).items()):  # a group's
            found += commands(sub, (*path, name))
        return found

    runner = CliRunner()
    missing: dict[str, list[str]] = {}
    pages = 0
    for path, cmd in commands(typer.main.get_command(app), ()):
        page = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "400"}).output
        seen, pages = set(page.split()), pages + 1
        texts = [(" ".join(path), cmd.help)]
        texts += [(" ".join((*path, p.name or "")), getattr(p, "help", None)) for p in cmd.params]
        for where, text in texts:
            lost = [w for w in (text or "").split() if w not in seen]
            if lost:
                missing[where] = lost
    assert pages > 60 and not missing, missing


def test_help_paragraphs_wrap_to_the_terminal_not_to_the_source_file() -> None:
    """A docstring's lines are broken for the source file: on the help page each prose
    paragraph is one line when the terminal is wide enough, so that a narrow terminal
    wraps it at its own width instead of at the source's breaks."""
    import inspect

    import typer
    from typer.testing import CliRunner

    from grid_ops.cli.app import app

    def commands(cmd: Any, path: tuple[str, ...]) -> list[tuple[tuple[str, ...], Any]]:
        found = [(path, cmd)]
        for name, sub in sorted(getattr(cmd, "commands", {}).items()):
            found += commands(sub, (*path, name))
        return found

    runner = CliRunner()
    broken: dict[str, str] = {}
    checked = 0
    for path, cmd in commands(typer.main.get_command(app), ()):
        source = inspect.getdoc(cmd.callback) if cmd.callback is not None else None
        prose = [
            " ".join(p.split())
            for p in (source or "").split("\n\n")
            if "\n" in p and not any(line[:1].isspace() for line in p.split("\n"))
        ]
        if not prose:
            continue
        page = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "2000"}).output
        lines = [" ".join(line.split()) for line in page.splitlines()]
        for paragraph in prose:
            checked += 1
            if not any(paragraph in line for line in lines):
                broken[" ".join(path)] = paragraph[:80]
    assert checked > 30 and not broken, broken
