"""Command lines as users of the earlier tools type them, rewritten to grid-ops' own
spelling before Typer reads them (each with a one-line hint of that spelling):

- ``cluster install …`` is ``provision …``;
- ``config PATH …`` is ``config validate PATH …``;
- ``run "CMD" --log-level LEVEL`` (no ``--``): the log level is grid-ops' own, not the
  command's (with ``--``, everything after it is the command's).
"""

from __future__ import annotations

CONFIG_COMMANDS = ("validate",)


def respell(argv: list[str]) -> tuple[list[str], str | None]:
    """(the argv grid-ops reads, a hint naming its spelling, or None when unchanged)."""
    if argv[:2] == ["cluster", "install"]:
        return ["provision", *argv[2:]], "'cluster install' is 'grid-ops provision'."
    if (
        len(argv) > 1
        and argv[0] == "config"
        and argv[1] not in CONFIG_COMMANDS
        and not argv[1].startswith("-")
    ):
        return [
            "config",
            "validate",
            *argv[1:],
        ], "'config PATH' is 'grid-ops config validate PATH'."
    if argv[:1] == ["run"] and "--" not in argv:
        return _hoist_log_level(argv)
    return argv, None


def _hoist_log_level(argv: list[str]) -> tuple[list[str], str | None]:
    """``run … CMD --log-level X`` -> ``--log-level X run … CMD``."""
    out: list[str] = []
    hoisted: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--log-level" and i + 1 < len(argv):
            hoisted += [arg, argv[i + 1]]
            i += 2
            continue
        if arg.startswith("--log-level="):
            hoisted.append(arg)
        else:
            out.append(arg)
        i += 1
    if not hoisted:
        return argv, None
    return [
        *hoisted,
        *out,
    ], "grid-ops reads --log-level before the command: grid-ops --log-level LEVEL run …"
