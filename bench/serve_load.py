"""grid-ops serve under load: 50 clients against the server vs a raw HTTP server.

On a lab of N nodes (root; no Ray: the request path reads the refresher's last round
either way, and the controller's sections answer 503 from that round), `grid-ops serve`
runs with a 2 s refresh interval. 50 client threads poll for 30 s, in two patterns:
"page" (each client waits 0.5 s after each answer, as a page polling at 2 Hz) and
"flat" (back to back). The same load goes to a raw baseline: Python's
ThreadingHTTPServer, in its own process, answering the same /api/state bytes from
memory. Figures: requests, p50/p95 latency for each, the ratio server/raw of p95, and
the probe rounds the server made during each run against what its interval allows.

What it hides: the clients, the server, the baseline and the lab's nodes share this
box's 2 cores, so latency here includes the clients' own CPU and the refresher's
probes of N nodes (more nodes: more of the same 2 cores per round).
GRID_OPS_BENCH_INTERVAL=600 runs the same with the refresher idle after its first round
(what serving costs without the refresher's work beside it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import lab_bench, parse_args, report

from tests import serving

CLIENTS, SECONDS, INTERVAL = 50, 30.0, 2.0
PATTERNS = {"page": 0.5, "flat": 0.0}


RAW = """
import http.server, sys
body = open(sys.argv[1], "rb").read()
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 2048  # as grid-ops serve's backlog
Server(("127.0.0.1", int(sys.argv[2])), Handler).serve_forever()
"""


def raw_server(body: bytes, work: Path) -> tuple[str, subprocess.Popen[bytes]]:
    """The baseline in its own process (as the server is): the same bytes from memory."""
    page = work / "state.json"
    page.write_bytes(body)
    port = serving.free_port()
    proc = subprocess.Popen([sys.executable, "-c", RAW, str(page), str(port)])
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            if serving.request(base + "/", timeout=2).status == 200:
                return base, proc
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the raw baseline server did not start")


def main() -> None:
    args = parse_args(__doc__, runs=1)
    interval = float(os.environ.get("GRID_OPS_BENCH_INTERVAL", INTERVAL))
    results: dict[str, object] = {
        "nodes": args.nodes, "clients": CLIENTS, "seconds": SECONDS, "interval_s": interval,
    }  # fmt: skip
    with lab_bench(args.nodes) as bench:
        env = dict(os.environ)
        log = bench.work / "serve.log"
        server = serving.start(bench.config_path, env, log, "--interval", str(interval))
        try:
            body = server.get("/api/state").body
            results["state_bytes"] = len(body)
            base, raw = raw_server(body, bench.work)
            for pattern, pause in PATTERNS.items():
                before = server.get("/api/server").json()
                ours = serving.load(
                    server.url, ["/api/state"], CLIENTS, SECONDS, pause, token=server.token
                )
                after = server.get("/api/server").json()
                theirs = serving.load(base, ["/"], CLIENTS, SECONDS, pause)
                results[pattern] = {
                    "serve": ours.summary(),
                    "raw": theirs.summary(),
                    "p95_ratio": round(ours.percentile(95) / theirs.percentile(95), 2),
                    "probe_rounds": after["probe_rounds"] - before["probe_rounds"],
                    "probe_rounds_allowed": int(SECONDS / interval) + 1,
                    "nodes_probed": after["nodes_probed"] - before["nodes_probed"],
                }
            raw.terminate()
        finally:
            server.stop()
    suffix = "" if interval == INTERVAL else f"_interval{interval:g}"
    report(f"serve_load_{args.nodes}{suffix}", results)
    print(json.dumps(results["page"]))


if __name__ == "__main__":
    main()
