"""The grid-ops command line (Typer). Thin: parse, call, render.

Nothing heavy is imported here: Ansible, ansible-runner, pydantic models and Jinja load
inside the commands that need them, so ``grid-ops --help`` stays fast.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from grid_ops import __version__
from grid_ops.cli import (
    apply_cmd,
    boost_cmd,
    cluster,
    config_cmd,
    demo,
    doctor_cmd,
    health_cmd,
    inventory_cmd,
    job_cmd,
    lab_cmd,
    memory_cmd,
    metrics_cmd,
    node_cmd,
    offload_cmd,
    ping,
    provision,
    reset_cmd,
    rollback_cmd,
    run_cmd,
    serve_cmd,
    status_cmd,
    sync_cmd,
    user_cmd,
)
from grid_ops.cli.helptext import reflow_app
from grid_ops.errors import GridOpsError, bug_report

app = typer.Typer(
    name="grid-ops",
    help=(
        "Provision and operate a small GPU cluster running Ray, driven by Ansible.\n\n"
        "Commands that touch a cluster read one YAML config: -c PATH, else "
        "$GRID_OPS_CONFIG, else ./cluster.yaml."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"grid-ops {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
    log_level: Annotated[
        str | None,
        typer.Option(
            "--log-level",
            help="grid-ops' own log on stderr: DEBUG, INFO, WARNING or ERROR (default: the "
            "config's logging.level, else WARNING). DEBUG also runs Ansible at verbosity 3.",
            case_sensitive=False,
        ),
    ] = None,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="-v: INFO, -vv: DEBUG.")
    ] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Log errors only.")] = False,
) -> None:
    """Provision and operate a small GPU cluster running Ray, driven by Ansible."""
    from grid_ops import log
    from grid_ops.errors import UsageError

    level = log_level or ("ERROR" if quiet else {0: None, 1: "INFO"}.get(verbose, "DEBUG"))
    if level is not None and level.upper() not in log.LEVELS:
        raise UsageError(
            f"--log-level {level} is not a level grid-ops knows.",
            f"Use one of {', '.join(log.LEVELS)}.",
        )
    log.choose(level)


app.command("init")(config_cmd.init)
app.command("ping")(ping.ping)
app.command("health")(health_cmd.health)
app.command("doctor")(doctor_cmd.doctor)
app.command("status")(status_cmd.status)
app.command("provision")(provision.provision)
app.command("sync")(sync_cmd.sync)
app.command("apply")(apply_cmd.apply)
app.command("up")(apply_cmd.up)
app.command("rollback")(rollback_cmd.rollback)
app.command("reset")(reset_cmd.reset)
app.command("run", context_settings={"allow_interspersed_args": False})(run_cmd.run)
app.command("demo")(demo.demo)
app.command("usage")(user_cmd.usage)
app.add_typer(config_cmd.app, name="config")
app.add_typer(inventory_cmd.app, name="inventory")
app.add_typer(cluster.app, name="cluster")
app.add_typer(node_cmd.app, name="node")
app.add_typer(metrics_cmd.app, name="metrics")
app.add_typer(job_cmd.app, name="job")
app.add_typer(boost_cmd.boost_app, name="boost")
app.add_typer(boost_cmd.sharing_app, name="resource-sharing")
app.add_typer(offload_cmd.app, name="offload")
app.add_typer(memory_cmd.app, name="memory")
app.add_typer(serve_cmd.app, name="serve")
app.add_typer(user_cmd.app, name="user")
app.add_typer(lab_cmd.app, name="lab")
reflow_app(app)


def main() -> None:
    """Console entry point: user errors become one paragraph and an exit code."""
    from grid_ops.cli.aliases import respell
    from grid_ops.cli.output import error, info

    args, hint = respell(sys.argv[1:])
    if hint:
        info(hint)
    try:
        app(args=args)
    except GridOpsError as exc:
        error(exc.message, exc.hint)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        error("Interrupted.")
        sys.exit(130)
    except Exception as exc:  # a bug: still one paragraph, the traceback on request
        if os.environ.get("GRID_OPS_DEBUG"):
            raise
        error(*bug_report(exc))  # error() escapes: the text is never read as markup
        sys.exit(1)
