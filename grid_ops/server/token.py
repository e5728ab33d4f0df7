"""The serve bearer token: one per cluster, kept 0600 in the state dir. Every request
but the page's own files needs it, on loopback too; the running server re-reads the file
when it changes (``Watch``), so 'serve token --rotate' revokes the old one at once."""

from __future__ import annotations

import hmac
import logging
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from grid_ops import secretfile
from grid_ops.errors import GridOpsError
from grid_ops.paths import serve_token_file

log = logging.getLogger("grid_ops.serve")


def token_file(key: str) -> Path:
    return serve_token_file(key)


def read(key: str) -> str | None:
    """The token kept under ``key``, or None when none was made yet (or the file is
    unreadable as one: empty, or readable by others)."""
    fix = f"Make a new one: grid-ops serve token --rotate (or chmod 600 {token_file(key)})."
    return secretfile.read(token_file(key), "the serve token", fix)


def ensure(key: str, rotate: bool = False) -> str:
    """The token kept under ``key``, made now (0600, in a 0700 directory) if there is
    none or ``rotate``. A new token replaces the old one atomically."""
    current = None if rotate else read(key)
    if current:
        return current
    token = secrets.token_urlsafe(32)
    secretfile.write(token_file(key), token, "the serve token")
    return token


def bearer(header: str | None) -> str | None:
    """The token an ``Authorization: Bearer …`` header carries (None: no such header)."""
    scheme, _, given = (header or "").partition(" ")
    return (given.strip() or None) if scheme.lower() == "bearer" else None


def matches(header: str | None, token: str | None) -> bool:
    """Whether an Authorization header carries ``token`` (constant-time compare); never
    when there is no token."""
    given = bearer(header)
    if token is None or given is None:
        return False
    return hmac.compare_digest(given.encode(), token.encode())


Signature = tuple[int, int, int, int, int]  # device, inode, size, mtime (ns), mode


@dataclass
class Watch:
    """The token kept under ``key`` as it is now: one stat per call, the file read again
    only when it changed (replaced, rewritten, removed). None while there is no usable
    token (removed, or readable by others): then every request is refused."""

    key: str
    _seen: Signature | None = None
    _token: str | None = field(default=None, repr=False)

    def current(self) -> str | None:
        signature = self._signature()
        if signature != self._seen:
            self._seen, self._token = signature, self._load(signature)
        return self._token

    def _signature(self) -> Signature | None:
        try:
            info = token_file(self.key).stat()
        except OSError:
            return None
        return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_mode)

    def _load(self, signature: Signature | None) -> str | None:
        if signature is None:
            log.warning("the serve token file is gone: every request is refused until "
                        "'grid-ops serve token' makes a new one")  # fmt: skip
            return None
        try:
            return read(self.key)
        except GridOpsError as exc:
            log.warning("%s (every request is refused meanwhile)", exc.message)
            return None
