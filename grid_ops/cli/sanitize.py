"""Outside text made safe to show: the one place that turns a value into display text.

Node names, hosts, users, tags, node-reported warnings and GPU names, ssh and Ansible
messages, pool keys, job names and paths come from outside and reach the terminal through
Rich. Any of them may hold Rich markup (``[/x]`` breaks a markup string, ``[bold]`` restyles
it) or terminal control characters (ESC sequences, ``\\r``, C1 codes) that would act on the
user's terminal, and some hold bytes that are not text at all (a path argument that is not
UTF-8). So:

- ``clean``: control characters shown as ``\\xNN`` (``\\uNNNN`` for bidirectional
  overrides and line separators), undecodable bytes as ``\\xNN``, other lone surrogates as
  U+FFFD; tabs and newlines become spaces (``lines=True``: kept, for multi-line text);
  very long values cut. For text written without Rich, or with ``markup=False``.
- ``safe``: ``clean``, then Rich-markup-escaped: for a value put inside a markup string.
- ``cell``: ``clean`` in a ``rich.text.Text``, which Rich never parses as markup: for a
  table cell.

Standard library only at import: the quick path (grid_ops.cli.quick) uses this before, or
without, loading Rich.
"""

from __future__ import annotations

from functools import cache

TYPE_CHECKING = False
if TYPE_CHECKING:
    from re import Pattern

    from rich.text import Text

LIMIT = 1000  # characters of one value shown; the rest is cut, saying how much
_KEPT = {"\t": "\t", "\n": "\n"}
_SPACED = {"\t": " ", "\n": " "}


@cache
def _unsafe() -> Pattern[str]:
    """What ``clean`` replaces (compiled on first use: about a millisecond)."""
    import re

    return re.compile(
        "[\x00-\x1f\x7f-\x9f"  # C0, DEL, C1 (tab and newline are handled on their own)
        "\u2028\u2029"  # line and paragraph separators
        "\u202a-\u202e\u2066-\u2069"  # bidirectional embeddings, overrides, isolates
        "\ud800-\udfff]"  # lone surrogates: undecodable bytes (surrogateescape) and worse
    )


def _visible(char: str, kept: dict[str, str]) -> str:
    if char in kept:
        return kept[char]
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # one byte that was not UTF-8
        return f"\\x{code - 0xDC00:02x}"
    if 0xD800 <= code <= 0xDFFF:
        return "\ufffd"
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def clean(value: object, *, limit: int | None = LIMIT, lines: bool = False) -> str:
    """``value`` as text that cannot act on a terminal (see the module's doc)."""
    text = str(value).replace("\r\n", "\n")
    if limit is not None and len(text) > limit:
        text = f"{text[:limit]}… (+{len(text) - limit} characters)"
    if text.isprintable():  # the usual case: nothing to replace
        return text
    kept = _KEPT if lines else _SPACED
    return _unsafe().sub(lambda m: _visible(m.group(), kept), text)


def safe(value: object, *, limit: int | None = LIMIT, lines: bool = False) -> str:
    """``clean(value)`` with Rich markup escaped, to put inside a markup string."""
    from rich.markup import escape

    text = escape(clean(value, limit=limit, lines=lines))
    # An odd run of backslashes at the end would escape the tag that follows the value
    # in the markup string (rich's escape evens out a single one, not three).
    if (len(text) - len(text.rstrip("\\"))) % 2:
        text += "\\"
    return text


def cell(value: object, *, limit: int | None = LIMIT, style: str = "") -> Text:
    """``clean(value)`` as a Rich Text (never parsed as markup), e.g. for a table cell."""
    from rich.text import Text

    return Text(clean(value, limit=limit), style=style)
