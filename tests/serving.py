"""Helpers for the grid-ops serve tests: start the real server (a `grid-ops serve`
process, uvicorn and all) and speak HTTP to it with the standard library."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import ctrl_c_reaches_it

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("GRID_OPS_TEST_ARTIFACTS", REPO / "test-artifacts"))
# The address `grid-ops serve` prints for the operator: the token in its fragment.
TOKEN_URL = re.compile(r"^http://\S+/#token=([A-Za-z0-9_-]+)$", re.MULTILINE)
# Run before a page's own scripts: every Content-Security-Policy violation it causes.
WATCH_CSP = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation",
    (e) => window.cspViolations.push(e.violatedDirective + " " + e.blockedURI));
"""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Answer:
    status: int
    body: bytes
    headers: dict[str, str]  # names in lower case

    def json(self) -> Any:
        return json.loads(self.body)


def request(
    url: str,
    method: str = "GET",
    body: Any = None,
    token: str | None = None,
    timeout: float = 60,
    headers: dict[str, str] | None = None,
    data: bytes | Iterable[bytes] | None = None,
) -> Answer:
    """``body`` goes as JSON; ``data`` as it is (an iterable: chunked), with ``headers``
    (a Host or Origin of the test's choice, another Content-Type)."""
    if body is not None:
        data = json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if body is not None:
        req.add_header("Content-Type", "application/json")
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    for name, value in (headers or {}).items():
        req.add_header(name, value)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as answer:
            return Answer(answer.status, answer.read(), _lower(answer.headers))
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, exc.read(), _lower(exc.headers))


def _lower(headers: Any) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


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
    """Start `grid-ops serve` and wait until it answers (its first round done); its
    token is the one in the address it printed (unless ``token`` is given)."""
    port = free_port(bind)
    argv = [sys.executable, "-m", "grid_ops", "serve", "-c", str(config)]
    argv += ["--bind", bind, "--port", str(port), *extra]
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            argv, stdout=sink, stderr=subprocess.STDOUT, env=env, cwd=REPO,
            preexec_fn=ctrl_c_reaches_it,
        )  # fmt: skip
    host = f"[{bind}]" if ":" in bind else bind
    server = Server(f"http://{host}:{port}", proc, log, token)
    deadline = time.monotonic() + ready_within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"grid-ops serve exited {proc.returncode}: {log.read_text()}")
        try:
            if server.get("/api/server", timeout=5).status in (200, 401):
                server.token = token or printed_token(log.read_text(errors="replace"))
                return server
        except OSError:
            pass
        time.sleep(0.5)
    server.stop()
    raise AssertionError(f"grid-ops serve did not answer in {ready_within:g} s: {log.read_text()}")


# Run as another local user: try to read the token file, then make each request.
_OTHER_USER_CLIENT = """
import json, sys, urllib.error, urllib.request
path, url, calls = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
try:
    open(path).read()
    found = "read"
except OSError as exc:
    found = type(exc).__name__
statuses = []
for method, where, body in calls:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url + where, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    try:
        statuses.append(urllib.request.urlopen(req, timeout=30).status)
    except urllib.error.HTTPError as exc:
        statuses.append(exc.code)
print(json.dumps({"token_file": found, "statuses": statuses}))
"""


def as_other_user(
    token_file: Path, url: str, calls: list[tuple[str, str, Any]], user: str = "nobody"
) -> dict[str, Any]:
    """What ``user`` (another local user, through runuser and the system's python3)
    gets when it reads ``token_file`` and makes ``calls`` (method, path, JSON body or
    None) to ``url``: {"token_file": "read" or the error's name, "statuses": [...]}.
    Skips the test without root."""
    import pytest

    python = "/usr/bin/python3"
    if os.geteuid() != 0 or not shutil.which("runuser") or not os.access(python, os.X_OK):
        pytest.skip(f"needs root (runuser) and {python} to act as the user {user}")
    argv = ["runuser", "-u", user, "--", python, "-c", _OTHER_USER_CLIENT]
    argv += [str(token_file), url, json.dumps(calls)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    seen: dict[str, Any] = json.loads(proc.stdout)
    return seen


def printed_token(output: str) -> str | None:
    """The token in the address `grid-ops serve` printed (None when it printed none)."""
    found = TOKEN_URL.search(output)
    return found[1] if found else None


@dataclass
class LoadResult:
    requests: int
    failures: list[str]
    latencies: list[float]

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "failures": len(self.failures),
            "p50_ms": round(self.percentile(50) * 1000, 1),
            "p95_ms": round(self.percentile(95) * 1000, 1),
            "max_ms": round(max(self.latencies, default=float("nan")) * 1000, 1),
        }


def load(
    base: str,
    paths: list[str],
    clients: int,
    seconds: float,
    pause: float = 0.0,
    token: str | None = None,
) -> LoadResult:
    """``clients`` threads, each requesting ``paths`` in turn for ``seconds``, waiting
    ``pause`` seconds after each answer (0: back to back): every request's latency,
    and what failed (not a 200)."""
    import threading

    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client(index: int) -> None:
        turn = index
        while time.monotonic() < stop:
            path = paths[turn % len(paths)]
            turn += 1
            started = time.perf_counter()
            try:
                status = request(base + path, token=token, timeout=60).status
                problem = None if status == 200 else f"{path}: {status}"
            except OSError as exc:
                problem = f"{path}: {exc}"
            took = time.perf_counter() - started
            with lock:
                latencies.append(took)
                if problem:
                    failures.append(problem)
            if pause:
                time.sleep(pause)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return LoadResult(len(latencies), failures, latencies)


def chromium() -> tuple[str, str]:
    """Debian's chromium and chromedriver; installed here when missing (root)."""
    import pytest

    wanted = ("chromium", "chromedriver")
    if not all(shutil.which(w) for w in wanted) and os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, check=False)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium",
             "chromium-driver"],
            env=env, capture_output=True, check=False,
        )  # fmt: skip
    browser, driver = (shutil.which(w) for w in wanted)
    if browser is None or driver is None:
        pytest.fail(
            "chromium and chromedriver are missing: install Debian's 'chromium' and "
            "'chromium-driver' packages",
            pytrace=False,
        )
    return browser, driver


def browser(width: int = 1440, height: int = 900) -> Any:
    """A headless Chromium driven by selenium (quit() it when done)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver = chromium()
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                f"--window-size={width},{height}", "--disable-gpu"):  # fmt: skip
        options.add_argument(arg)
    options.binary_location = binary
    # Chromium leaves its singleton socket dir in $TMPDIR when chromedriver ends it: give
    # it a private one, and the profile beside it, both gone at quit().
    scratch = tempfile.mkdtemp(prefix="grid-ops-chromium-")
    options.add_argument(f"--user-data-dir={scratch}/profile")
    try:
        return _chrome_class()(
            scratch, Service(driver, env=dict(os.environ, TMPDIR=scratch)), options
        )
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise


def _chrome_class() -> Any:
    from selenium import webdriver

    class Chrome(webdriver.Chrome):
        """selenium's Chrome that removes its private scratch dir at quit()."""

        def __init__(self, scratch: str, service: Any, options: Any) -> None:
            self.scratch = scratch
            super().__init__(service=service, options=options)

        def quit(self) -> None:
            try:
                super().quit()
            finally:
                shutil.rmtree(self.scratch, ignore_errors=True)

    return Chrome


def watch_csp(driver: Any) -> None:
    """From the next page on, every Content-Security-Policy violation goes into the
    page's window.cspViolations (a listener installed before the page's own scripts)."""
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": WATCH_CSP})


def text_of(driver: Any, selector: str) -> str:
    """The rendered text of the first element matching ``selector`` ('' when none):
    read in the page, so a redraw between finding and reading cannot go stale."""
    text: str = driver.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.innerText : '';",
        selector,
    )
    return text
