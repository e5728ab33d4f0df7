"""A cluster's identity on this machine: made once per config, every piece of state kept
under it, never under the name (no lab: real files in a state dir of the test's own)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from grid_ops import facts, identity, lifecycle, model
from grid_ops.drivers import inventory
from grid_ops.errors import ConfigError, Conflict
from grid_ops.model import config
from grid_ops.server import token

CONFIG = "name: my-cluster\nnodes: [gpu1, gpu2]\n"


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "state"
    monkeypatch.setenv("GRID_OPS_STATE_DIR", str(folder))
    return folder


def _write(path: Path, text: str = CONFIG) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_two_configs_of_one_name_keep_apart_everything_they_keep(
    state: Path, tmp_path: Path
) -> None:
    first = config.load(_write(tmp_path / "alice" / "cluster.yaml"))
    second = config.load(_write(tmp_path / "bob" / "cluster.yaml"))
    assert first.name == second.name
    assert first.id != second.id and identity.valid(first.id)
    assert config.load(tmp_path / "alice" / "cluster.yaml").id == first.id  # made once
    one, two = model.resolve(first), model.resolve(second)
    for where in identity.legacy_moves():
        assert where(first.id) != where(second.id)
    assert model.facts_file(one.id) != model.facts_file(two.id)
    # and so are their ssh masters
    assert one.node("gpu1").ssh != two.node("gpu1").ssh
    made = state / "ids"
    assert made.stat().st_mode & 0o777 == 0o700
    assert all(f.stat().st_mode & 0o777 == 0o600 for f in made.iterdir())


def test_a_config_sets_its_id_and_a_bad_one_is_refused(state: Path, tmp_path: Path) -> None:
    shared = config.load(_write(tmp_path / "a.yaml", CONFIG + 'cluster_id: "team-gpu-01"\n'))
    again = config.load(_write(tmp_path / "b.yaml", CONFIG + 'cluster_id: "team-gpu-01"\n'))
    assert shared.id == again.id == "team-gpu-01"
    assert not (state / "ids").exists()  # nothing made for a config that names its id
    for bad in ("../../etc", "Team", "x", "a" * 64, "ab cd efgh", "-leading1", "{{ x }}1234"):
        with pytest.raises(ConfigError, match="cluster_id"):
            config.parse({"name": "c", "nodes": ["n"], "cluster_id": bad})
    with pytest.raises(ConfigError, match="cluster_id"):
        config.load(_write(tmp_path / "c.yaml", CONFIG + "cluster_id: 12345678\n"))


def test_processes_asking_at_once_get_one_id(state: Path, tmp_path: Path) -> None:
    path = _write(tmp_path / "cluster.yaml")
    line = "from grid_ops.model import config; import sys; print(config.load(sys.argv[1]).id)"
    children = [
        subprocess.Popen([sys.executable, "-c", line, str(path)], stdout=subprocess.PIPE, text=True)
        for _ in range(6)
    ]
    ids = {child.communicate(timeout=60)[0].strip() for child in children}
    assert len(ids) == 1 and identity.valid(ids.pop())
    assert not [f for f in (state / "ids").iterdir() if f.name.endswith(".draft")]


def test_state_an_older_grid_ops_kept_under_the_name_moves_to_the_first_id(
    state: Path, tmp_path: Path
) -> None:
    old = "my-cluster"
    ray_token = inventory.ray_token_file(old)
    ray_token.parent.mkdir(parents=True)
    ray_token.write_text("t" * 64)
    applied = Path(lifecycle.applied_file(old))
    applied.parent.mkdir(parents=True)
    applied.write_text(json.dumps({"format": 1, "nodes": {}}))
    serve = token.token_file(old)
    serve.parent.mkdir(parents=True)
    serve.write_text("s" * 40)
    first = config.load(_write(tmp_path / "one.yaml"))
    assert inventory.ray_token_file(first.id).read_text() == "t" * 64
    assert lifecycle.read_applied(first.id) == {"format": 1, "nodes": {}}
    assert token.token_file(first.id).read_text() == "s" * 40
    assert not ray_token.exists()
    # a second config of that name starts clean: the name's state went to the first
    second = config.load(_write(tmp_path / "two.yaml"))
    assert not inventory.ray_token_file(second.id).exists()
    assert not Path(facts.cache_name(second.id)).exists()


def test_an_unwritable_state_dir_is_one_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    env = dict(os.environ, GRID_OPS_STATE_DIR=str(blocker / "state"))
    path = _write(tmp_path / "cluster.yaml")
    shown = subprocess.run(
        [sys.executable, "-m", "grid_ops", "config", "validate", "--json", "-c", str(path)],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert shown.returncode == 2, shown.stdout
    assert "Cannot keep the identity of cluster 'my-cluster'" in " ".join(shown.stderr.split())
    assert "Traceback" not in shown.stderr


def test_a_node_noting_another_clusters_id_is_planned_as_foreign(
    state: Path, tmp_path: Path
) -> None:
    cfg = config.load(_write(tmp_path / "cluster.yaml"))
    cluster = model.resolve(cfg)
    want = {n.name: {} for n in cluster.nodes}
    states = {
        "gpu1": lifecycle.NodeState(name="gpu1", reachable=True, cluster_id=cfg.id),
        "gpu2": lifecycle.NodeState(name="gpu2", reachable=True, cluster_id="someone-elses"),
    }
    plan = lifecycle.plan(cluster, want, states, {})
    assert plan.foreign == {"gpu2": "someone-elses"}
    assert plan.to_json()["foreign"] == {"gpu2": "someone-elses"}
    with pytest.raises(Conflict, match=re.escape("gpu2 (cluster 'someone-elses') belongs")) as no:
        lifecycle.refuse_foreign(cluster, plan.foreign, "apply")
    assert "--adopt" in str(no.value.hint) and "nothing was changed" in no.value.message
