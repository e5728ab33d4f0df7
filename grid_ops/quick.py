"""The console entry point, with quick paths for `health` and a no-change `sync`.

`grid-ops health` and `grid-ops sync` are run often, in loops and before every job, and
the work they do on a warm cluster (one probe or one rsync per node over open SSH
connections) takes tens of milliseconds: less than loading Typer, Rich and pydantic. So
before the full CLI loads, this module looks at the command line; when it is one of

    grid-ops health [-c PATH] [--json] [--refresh]
    grid-ops sync [SRC] [-c PATH] [--node NODE]... [--delete] [--dry-run] [--json]

and the config has a plan (grid_ops.plan: written by the full CLI the last time it
loaded that config for these commands, still valid), it does the work with the
standard library only:

- health: the same fact module over the same SSH commands as the full CLI; same cache,
  same JSON; the table (Rich) loads only when a table is printed.
- sync: rsync's own dry run on every node in parallel. If nothing would move (or the
  user asked for --dry-run), that is the answer; if something would move, or anything
  is unusual (a failed rsync, an unknown node, no recorded remote root), the full CLI
  runs playbooks/sync.yml as before.

Everything else, and $GRID_OPS_QUICK=0, goes straight to the full CLI.
"""

from __future__ import annotations

import os
import sys

from grid_ops import spawn

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def main() -> None:
    """Console entry point."""
    code = None
    if os.environ.get("GRID_OPS_QUICK", "1") != "0":
        try:
            code = attempt(sys.argv[1:])
        except KeyboardInterrupt:
            sys.stderr.write("error: Interrupted.\n")
            sys.exit(130)
    if code is not None:
        # Done: leave without the interpreter's clean-up (a few ms, nothing of ours to
        # close: the output is flushed, the children reaped, the files written whole).
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except OSError:
            code = code or 1
        os._exit(code)
    from grid_ops.cli import main as full

    full()


def attempt(args: list[str]) -> int | None:
    """The exit code of a command done here, or None to hand it to the full CLI."""
    commands = {"health": _health, "sync": _sync}
    if not args or args[0] not in commands:
        return None
    try:
        report = commands[args[0]](args[1:])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # anything unexpected before output: the full CLI does it and explains
    if report is None:
        return None
    try:
        return report()
    except BrokenPipeError:  # the reader went away (`| head`): nothing more to say
        return 1
    except OSError as exc:
        _error(
            f"{args[0]} worked but its result could not be recorded ({exc}).",
            "Check that the state dir is writable.",
        )
        return 1
    except Exception as exc:  # a bug: one paragraph, as the full CLI says it
        if os.environ.get("GRID_OPS_DEBUG"):
            raise
        from grid_ops.errors import bug_report

        _error(*bug_report(exc))
        return 1


def _error(message: str, hint: str) -> None:
    """An error paragraph without Rich (which may be what failed), control characters
    made visible."""
    from grid_ops.cli.sanitize import clean

    sys.stderr.write(f"error: {clean(message, lines=True)} {clean(hint)}\n")


def parse(
    args: list[str], flags: set[str], values: dict[str, str], positional: int
) -> dict[str, Any] | None:
    """A strict parse of the few spellings the quick path knows; None for anything else.

    ``values`` maps each option spelling to its key (repeated values collect in a list).
    """
    out: dict[str, Any] = {"args": []}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in flags:
            out[arg] = True
        elif arg in values:
            if i + 1 >= len(args):
                return None
            out.setdefault(values[arg], []).append(args[i + 1])
            i += 1
        elif arg.startswith("--") and "=" in arg and arg.split("=", 1)[0] in values:
            name, value = arg.split("=", 1)
            out.setdefault(values[name], []).append(value)
        elif arg.startswith("-") or len(out["args"]) >= positional:
            return None  # --help, --watch, a typo...: the full CLI answers
        else:
            out["args"].append(arg)
        i += 1
    if len(out.get("config", [])) > 1:
        return None
    return out


_CONFIG = {"-c": "config", "--config": "config"}


def _plan(opts: dict[str, Any]) -> dict[str, Any] | None:
    from grid_ops import paths, plan

    config = opts["config"][0] if opts.get("config") else paths.default_config_name()
    return plan.read(os.path.expanduser(config))


def _print_json(data: Any) -> None:
    import json

    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def _control_dir() -> None:
    """ssh refuses a ControlPath whose directory is missing."""
    os.makedirs(os.path.expanduser("~/.ansible/cp"), mode=0o700, exist_ok=True)


# ---------------------------------------------------------------------------------------
# health


def _health(args: list[str]) -> Callable[[], int] | None:
    opts = parse(args, {"--json", "--refresh"}, _CONFIG, positional=0)
    if opts is None:
        return None
    plan = _plan(opts)
    if plan is None:
        return None
    from grid_ops import facts

    settings, nodes = plan["health"], plan["nodes"]
    cached = None
    if not opts.get("--refresh"):
        cached = facts.read_cache(
            plan["cluster"], [n["name"] for n in nodes], settings["refresh_interval"]
        )
    if cached is not None:
        records = cached
    else:
        _control_dir()
        records = facts.probe(
            {n["name"]: n["probe"] for n in nodes},
            settings["module"],
            settings["max_workers"],
            float(settings["limit"]),
            (settings["cpu_weight"], settings["gpu_weight"]),
        )
        facts.write_cache(plan["cluster"], records)
    ranked = facts.rank(records)
    from_cache = cached is not None

    def report() -> int:
        down = [r["name"] for r in ranked if not r["reachable"]]
        if opts.get("--json"):
            _print_json({"nodes": [facts.public(r) for r in ranked], "cached": from_cache})
        else:
            from grid_ops.cli import views
            from grid_ops.cli.output import out

            out.print(views.health_table(ranked, views.health_title(plan["cluster"], from_cache)))
            if down:
                views.report_down(down)
        return 1 if down else 0

    return report


# ---------------------------------------------------------------------------------------
# sync


def _sync(args: list[str]) -> Callable[[], int] | None:
    opts = parse(
        args,
        {"--json", "--delete", "--dry-run"},
        {**_CONFIG, "--node": "node", "-n": "node"},
        positional=1,
    )
    if opts is None:
        return None
    src = os.path.realpath(os.path.expanduser(opts["args"][0] if opts["args"] else "."))
    if not os.path.isdir(src):
        return None
    plan = _plan(opts)
    if plan is None:
        return None
    from grid_ops import rsync
    from grid_ops.plan import read_roots

    wanted = opts.get("node")
    nodes = [n for n in plan["nodes"] if wanted is None or n["name"] in wanted]
    if wanted is not None and len(nodes) != len(set(wanted)):
        return None  # a name the plan lacks (or a pattern): the full CLI explains
    roots = read_roots(plan["cluster"])
    name = os.path.basename(src.rstrip("/"))
    jobs: list[tuple[list[str], str | None]] = []
    dests = {}
    for node in nodes:
        known = roots.get(node["name"]) or {}
        same = [known.get("host"), known.get("user"), known.get("remote_root")] == [
            node["host"],
            node["user"],
            plan["remote_root"],
        ]
        if node["local"] or not same or not known.get("root"):
            return None  # the playbook syncs local nodes and finds new remote roots
        dests[node["name"]] = f"{known['root']}/{name}"
        argv = rsync.argv(
            plan["sync"],
            src,
            node["target"] + dests[node["name"]],
            node["rsh"],
            delete=bool(opts.get("--delete")),
            dry_run=True,
        )
        jobs.append((argv, None))
    _control_dir()
    # the probe's limit + a minute: a dry run slower than that is left to the playbook
    procs = spawn.run_all(jobs, plan["forks"], limit=float(plan["health"]["limit"]) + 60)
    dry_run = bool(opts.get("--dry-run"))
    hosts: dict[str, dict[str, Any]] = {}
    for node, proc, (argv, _) in zip(nodes, procs, jobs, strict=True):
        if proc is None or proc.rc != 0:
            return None  # the playbook reports it properly
        changed = bool(rsync.changes(proc.stdout))
        if changed and not dry_run:
            return None  # something to move: the playbook moves it
        hosts[node["name"]] = {
            "ok": 1,
            "changed": int(changed),
            "failed": 0,
            "unreachable": 0,
            "skipped": 0,
            "msg": "",
            "files_transferred": rsync.files_transferred(proc.stdout),
            "bytes_sent": rsync.bytes_sent(proc.stdout),
            "seconds": round(proc.seconds, 3),
            "dest": dests[node["name"]],
            "command": argv,
        }

    def report() -> int:
        if opts.get("--json"):
            _print_json({"playbook": "sync", "rc": 0, "playbook_ran": False, "hosts": hosts})
        else:
            from grid_ops.cli.output import out
            from grid_ops.cli.views import sync_table

            out.print(sync_table(src, hosts, dry_run))
            if not dry_run:
                sys.stderr.write(f"up to date on {len(hosts)} node(s): nothing to move.\n")
        if not dry_run:
            from grid_ops import metrics

            metrics.record_sync([h["seconds"] for h in hosts.values()])
        return 0

    return report
