"""Terminal output shared by the commands: Rich consoles, JSON, errors."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False)


def print_json(data: Any) -> None:
    """One JSON document on stdout, nothing else."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def error(message: str, hint: str | None = None) -> None:
    """A one-paragraph error on stderr."""
    text = f"[bold red]error:[/] {_escape(message)}"
    if hint:
        text += f" {_escape(hint)}"
    err.print(text, soft_wrap=True)


def info(message: str) -> None:
    err.print(f"[dim]{_escape(message)}[/]")


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
