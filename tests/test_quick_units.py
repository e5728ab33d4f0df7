"""Pure logic of the quick path: its strict parse, plans and when they hold, the rsync
command and its output, the facts cache. The lab side is tests/test_quick.py."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import pytest

from grid_ops import config, facts, health, plan, quick, rsync, spawn

CONFIG = """
name: unit
remote_root: ~/grid-ops
nodes:
  - {name: head, host: 10.0.0.1, user: ops, role: head}
  - {name: gpu2, host: gpu2}
"""


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GRID_OPS_STATE_DIR", str(tmp_path / "state"))
    return tmp_path


VALUES = {"-c": "config", "--config": "config", "--node": "node"}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], {"args": []}),
        (["--json", "-c", "a.yaml"], {"args": [], "--json": True, "config": ["a.yaml"]}),
        (["--config=a.yaml"], {"args": [], "config": ["a.yaml"]}),
        (["src", "--node", "a", "--node=b"], {"args": ["src"], "node": ["a", "b"]}),
    ],
)
def test_parse_knows_a_few_spellings(args: list[str], expected: dict[str, object]) -> None:
    assert quick.parse(args, {"--json"}, VALUES, positional=1) == expected


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["--watch", "5"],
        ["-c"],  # value missing
        ["a", "b"],  # one positional at most
        ["-c", "a.yaml", "-c", "b.yaml"],
        ["--jsn"],
        ["--", "x"],
    ],
)
def test_parse_hands_anything_else_to_the_full_cli(args: list[str]) -> None:
    assert quick.parse(args, {"--json"}, VALUES, positional=1) is None


def test_other_commands_and_unplanned_configs_go_to_the_full_cli(state: Path) -> None:
    assert quick.attempt(["ping", "-c", "x.yaml"]) is None
    assert quick.attempt([]) is None
    assert quick.attempt(["health", "-c", str(state / "missing.yaml")]) is None
    cfg_path = state / "c.yaml"
    cfg_path.write_text(CONFIG)
    assert quick.attempt(["health", "-c", str(cfg_path), "--json"]) is None  # no plan yet


def _planned(state: Path) -> tuple[Path, dict[str, Any]]:
    cfg_path = state / "c.yaml"
    cfg_path.write_text(CONFIG)
    at = plan.stamp(cfg_path)
    plan.write(config.load(cfg_path), cfg_path, at)
    found = plan.read(str(cfg_path))
    assert found is not None
    return cfg_path, found


def test_a_plan_holds_until_the_config_or_home_changes(
    state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg_path, found = _planned(state)
    assert [n["name"] for n in found["nodes"]] == ["head", "gpu2"]
    head = found["nodes"][0]
    assert head["target"] == "ops@10.0.0.1:" and head["probe"][0] == "ssh"
    cfg_path.write_text(CONFIG + "\n")  # size (and mtime) change
    assert plan.read(str(cfg_path)) is None
    cfg_path, _ = _planned(state)
    monkeypatch.setenv("HOME", str(state))
    assert plan.read(str(cfg_path)) is None
    cfg_path.unlink()
    assert plan.read(str(cfg_path)) is None


def test_a_plan_written_after_a_concurrent_edit_does_not_hold(state: Path) -> None:
    cfg_path = state / "c.yaml"
    cfg_path.write_text(CONFIG)
    at = plan.stamp(cfg_path)  # taken before reading, as load_config does
    loaded = config.load(cfg_path)
    cfg_path.write_text(CONFIG.replace("unit", "edited"))
    plan.write(loaded, cfg_path, at)
    assert plan.read(str(cfg_path)) is None


def test_sync_roots_are_remembered_per_node(state: Path) -> None:
    cfg_path = state / "c.yaml"
    cfg_path.write_text(CONFIG)
    cfg = config.load(cfg_path)
    plan.remember_roots(cfg, {"head": "/home/ops/grid-ops/proj", "gpu2": "/elsewhere"}, "proj")
    assert plan.read_roots("unit") == {
        "head": {
            "host": "10.0.0.1",
            "user": "ops",
            "remote_root": "~/grid-ops",
            "root": "/home/ops/grid-ops",
        }
    }


SETTINGS = {"exclude": [".git", "*.pyc"], "gitignore": True, "checksums": False}


def test_rsync_argv_matches_the_roles_order() -> None:
    argv = rsync.argv(
        {**SETTINGS, "follow_symlinks": True}, "/src/proj/", "u@h:/r/proj", "ssh -p 2",
        delete=True, dry_run=True,
    )  # fmt: skip
    assert argv == [
        "rsync", "-a", "--omit-dir-times", "--itemize-changes", "--stats", "--copy-links",
        "--delete", "--dry-run", "--exclude=.git", "--exclude=*.pyc", "--filter=:- .gitignore",
        "-e", "ssh -p 2", "--", "/src/proj/", "u@h:/r/proj/",
    ]  # fmt: skip


RSYNC_OUT = """\
.d..t...... pkg/
>f.st...... pkg/model.py
*deleting   old.py

Number of files: 4 (reg: 3, dir: 1)
Number of regular files transferred: 1,024
Total bytes sent: 12,345
"""


def test_rsync_output_is_read_like_the_role_reads_it() -> None:
    assert rsync.changes(RSYNC_OUT) == [">f.st...... pkg/model.py", "*deleting   old.py"]
    assert rsync.changes(".d..t...... pkg/\n\nNumber of files: 1\n") == []
    assert rsync.files_transferred(RSYNC_OUT) == 1024
    assert rsync.bytes_sent(RSYNC_OUT) == 12345
    assert rsync.files_transferred("") == 0


def test_records_are_node_health_fields() -> None:
    assert tuple(f.name for f in fields(health.NodeHealth)) == facts.FIELDS
    rec = facts.record("n", {"load1": 1.0, "cpu_count": 2, "gpus": []}, 1.0, 1.0)
    assert asdict(health.NodeHealth(**rec)) == rec and rec["score"] == 0.5
    down = facts.unreachable("m", "refused")
    assert asdict(health.NodeHealth(**down)) == down
    assert [r["name"] for r in facts.rank([down, rec])] == ["n", "m"]


def test_probe_answers_are_read_or_explained() -> None:
    assert facts.read_answer(0, 'noise\n{"load1": 1}\n', "") == ({"load1": 1}, None)
    assert facts.read_answer(255, "", "ssh: connect: Connection refused\n") == (
        None,
        "ssh: connect: Connection refused",
    )
    assert facts.read_answer(3, "", "") == (None, "exit 3")
    assert facts.read_answer(0, "[1]", "")[1] == "unreadable facts: '[1]'"
    assert facts.read_answer(0, "", "")[1] == "unreadable facts: ''"


def test_cache_holds_for_its_age_and_its_nodes(state: Path) -> None:
    recs = [facts.unreachable("a", "x"), facts.unreachable("b", "y")]
    facts.write_cache("c", recs, now=1000.0)
    assert os.stat(facts.cache_name("c")).st_mode & 0o777 == 0o600
    assert facts.read_cache("c", ["a", "b"], 30, now=1010.0) == recs
    assert facts.read_cache("c", ["a", "b"], 30, now=1031.0) is None
    assert facts.read_cache("c", ["a", "b"], 30, now=5000.0, any_age=True) == recs
    assert facts.read_cache("c", ["b", "a"], 30, now=1010.0) is None
    Path(facts.cache_name("c")).write_text(json.dumps({"time": 1000, "nodes": [{"name": "a"}]}))
    assert facts.read_cache("c", ["a"], 30, now=1010.0) is None  # not a full record


def test_children_run_in_parallel_with_their_output_and_a_time_limit(tmp_path: Path) -> None:
    module = tmp_path / "module.py"
    module.write_text("print('from stdin')\n")
    jobs: list[tuple[list[str], str | None]] = [
        (["sleep", "5"], None),
        (["sh", "-c", "echo out; echo err >&2; exit 3"], None),
        (["cat"], str(module)),
    ]
    slow, failing, fed = spawn.run_all(jobs, parallel=3, limit=0.5)
    assert slow is None  # killed at the limit, not waited for
    assert failing is not None and (failing.rc, failing.stdout, failing.stderr) == (
        3,
        "out\n",
        "err\n",
    )
    assert fed is not None and fed.rc == 0 and fed.stdout == "print('from stdin')\n"
    assert fed.seconds >= 0
    with pytest.raises(FileNotFoundError):
        spawn.run_all([(["sleep", "97.5"], None), (["no-such-program"], None)], 2, limit=1)
    left = subprocess.run(["pgrep", "-f", "sleep 97.5"], capture_output=True, check=False)
    assert left.stdout == b""  # the one already started was stopped


def test_a_child_that_ended_is_read_even_when_its_pipe_outlives_it() -> None:
    # the shell ends at once; the sleep it left behind keeps stdout open past the limit
    (done,) = spawn.run_all([(["sh", "-c", "echo bye; sleep 3 &"], None)], 1, limit=0.3)
    assert done is not None and done.rc == 0 and done.stdout == "bye\n"
    assert done.seconds < 2.5  # not held until the sleep ends


def test_each_child_has_its_own_duration() -> None:
    slow, fast = spawn.run_all([(["sleep", "0.4"], None), (["true"], None)], 2, limit=5)
    assert slow is not None and fast is not None
    assert fast.seconds < slow.seconds  # read together, not one after the other
