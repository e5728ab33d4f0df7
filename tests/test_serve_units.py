"""grid-ops serve without the lab: the token file, the names and origins the server
answers to, and a real server (uvicorn, in its own process) for a cluster that cannot
be reached: its one node accepts connections and never answers, so every probe waits
its connect timeout. The errors it answers with, and the attacks it refuses: a request
without the token, a rebinding Host, a cross-site form, another local user, a rotated
token, hostile bodies, and 50 clients waiting for a refresh while others read."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import tempfile
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from grid_ops import model
from grid_ops.errors import UsageError
from grid_ops.server import api, guard
from grid_ops.server import token as tokens
from tests import serving
from tests.conftest import grid_ops

HANG_S = 3  # the cluster's ssh.connect_timeout: what one probe of the silent node costs
ALLOWED = "grid.example"  # the module's server takes it as --allow-host
EVIL = "http://evil.example"


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GRID_OPS_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


# -- the token file ------------------------------------------------------------------------


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


def test_a_watched_token_follows_its_file(state: Path) -> None:
    watch = tokens.Watch("c1")
    assert watch.current() is None  # none made yet: every request is refused
    first = tokens.ensure("c1")
    assert watch.current() == first
    second = tokens.ensure("c1", rotate=True)
    assert watch.current() == second
    os.chmod(tokens.token_file("c1"), 0o644)
    assert watch.current() is None  # readable by others: no longer a secret
    os.chmod(tokens.token_file("c1"), 0o600)
    assert watch.current() == second
    tokens.token_file("c1").unlink()
    assert watch.current() is None


def test_the_authorization_header_must_carry_the_token() -> None:
    assert tokens.matches("Bearer s3cret", "s3cret")
    assert tokens.matches("bearer s3cret", "s3cret")
    for header in (None, "", "Bearer", "Bearer s3cre", "Basic s3cret", "s3cret", "Bearer s3cretX"):
        assert not tokens.matches(header, "s3cret"), header
    assert not tokens.matches("Bearer s3cret", None)  # no token: nothing matches


def _asgi(app: Any, method: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, Any]:
    """One request straight into an ASGI app: its status and JSON body."""
    import asyncio

    headers = {"host": "127.0.0.1:8470", "content-length": str(len(body)), **headers}
    scope = {
        "type": "http", "method": method, "path": "/api/x", "raw_path": b"/api/x",
        "query_string": b"", "root_path": "", "scheme": "http", "http_version": "1.1",
        "server": ("127.0.0.1", 8470), "client": ("127.0.0.1", 5000),
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }  # fmt: skip
    sent: list[dict[str, Any]] = []
    given = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return given.pop(0) if given else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    data = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, json.loads(data)


def test_a_users_own_token_passes_and_the_requests_calls_carry_it() -> None:
    """The guard's side of users' tokens at the API (the head's answer stands in; the lab
    test in tests/test_gpu_lab.py sends real users' tokens through a real server)."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from grid_ops.drivers import control

    asked: list[str] = []

    def known(token: str) -> bool:
        asked.append(token)
        return token == "bob-token"

    def carried(request: Any) -> JSONResponse:
        return JSONResponse({"asker": control._ASKER.get()})

    inner = Starlette(routes=[Route("/api/x", carried, methods=["GET", "POST"])])
    hosts = guard.Hosts.of("127.0.0.1", 8470)
    app = guard.Guard(inner, hosts, lambda: "serve-token", public=(), users=known)
    assert _asgi(app, "GET", {"Authorization": "Bearer bob-token"}) == (
        200,
        {"asker": "bob-token"},
    )
    # the server's own token: the calls carry this machine's token
    assert _asgi(app, "GET", {"Authorization": "Bearer serve-token"}) == (200, {"asker": None})
    assert asked == ["bob-token"]  # the serve token never goes to the head
    for header in ("Bearer cy-guess", "Basic bob-token", ""):
        status, body = _asgi(app, "GET", {"Authorization": header})
        assert status == 401, header
        assert "a user's own token works too" in body["hint"]
    # the other walls still stand for a user's token: a foreign origin, a non-JSON body
    bob = {"Authorization": "Bearer bob-token"}
    assert _asgi(app, "POST", {**bob, "Origin": "http://evil.example"})[0] == 403
    assert _asgi(app, "POST", {**bob, "Content-Type": "text/plain"}, b"x")[0] == 415
    assert control._ASKER.get() is None  # nothing leaks out of a request


# -- the names and origins it answers to --------------------------------------------------


def test_the_hosts_and_origins_the_server_answers_to() -> None:
    hosts = guard.Hosts.of("127.0.0.1", 8470, ["Grid.Example", "fe80::1"])
    for host in (
        "127.0.0.1:8470",
        "localhost:8470",
        "LOCALHOST:8470",
        "[::1]:8470",
        "grid.example",
        "grid.example:443",
        "[fe80::1]:9",
    ):
        assert hosts.accepts(host), host
    for host in (
        "evil.example:8470",
        "127.0.0.1:8471",
        "127.0.0.1",
        "localhost.:8470",
        "127.0.0.2:8470",
        "evil.example",
        "127.0.0.1:8470@evil.example",
        "",
        "grid.example.evil.example",
        "[::1]:8471",
    ):
        assert not hosts.accepts(host), host
    for origin in ("http://127.0.0.1:8470", "http://localhost:8470", "https://grid.example"):
        assert hosts.same_origin(origin), origin
    for origin in (
        "null",
        EVIL,
        "http://127.0.0.1:8471",
        "http://127.0.0.1",
        "127.0.0.1:8470",
        "file://",
        "ftp://localhost:8470",
        "http://localhost:8470.evil.example",
    ):
        assert not hosts.same_origin(origin), origin
    assert guard.Hosts.of("0.0.0.0", 8470).reach() == "127.0.0.1"
    assert guard.Hosts.of("::1", 8470).reach() == "[::1]"
    assert guard.Hosts.of("10.0.0.5", 8470).accepts("10.0.0.5:8470")
    for bad in ("evil:80", "http://evil", "a/b", "two words"):
        with pytest.raises(UsageError, match="not a host name"):
            guard.host_name(bad)


def test_the_largest_command_the_api_takes_fits_one_ssh_argument() -> None:
    """A command at the schema's limits, of the characters quoting grows most, still
    fits the single ssh argument it travels in (Linux: 128 KiB), so the API never
    answers such a job with a 500 (E2BIG)."""
    from grid_ops.actions import jobs
    from grid_ops.drivers import control, remote
    from grid_ops.model.config import parse

    cfg = parse({"name": "big", "nodes": [{"name": "n1", "host": "10.0.0.1", "user": "u"}]})
    chars, args = api.COMMAND_CHARS, api.COMMAND_ARGS
    shapes = {
        "one argument of quotes": ["'" * chars],
        "every argument one quote": ["'" * (chars - args + 1)] + ["'"] * (args - 1),
        "empty arguments": ["'" * chars] + [""] * (args - 1),
        "astral characters": ["\U0001f600" * chars],
    }
    for shape, command in shapes.items():
        request = api.JobRequest(name="a" * 63, command=command, env={"A": "1"})
        cluster = model.of(cfg)
        spec = jobs.job_spec(cluster, request.name, request.command, gpus=1.5, nodes=1)
        line = control.command_line("job-submit", {"job": spec}, with_payload=True)
        longest = max(len(a.encode()) for a in remote.argv(cluster, cluster.head, line))
        assert longest < 128 * 1024, (shape, longest)
    with pytest.raises(ValueError, match="characters in all"):
        api.JobRequest(name="a", command=["x" * chars, "y"])


# -- a real server -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_state() -> Iterator[Path]:
    """A state dir other users may walk into (0711 down to it, 0755 itself), so what
    keeps them from the token is grid-ops' own 0700 dir and 0600 file."""
    root = Path(tempfile.mkdtemp(prefix="grid-ops-serve-"))
    root.chmod(0o711)
    state = root / "state"
    state.mkdir()
    state.chmod(0o755)
    try:
        yield state
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never says a word (an SSH node that hangs)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1024)
        yield sock.getsockname()[1]


@pytest.fixture(scope="module")
def down_config(tmp_path_factory: pytest.TempPathFactory, silent_port: int) -> Path:
    path = tmp_path_factory.mktemp("down") / "gone.yaml"
    node = {"name": "gone1", "host": "127.0.0.1", "port": silent_port, "user": "nobody"}
    data = {"name": "gone", "nodes": [node], "ssh": {"connect_timeout": HANG_S}}
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def down_env(shared_state: Path) -> dict[str, str]:
    return dict(os.environ, GRID_OPS_STATE_DIR=str(shared_state))


@pytest.fixture(scope="module")
def down_server(
    down_config: Path, down_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[serving.Server]:
    log = tmp_path_factory.mktemp("down-log") / "serve.log"
    args = ("--interval", "2", "--allow-host", ALLOWED)
    server = serving.start(down_config, down_env, log, *args)
    try:
        yield server
    finally:
        output = server.stop()
        assert "Traceback" not in output, output[-3000:]


def _port(server: serving.Server) -> int:
    return int(server.url.rsplit(":", 1)[1])


def _quick(
    server: serving.Server,
    method: str,
    path: str,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    body: Any = None,
    data: bytes | Iterable[bytes] | None = None,
) -> serving.Answer:
    """A request answered before anything reaches the cluster (which costs HANG_S)."""
    started = time.monotonic()
    answer = serving.request(
        server.url + path, method, body, token, timeout=30, headers=headers, data=data
    )
    assert time.monotonic() - started < HANG_S - 0.5, (method, path, answer.status)
    return answer


def _token(server: serving.Server) -> str:
    assert server.token, "grid-ops serve printed no token"
    return server.token


def _no_jobs(server: serving.Server) -> bool:
    """The job list lives in the head's queue, which this server cannot reach: it says so
    (a request that reached the queue would have waited HANG_S on the head first)."""
    answer = server.get("/api/jobs")
    assert answer.status == 503, answer.body
    return "Cannot reach the head (gone1)" in answer.json()["error"]


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
    assert _no_jobs(down_server)  # nothing half-written
    bad = down_server.post("/api/jobs", {"name": "j1"})
    assert bad.status == 422 and "command" in bad.json()["error"]
    assert "/openapi.json" in bad.json()["hint"]
    refused = down_server.post("/api/jobs", {"name": "no/slash", "command": ["x"]})
    assert refused.status == 400  # grid-ops' own check, not the schema's
    urgent = down_server.post("/api/jobs", {"name": "j1", "command": ["x"], "priority": "urgent"})
    assert urgent.status == 400 and "low, normal, high" in urgent.json()["error"]
    assert down_server.get("/api/health?refresh=maybe").status == 422
    assert down_server.get("/api/nodes/nope").status == 404
    assert "gone1" in down_server.get("/api/nodes/nope").json()["hint"]
    assert down_server.get("/api/jobs/nope").status == 503  # the queue is on the head
    assert down_server.delete("/api/boosts/b-1").status == 503
    missing = down_server.get("/api/no-such-thing")
    assert missing.status == 404 and missing.json()["error"]
    page = down_server.get("/")
    assert page.status == 200 and b"<title>grid-ops</title>" in page.body
    assert b'src="/static/app.js"' in page.body and b"<style" not in page.body
    metrics = down_server.get("/metrics").body.decode()
    assert 'grid_node_up{node="gone1"} 0.0' in metrics and "grid_controller_up 0.0" in metrics
    assert down_server.get("/openapi.json").json()["paths"]["/api/jobs/{name}/logs"]
    for path in ("/docs", "/redoc"):  # Swagger UI and ReDoc would load scripts from a CDN
        assert down_server.get(path).status == 404, path


def test_serve_prints_its_address_with_the_token_once(
    down_server: serving.Server, down_config: Path, down_env: dict[str, str]
) -> None:
    output = down_server.log.read_text()
    token = down_server.token
    assert token and output.count(token) == 1  # only in the address for the operator
    [line] = [x for x in output.splitlines() if token in x]
    assert line == f"{down_server.url}/#token={token}"
    made = grid_ops("serve", "token", "-c", str(down_config), env=down_env)
    assert made.returncode == 0 and made.stdout.strip() == token
    [file] = (Path(down_env["GRID_OPS_STATE_DIR"]) / "serve").iterdir()
    assert stat.S_IMODE(file.stat().st_mode) == 0o600


def test_without_the_token_only_the_page_files_answer(down_server: serving.Server) -> None:
    for path in ("/", "/static/app.js", "/static/style.css"):
        answer = _quick(down_server, "GET", path)
        assert answer.status == 200, path
    assert (
        _quick(down_server, "GET", "/static/app.js")
        .headers["content-type"]
        .startswith("text/javascript")
    )
    for path in (
        "/api/state",
        "/api/health",
        "/api/jobs",
        "/api/server",
        "/metrics",
        "/openapi.json",
        "/api/no-such-thing",
        "/static/nothing.js",
    ):
        for token in (None, _token(down_server) + "x", ""):
            answer = _quick(down_server, "GET", path, token=token)
            assert answer.status == 401, (path, token)
            assert answer.headers.get("www-authenticate") == "Bearer"
    answer = _quick(down_server, "POST", "/api/jobs", body={"name": "j2", "command": ["id"]})
    assert answer.status == 401 and "grid-ops serve token" in answer.json()["hint"]
    assert _no_jobs(down_server)


def test_a_rebinding_host_is_refused_and_nothing_launches(down_server: serving.Server) -> None:
    port = _port(down_server)
    job = {"name": "rebound", "command": ["sh", "-c", "id > /tmp/pwned"]}
    for host in (
        f"evil.example:{port}",
        "evil.example",
        f"127.0.0.1:{port + 1}",
        f"localhost.:{port}",
        f"{ALLOWED}.evil.example:{port}",
    ):
        answer = _quick(
            down_server,
            "POST",
            "/api/jobs",
            body=job,
            token=down_server.token,
            headers={"Host": host},
        )
        assert answer.status == 400, (host, answer.body)
        assert "DNS rebinding" in answer.json()["error"] and "--allow-host" in answer.json()["hint"]
        read = _quick(
            down_server, "GET", "/api/state", token=down_server.token, headers={"Host": host}
        )
        assert read.status == 400, host
    assert _no_jobs(down_server)
    for host in (
        f"localhost:{port}",
        f"127.0.0.1:{port}",
        f"[::1]:{port}",
        ALLOWED,
        f"{ALLOWED}:443",
    ):
        answer = _quick(
            down_server, "GET", "/api/server", token=down_server.token, headers={"Host": host}
        )
        assert answer.status == 200, host


def test_a_cross_site_form_post_is_refused(down_server: serving.Server) -> None:
    """What a page of another site can send: a form (text/plain or urlencoded, no
    custom header) with its Origin. Were it let through, cancel and launch would answer
    503 after HANG_S (the head, which holds the queue, does not answer)."""
    form = {
        "text/plain": b'{"name": "x", "command": ["id"]}',
        "application/x-www-form-urlencoded": b"name=x",
    }
    for kind, data in form.items():
        for origin in (EVIL, "null"):
            for token in (None, down_server.token):
                headers = {"Content-Type": kind, "Origin": origin}
                for path in ("/api/jobs/victim/cancel", "/api/jobs"):
                    answer = _quick(
                        down_server, "POST", path, data=data, headers=headers, token=token
                    )
                    assert answer.status == 403, (kind, origin, path, answer.body)
                    assert "another origin" in answer.json()["error"]
        # Without an Origin (not a browser), a body that is not JSON is refused all the same.
        answer = _quick(
            down_server,
            "POST",
            "/api/jobs",
            data=data,
            headers={"Content-Type": kind},
            token=down_server.token,
        )
        assert answer.status == 415, (kind, answer.body)
    assert _no_jobs(down_server)
    own = f"http://127.0.0.1:{_port(down_server)}"
    same = serving.request(
        down_server.url + "/api/jobs/victim/cancel", "POST", {}, down_server.token,
        timeout=60, headers={"Origin": own},
    )  # fmt: skip
    assert same.status == 503  # the page's own origin reaches the API, and the head's queue
    assert "gone1" in same.json()["error"]


def test_every_answer_carries_the_security_headers(down_server: serving.Server) -> None:
    token = down_server.token
    answers = {
        "page": _quick(down_server, "GET", "/"),
        "script": _quick(down_server, "GET", "/static/app.js"),
        "401": _quick(down_server, "GET", "/api/state"),
        "400 host": _quick(down_server, "GET", "/", headers={"Host": "evil.example"}),
        "403 origin": _quick(
            down_server, "DELETE", "/api/boosts/b-1", token=token, headers={"Origin": EVIL}
        ),
        "404": _quick(down_server, "GET", "/nothing", token=token),
        "415": _quick(down_server, "POST", "/api/jobs", data=b"x", token=token),
        "422": _quick(down_server, "POST", "/api/jobs", body={}, token=token),
        "200 api": _quick(down_server, "GET", "/api/state", token=token),
    }
    csp = (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    for what, answer in answers.items():
        headers = answer.headers
        assert headers.get("content-security-policy") == csp, what
        assert "unsafe-inline" not in csp
        assert headers.get("x-frame-options") == "DENY", what
        assert headers.get("x-content-type-options") == "nosniff", what
        assert headers.get("referrer-policy") == "no-referrer", what
        assert headers.get("cache-control") == "no-store", what


def test_hostile_bodies_get_422_or_413_never_a_500(down_server: serving.Server) -> None:
    """Each answered at once: none reaches jobs.launch (which would wait HANG_S)."""
    job = {"name": "j", "command": ["true"]}
    hostile = {
        "Infinity GPUs": {**job, "gpus_per_node": float("inf")},
        "NaN GPUs": {**job, "gpus_per_node": float("nan")},
        "-Infinity nodes": {**job, "nodes": float("-inf")},
        "NUL in the name": {**job, "name": "j\0"},
        "escape in the name": {**job, "name": "j\x1b[2J"},
        "NUL in the command": {**job, "command": ["sh", "-c", "true\0; id"]},
        "NUL in an env name": {**job, "env": {"A\0": "1"}},
        "escape in an env value": {**job, "env": {"A": "\x1b]0;pwned\x07"}},
        "a megabyte command": {**job, "command": ["x" * 1_000_000]},
        "a command just over its size": {**job, "command": ["x" * 4000, "y" * 97]},
        "too many arguments": {**job, "command": ["x"] * 300},
        "a huge env": {**job, "env": {f"V{i}": "1" for i in range(5000)}},
        "a long name": {**job, "name": "j" * 10_000},
        "Infinity boost": {"node": "gone1", "resource": "cpu", "amount": float("inf")},
        "NUL in a boost": {"node": "gone1\0", "resource": "cpu", "amount": 1},
    }
    for what, body in hostile.items():
        path = "/api/boosts" if "boost" in what else "/api/jobs"
        data = json.dumps(body).encode()  # Python writes Infinity and NaN, as JSON allows
        answer = _quick(
            down_server,
            "POST",
            path,
            data=data,
            token=down_server.token,
            headers={"Content-Type": "application/json"},
        )
        assert answer.status == 422, (what, answer.status, answer.body[:300])
        assert answer.json()["error"].startswith("Bad request"), what
        assert len(answer.body) < 2000, what  # the error does not echo the input back
    for chunked in (False, True):
        status, body = _post_over_a_mebibyte(down_server, chunked)
        assert status == 413, body[:300]
        assert b"over 1024 KiB" in body
    assert _no_jobs(down_server)


def _post_over_a_mebibyte(server: serving.Server, chunked: bool) -> tuple[int, bytes]:
    """POST /api/jobs announcing 2 MiB (or sending it chunked), and read the answer after
    sending only a little more than 1 MiB: the server answers without the rest (a client
    that pushed on would find the connection closed)."""
    import http.client

    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.putrequest("POST", "/api/jobs")
        conn.putheader("Authorization", f"Bearer {_token(server)}")
        conn.putheader("Content-Type", "application/json")
        if chunked:
            conn.putheader("Transfer-Encoding", "chunked")
        else:
            conn.putheader("Content-Length", str(2 * 2**20))
        conn.endheaders()
        piece = b"x" * 65536
        for _ in range(17 if chunked else 1):  # 1 MiB and 64 KiB; or 64 KiB
            conn.send(b"10000\r\n" + piece + b"\r\n" if chunked else piece)
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


@pytest.mark.root
def test_another_local_user_cannot_read_the_token_nor_use_the_api(
    down_server: serving.Server, down_env: dict[str, str]
) -> None:
    [token_file] = (Path(down_env["GRID_OPS_STATE_DIR"]) / "serve").iterdir()
    calls = [
        ("POST", "/api/jobs", {"name": "mine", "command": ["id"]}),
        ("GET", "/api/state", None),
        ("GET", "/metrics", None),
    ]
    seen = serving.as_other_user(token_file, down_server.url, calls)
    assert seen == {"token_file": "PermissionError", "statuses": [401, 401, 401]}
    assert _no_jobs(down_server)


def test_fifty_refresh_requests_share_a_round_and_stall_nothing(
    down_server: serving.Server,
) -> None:
    """Each ?refresh=1 waits for a new health round (at least HANG_S here); while 50 of
    them wait, /api/state still answers at once (a waiting request holds no thread)."""
    before = down_server.get("/api/server").json()
    with ThreadPoolExecutor(50) as pool:
        waits = [
            pool.submit(down_server.get, "/api/health?refresh=1", timeout=150) for _ in range(50)
        ]
        time.sleep(1.0)  # all 50 asked
        started = time.monotonic()
        state = down_server.get("/api/state", timeout=60)
        took = time.monotonic() - started
        waiting = sum(not w.done() for w in waits)
        answers = [w.result() for w in waits]
    assert state.status == 200
    assert waiting >= 45, waiting  # they still waited while /api/state answered
    assert took < 2.0, f"/api/state took {took:.1f} s while 50 refresh requests waited"
    assert {a.status for a in answers} == {200}
    assert {a.json()["cached"] for a in answers} == {False}
    after = down_server.get("/api/server").json()
    assert after["probe_rounds"] - before["probe_rounds"] <= 3  # shared, not one each


def test_a_rotated_token_is_refused_by_the_running_server(
    down_server: serving.Server, down_config: Path, down_env: dict[str, str]
) -> None:
    old = down_server.token
    assert _quick(down_server, "GET", "/api/state", token=old).status == 200
    rotated = grid_ops("serve", "token", "--rotate", "-c", str(down_config), env=down_env)
    assert rotated.returncode == 0, rotated.stderr
    new = rotated.stdout.strip()
    assert new and new != old
    down_server.token = new  # what the tests after this one use
    for path in ("/api/state", "/metrics", "/openapi.json"):
        assert _quick(down_server, "GET", path, token=old).status == 401, path
        assert _quick(down_server, "GET", path, token=new).status == 200, path
    answer = _quick(down_server, "POST", "/api/jobs/x/cancel", body={}, token=old)
    assert answer.status == 401


# -- servers that do not start -------------------------------------------------------------


def _unreachable_config(tmp_path: Path) -> Path:
    """A cluster whose only node is a loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    path = tmp_path / "gone.yaml"
    node = {"name": "gone1", "host": "127.0.0.1", "port": port, "user": "nobody"}
    path.write_text(yaml.safe_dump({"name": "gone", "nodes": [node]}))
    return path


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


def test_serve_refuses_an_allow_host_that_is_not_a_name(tmp_path: Path, state: Path) -> None:
    config = _unreachable_config(tmp_path)
    env = dict(os.environ, GRID_OPS_STATE_DIR=str(state))
    proc = grid_ops("serve", "-c", str(config), "--allow-host", "evil.example:80", env=env)
    assert proc.returncode == 2
    assert "--allow-host 'evil.example:80' is not a host name" in proc.stderr
    assert "Traceback" not in proc.stderr
