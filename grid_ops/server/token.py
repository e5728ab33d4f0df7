"""The serve bearer token: one per cluster, kept 0600 in the state dir; and which bind
addresses need it (any that is not loopback)."""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
from pathlib import Path

from grid_ops.errors import UsageError
from grid_ops.paths import state_dir


def token_file(cluster: str) -> Path:
    return state_dir() / "serve" / f"{cluster}.token"


def read(cluster: str) -> str | None:
    """The cluster's token, or None when none was made yet (or the file is unreadable as
    one: empty, or readable by others)."""
    path = token_file(cluster)
    try:
        info = path.stat()
        text = path.read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise UsageError(f"Cannot read the serve token {path}: {exc.strerror or exc}.") from None
    if info.st_mode & 0o077:
        raise UsageError(
            f"The serve token {path} is readable by other users (mode {info.st_mode & 0o777:o}).",
            f"Make a new one: grid-ops serve token --rotate (or chmod 600 {path}).",
        )
    return text or None


def ensure(cluster: str, rotate: bool = False) -> str:
    """The cluster's token, made now (0600, in a 0700 directory) if there is none or
    ``rotate``. A new token replaces the old one atomically."""
    current = None if rotate else read(cluster)
    if current:
        return current
    path = token_file(cluster)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    token = secrets.token_urlsafe(32)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, (token + "\n").encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return token


def is_loopback(bind: str) -> bool:
    """True for loopback addresses (127.0.0.0/8, ::1) and 'localhost'."""
    if bind == "localhost":
        return True
    try:
        return ipaddress.ip_address(bind).is_loopback
    except ValueError:
        return False  # a host name: it may resolve anywhere


def matches(header: str | None, token: str) -> bool:
    """Whether an Authorization header carries ``token`` (constant-time compare)."""
    scheme, _, given = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())
