"""A secret kept in a file of its own on this machine: 0600 in a 0700 directory,
replaced atomically, refused when others could read it (the serve token, a user's
token for a cluster). Standard library only."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from grid_ops.errors import UsageError


def read(path: Path, what: str, fix: str) -> str | None:
    """The secret in ``path`` (``what`` names it in errors), or None when there is none
    (no file, or an empty one). A file others may read is refused (``fix``: the hint)."""
    try:
        info = path.stat()
        text = path.read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise UsageError(f"Cannot read {what} {path}: {exc.strerror or exc}.") from None
    if info.st_mode & 0o077:
        raise UsageError(
            f"{what[:1].upper()}{what[1:]} {path} is readable by other users "
            f"(mode {info.st_mode & 0o777:o}).",
            fix,
        )
    return text or None


def write(path: Path, secret: str, what: str = "the secret") -> None:
    """Keep ``secret`` in ``path``: 0600, in a 0700 directory, replacing any old one
    atomically (a file of a random name first: nothing predictable in a shared dir).
    Where that cannot be done (a file in the way, a dir of someone else's), a UsageError
    names the path and nothing is left behind."""
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}"
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(path.parent, 0o700)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, (secret + "\n").encode())
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise UsageError(
            f"Cannot keep {what} in {path}: {exc.strerror or exc}.",
            f"Check that {path.parent} is a directory of yours (grid-ops makes it 0700).",
        ) from None
