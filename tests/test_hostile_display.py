"""Outside text (node names, hosts, node-reported warnings, ssh and Ansible messages, pool
keys, job names, paths) shown as a user sees it: literally, markup and all, with control
characters made visible, and never a traceback or an escape sequence on the terminal.

Tables are drawn the way a pipe gets them (no terminal, so Rich adds no colour codes of its
own): any ESC byte in the output would have come from the hostile value itself.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
from rich.console import Console, RenderableType

from grid_ops import facts
from grid_ops.cli import quick
from grid_ops.cli.common import load_cluster
from tests.conftest import REPO

ESC = "\x1b"
# markup that breaks a markup string, markup that restyles it, an SGR sequence, a
# carriage return that would overwrite the line, a bell, an 8-bit CSI "clear screen"
HOSTILE = "[/x] [bold]B \x1b[31mR\rC\x07\x9b2J"
SHOWN = r"[/x] [bold]B \x1b[31mR\x0dC\x07\x9b2J"  # what the user reads instead

CONFIG = """
name: unit
cluster_id: unit-cluster
remote_root: ~/grid-ops
nodes:
  - {name: head, host: 10.0.0.1, user: ops, role: head}
  - {name: gpu2, host: gpu2}
"""


def _console(buffer: io.StringIO) -> Console:
    """Like the CLI's consoles on a pipe, but wide: every value fits on one line."""
    return Console(file=buffer, width=400, force_terminal=False, color_system=None)


def render(renderable: RenderableType) -> str:
    buffer = io.StringIO()
    _console(buffer).print(renderable)
    return buffer.getvalue()


@pytest.fixture
def screen(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """What the commands print on stdout and stderr (their ``out`` and ``err``)."""
    from grid_ops.cli import (
        boost_cmd,
        cluster,
        job_cmd,
        offload_cmd,
        output,
        playbook,
        progress,
    )

    buffer = io.StringIO()
    console = _console(buffer)
    modules: list[ModuleType] = [boost_cmd, cluster, job_cmd, offload_cmd, output, playbook]
    for module in [*modules, progress]:
        for name in ("out", "err"):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, console)
    return buffer


def assert_safe(text: str) -> None:
    """Nothing in ``text`` acts on a terminal; no traceback reached the user."""
    assert ESC not in text and "\r" not in text and "\x9b" not in text and "\x07" not in text
    assert "Traceback" not in text


def cli_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ, GRID_OPS_STATE_DIR=str(tmp_path / "state"), COLUMNS="400")
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "GRID_OPS_DEBUG"):
        env.pop(name, None)
    return env


def cli(
    tmp_path: Path,
    *args: str | bytes,
    env: dict[str, str] | None = None,
    flags: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[bytes]:
    """grid-ops as a user runs it, its output a pipe; bytes, to see exactly what came."""
    return subprocess.run(
        [sys.executable, *flags, "-m", "grid_ops", *args],
        capture_output=True, env=env or cli_env(tmp_path), cwd=REPO, timeout=120, check=False,
    )  # fmt: skip


def text_of(proc: subprocess.CompletedProcess[bytes]) -> tuple[str, str]:
    """stdout and stderr, which must be valid UTF-8 whatever the input was."""
    return proc.stdout.decode("utf-8"), proc.stderr.decode("utf-8")


# ---------------------------------------------------------------------------------------
# health: the full CLI's and the quick path's table


def _records() -> list[dict[str, Any]]:
    gpu = {"index": 0, "name": HOSTILE, "memory_total_mib": 100, "memory_used_mib": 5,
           "utilization_gpu": 3}  # fmt: skip
    up = facts.record(
        "head", {"load1": 0.5, "cpu_count": 4, "gpus": [gpu], "warnings": [HOSTILE, "[red]"]},
        1.0, 1.0,
    )  # fmt: skip
    return [up, facts.unreachable("gpu2", f"ssh: {HOSTILE}")]


def test_health_table_shows_node_reported_text_literally() -> None:
    from grid_ops.cli import views

    shown = render(views.health_table(_records(), views.health_title("unit", cached=False)))
    assert_safe(shown)
    assert f"{SHOWN}; [red]" in shown  # both warnings, as reported
    assert f"unreachable: ssh: {SHOWN}" in shown


def test_health_table_titles_and_names_are_not_markup() -> None:
    from grid_ops.cli import views

    records = [facts.record("[bold]n\x1b]0;owned\x07", {"cpu_count": 2}, 1.0, 1.0)]
    shown = render(views.health_table(records, "health of [/x]"))
    assert_safe(shown)
    assert "health of [/x]" in shown and r"│ [bold]n\x1b]0;owned\x07 │ 0.000 │" in shown


def _planned_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config with a cached model for the quick path and fresh cached facts holding
    hostile text."""
    monkeypatch.setenv("GRID_OPS_STATE_DIR", str(tmp_path / "state"))
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(CONFIG)
    load_cluster(cfg_path, quick_plan=True)
    facts.write_cache("unit-cluster", _records())
    return cfg_path


def test_quick_health_from_cache_shows_hostile_warnings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg_path = _planned_cache(tmp_path, monkeypatch)
    for quick_path in ("1", "0"):  # the quick path, then the full CLI: the same answer
        env = dict(cli_env(tmp_path), GRID_OPS_QUICK=quick_path)
        proc = cli(tmp_path, "health", "-c", str(cfg_path), env=env, flags=("-X", "importtime"))
        stdout, stderr = text_of(proc)
        assert proc.returncode == 1, stderr  # gpu2 is down
        assert_safe(stdout + stderr)
        imported = {line.split("|")[-1].strip() for line in stderr.splitlines() if "|" in line}
        assert ("pydantic" in imported) == (quick_path == "0")  # the quick path: no pydantic
        assert "health of unit (cached" in stdout
        assert SHOWN in stdout and f"unreachable: ssh: {SHOWN}" in stdout
        assert "1 node(s) did not answer: gpu2" in stderr


def test_quick_health_json_stays_raw(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg_path = _planned_cache(tmp_path, monkeypatch)
    proc = cli(tmp_path, "health", "-c", str(cfg_path), "--json")
    data = json.loads(proc.stdout)
    assert proc.returncode == 1
    assert ESC.encode() not in proc.stdout  # JSON writes it as \u001b ...
    assert data["nodes"][0]["warnings"][0] == HOSTILE  # ... and it reads back exact


def test_a_bug_while_the_quick_path_prints_is_one_paragraph(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from grid_ops.cli import views

    cfg_path = _planned_cache(tmp_path, monkeypatch)

    def broken(records: list[dict[str, Any]], title: str) -> None:
        raise RuntimeError(f"table broke on {HOSTILE}")

    monkeypatch.delenv("GRID_OPS_DEBUG", raising=False)
    monkeypatch.setattr(views, "health_table", broken)
    assert quick.attempt(["health", "-c", str(cfg_path)]) == 1
    stderr = capsys.readouterr().err
    assert_safe(stderr)
    assert stderr.startswith(f"error: Unexpected error (RuntimeError: table broke on {SHOWN}).")
    assert "This is a grid-ops bug" in stderr and stderr.count("\n") == 1


# ---------------------------------------------------------------------------------------
# whole commands, as a user runs them


def test_config_validate_with_an_odd_path(tmp_path: Path) -> None:
    folder = tmp_path / "["
    folder.mkdir()
    cfg_path = folder / "x]\x1b[31m.yaml"  # the title: "unit (id unit-cluster): .../[/x]..."
    cfg_path.write_text(CONFIG)
    proc = cli(tmp_path, "config", "validate", str(cfg_path))
    stdout, stderr = text_of(proc)
    assert proc.returncode == 0, stderr
    assert_safe(stdout + stderr)
    assert f"unit (id unit-cluster): {folder}/x]\\x1b[31m.yaml" in stdout
    assert "valid: 2 node(s), head head" in stdout


def test_an_error_naming_a_hostile_path_is_shown_literally(tmp_path: Path) -> None:
    missing = tmp_path / "[bold]no\x1b[2J[/x].yaml"
    proc = cli(tmp_path, "config", "validate", str(missing))
    stdout, stderr = text_of(proc)
    assert proc.returncode == 2
    assert_safe(stdout + stderr)
    assert f"error: Config file {tmp_path}/[bold]no\\x1b[2J[/x].yaml does not exist." in stderr


def test_a_path_that_is_not_utf8_is_shown_not_a_crash(tmp_path: Path) -> None:
    target = os.fsencode(tmp_path) + b"/c\xff\x1b[2J.yaml"
    proc = cli(tmp_path, "init", target)
    stdout, stderr = text_of(proc)  # valid UTF-8, though the path is not
    assert proc.returncode == 0, stderr
    assert_safe(stdout + stderr)
    assert os.path.exists(target)
    assert f"Wrote {tmp_path}/c\\xff\\x1b[2J.yaml." in stdout


def test_unexpected_errors_are_never_read_as_markup(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from grid_ops.cli import app, config_cmd

    def boom(path: Path | None, quick_plan: bool = False) -> None:
        raise RuntimeError(f"{HOSTILE}\nsecond line")

    monkeypatch.delenv("GRID_OPS_DEBUG", raising=False)
    monkeypatch.setattr(config_cmd, "load_config", boom)
    monkeypatch.setattr(sys, "argv", ["grid-ops", "config", "validate", "x.yaml"])
    with pytest.raises(SystemExit) as done:
        app.main()
    assert done.value.code == 1
    stderr = capsys.readouterr().err
    assert_safe(stderr)
    assert f"Unexpected error (RuntimeError: {SHOWN}\nsecond line)." in stderr
    assert "grid-ops bug" in stderr


def test_job_list_shows_what_the_head_recorded_literally(screen: io.StringIO) -> None:
    """The queue's records come from the head (a submitter's name, Ray's exit code, the
    reason a job waits): shown as text, never as markup or terminal codes."""
    from grid_ops.cli import job_cmd

    attempt = {"number": 1, "nodes": ["n1"], "started_at": 1.0, "ended_at": 2.0,
               "exit_code": HOSTILE}  # fmt: skip
    job_cmd._table([
        {"name": "one", "status": "SUCCEEDED", "submitted_at": 1.0, "submitter": "ann"},
        {"name": "two", "status": "FAILED", "submitted_at": 2.0, "submitter": HOSTILE,
         "reason": HOSTILE, "attempts": [attempt]},
    ])  # fmt: skip
    shown = screen.getvalue()
    assert_safe(shown)
    assert "│ one  │ SUCCEEDED │" in shown
    assert "│ two  │ FAILED    │" in shown and shown.count(SHOWN) >= 2


def test_job_table_with_a_status_from_outside(screen: io.StringIO) -> None:
    from grid_ops.cli import job_cmd

    job_cmd._table([{"name": "[/x]", "status": HOSTILE, "submitted_at": None}])
    shown = screen.getvalue()
    assert_safe(shown)
    assert f"│ [/x] │ {SHOWN} │" in shown


# ---------------------------------------------------------------------------------------
# the other tables and messages, drawn from made-up answers


def test_memory_pool_table_with_hostile_keys() -> None:
    from grid_ops.cli.memory_cmd import objects_table

    rows = [
        {"key": "[/x]", "size": 10, "nodes": ["head"], "owner": "[red]ann"},
        {"key": HOSTILE, "size": 3 * 2**20, "nodes": [], "owner": ""},
    ]
    shown = render(objects_table(rows, "unit"))
    assert_safe(shown)
    assert "│ [/x] " in shown and "│ [red]ann │" in shown
    assert f"│ {SHOWN} │" in shown and "│ 3.0 MiB │ lost" in shown


def test_boost_status_table_with_hostile_rows(screen: io.StringIO) -> None:
    from grid_ops.cli import boost_cmd

    row = {"id": "[/x]", "node": HOSTILE, "resource": "cpu", "amount": 1.0,
           "priority": "[bold]", "state": "\x1b[5mactive", "expires_at": None,
           "owner": "[b]bob"}  # fmt: skip
    boost_cmd._table([row], "Boosts")
    shown = screen.getvalue()
    assert_safe(shown)
    assert f"│ [/x] │ [b]bob │ {SHOWN} │ cpu" in shown
    assert r"│ [bold]   │ \x1b[5mactive │" in shown


def test_offload_status_and_dashboard_with_hostile_decisions(screen: io.StringIO) -> None:
    from grid_ops import health
    from grid_ops.cli import offload_cmd

    decision = {"time": 0, "task": HOSTILE, "node": "[/x]", "reason": "load \x1b[2J"}
    status = {"enabled": True, "thresholds": {"cpu": 80.0, "memory": 90.0, "gpu": 95.0},
              "pressure": {"cpu": 10.0, "memory": None, "gpu": None}, "head": "[bold]h",
              "decisions": [decision]}  # fmt: skip
    offload_cmd._print_status(status)
    printed = screen.getvalue()
    assert_safe(printed)
    assert f"{SHOWN} -> [/x] (load \\x1b[2J)" in printed and "head ([bold]h) now" in printed

    nodes = [health.NodeHealth(**r) for r in _records()]
    view = {
        "offload": status,
        "reservations": [
            {"id": "[/x]", "node": HOSTILE, "resource": "gpu", "amount": 1.0, "state": "[red]"}
        ],
    }
    board = render(offload_cmd._dashboard(SimpleNamespace(name="unit"), nodes, view))  # type: ignore[arg-type]
    assert_safe(board)
    assert f"│ {SHOWN} │ [/x]" in board and f"│ [/x] │ {SHOWN} │ gpu" in board


def _playbook_result() -> SimpleNamespace:
    host = SimpleNamespace(
        name="[bold]n1", status="failed", ok=1, changed=0, failed=1, unreachable=0, skipped=0,
        msg=f"ssh said {HOSTILE}", failed_task="Task [/x]", changed_tasks=["Write [/x]"],
        diffs=[("Write [/x]", {"before": "a\n", "after": "b\x1b[2J\n\tc\n"})],
    )  # fmt: skip
    return SimpleNamespace(
        playbook="ping", seconds=1.0, hosts={"[bold]n1": host}, failed_hosts=["[bold]n1"],
        private_data_dir="/tmp/[/x]",
    )  # fmt: skip


def test_playbook_summary_and_failure_paragraph(screen: io.StringIO) -> None:
    import typer

    from grid_ops.cli import playbook

    with pytest.raises(typer.Exit):
        playbook.finish(_playbook_result(), json_out=False, what="ping", check=True)  # type: ignore[arg-type]
    shown = screen.getvalue()
    assert_safe(shown)
    assert "│ [bold]n1 │ failed │" in shown and f"ssh said {SHOWN}" in shown
    assert "[bold]n1 would change:" in shown and "  - Write [/x]" in shown
    assert "\n-a\n+b\\x1b[2J\n+" in shown  # the diff's lines kept, each made safe
    failure = (
        f"error: ping failed on 1 of 1 node(s) ([bold]n1). [bold]n1: Task [/x]: ssh said {SHOWN}."
    )
    assert failure in shown
    assert "Full output: /tmp/[/x]" in shown


def test_live_view_on_a_pipe_with_a_hostile_title(screen: io.StringIO) -> None:
    from grid_ops.cli.progress import LiveView

    with LiveView(f"sync {HOSTILE}", ["[/x]"]) as view:
        view("[/x]", "Task \x1b[2J", "ok")
    assert_safe(screen.getvalue())
    assert f"sync {SHOWN}: 1 node(s)…" in screen.getvalue()
    table = render(view._render())
    assert_safe(table)
    assert r"[/x]  ok     Task \x1b[2J" in table


def test_ray_status_table_with_hostile_node_answers(screen: io.StringIO) -> None:
    from grid_ops.cli import cluster

    row = {"name": "[/x]", "role": "head", "ray": "alive", "reachable": True, "ip": HOSTILE,
           "resources": {"CPU": 2.0}, "node_id": "[bold]abcdef"}  # fmt: skip
    cluster.print_status({"head": "[/x]", "address": "\x1b[2J:6379", "nodes": [row]})
    shown = screen.getvalue()
    assert_safe(shown)
    assert r"head [/x], address \x1b[2J:6379" in shown
    assert f"│ [/x] │ head │ alive │ {SHOWN} │ 2 " in shown and "[bold]abcdef" in shown


def test_sync_table_with_a_hostile_source_and_destination() -> None:
    from grid_ops.cli.views import sync_table

    stats = {"[/x]": {"files_transferred": 1, "bytes_sent": 2, "seconds": 0.5,
                      "dest": f"/home/{HOSTILE}"}}  # fmt: skip
    shown = render(sync_table("/src/[bold]proj\x1b", stats, dry_run=True))
    assert_safe(shown)
    assert r"sync /src/[bold]proj\x1b (would move)" in shown
    assert "│ [/x] │" in shown and f"/home/{SHOWN}" in shown


def test_very_long_values_are_cut_and_say_so(screen: io.StringIO) -> None:
    from grid_ops.cli import views
    from grid_ops.cli.output import error

    long_warning = "w" * 5000
    records = [facts.record("n", {"warnings": [long_warning]}, 1.0, 1.0)]
    shown = render(views.health_table(records, "t"))
    assert "w" * 5000 not in shown and "characters)" in shown
    error("line one\nline two " + "e" * 10000, "a hint")
    printed = screen.getvalue()
    assert "error: line one\nline two " in printed and "e" * 10000 not in printed
    assert printed.rstrip().endswith("characters) a hint")


def test_backslashes_before_markup_never_escape_it(
    screen: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    from grid_ops.cli import boost_cmd
    from grid_ops.drivers import control

    row = {"id": "b\\\\\\", "node": "n1[", "resource": "cpu", "amount": 1.0, "expires_at": None}
    monkeypatch.setattr(control, "call", lambda *args, **kwargs: (row, b""))
    boost_cmd._request(SimpleNamespace(), "share", "cpu", "1", as_json=False)  # type: ignore[arg-type]
    shown = screen.getvalue()
    assert "[/]" not in shown  # the closing tag after the id closed, not shown
    assert shown.startswith("b\\\\") and shown.endswith(": 1 cpu on n1[, expires never\n")
