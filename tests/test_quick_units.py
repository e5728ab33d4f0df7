"""Pure logic of the quick path: its strict parse against Typer's, the cached model and
when it holds, the nodes' recorded facts, the rsync output, the facts cache. The lab side
is tests/test_quick.py; tests/test_sync.py compares the rsync command of both paths."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import asdict, fields
from pathlib import Path

import pytest

from grid_ops import facts, health, model
from grid_ops.cli import argspec, quick
from grid_ops.cli.common import load_cluster
from grid_ops.drivers import rsync, spawn
from grid_ops.model import config

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


@pytest.mark.parametrize(
    ("command", "args", "expected"),
    [
        ("sync", [], {}),
        ("health", ["--json", "-c", "a.yaml"], {"json_out": True, "config": "a.yaml"}),
        ("health", ["--config=a.yaml", "--refresh"], {"config": "a.yaml", "refresh": True}),
        ("sync", ["src", "--node", "a", "--node=b", "-n", "c"],
         {"src": "src", "node": ["a", "b", "c"]}),
        ("sync", ["--dry-run", "--delete"], {"dry_run": True, "delete": True}),
    ],
)  # fmt: skip
def test_parse_knows_a_few_spellings(
    command: str, args: list[str], expected: dict[str, object]
) -> None:
    assert argspec.parse(argspec.COMMANDS[command], args) == expected


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
    assert argspec.parse(argspec.SYNC, args) is None


def test_every_quick_spelling_means_what_the_typer_command_makes_of_it() -> None:
    """The quick path's spec against the real Typer commands (click's own parser)."""
    import typer

    from grid_ops.cli.app import app

    group = typer.main.get_command(app)
    for name, spec in argspec.COMMANDS.items():
        command = group.commands[name]  # type: ignore[attr-defined]
        by_spelling = {o: p for p in command.params for o in p.opts}
        for spelling, param in spec.flags.items():
            found = by_spelling[spelling]
            assert (found.name, found.is_flag) == (param, True), spelling
        for spelling, param in spec.values.items():
            found = by_spelling[spelling]
            assert found.name == param and not found.is_flag, spelling
            assert found.multiple == (param in spec.repeatable), spelling
        positional = [p.name for p in command.params if p.param_type_name == "argument"]
        assert positional == ([spec.positional] if spec.positional else [])
        # one command line with every spelling, read by both
        line = [*spec.flags]
        for spelling, param in spec.values.items():
            if param in spec.repeatable or spelling == next(
                s for s, p in spec.values.items() if p == param
            ):
                line += [spelling, f"v{len(line)}"]
        if spec.positional:
            line.append("here")
        quick_view = argspec.parse(spec, line)
        assert quick_view is not None
        ctx = command.make_context(name, list(line))
        for key, value in quick_view.items():
            got = ctx.params[key]
            assert (list(got) if isinstance(got, tuple | list) else str(got)) == (
                value if isinstance(value, list) else str(value)
            ), key


def test_other_commands_and_uncached_configs_go_to_the_full_cli(state: Path) -> None:
    assert quick.attempt(["ping", "-c", "x.yaml"]) is None
    assert quick.attempt([]) is None
    assert quick.attempt(["health", "-c", str(state / "missing.yaml")]) is None
    cfg_path = state / "c.yaml"
    cfg_path.write_text(CONFIG)
    assert quick.attempt(["health", "-c", str(cfg_path), "--json"]) is None  # no model yet


def _cached(state: Path) -> Path:
    cfg_path = state / "c.yaml"
    cfg_path.write_text(CONFIG)
    load_cluster(cfg_path, quick_plan=True)  # what the full CLI does for health and sync
    return cfg_path


def test_the_cached_model_holds_until_the_config_or_home_changes(
    state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg_path = _cached(state)
    found = model.load_cache(str(cfg_path))
    # the same model, from JSON (which has no config behind it)
    assert found is not None and found.source is None
    assert found.to_json() == model.resolve(config.load(cfg_path)).to_json()
    assert [n.name for n in found.nodes] == ["head", "gpu2"]
    assert found.head_node.target == "ops@10.0.0.1" and found.head_node.ssh[0] == "ssh"
    cfg_path.write_text(CONFIG.replace("10.0.0.1", "10.0.0.9"))  # same size, new content
    assert model.load_cache(str(cfg_path)) is None
    cfg_path = _cached(state)
    monkeypatch.setenv("HOME", str(state))
    assert model.load_cache(str(cfg_path)) is None
    cfg_path.unlink()
    assert model.load_cache(str(cfg_path)) is None


def test_a_model_cached_after_a_concurrent_edit_does_not_hold(state: Path) -> None:
    cfg_path = state / "c.yaml"
    cfg_path.write_text(CONFIG)
    raw = model.read_config_bytes(str(cfg_path))  # read before loading, as load_cluster does
    assert raw is not None
    loaded = config.load(cfg_path)
    cfg_path.write_text(CONFIG.replace("unit", "edited"))
    model.save_cache(model.resolve(loaded, recorded=False), str(cfg_path),
                     model.cache_key(raw, str(cfg_path)))  # fmt: skip
    assert model.load_cache(str(cfg_path)) is None


def test_node_facts_are_recorded_per_node_and_kept_only_for_the_same_node(state: Path) -> None:
    cfg_path = state / "c.yaml"
    cfg_path.write_text(CONFIG)
    cfg = config.load(cfg_path)
    model.record_facts(
        model.of(cfg),
        {"head": {"root": "/home/ops/grid-ops", "ssh_ip": "10.0.0.1"},
         "gpu2": {"root": "/home/x/grid-ops", "ssh_ip": "10.0.0.2"}, "gone": {"root": "/r"}},
    )  # fmt: skip
    resolved = model.resolve(cfg)
    assert (resolved.node("head").root, resolved.node("gpu2").ssh_ip) == (
        "/home/ops/grid-ops",
        "10.0.0.2",
    )
    assert "gone" not in model.read_facts(cfg.id)
    assert os.stat(model.facts_file(cfg.id)).st_mode & 0o777 == 0o600
    moved = CONFIG.replace("host: gpu2", "host: gpu2b")  # another machine under that name
    cfg_path.write_text(moved)
    again = model.resolve(config.load(cfg_path))
    assert again.node("gpu2").root is None and again.node("head").root == "/home/ops/grid-ops"
    elsewhere = config.load(cfg_path).model_copy(update={"remote_root": "/srv/g"})
    assert model.resolve(elsewhere).node("head").root is None


RSYNC_OUT = """\
.d..t...... pkg/
>f.st...... pkg/model.py
*deleting   old.py

Number of files: 4 (reg: 3, dir: 1)
Number of regular files transferred: 1,024
Total bytes sent: 12,345
"""


def test_rsync_output_is_read_for_changes_and_stats() -> None:
    assert rsync.changes(RSYNC_OUT) == [">f.st...... pkg/model.py", "*deleting   old.py"]
    assert rsync.changes(".d..t...... pkg/\n\nNumber of files: 1\n") == []
    assert rsync.stats(RSYNC_OUT) == {"files_transferred": 1024, "bytes_sent": 12345}
    assert rsync.stats("") == {"files_transferred": 0, "bytes_sent": 0}
    assert rsync.source_name("/src/proj/") == "proj"
    assert [rsync.source_name(s) for s in ("/", ".", "..", "/a/..")] == ["", "", "", ""]


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
    with pytest.raises(OSError):  # not found (or a PATH entry this user may not search)
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
