"""Help texts as the terminal should wrap them.

Commands take their help from docstrings, whose lines are broken for the source file.
Typer keeps those breaks, so on a terminal narrower than the source a paragraph breaks
mid-line. ``reflow`` joins each paragraph's lines into one; a paragraph with an indented
line (an example, a command line) is kept as written. ``reflow_app`` applies it to every
command and group of a Typer app, once, before the app runs.
"""

from __future__ import annotations

import inspect
from typing import Any

import typer


def reflow(text: str) -> str:
    """``text`` with each paragraph on one line, unless the paragraph has an indented line
    (then it is kept line for line) (pure)."""
    paragraphs = inspect.cleandoc(text).split("\n\n")
    out = []
    for paragraph in paragraphs:
        lines = paragraph.split("\n")
        if any(line[:1].isspace() for line in lines):
            out.append(paragraph)
        else:
            out.append(" ".join(line.strip() for line in lines))
    return "\n\n".join(out)


def _help(info: Any) -> str | None:
    text = info.help if isinstance(info.help, str) else None
    if text is None and getattr(info, "callback", None) is not None:
        text = inspect.getdoc(info.callback)
    return text


def reflow_app(app: typer.Typer) -> None:
    """Reflow the help of ``app``'s commands, its groups and theirs, in place."""
    for command in app.registered_commands:
        text = _help(command)
        if text is not None:
            command.help = reflow(text)
    callback = app.registered_callback
    text = _help(callback) if callback is not None else None
    if callback is not None and text is not None:
        callback.help = reflow(text)
    elif isinstance(app.info.help, str):
        app.info.help = reflow(app.info.help)
    for group in app.registered_groups:
        if isinstance(group.help, str):
            group.help = reflow(group.help)
        if group.typer_instance is not None:
            reflow_app(group.typer_instance)
