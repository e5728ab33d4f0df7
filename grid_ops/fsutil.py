"""Small file helpers: write whole files or nothing. The one atomic write of grid-ops,
on this machine and on the nodes (the runtime's state and notes use it too).

os only at import (the quick path writes its caches with them before anything heavy
loads, and the runtime imports it on the nodes).
"""

from __future__ import annotations

import contextlib
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path


def write_atomic(path: Path | str, text: str | bytes, mode: int = 0o644) -> None:
    """Write ``text`` (or bytes) to ``path`` through a temp file in the same directory
    and a rename: readers see the old file or the new one, never half of it."""
    name = os.fspath(path)
    parent = os.path.dirname(name) or "."
    os.makedirs(parent, exist_ok=True)
    base = os.path.basename(name)
    for attempt in range(100):
        tmp = os.path.join(parent, f".{base}.{os.getpid()}.{attempt}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            break
        except FileExistsError:
            continue
    else:
        raise FileExistsError(f"no free temp name next to {name}")
    try:
        data = text.encode("utf-8") if isinstance(text, str) else text
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, name)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
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
