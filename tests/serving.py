"""Helpers for the grid-ops serve tests: start the real server (a `grid-ops serve`
process, uvicorn and all) and speak HTTP to it with the standard library."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("GRID_OPS_TEST_ARTIFACTS", REPO / "test-artifacts"))


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Answer:
    status: int
    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.body)


def request(
    url: str,
    method: str = "GET",
    body: Any = None,
    token: str | None = None,
    timeout: float = 60,
) -> Answer:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as answer:
            return Answer(answer.status, answer.read(), dict(answer.headers))
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, exc.read(), dict(exc.headers))


@dataclass
class Server:
    """A running `grid-ops serve`: its base URL, process and stderr log."""

    url: str
    proc: subprocess.Popen[bytes]
    log: Path
    token: str | None = None

    def get(self, path: str, **kw: Any) -> Answer:
        return request(self.url + path, token=kw.pop("token", self.token), **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Answer:
        return request(
            self.url + path, "POST", body if body is not None else {},
            token=kw.pop("token", self.token), **kw,
        )  # fmt: skip

    def delete(self, path: str, **kw: Any) -> Answer:
        return request(self.url + path, "DELETE", token=kw.pop("token", self.token), **kw)

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.log.read_text(errors="replace")


def start(
    config: Path,
    env: dict[str, str],
    log: Path,
    *extra: str,
    bind: str = "127.0.0.1",
    token: str | None = None,
    ready_within: float = 180,
) -> Server:
    """Start `grid-ops serve` and wait until it answers (its first round done)."""
    port = free_port(bind)
    argv = [sys.executable, "-m", "grid_ops", "serve", "-c", str(config)]
    argv += ["--bind", bind, "--port", str(port), *extra]
    with log.open("wb") as sink:
        proc = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    host = f"[{bind}]" if ":" in bind else bind
    server = Server(f"http://{host}:{port}", proc, log, token)
    deadline = time.monotonic() + ready_within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"grid-ops serve exited {proc.returncode}: {log.read_text()}")
        try:
            if server.get("/api/server", timeout=5).status in (200, 401):
                return server
        except OSError:
            pass
        time.sleep(0.5)
    server.stop()
    raise AssertionError(f"grid-ops serve did not answer in {ready_within:g} s: {log.read_text()}")
