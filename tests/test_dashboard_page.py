"""The dashboard page's drawing in a real headless Chromium, at 50 nodes of 8 GPUs on a
laptop screen, and with hostile text from the nodes, under the server's
Content-Security-Policy. The page's files (grid_ops.server.api's page_files, with the
headers grid_ops.server.guard adds) and a state document come from a plain HTTP server
here: this tests the page's own logic; tests/test_serve.py tests it against the real
server on the lab."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from grid_ops.server.api import page_files
from grid_ops.server.guard import HEADERS
from tests import serving

HOSTILE = '<img src=x onerror="window.pwned=1">[bold]not markup[/bold]'
TOKEN = "t0ken-for-the-page"


def _gpu(index: int, used_mib: int, util: int) -> dict[str, Any]:
    return {
        "index": index, "name": "NVIDIA H100 80GB HBM3", "memory_total_mib": 81559,
        "memory_used_mib": used_mib, "utilization_gpu": util,
    }  # fmt: skip


def _node(i: int) -> dict[str, Any]:
    return {
        "name": f"gpu{i:02d}", "reachable": True, "score": round(0.1 + i / 100, 3),
        "load1": 12.0 + i % 7, "cpu_count": 64, "mem_total_bytes": 2 * 1024**4,
        "mem_available_bytes": 1024**4, "disk_free_bytes": 900 * 1024**3,
        "ray_running": True, "drained": None, "checks": [], "error": None,
        "gpus": [_gpu(g, 21970 if (i + g) % 3 else 512, 100 if (i + g) % 3 else 0)
                 for g in range(8)],
    }  # fmt: skip


def state_document() -> dict[str, Any]:
    nodes = [_node(i) for i in range(1, 51)]
    nodes[3]["checks"] = [{"check": "ecc", "severity": "sick", "reason": HOSTILE}]
    nodes[3]["drained"] = "quarantine: ecc: 5 uncorrectable errors"
    nodes[7]["drained"] = "maintenance " + HOSTILE
    nodes[9] = {"name": "gpu10", "reachable": False, "error": "ssh: connect refused",
                "gpus": [], "checks": []}  # fmt: skip
    now = time.time()
    jobs = [
        {"name": "train-big", "status": "RUNNING", "started_at": now - 75, "ended_at": None,
         "nodes": 8, "known_to_ray": True, "log_tail": ["epoch 3 of 10", HOSTILE],
         "submitter": "ada"},
        {"name": "eval", "status": "SUCCEEDED", "started_at": now - 400, "ended_at": now - 340,
         "nodes": 1, "known_to_ray": True, "log_tail": ["done"]},
        {"name": "sweep", "status": "QUEUED", "started_at": None, "ended_at": None,
         "nodes": 4, "attempt": 1, "reason": "needs 1 GPU on each of 4 nodes; " + HOSTILE,
         "log_tail": []},
        {"name": "retried", "status": "RUNNING", "started_at": now - 20, "ended_at": None,
         "nodes": 2, "attempt": 2, "reason": "", "log_tail": []},
    ]  # fmt: skip
    return {
        "cluster_name": "fifty", "head": "gpu01",
        "node_names": [n["name"] for n in nodes], "interval": 5, "rounds": 12, "now": now,
        "errors": {}, "health_at": now - 1,
        "health": {"nodes": nodes, "cached": False}, "repairs": [
            {"time": now - 90, "node": "gpu05", "action": "restart Ray", "ok": False,
             "failures": 3, "detail": "ray start: " + HOSTILE, "quarantined": True},
            {"time": now - 30, "node": "gpu06", "action": "restart Ray", "ok": True,
             "failures": 0, "detail": "", "quarantined": False},
        ],
        "cluster": None, "jobs": jobs,
        "controller": {
            "reservations": [{"id": "boost-1", "kind": "boost", "node": "gpu02",
                              "resource": "gpu", "amount": 2, "priority": "high",
                              "state": "active", "expires_at": now + 600,
                              "owner": "bob"}],
            "memory": [{"key": "weights/" + HOSTILE, "size": 3 * 1024**3,
                        "nodes": ["gpu03", "gpu04"], "owner": "ada"}],
            "metrics": {"users": {
                "ada": {"jobs_queued": 1, "jobs_running": 1, "gpus_running": 16,
                        "gpu_hours_week": 412.25},
                HOSTILE: {"jobs_queued": 0, "jobs_running": 1, "gpus_running": 2,
                          "gpu_hours_week": 3.5},
            }},
        },
    }  # fmt: skip


@pytest.fixture(scope="module")
def page_server() -> Iterator[str]:
    files = {path: (data, f"{kind}; charset=utf-8") for path, (data, kind) in page_files().items()}
    files["/api/state"] = (json.dumps(state_document()).encode(), "application/json")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path not in files:
                self.send_error(404)
                return
            if self.path.startswith("/api/"):
                authorizations.append(self.headers.get("Authorization"))
            data, kind = files[self.path]
            self.send_response(200)
            for name, value in {**HEADERS, "Content-Type": kind}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", serving.free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


authorizations: list[str | None] = []  # the Authorization header of each /api/ request


def test_fifty_nodes_of_eight_gpus_read_well_on_a_laptop_screen(page_server: str) -> None:
    browser = serving.browser(1366, 768)
    try:
        serving.watch_csp(browser)
        browser.get(page_server + f"/#token={TOKEN}")
        deadline = time.monotonic() + 30
        while "gpu50" not in serving.text_of(browser, "#nodes") and time.monotonic() < deadline:
            time.sleep(0.2)
        layout = browser.execute_script(
            """
            const rows = [...document.querySelectorAll('#nodes tbody tr')];
            const heights = rows.map(r => r.getBoundingClientRect().height);
            const sorted = heights.slice().sort((a, b) => a - b);
            return {rows: rows.length, tallest: Math.max(...heights),
                    typical: sorted[Math.floor(sorted.length / 2)],
                    pageWidth: document.documentElement.scrollWidth, view: window.innerWidth,
                    images: document.images.length, pwned: window.pwned || null,
                    headerTop: document.querySelector('#nodes thead th')
                        .getBoundingClientRect().top};
            """
        )
        serving.ARTIFACTS.mkdir(parents=True, exist_ok=True)
        assert browser.save_screenshot(str(serving.ARTIFACTS / "dashboard-50-nodes.png"))
        assert layout["rows"] == 50
        assert layout["pageWidth"] <= layout["view"]  # no sideways scrolling
        assert layout["typical"] < 50, layout  # 8 GPUs on one line
        assert layout["tallest"] < 110, layout  # a drain note takes a few lines more
        assert layout["images"] == 0 and layout["pwned"] is None  # text stays text
        sick = serving.text_of(browser, 'tr[data-node="gpu04"]')
        assert "quarantined" in sick and "ecc" in sick
        assert "maintenance <img" in serving.text_of(browser, 'tr[data-node="gpu08"]')
        assert "unreachable" in serving.text_of(browser, 'tr[data-node="gpu10"]')
        first_gpu = browser.execute_script(
            "return document.querySelector('tr[data-node=\"gpu02\"] .gpu').title"
        )
        assert first_gpu == "GPU 0 NVIDIA H100 80GB HBM3: 21.5/80 GiB · 100%"
        summary = serving.text_of(browser, "#summary")
        assert summary.startswith("50 nodes · 47 in service · 1 sick · 2 drained · 1 unreachable")
        job = serving.text_of(browser, 'tr[data-job="train-big"]')
        assert "RUNNING" in job and "1m 1" in job and HOSTILE in job and "ada" in job
        waiting = serving.text_of(browser, 'tr[data-job="sweep"]')
        assert "QUEUED" in waiting and "needs 1 GPU on each of 4 nodes; " + HOSTILE in waiting
        assert "attempt 2" in serving.text_of(browser, 'tr[data-job="retried"]')
        counts = serving.text_of(browser, "#jobs-count")
        assert counts == "2 running, 1 queued, 4 in all", counts
        assert HOSTILE in serving.text_of(browser, "#memory")
        assert "ada" in serving.text_of(browser, "#memory")
        assert "bob" in serving.text_of(browser, 'tr[data-boost="boost-1"]')
        usage = serving.text_of(browser, "#usage tbody")  # most GPU-hours first
        assert usage.index("ada") < usage.index(HOSTILE) and "412.25" in usage
        repairs = serving.text_of(browser, "#repairs tbody")  # newest first
        assert repairs.index("gpu06") < repairs.index("gpu05") and "repaired" in repairs
        assert "failed, quarantined" in serving.text_of(browser, 'tr[data-repair="gpu05"]')
        assert HOSTILE in repairs
        check_bars_and_token(browser)
        check_no_csp_violation(browser)
    finally:
        browser.quit()


def check_bars_and_token(browser: Any) -> None:
    """The bars have their widths (set through the CSSOM, which the CSP allows); the
    token left the address bar for the tab's storage and goes out as the header."""
    bars = browser.execute_script(
        """
        const fills = [...document.querySelectorAll('tr[data-node="gpu02"] .bar > span')];
        return fills.map(f => [f.style.width, f.getBoundingClientRect().width,
                               f.parentElement.getBoundingClientRect().width]);
        """
    )
    assert len(bars) == 2 + 8 * 2  # load and memory meters; memory and use of each GPU
    for width, drawn, whole in bars:
        share = float(width.rstrip("%")) / 100
        assert abs(drawn - share * whole) < 1.5, (width, drawn, whole)
    assert {width for width, _, _ in bars[2:4]} == {"26.9%", "100%"}  # GPU 0: 21970 MiB, 100%
    assert "token" not in browser.current_url
    assert browser.execute_script("return sessionStorage.getItem('grid-ops-token')") == TOKEN
    assert authorizations and set(authorizations) == {f"Bearer {TOKEN}"}


def check_no_csp_violation(browser: Any) -> None:
    """Nothing the page does trips its Content-Security-Policy, and the watch would see
    it if it did: an inline style attribute is blocked and reported."""
    assert browser.execute_script("return window.cspViolations") == []
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == []
    width = browser.execute_script(
        """
        document.body.insertAdjacentHTML("beforeend",
            '<div id="probe" style="width: 123px; position: absolute"></div>');
        return document.getElementById("probe").getBoundingClientRect().width;
        """
    )
    assert width != 123  # the CSP is in force
    deadline = time.monotonic() + 5
    while not browser.execute_script("return window.cspViolations").__len__():
        assert time.monotonic() < deadline, "the CSP violation was not reported"
        time.sleep(0.1)
    [violation] = browser.execute_script("return window.cspViolations")
    assert violation.startswith("style-src")
