"""The controller's wire format, and where its socket lives (standard library only).

A request is one JSON line ``{"op": …, "args": {…}, "payload": N}`` followed by N raw
bytes; the answer is one JSON line ``{"ok": true, "result": …, "payload": M}`` (or
``{"ok": false, "error": …, "hint": …}``) followed by M raw bytes. Payloads carry the
memory pool's objects, so they never pass through JSON.

The socket is a Unix socket in the controller's state dir on the head (mode 0600, in a
0700 dir: only the cluster's user can reach it); every file the controller keeps there
is 0600 (``private_state`` closes a dir made looser before, ``private_open`` opens them
so). Unix socket paths may not exceed 107 bytes; a long state dir falls back to the
user's checked private dir (runtime.private).
Both ends check the other's uid (SO_PEERCRED): a socket someone else put in the way is
never spoken to.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import stat
import struct
from pathlib import Path
from typing import Any

from grid_ops import layout
from grid_ops.fsutil import write_atomic

DEFAULT_STATE_DIR = layout.CONTROLLER_STATE
SOCKET_NAME = "control.sock"
ENSURE_FILE = "ensure.json"
MAX_SOCKET_PATH = 100
CHUNK = 1 << 20


class ControllerDown(ConnectionError):
    """No controller answers on the socket."""


class RemoteError(RuntimeError):
    """The controller refused a request; ``hint`` says what to do; ``missing``: it
    named something that does not exist; ``conflict``: it clashes with what exists."""

    def __init__(
        self,
        message: str,
        hint: str = "",
        missing: bool = False,
        conflict: bool = False,
        forbidden: bool = False,
    ) -> None:
        super().__init__(message)
        self.hint = hint
        self.missing = missing
        self.conflict = conflict
        self.forbidden = forbidden


def state_dir(path: str | os.PathLike[str] = DEFAULT_STATE_DIR) -> Path:
    return Path(path).expanduser().absolute()


def private_state(state: Path) -> Path:
    """Make the controller's state dir ``state`` 0700 (its parent too, where this makes
    it), or close one that exists: the dir to 0700, each file and socket of ours in it to
    0600. A dir that is a link or another user's is refused (runtime.private.NotPrivate,
    a PermissionError), never used."""
    from grid_ops.runtime.private import private_dir

    state.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    private_dir(state)
    uid = os.getuid()
    for entry in os.scandir(state):
        info = entry.stat(follow_symlinks=False)
        kind = stat.S_ISREG(info.st_mode) or stat.S_ISSOCK(info.st_mode)
        if kind and info.st_uid == uid and stat.S_IMODE(info.st_mode) & 0o177:
            os.chmod(entry.path, 0o600)
    return state


def private_open(path: str, flags: int) -> int:
    """An ``opener`` for ``open``: the file is 0600, also when it existed looser."""
    fd = os.open(path, flags | os.O_NOFOLLOW, 0o600)
    os.fchmod(fd, 0o600)
    return fd


def socket_path(state: Path) -> Path:
    path = state / SOCKET_NAME
    if len(str(path)) <= MAX_SOCKET_PATH:
        return path
    from grid_ops.runtime.private import short_dir

    tag = hashlib.sha256(str(state).encode()).hexdigest()[:16]
    return short_dir() / f"control-{tag}.sock"


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end of a Unix socket."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


def check_peer(sock: socket.socket) -> None:
    """Refuse a peer that is not this user."""
    uid = peer_uid(sock)
    if uid != os.getuid():
        raise PermissionError(f"the controller socket's peer is uid {uid}, not {os.getuid()}")


def read_line(stream: Any) -> dict[str, Any]:
    line = stream.readline()
    if not line:
        raise ConnectionError("the connection closed before an answer")
    data: dict[str, Any] = json.loads(line)
    return data


def read_exact(stream: Any, size: int) -> bytes:
    chunks = []
    left = size
    while left:
        chunk = stream.read(min(left, CHUNK))
        if not chunk:
            raise ConnectionError(f"the connection closed with {left} of {size} bytes unread")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def write_message(stream: Any, header: dict[str, Any], payload: bytes = b"") -> None:
    header = {**header, "payload": len(payload)}
    stream.write(json.dumps(header, default=str).encode() + b"\n")
    if payload:
        stream.write(payload)
    stream.flush()


def call(
    state: Path,
    op: str,
    args: dict[str, Any] | None = None,
    payload: bytes = b"",
    timeout: float = 120.0,
    auth: dict[str, Any] | None = None,
) -> tuple[Any, bytes]:
    """One request to the controller: its result and payload (raises RemoteError).
    ``auth``: who asks (``{"token", "user"}``, runtime.users)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(socket_path(state)))
        check_peer(sock)
    except OSError as exc:
        sock.close()
        raise ControllerDown(str(exc)) from None
    with sock, sock.makefile("rwb") as stream:
        header: dict[str, Any] = {"op": op, "args": args or {}}
        if auth is not None:
            header["auth"] = auth
        write_message(stream, header, payload)
        answer = read_line(stream)
        data = read_exact(stream, int(answer.get("payload") or 0))
    if not answer.get("ok"):
        raise RemoteError(
            str(answer.get("error")),
            str(answer.get("hint") or ""),
            missing=bool(answer.get("missing")),
            conflict=bool(answer.get("conflict")),
            forbidden=bool(answer.get("forbidden")),
        )
    return answer.get("result"), data


def ensure_status(state: Path) -> dict[str, Any]:
    """What the last ``controller ensure`` on this head said: ``{"state": "starting" |
    "done" | "failed", "pid", "error"}``; a start whose process is gone is failed."""
    try:
        data: dict[str, Any] = json.loads((state / ENSURE_FILE).read_text())
    except (OSError, ValueError):
        return {"state": "never"}
    if data.get("state") == "starting":
        try:
            os.kill(int(data.get("pid", 0)), 0)
        except (OSError, ValueError):
            return {**data, "state": "failed", "error": "its start was interrupted"}
    return data


def write_ensure_status(state: Path, data: dict[str, Any]) -> None:
    write_atomic(state / ENSURE_FILE, json.dumps(data), mode=0o600)
