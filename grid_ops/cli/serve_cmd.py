"""grid-ops serve: the REST API and the live dashboard of one cluster."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from grid_ops.cli.common import ConfigOption, load_cluster
from grid_ops.cli.output import err, out, safe

if TYPE_CHECKING:
    import socket

    from grid_ops.model import ClusterModel

DEFAULT_PORT = 8470

app = typer.Typer(invoke_without_command=True)


@app.callback()
def serve(
    ctx: typer.Context,
    config: ConfigOption = None,
    bind: Annotated[
        str,
        typer.Option(
            "--bind",
            help="Address to listen on. Every request needs the cluster's bearer token, "
            "on loopback too (the address printed at start holds it; 'grid-ops serve "
            "token' prints it).",
        ),
    ] = "127.0.0.1",
    allow_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-host",
            metavar="NAME",
            help="Also answer requests whose Host is NAME (any port): the name a proxy "
            "or a wildcard --bind (0.0.0.0) is reached by. Repeatable. Without it only "
            "the --bind address, localhost, 127.0.0.1 and [::1] with --port are answered.",
        ),
    ] = None,
    port: Annotated[
        int, typer.Option("--port", help="Port to listen on.", min=1, max=65535)
    ] = DEFAULT_PORT,
    interval: Annotated[
        float,
        typer.Option(
            "--interval",
            help="Seconds between refresh rounds (health probe, controller, jobs).",
            min=0.5,
        ),
    ] = 5.0,
    cluster_interval: Annotated[
        float,
        typer.Option(
            "--cluster-interval",
            help="Seconds between refreshes of Ray's view (an Ansible run).",
            min=1,
        ),
    ] = 30.0,
) -> None:
    """The REST API and a live web dashboard at /, until Ctrl-C.

    One background refresher probes the nodes and asks the head every
    --interval seconds (a round is what 'grid-ops health' does, quarantine
    included, plus the controller's boosts, pool and offload, and the jobs);
    requests answer from its last round, so any number of clients cost one
    refresher. Every request but the page's own files needs the cluster's
    bearer token ('Authorization: Bearer TOKEN'), on loopback too: it is made
    if there is none, and the address printed at start carries it in its
    fragment (#token=...: the page keeps it, no server log sees it). The API's
    schema is at /openapi.json. Examples:

      grid-ops serve -c cluster.yaml      # prints http://127.0.0.1:8470/#token=...

      curl -sH "Authorization: Bearer $(grid-ops serve token)" \\
          localhost:8470/api/health
    """
    if ctx.invoked_subcommand is not None:
        return
    import logging

    from grid_ops.server import token as tokens
    from grid_ops.server.guard import Hosts

    cluster, path = load_cluster(config)
    hosts = Hosts.of(bind, port, allow_host or ())
    secret = tokens.ensure(_token_key(cluster))
    listener = _listen(bind, port)
    from grid_ops.cli.progress import console
    from grid_ops.server.refresher import Refresher

    refresher = Refresher(cluster, path, interval, cluster_interval, console())
    err.print(f"[dim]first refresh of {safe(cluster.name)} ...[/]")
    refresher.round()
    for name, found in refresher.sections.items():
        if found.error is not None:
            err.print(f"[yellow]{safe(name)}: {safe(found.error)}[/]")
    refresher.start()
    import uvicorn

    from grid_ops.server import api

    users = None
    if cluster.config.users:
        from grid_ops.server.usertokens import UserTokens

        users = UserTokens(cluster)
    watch = tokens.Watch(_token_key(cluster))
    app_ = api.create(cluster, refresher, watch.current, hosts, bind, users=users)
    base = f"http://{hosts.reach()}:{port}/"
    err.print(
        f"serving {safe(cluster.name)} on {safe(base)} (bearer token required; Ctrl-C "
        "stops); open this address (its #token never reaches the server):",
        soft_wrap=True,
    )
    err.print(f"{base}#token={secret}", markup=False, soft_wrap=True)
    level = logging.getLogger("grid_ops").getEffectiveLevel()
    server = uvicorn.Server(
        uvicorn.Config(
            app_,
            log_level="info" if level <= logging.INFO else "warning",
            access_log=level <= logging.DEBUG,
            timeout_graceful_shutdown=2,
        )
    )
    try:
        server.run(sockets=[listener])
    finally:
        refresher.stop()
        listener.close()


def _listen(bind: str, port: int) -> socket.socket:
    """A listening socket on bind:port; a clear error when that cannot be."""
    import socket

    from grid_ops.errors import UsageError

    try:
        infos = socket.getaddrinfo(bind, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UsageError(f"Cannot resolve --bind {bind}: {exc.strerror}.") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)  # uvicorn's own default backlog
    except OSError as exc:
        sock.close()
        raise UsageError(
            f"Cannot listen on {bind}:{port}: {exc.strerror}.",
            "Pick another --port, or stop what listens there.",
        ) from None
    sock.set_inheritable(True)
    return sock


def _token_key(cluster: ClusterModel) -> str:
    """What the cluster's serve token is kept under: its id (grid_ops.identity)."""
    return cluster.id


@app.command("token")
def token(
    config: ConfigOption = None,
    rotate: Annotated[
        bool, typer.Option("--rotate", help="Replace the token (old clients get 401).")
    ] = False,
) -> None:
    """Print the cluster's serve token, making it first if there is none.

    It is kept 0600 in the state dir. Clients send it as 'Authorization: Bearer TOKEN';
    the dashboard takes it from the address 'grid-ops serve' prints (or asks for it once
    per browser tab). --rotate revokes the old one, in a running server too.
    """
    from grid_ops.server import token as tokens

    cluster, _ = load_cluster(config)
    out.print(tokens.ensure(_token_key(cluster), rotate), markup=False)
