"""The options of `health`, `sync` and `apply` that the quick path answers, and the parameter of
the Typer command each one sets (standard library only).

The Typer commands (grid_ops.cli.health_cmd, grid_ops.cli.sync_cmd) declare their options
themselves; tests/test_quick_units.py checks every spelling here against the real Typer
command (same parameter, flag or value, repeatable or not), so the two cannot drift. A
command line with anything else (--help, --watch, a typo) goes to the full CLI.
"""

from __future__ import annotations

from grid_ops.record import record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


@record
class Spec:
    flags: dict[str, str]  # spelling -> parameter (a bool)
    values: dict[str, str]  # spelling -> parameter (takes a value)
    repeatable: frozenset[str]  # parameters that collect a list
    positional: str | None  # the one positional parameter, if any


_CONFIG = {"-c": "config", "--config": "config"}
HEALTH = Spec(
    flags={"--json": "json_out", "--refresh": "refresh"},
    values=dict(_CONFIG),
    repeatable=frozenset(),
    positional=None,
)
SYNC = Spec(
    flags={"--json": "json_out", "--delete": "delete", "--dry-run": "dry_run"},
    values={**_CONFIG, "--node": "node", "-n": "node"},
    repeatable=frozenset({"node"}),
    positional="src",
)
APPLY = Spec(
    flags={"--json": "json_out", "--check": "check"},
    values=dict(_CONFIG),
    repeatable=frozenset(),
    positional=None,
)
COMMANDS = {"health": HEALTH, "sync": SYNC, "apply": APPLY}


def parse(spec: Spec, args: list[str]) -> dict[str, Any] | None:
    """The parameters a command line sets, as the Typer command would get them (absent
    ones left out); None for anything this spec does not know."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        name, eq, inline = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if arg in spec.flags:
            out[spec.flags[arg]] = True
        elif name in spec.values:
            if not eq:
                if i + 1 >= len(args):
                    return None
                i += 1
                inline = args[i]
            param = spec.values[name]
            if param in spec.repeatable:
                out.setdefault(param, []).append(inline)
            elif param in out:
                return None  # given twice: Typer's rules apply
            else:
                out[param] = inline
        elif arg.startswith("-") or spec.positional is None or spec.positional in out:
            return None
        else:
            out[spec.positional] = arg
        i += 1
    return out
