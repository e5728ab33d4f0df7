"""The dashboard page's drawing in a real headless Chromium, at 50 nodes of 8 GPUs on a
laptop screen, and with hostile text from the nodes. The page (grid_ops.server.api's
page_html, as the server sends it) is fed a state document by a plain HTTP server here:
this tests the page's own logic; tests/test_serve.py tests it against the real server
on the lab."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from grid_ops.server.api import page_html
from tests import serving

HOSTILE = '<img src=x onerror="window.pwned=1">[bold]not markup[/bold]'


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
         "nodes": 8, "known_to_ray": True, "log_tail": ["epoch 3 of 10", HOSTILE]},
        {"name": "eval", "status": "SUCCEEDED", "started_at": now - 400, "ended_at": now - 340,
         "nodes": 1, "known_to_ray": True, "log_tail": ["done"]},
    ]  # fmt: skip
    return {
        "cluster_name": "fifty", "head": "gpu01",
        "node_names": [n["name"] for n in nodes], "interval": 5, "rounds": 12, "now": now,
        "errors": {}, "health": {"nodes": nodes, "cached": False}, "health_at": now - 1,
        "cluster": None, "jobs": jobs,
        "controller": {
            "reservations": [{"id": "boost-1", "kind": "boost", "node": "gpu02",
                              "resource": "gpu", "amount": 2, "priority": "high",
                              "state": "active", "expires_at": now + 600}],
            "memory": [{"key": "weights/" + HOSTILE, "size": 3 * 1024**3,
                        "nodes": ["gpu03", "gpu04"]}],
        },
    }  # fmt: skip


@pytest.fixture(scope="module")
def page_server() -> Iterator[str]:
    page = page_html().encode()
    body = json.dumps(state_document()).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            data, kind = (page, "text/html") if self.path == "/" else (body, "application/json")
            self.send_response(200)
            self.send_header("Content-Type", kind)
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


def test_fifty_nodes_of_eight_gpus_read_well_on_a_laptop_screen(page_server: str) -> None:
    browser = serving.browser(1366, 768)
    try:
        browser.get(page_server + "/")
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
        assert "RUNNING" in job and "1m 1" in job and HOSTILE in job
        assert HOSTILE in serving.text_of(browser, "#memory")
    finally:
        browser.quit()
