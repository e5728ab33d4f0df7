"""Terminal output shared by the commands: Rich consoles, JSON, errors.

Outside text (names, hosts, messages, paths) goes into markup through ``safe`` and into
table cells through ``cell`` (grid_ops.cli.sanitize); JSON stays as it is.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

from grid_ops.cli.sanitize import cell, clean, safe

__all__ = ["cell", "clean", "err", "error", "info", "out", "print_json", "safe", "warn"]

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False)
ERROR_LIMIT = 4000  # characters of an error's message (and of its hint) shown


def print_json(data: Any) -> None:
    """One JSON document on stdout, nothing else."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def error(message: str, hint: str | None = None) -> None:
    """A one-paragraph error on stderr (its text never read as markup)."""
    text = f"[bold red]error:[/] {safe(message, limit=ERROR_LIMIT, lines=True)}"
    if hint:
        text += f" {safe(hint, limit=ERROR_LIMIT, lines=True)}"
    err.print(text, soft_wrap=True)


def warn(message: str) -> None:
    """One warning line on stderr (its text never read as markup)."""
    err.print(f"[bold yellow]warning:[/] {safe(message, lines=True)}", soft_wrap=True)


def info(message: str) -> None:
    err.print(f"[dim]{safe(message, lines=True)}[/]")
