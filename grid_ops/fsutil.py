"""Small file helpers: write whole files or nothing."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """Write ``text`` to ``path`` through a temp file and a rename: never half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_file(path: Path, text: str) -> None:
    """``write_atomic`` for user-named paths: a file-system error becomes a clear message."""
    from grid_ops.errors import UsageError

    try:
        write_atomic(path, text)
    except OSError as exc:
        raise UsageError(
            f"Cannot write {path}: {exc.strerror or exc}.",
            "Pick a path in a directory you can write to.",
        ) from None
