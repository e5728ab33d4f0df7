"""grid-ops serve on the lab: a real `grid-ops serve` process (uvicorn) over a running
Ray cluster whose nodes answer with replayed H100 nvidia-smi output. Every endpoint
against the CLI's own --json, every error code, the token (on loopback and beyond), the
page in a real headless Chromium under its CSP, 50 clients polling while a job runs,
and the attacks on a running job: a rebinding Host, a cross-site form, another local
user. The attacks that need no cluster are in tests/test_serve_units.py."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import fake_nvidia_smi, serving
from tests.conftest import Lab, lab_node

pytestmark = pytest.mark.lab

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "gpu-h100"
STEPS = "for i in 1 2 3 4 5 6; do echo step $i of 6; sleep 1.5; done; echo page-job says hi"
COUNT = "for i in $(seq 60); do echo $i; sleep 1; done"
TRAIN = """
import time
from grid_ops.jobs import report
for epoch in range(1, 4):
    print("epoch", epoch, "of 3", flush=True)
    report(epoch=epoch, loss=round(1.0 / epoch, 4))
    time.sleep(1)
print("trained three epochs", flush=True)
"""


def _users() -> dict[str, str]:
    from grid_ops import lab as lab_mod

    state = lab_mod.load_state()
    assert state is not None
    return {n.name: n.user for n in state.nodes}


@pytest.fixture(scope="module")
def gpu_config(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The running lab cluster, each node with one replayed H100 (node1 busy, the others
    idle) named by the config's health_check.nvidia_smi."""
    lab.start_cluster()
    data = yaml.safe_load(lab.config.read_text())
    data.setdefault("health_check", {})["nvidia_smi"] = fake_nvidia_smi.NODE_PATH
    for node in data["nodes"]:
        node["gpu_count"] = 1
    path = tmp_path_factory.mktemp("serve") / "serve.yaml"
    path.write_text(yaml.safe_dump(data))
    users = _users()
    for name, user in users.items():
        which = "busy" if name == "node1" else "idle"
        fake_nvidia_smi.install(user, (FIXTURES / f"nvidia-smi-q.{which}.xml").read_text())
    try:
        yield path
    finally:
        for user in users.values():
            fake_nvidia_smi.install(user, None)


@pytest.fixture(scope="module")
def server(
    lab: Lab, gpu_config: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[serving.Server]:
    log = tmp_path_factory.mktemp("serve-log") / "serve.log"
    args = ("--interval", "2", "--cluster-interval", "10")
    running = serving.start(gpu_config, lab.env(), log, *args)
    try:
        yield running
    finally:
        output = running.stop()
        assert "Traceback" not in output, output[-3000:]


def _cli_json(lab: Lab, *args: str) -> Any:
    proc = lab.cli(*args, "--json")
    assert proc.returncode in (0, 1), proc.stderr
    return json.loads(proc.stdout)


def _until(check: Any, limit: float = 60, step: float = 0.5) -> Any:
    deadline = time.monotonic() + limit
    while True:
        found = check()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(step)


def test_reads_answer_with_the_clis_documents(
    lab: Lab, gpu_config: Path, server: serving.Server
) -> None:
    cfg = str(gpu_config)
    cluster = server.get("/api/cluster").json()
    assert [n["name"] for n in cluster["nodes"]] == ["node1", "node2", "node3"]
    assert {n["ray"] for n in cluster["nodes"]} == {"alive"}
    cli_cluster = _cli_json(lab, "cluster", "status", "-c", cfg)
    assert cluster.keys() == cli_cluster.keys()
    assert cluster["nodes"][0].keys() == cli_cluster["nodes"][0].keys()

    before = server.get("/api/server").json()
    health = server.get("/api/health?refresh=1").json()
    after = server.get("/api/server").json()
    assert health["cached"] is False and server.get("/api/health").json()["cached"] is True
    assert after["probe_rounds"] > before["probe_rounds"]  # it waited for a new probe
    cli_health = _cli_json(lab, "health", "-c", cfg)
    assert health.keys() == cli_health.keys() == {"nodes", "cached"}
    assert health["nodes"][0].keys() == cli_health["nodes"][0].keys()
    by_name = {n["name"]: n for n in health["nodes"]}
    assert by_name["node1"]["gpus"][0]["memory_used_mib"] == 21970  # the busy capture
    assert by_name["node2"]["gpus"][0]["name"] == "NVIDIA H100 80GB HBM3"

    node = server.get("/api/nodes/node2").json()
    assert node["name"] == "node2" and node["health"]["reachable"] is True
    assert node["ray"]["ray"] == "alive" and node["ray"]["role"] == "worker"

    offload = server.get("/api/offload").json()
    assert offload.keys() == _cli_json(lab, "offload", "auto", "-c", cfg).keys()
    metrics = server.get("/metrics")
    assert metrics.status == 200 and metrics.headers["content-type"].startswith("text/plain")
    text = metrics.body.decode()
    for name in ("node1", "node2", "node3"):
        assert f'grid_node_up{{node="{name}"}} 1.0' in text
    assert "grid_controller_up 1.0" in text
    assert 'grid_node_gpu_memory_used_bytes{gpu="0",node="node1"}' in text
    assert server.get("/docs").status == 404  # Swagger UI would load scripts from a CDN
    paths = server.get("/openapi.json").json()["paths"]
    for path in ("/api/jobs", "/api/jobs/{name}/logs", "/api/boosts/{rid}", "/api/memory"):
        assert path in paths


def test_unknown_names_and_bad_input_get_404_400_and_422(server: serving.Server) -> None:
    answer = server.get("/api/nodes/node9")
    assert answer.status == 404
    assert answer.json() == {
        "error": "Unknown node 'node9'.",
        "hint": "This cluster has: node1, node2, node3.",
    }
    for path in ("/api/jobs/nojob", "/api/jobs/nojob/logs", "/api/jobs/nojob/results"):
        assert server.get(path).status == 404, path
    assert server.post("/api/jobs/nojob/cancel").status == 404
    assert server.delete("/api/boosts/b-nothere").status == 404
    bad = server.post("/api/boosts", {"node": "node2", "resource": "disk", "amount": "1"})
    assert bad.status == 400 and "Unknown resource 'disk'" in bad.json()["error"]
    assert (
        server.post("/api/boosts", {"node": "node9", "resource": "cpu", "amount": 1}).status == 404
    )
    assert server.post("/api/jobs", {"name": "x", "command": []}).status == 422  # the schema
    assert server.post("/api/jobs", {"name": "x", "command": ["a"], "nodes": 0}).status == 422
    assert (  # grid-ops' own check of the name
        server.post("/api/jobs", {"name": "x", "command": ["a"], "env": {"=": "v"}}).status == 400
    )


def test_a_job_launched_through_the_api(lab: Lab, gpu_config: Path, server: serving.Server) -> None:
    launched = server.post("/api/jobs", {"name": "api-train", "command": ["python", "-c", TRAIN]})
    assert launched.status == 201, launched.body
    assert launched.json()["status"] in ("QUEUED", "RUNNING")  # queued; started if it fits
    again = server.post("/api/jobs", {"name": "api-train", "command": ["true"]})
    assert again.status == 409 and "still" in again.json()["error"]

    # The logs stream while it runs and end when it ends.
    started = time.monotonic()
    logs = serving.request(server.url + "/api/jobs/api-train/logs", token=server.token, timeout=180)
    assert logs.status == 200 and logs.headers.get("transfer-encoding") == "chunked"
    text = logs.body.decode()
    assert "epoch 1 of 3" in text and text.rstrip().endswith("trained three epochs")
    assert time.monotonic() - started > 1.5  # it followed the job instead of answering at once

    job = server.get("/api/jobs/api-train").json()
    assert job["status"] == "SUCCEEDED" and job["exit_code"] == 0
    assert job == _cli_json(lab, "job", "status", "api-train", "-c", str(gpu_config))
    results = server.get("/api/jobs/api-train/results").json()
    assert [m["epoch"] for m in results["metrics"]] == [1, 2, 3]
    assert results["final"] == {"epoch": 3, "loss": 0.3333}
    assert "api-train" in [j["name"] for j in server.get("/api/jobs").json()]
    done = server.get("/api/jobs/api-train/logs?follow=0").body.decode()
    assert done == text

    long = server.post("/api/jobs", {"name": "api-long", "command": ["sleep", "300"]})
    assert long.status == 201
    assert _until(lambda: server.get("/api/jobs/api-long").json()["status"] == "RUNNING", 90)
    stopped = server.post("/api/jobs/api-long/cancel")
    assert stopped.status == 200 and stopped.json()["status"] == "STOPPED"


def test_boosts_and_the_memory_pool_through_the_api(
    lab: Lab, gpu_config: Path, server: serving.Server, tmp_path: Path
) -> None:
    cfg = str(gpu_config)
    made = server.post(
        "/api/boosts", {"node": "node2", "resource": "cpu", "amount": 1, "ttl": "10m"}
    )
    assert made.status == 201, made.body
    boost = made.json()
    assert (boost["node"], boost["resource"], boost["amount"]) == ("node2", "cpu", 1.0)
    listed = _until(lambda: [b for b in server.get("/api/boosts").json() if b["id"] == boost["id"]])
    assert listed and listed[0]["state"] == "active"
    cli = [b for b in _cli_json(lab, "boost", "status", "-c", cfg) if b["id"] == boost["id"]]
    assert listed[0].keys() == cli[0].keys()
    released = server.delete(f"/api/boosts/{boost['id']}")
    assert released.status == 200 and released.json()["id"] == boost["id"]
    again = server.delete(f"/api/boosts/{boost['id']}")
    assert again.status == 404 and "already released" in again.json()["error"]

    blob = tmp_path / "blob"
    blob.write_bytes(b"x" * 4096)
    stored = lab.cli("memory", "store", "api-key", str(blob), "-c", cfg)
    assert stored.returncode == 0, stored.stderr
    try:
        pool = _until(
            lambda: [o for o in server.get("/api/memory").json() if o["key"] == "api-key"]
        )
        assert pool and pool[0]["size"] == 4096 and pool[0]["nodes"]
        assert pool[0] in _cli_json(lab, "memory", "list-objects", "-c", cfg)
    finally:
        lab.cli("memory", "delete", "api-key", "-c", cfg)


def test_the_dashboard_in_a_real_browser(
    lab: Lab, gpu_config: Path, server: serving.Server, tmp_path: Path
) -> None:
    browser = serving.browser()
    try:
        serving.watch_csp(browser)
        browser.get(f"{server.url}/#token={server.token}")  # the address serve printed

        def page(selector: str) -> str:
            return serving.text_of(browser, selector)

        assert _until(lambda: "node3" in page("#nodes"), 30), page("body")
        nodes = page("#nodes")
        for name in ("node1", "node2", "node3"):
            assert name in nodes
        assert "21.5/80 GiB · 100%" in page('tr[data-node="node1"]')  # node1's busy H100
        assert "0.5/80 GiB · 0%" in page('tr[data-node="node2"]')  # idle
        assert "ray alive" in nodes
        assert "token" not in browser.current_url  # the page took it out of the address
        browser.execute_script("window.gridOpsTestMarker = 'still the first load';")

        boost = server.post("/api/boosts", {"node": "node2", "resource": "cpu", "amount": 1})
        assert boost.status == 201, boost.body
        blob = tmp_path / "weights.bin"
        blob.write_bytes(b"w" * 3 * 2**20)
        cfg = str(gpu_config)
        stored = lab.cli("memory", "store", "checkpoints/epoch-3", str(blob), "-c", cfg)
        assert stored.returncode == 0, stored.stderr
        try:
            job = {"name": "page-job", "command": ["sh", "-c", STEPS]}
            launched = server.post("/api/jobs", job)
            assert launched.status == 201, launched.body
            state = 'tr[data-job="page-job"] .state'
            assert _until(lambda: page(state).startswith("RUNNING"), 60), page("#jobs")
            assert _until(lambda: "step 2" in page('tr[data-job="page-job"]'), 30), page("#jobs")
            assert _until(lambda: boost.json()["id"] in page("#boosts"), 30), page("#boosts")
            assert _until(lambda: "checkpoints/epoch-3" in page("#memory"), 30)
            serving.ARTIFACTS.mkdir(parents=True, exist_ok=True)
            shot = serving.ARTIFACTS / "dashboard.png"
            assert browser.save_screenshot(str(shot))  # the README's picture
            assert shot.stat().st_size > 10_000
            print(f"screenshot: {shot}")
            assert _until(lambda: page(state).startswith("SUCCEEDED"), 90), page("#jobs")
            assert _until(lambda: "page-job says hi" in page('tr[data-job="page-job"]'), 30)
            assert browser.execute_script("return window.gridOpsTestMarker") == (
                "still the first load"
            )
            assert browser.save_screenshot(str(serving.ARTIFACTS / "dashboard-job-done.png"))
        finally:
            server.delete(f"/api/boosts/{boost.json()['id']}")
            lab.cli("memory", "delete", "checkpoints/epoch-3", "-c", cfg)
        problems = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert problems == []
        assert browser.execute_script("return window.cspViolations") == []
    finally:
        browser.quit()


def test_fifty_clients_polling_cost_one_refresher(server: serving.Server) -> None:
    seconds, interval, nodes = 12.0, 2.0, 3
    launched = server.post(
        "/api/jobs",
        {
            "name": "load-job",
            "command": ["sh", "-c", "for i in $(seq 40); do echo $i; sleep 1; done"],
        },
    )
    assert launched.status == 201
    assert _until(lambda: server.get("/api/jobs/load-job").json()["status"] == "RUNNING", 90)
    before = server.get("/api/server").json()
    paths = ["/api/state", "/api/health", "/api/jobs/load-job", "/api/cluster", "/metrics"]
    result = serving.load(
        server.url, paths, clients=50, seconds=seconds, pause=0.5, token=server.token
    )
    after = server.get("/api/server").json()
    assert result.failures == []
    rounds = after["probe_rounds"] - before["probe_rounds"]
    probed = after["nodes_probed"] - before["nodes_probed"]
    figures = {
        **result.summary(),
        "clients": 50,
        "seconds": seconds,
        "interval_s": interval,
        "probe_rounds": rounds,
        "nodes_probed": probed,
    }
    print("load:", json.dumps(figures))
    serving.ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (serving.ARTIFACTS / "serve-load.json").write_text(json.dumps(figures, indent=2))
    # One probe round per interval at most (a round takes time, so often fewer), each
    # probing every node once: the clients added none.
    assert 1 <= rounds <= seconds / interval + 2
    assert probed == rounds * nodes
    assert result.requests > 50 * seconds / 2  # every client kept polling
    server.post("/api/jobs/load-job/cancel")


def test_beyond_loopback_every_request_needs_the_token(
    lab: Lab, gpu_config: Path, tmp_path: Path
) -> None:
    """As on loopback; the token the server prints is the cluster's, and it shows
    nowhere else in its output."""
    from grid_ops import lab as lab_mod

    state = lab_mod.load_state()
    assert state is not None
    bind = state.bridge_ip  # an address of the lab's own bridge
    made = lab.cli("serve", "token", "-c", str(gpu_config))
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    server = serving.start(gpu_config, lab.env(), tmp_path / "serve.log", bind=bind)
    try:
        assert server.token == token
        for path in ("/api/health", "/api/server", "/metrics", "/docs", "/openapi.json"):
            answer = server.get(path, token=None)
            assert answer.status == 401, path
            assert answer.headers.get("www-authenticate") == "Bearer"
        assert "grid-ops serve token" in server.get("/api/health", token=None).json()["hint"]
        assert server.get("/api/health", token=token + "x").status == 401
        page = server.get("/", token=None)  # the page's files hold no data
        assert page.status == 200 and b'id="token-box"' in page.body and b"node1" not in page.body
        assert server.get("/api/health").status == 200
        assert server.get("/metrics").status == 200
    finally:
        log = server.stop()
    assert [line for line in log.splitlines() if token in line] == [f"{server.url}/#token={token}"]


def test_attacks_on_a_running_job_are_refused(
    lab: Lab, gpu_config: Path, server: serving.Server
) -> None:
    """A job runs. A page of another site reaching the server by DNS rebinding tries to
    launch a job, a cross-site form to cancel this one, and another local user both: all
    refused; nothing launched, and the job runs on until its owner cancels it."""
    cfg = str(gpu_config)
    assert server.post("/api/jobs", {"name": "victim", "command": ["sleep", "300"]}).status == 201
    try:
        assert _until(lambda: server.get("/api/jobs/victim").json()["status"] == "RUNNING", 90)
        port = server.url.rsplit(":", 1)[1]
        evil = {"name": "rebound", "command": ["sh", "-c", "echo pwned"]}
        rebound = serving.request(server.url + "/api/jobs", "POST", evil, server.token,
                                  headers={"Host": f"evil.example:{port}"})  # fmt: skip
        assert rebound.status == 400 and "DNS rebinding" in rebound.json()["error"]
        forms = {"text/plain": b'{"x": 1}', "application/x-www-form-urlencoded": b"x=1"}
        for kind, data in forms.items():
            headers = {"Content-Type": kind, "Origin": "http://evil.example"}
            form = serving.request(server.url + "/api/jobs/victim/cancel", "POST",
                                   headers=headers, data=data)  # fmt: skip
            assert form.status == 403, (kind, form.body)
        [token_file] = [
            p for p in (lab.state_dir / "serve").glob("*.token")
            if p.read_text().strip() == server.token
        ]  # fmt: skip
        calls = [("POST", "/api/jobs/victim/cancel", None), ("POST", "/api/jobs", evil)]
        seen = serving.as_other_user(token_file, server.url, calls)
        assert seen == {"token_file": "PermissionError", "statuses": [401, 401]}
        status = _cli_json(lab, "job", "status", "victim", "-c", cfg)  # Ray's own word
        assert status["status"] == "RUNNING", status
        assert server.get("/api/jobs/rebound").status == 404
        assert "rebound" not in [j["name"] for j in _cli_json(lab, "job", "list", "-c", cfg)]
    finally:
        stopped = server.post("/api/jobs/victim/cancel")
    assert stopped.status == 200 and stopped.json()["status"] == "STOPPED"


def test_the_refresher_restarts_a_worker_whose_raylet_died(server: serving.Server) -> None:
    """The serve refresher is a watch loop: it repairs as 'health --watch' does, and the
    page's document lists the repair."""
    subprocess.run(["pkill", "-KILL", "-u", lab_node("node3").user, "-x", "raylet"], check=False)

    def repaired() -> list[dict[str, Any]]:
        found = server.get("/api/state").json()["repairs"]
        return [r for r in found if r["node"] == "node3" and r["ok"]]

    assert _until(repaired, limit=240, step=2), server.get("/api/state").body[-3000:]
    health = server.get("/api/health?refresh=1").json()
    node3 = next(n for n in health["nodes"] if n["name"] == "node3")
    assert node3["ray_running"] and not [c for c in node3["checks"] if c["check"] == "ray_down"]


def test_a_stopped_cluster_answers_503(lab: Lab, gpu_config: Path, server: serving.Server) -> None:
    stop = lab.cli("cluster", "stop", "-c", str(gpu_config), timeout=300)
    assert stop.returncode == 0, stop.stderr
    assert server.get("/api/health?refresh=1").status == 200
    # a round's controller part follows its health part: the next reads may still be
    # the round before's, until that part has run
    assert _until(lambda: server.get("/api/boosts").status == 503, 30)
    for path in ("/api/boosts", "/api/memory", "/api/offload"):
        answer = server.get(path)
        assert answer.status == 503, (path, answer.body)
        assert "controller does not run" in answer.json()["error"]
        assert "grid-ops cluster start" in answer.json()["hint"]
    launch = server.post("/api/jobs", {"name": "when-down", "command": ["true"]})
    assert launch.status == 503, launch.body
    page_state = server.get("/api/state").json()
    assert page_state["errors"]["controller"]["error"]
    assert page_state["health"]["nodes"]  # the nodes still show
