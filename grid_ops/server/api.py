"""The REST API and the dashboard page (FastAPI).

Reads answer from the refresher's last round; writes (launch, cancel, boosts) call the
cluster as the CLI does and then start a round. Every document is built by
grid_ops.answers, as the CLI's --json is. Errors are JSON ``{"error", "hint"}`` with
the CLI's paragraph: 400 a value grid-ops refuses (or a Host it does not answer to),
401 no token, 403 a write from another origin, 404 unknown node/job/boost, 409 a live
job of that name, 413 a body over 1 MiB, 415 a body not JSON, 422 a body or query the
schema refuses, 503 the cluster or its controller down. grid_ops.server.guard checks
every request first (Host, Origin, token, body) and adds the security headers.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from importlib import resources
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import AfterValidator, BaseModel, Field, field_validator
from starlette.exceptions import HTTPException

from grid_ops import answers, repair
from grid_ops.errors import (
    Conflict,
    Forbidden,
    GridOpsError,
    NotFound,
    Unavailable,
    UsageError,
    bug_report,
)
from grid_ops.server.guard import Guard

if TYPE_CHECKING:
    from collections.abc import Callable

    from starlette.types import ASGIApp

    from grid_ops.model import ClusterModel
    from grid_ops.server.guard import Hosts
    from grid_ops.server.refresher import Refresher

LOG_LINES = 8  # of each job shown on the page
REPAIRS_SHOWN = 10  # the latest repairs the page lists
REFRESH_WAIT = 120.0  # seconds ?refresh=1 waits for its round
# The page's files (served without the token: they hold no data): path -> file, type.
PAGE = {
    "/": ("index.html", "text/html"),
    "/static/app.js": ("app.js", "text/javascript"),
    "/static/style.css": ("style.css", "text/css"),
}

# What the schema takes (422 beyond): a job's command is at most COMMAND_ARGS arguments
# and COMMAND_CHARS characters in all (it travels, shell-quoted twice, as one argument
# of ssh: Linux takes 128 KiB there); names are one line; no text holds control
# characters (NUL, escapes) but tab and line breaks in commands and values.
NAME_CHARS = 128
COMMAND_ARGS = 256
COMMAND_CHARS = 4096
ENV_VARIABLES = 256
ENV_VALUE_CHARS = 32768
WORD_CHARS = 64
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
CONTROL_BUT_LINES = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def one_line(text: str) -> str:
    if CONTROL.search(text):
        raise ValueError("must not hold control characters (NUL, escapes, line breaks)")
    return text


def printable(text: str) -> str:
    if CONTROL_BUT_LINES.search(text):
        raise ValueError("must not hold control characters (NUL, escapes)")
    return text


Name = Annotated[str, Field(max_length=NAME_CHARS), AfterValidator(one_line)]
Word = Annotated[str, Field(max_length=WORD_CHARS), AfterValidator(one_line)]
Argument = Annotated[str, Field(max_length=COMMAND_CHARS), AfterValidator(printable)]
EnvValue = Annotated[str, Field(max_length=ENV_VALUE_CHARS), AfterValidator(printable)]
Number = Annotated[float, Field(allow_inf_nan=False)]


class JobRequest(BaseModel):
    """POST /api/jobs: what 'grid-ops job launch' takes."""

    name: Name = Field(description="Unique among live jobs.")
    command: list[Argument] = Field(
        min_length=1,
        max_length=COMMAND_ARGS,
        description=f"The job's argv ({COMMAND_CHARS} characters in all at most).",
    )
    nodes: int | None = Field(default=None, ge=1, description="Ranks, one per node.")
    gpus_per_node: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    env: dict[Name, EnvValue] = Field(default_factory=dict, max_length=ENV_VARIABLES)
    cpus_per_node: float = Field(default=1.0, ge=0, le=4096, allow_inf_nan=False)
    priority: Word = Field(
        default="normal", description="The queue's order: low, normal or high (checked there)."
    )
    max_retries: int | None = Field(default=None, ge=0, le=20)
    retry_on_exit: list[Annotated[int, Field(ge=1, le=255)]] = Field(
        default_factory=list, max_length=32
    )
    timeout: float | None = Field(default=None, gt=0, le=30 * 86_400, allow_inf_nan=False)

    @field_validator("command")
    @classmethod
    def _command_size(cls, command: list[str]) -> list[str]:
        if sum(len(argument) for argument in command) > COMMAND_CHARS:
            raise ValueError(f"must be at most {COMMAND_CHARS} characters in all")
        return command


class BoostRequest(BaseModel):
    """POST /api/boosts: what 'grid-ops boost request' takes."""

    node: Name
    resource: Word = Field(description="cpu, gpu or memory.")
    amount: Word | Number = Field(description="2, 0.5; memory as 4GiB (bare number = GiB).")
    priority: Word = "normal"
    ttl: Word | None = Field(default=None, description="90s, 10m, 2h, 1d.")


def status_of(exc: GridOpsError) -> int:
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, Conflict):
        return 409
    if isinstance(exc, Forbidden):
        return 403
    if isinstance(exc, UsageError):
        return 400
    return 503  # Unavailable, or another failure of the cluster to do it


def problem(exc: GridOpsError) -> JSONResponse:
    return JSONResponse({"error": exc.message, "hint": exc.hint}, status_code=status_of(exc))


def page_files() -> dict[str, tuple[bytes, str]]:
    """The dashboard's files by path: their bytes and media type (no inline script or
    style: the Content-Security-Policy forbids them)."""
    folder = resources.files("grid_ops.server") / "page"
    return {path: ((folder / name).read_bytes(), kind) for path, (name, kind) in PAGE.items()}


def create(
    cluster: ClusterModel,
    refresher: Refresher,
    token: Callable[[], str | None],
    hosts: Hosts,
    bind: str = "127.0.0.1",
    users: Callable[[str], bool] | None = None,
) -> ASGIApp:
    """The app for one cluster, behind its guard. ``token`` gives the bearer token as it
    is now (grid_ops.server.token.Watch); ``hosts``, the names it answers to; ``users``,
    whether a bearer token is a user's (grid_ops.server.usertokens)."""
    app = FastAPI(
        title=f"grid-ops: {cluster.name}",
        description="The REST API of grid-ops serve: the same documents as the CLI's --json.",
        version="1",
        docs_url=None,  # Swagger UI and ReDoc load scripts from a CDN: /openapi.json only
        redoc_url=None,
    )
    handle_errors(app)
    serve_page(app)
    add_routes(app, cluster, refresher, bind)
    return Guard(app, hosts, token, public=PAGE, users=users)


def serve_page(app: FastAPI) -> None:
    for path, (body, kind) in page_files().items():
        app.add_api_route(path, static(body, kind), methods=["GET"], include_in_schema=False)


def static(body: bytes, kind: str) -> Callable[[], Response]:
    def answer() -> Response:
        return Response(body, media_type=kind)

    return answer


def handle_errors(app: FastAPI) -> None:
    """Every error as JSON {"error", "hint"}."""

    @app.exception_handler(GridOpsError)
    async def grid_error(request: Request, exc: GridOpsError) -> JSONResponse:
        return problem(exc)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p)[:40] for p in first.get("loc", ()) if p != "body")
        return JSONResponse(
            {
                "error": f"Bad request: {where or 'the request'}: {first.get('msg', 'not valid')}.",
                "hint": "See the request's schema in /openapi.json.",
            },
            status_code=422,
        )

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail), "hint": None}, status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> JSONResponse:
        message, hint = bug_report(exc)
        return JSONResponse({"error": message, "hint": hint}, status_code=500)


def add_routes(app: FastAPI, resolved: ClusterModel, refresher: Refresher, bind: str) -> None:
    """The API's endpoints, answering from ``refresher``."""
    from grid_ops.actions import jobs
    from grid_ops.drivers import control

    started = time.time()

    def section(name: str) -> Any:
        """The refresher's latest data of a section; its error when its last try failed."""
        found = refresher.section(name)
        if found.error is not None:
            raise found.error
        if found.data is None:
            raise Unavailable(
                f"grid-ops serve has no {name} data yet (its first round has not ended).",
                "Retry in a few seconds.",
            )
        return found.data

    def job_record(name: str) -> dict[str, Any]:
        """The job of that id, or the newest of that name: from the refresher's last round
        (requests never fan out SSH themselves), else from the head's queue (a job
        launched since that round, or NotFound)."""
        jobs.check_key(name)
        for record in reversed(refresher.section("jobs").data or []):
            if name in (record.get("id"), record["name"]):
                return dict(record)
        return jobs.load(resolved, name)

    # -- the page's document and the server itself ------------------------------------

    @app.get("/api/state", tags=["dashboard"])
    def state() -> dict[str, Any]:
        """Everything the page shows, from the last round; a section that failed is
        null with its error under "errors"."""
        data: dict[str, Any] = {
            "cluster_name": resolved.name,
            "head": resolved.head,
            "node_names": resolved.names,
            "interval": refresher.interval,
            "rounds": refresher.rounds,
            "now": time.time(),
            "errors": {},
        }
        for name in ("health", "cluster", "controller", "jobs"):
            found = refresher.section(name)
            data[name] = found.data
            data[f"{name}_at"] = found.at
            if found.error is not None:
                data["errors"][name] = {"error": found.error.message, "hint": found.error.hint}
        data["jobs"] = [job_view(r) for r in data["jobs"] or []]
        data["repairs"] = repair.recent(resolved.id, REPAIRS_SHOWN)  # the watch's repairs
        return data

    def job_view(record: dict[str, Any]) -> dict[str, Any]:
        view = answers.job(record)
        logs = refresher.job_logs(record["id"])
        view["log_tail"] = logs.text.splitlines()[-LOG_LINES:] if logs else []
        return view

    @app.get("/api/server", tags=["dashboard"])
    def server() -> dict[str, Any]:
        """The server's own numbers: refresh rounds, nodes probed (all SSH probes this
        process made), the interval, since when it runs."""
        from grid_ops.drivers import probe

        return {
            "cluster_name": resolved.name,
            "bind": bind,
            "interval": refresher.interval,
            "cluster_interval": refresher.cluster_interval,
            "rounds": refresher.rounds,
            "probe_rounds": probe.counts["rounds"],
            "nodes_probed": probe.counts["nodes"],
            "started_at": started,
        }

    # -- cluster and nodes -------------------------------------------------------------

    @app.get("/api/cluster", tags=["cluster"])
    def cluster() -> dict[str, Any]:
        """Ray on every node, as 'grid-ops cluster status --json' (refreshed every
        cluster_interval seconds)."""
        data: dict[str, Any] = section("cluster")
        return data

    @app.get("/api/health", tags=["cluster"])
    async def health(refresh: bool = False) -> dict[str, Any]:
        """Every node's health, ranked, as 'grid-ops health --json': from the last
        round ("cached": true), or ?refresh=1 waits for a new one (requests asking at
        once share it; waiting holds no thread)."""
        if refresh and not await refresher.refreshed(REFRESH_WAIT):
            raise Unavailable(f"No health round ended in {REFRESH_WAIT:g} s.", "Retry.")
        data: dict[str, Any] = section("health")
        return {**data, "cached": not refresh}  # from the last round unless asked anew

    @app.get("/api/nodes/{name}", tags=["cluster"])
    def node(name: str) -> dict[str, Any]:
        """One node: its health record and its row of the Ray view."""
        resolved.node(name)
        found = refresher.section("health").data or {"nodes": []}
        return answers.node(name, refresher.section("cluster").data, found["nodes"])

    # -- jobs ----------------------------------------------------------------------------

    @app.get("/api/jobs", tags=["jobs"])
    def job_list() -> list[dict[str, Any]]:
        """Every job in the head's queue, as 'job list --json' (from the last round)."""
        return [answers.job(r) for r in section("jobs")]

    @app.post("/api/jobs", status_code=201, tags=["jobs"])
    def job_launch(request: JobRequest) -> dict[str, Any]:
        """Launch a job, as 'grid-ops job launch' (409 while a job of that name lives)."""
        spec = jobs.job_spec(
            resolved,
            request.name,
            request.command,
            gpus=request.gpus_per_node,
            nodes=request.nodes,
            cpus=request.cpus_per_node,
            priority=request.priority,
            max_retries=request.max_retries,
            retry_on_exit=tuple(request.retry_on_exit),
            timeout=request.timeout,
        )
        record = jobs.launch(resolved, spec, request.env)
        refresher.note_job(record)  # asked for at once: answered without SSH
        refresher.kick()
        return answers.job(record)

    @app.get("/api/jobs/{name}", tags=["jobs"])
    def job(name: str) -> dict[str, Any]:
        """One job, as 'job status NAME --json'."""
        return answers.job(job_record(name))

    @app.get("/api/jobs/{name}/logs", tags=["jobs"], response_class=StreamingResponse)
    async def job_logs(name: str, follow: bool = True) -> StreamingResponse:
        """The job's output as text, streamed (chunked) until the job ends; follow=0
        answers what there is now."""
        record = await asyncio.to_thread(job_record, name)
        if refresher.job_logs(record["id"]) is None:
            await asyncio.to_thread(refresher.read_logs, record)
        return StreamingResponse(
            _stream(record["id"], follow), media_type="text/plain; charset=utf-8"
        )

    async def _stream(job_id: str, follow: bool) -> AsyncIterator[str]:
        shown = 0
        while True:
            logs = refresher.job_logs(job_id)
            text = logs.text if logs else ""
            if len(text) > shown:
                yield text[shown:]
                shown = len(text)
            if not follow or (logs is not None and logs.final):
                return
            await asyncio.sleep(0.5)

    @app.post("/api/jobs/{name}/cancel", tags=["jobs"])
    def job_cancel(name: str) -> dict[str, Any]:
        """Stop a job (it ends STOPPED), as 'grid-ops job cancel'."""
        stopped = jobs.cancel(resolved, job_record(name)["id"])
        refresher.kick()
        return stopped

    @app.get("/api/jobs/{name}/results", tags=["jobs"])
    def job_results(name: str) -> dict[str, Any]:
        """The metrics the job reported, as 'job results NAME --json' (from the logs the
        refresher read once the job ended, else from the head)."""
        record = job_record(name)
        logs = refresher.job_logs(record["id"])
        data, _ = jobs.outcome(resolved, name, logs.text if logs and logs.final else None)
        return data

    # -- the controller: boosts, memory pool, offload --------------------------------------

    @app.get("/api/boosts", tags=["controller"])
    def boost_list() -> list[dict[str, Any]]:
        """The live boosts, as 'boost status --json'."""
        rows = section("controller")["reservations"]
        return [answers.reservation(r) for r in rows if r.get("kind", "boost") == "boost"]

    @app.post("/api/boosts", status_code=201, tags=["controller"])
    def boost_request(request: BoostRequest) -> dict[str, Any]:
        """Reserve resources on a node, as 'grid-ops boost request'."""
        amount = request.amount if isinstance(request.amount, str) else f"{request.amount:g}"
        row = control.reserve(
            resolved,
            "boost",
            request.resource,
            amount,
            node=request.node,
            priority=request.priority,
            ttl=request.ttl,
        )
        refresher.kick()
        return answers.reservation(row)

    @app.delete("/api/boosts/{rid}", tags=["controller"])
    def boost_release(rid: str) -> dict[str, Any]:
        """Release a boost, as 'grid-ops boost release'."""
        row = control.release(resolved, rid, "boost")
        refresher.kick()
        return answers.reservation(row)

    @app.get("/api/memory", tags=["controller"])
    def memory() -> list[dict[str, Any]]:
        """The memory pool's objects, as 'memory list-objects --json'."""
        return answers.pool_objects(section("controller").get("memory", []))

    @app.get("/api/offload", tags=["controller"])
    def offload() -> dict[str, Any]:
        """The auto-offload policy, the head's pressure and the latest decisions, as
        'offload auto --status --json'."""
        data: dict[str, Any] = section("controller")["offload"]
        return data

    @app.get("/metrics", tags=["metrics"], response_class=Response)
    def metrics() -> Response:
        """The Prometheus text of 'grid-ops metrics', from the last round."""
        from grid_ops import metrics as m

        nodes = (refresher.section("health").data or {"nodes": []})["nodes"]
        numbers = refresher.section("controller")
        counted = None if numbers.error or not numbers.data else numbers.data.get("metrics")
        text = m.exposition(resolved.id, nodes, counted)
        return Response(text, media_type="text/plain; version=0.0.4")
