"""Command lines as users of the earlier tools type them, rewritten to grid-ops' own
spelling before Typer reads them (each with a one-line hint of that spelling):

- ``cluster install …`` is ``provision …``;
- ``config PATH …`` is ``config validate PATH …``.
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
    return argv, None
