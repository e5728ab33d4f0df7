"""grid-ops serve without the lab: the token file, which binds need it, and a real
server (uvicorn, in its own process) for a cluster that cannot be reached: the errors
it answers with, and a server that refuses to start."""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from grid_ops.errors import UsageError
from grid_ops.server import token as tokens
from tests import serving
from tests.conftest import grid_ops


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GRID_OPS_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


def test_the_token_is_made_once_private_and_rotated_on_request(state: Path) -> None:
    first = tokens.ensure("c1")
    path = tokens.token_file("c1")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert len(first) >= 40 and tokens.ensure("c1") == first == tokens.read("c1")
    second = tokens.ensure("c1", rotate=True)
    assert second != first and tokens.read("c1") == second
    assert tokens.read("other") is None
    assert [p.name for p in path.parent.iterdir()] == ["c1.token"]  # no temporary left


def test_a_token_file_others_can_read_is_refused(state: Path) -> None:
    tokens.ensure("c1")
    os.chmod(tokens.token_file("c1"), 0o644)
    with pytest.raises(UsageError, match="readable by other users"):
        tokens.read("c1")


@pytest.mark.parametrize(
    ("bind", "loopback"),
    [("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("localhost", True),
     ("0.0.0.0", False), ("10.231.0.1", False), ("::", False), ("gpu-box.example", False)],
)  # fmt: skip
def test_only_loopback_binds_go_without_a_token(bind: str, loopback: bool) -> None:
    assert tokens.is_loopback(bind) is loopback


def test_the_authorization_header_must_carry_the_token() -> None:
    assert tokens.matches("Bearer s3cret", "s3cret")
    assert tokens.matches("bearer s3cret", "s3cret")
    for header in (None, "", "Bearer", "Bearer s3cre", "Basic s3cret", "s3cret", "Bearer s3cretX"):
        assert not tokens.matches(header, "s3cret"), header


def _unreachable_config(tmp_path: Path) -> Path:
    """A cluster whose only node is a loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    path = tmp_path / "gone.yaml"
    node = {"name": "gone1", "host": "127.0.0.1", "port": port, "user": "nobody"}
    path.write_text(yaml.safe_dump({"name": "gone", "nodes": [node]}))
    return path


@pytest.fixture
def down_server(tmp_path: Path, state: Path) -> Iterator[serving.Server]:
    config = _unreachable_config(tmp_path)
    env = dict(os.environ, GRID_OPS_STATE_DIR=str(state))
    server = serving.start(config, env, tmp_path / "serve.log", "--interval", "2")
    try:
        yield server
    finally:
        server.stop()


def test_a_server_for_an_unreachable_cluster_answers_with_clear_errors(
    down_server: serving.Server,
) -> None:
    health = down_server.get("/api/health")
    assert health.status == 200
    [node] = health.json()["nodes"]
    assert node["name"] == "gone1" and node["reachable"] is False and node["error"]
    for path in ("/api/boosts", "/api/memory", "/api/offload"):
        answer = down_server.get(path)
        assert answer.status == 503, (path, answer.body)
        assert "Cannot reach the head (gone1)" in answer.json()["error"]
        assert answer.json()["hint"]
    launch = down_server.post("/api/jobs", {"name": "j1", "command": ["true"]})
    assert launch.status == 503 and "gone1" in launch.json()["error"]
    assert down_server.get("/api/jobs").json() == []  # nothing half-written
    bad = down_server.post("/api/jobs", {"name": "j1"})
    assert bad.status == 400 and "command" in bad.json()["error"]
    assert down_server.post("/api/jobs", {"name": "no/slash", "command": ["x"]}).status == 400
    assert down_server.get("/api/nodes/nope").status == 404
    assert "gone1" in down_server.get("/api/nodes/nope").json()["hint"]
    assert down_server.get("/api/jobs/nope").status == 404
    assert down_server.delete("/api/boosts/b-1").status == 503
    missing = down_server.get("/api/no-such-thing")
    assert missing.status == 404 and missing.json()["error"]
    page = down_server.get("/")
    assert page.status == 200 and b"<title>grid-ops</title>" in page.body
    metrics = down_server.get("/metrics").body.decode()
    assert 'grid_node_up{node="gone1"} 0.0' in metrics and "grid_controller_up 0.0" in metrics
    assert down_server.get("/openapi.json").json()["paths"]["/api/jobs/{name}/logs"]


def test_serve_beyond_loopback_refuses_to_start_without_a_token(
    tmp_path: Path, state: Path
) -> None:
    config = _unreachable_config(tmp_path)
    env = dict(os.environ, GRID_OPS_STATE_DIR=str(state))
    proc = grid_ops("serve", "-c", str(config), "--bind", "10.231.0.1", env=env, timeout=60)
    assert proc.returncode == 2
    assert "no serve token yet" in proc.stderr and "grid-ops serve token" in proc.stderr
    assert "Traceback" not in proc.stderr
    made = grid_ops("serve", "token", "-c", str(config), env=env)
    assert made.returncode == 0
    assert made.stdout.strip() == (state / "serve" / "gone.token").read_text().strip()


def test_serve_on_a_port_in_use_is_a_clear_error(tmp_path: Path, state: Path) -> None:
    config = _unreachable_config(tmp_path)
    env = dict(os.environ, GRID_OPS_STATE_DIR=str(state))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        proc = grid_ops("serve", "-c", str(config), "--port", port, env=env, timeout=60)
    assert proc.returncode == 2
    assert f"Cannot listen on 127.0.0.1:{port}" in proc.stderr
