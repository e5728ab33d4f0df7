"""Talking to the cluster's controller from the operator's machine.

Each call runs ``grid_ops.runtime.client`` on the head over the cluster's SSH settings
(multiplexed, so a warm call is one Python start on the head plus milliseconds); the
client speaks to the controller actor's Unix socket. No Ray runs here, so the operator's
Python and network may differ from the cluster's. Also: the amount and duration syntax
of ``boost``/``resource-sharing`` (pure).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import re
import subprocess
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from grid_ops.errors import Conflict, Forbidden, GridOpsError, NotFound, Unavailable, UsageError
from grid_ops.layout import EXIT_MISSING_ROOT, EXIT_SSH_FAILED

if TYPE_CHECKING:
    from grid_ops.model import ClusterModel


_UNITS = {
    "": 2**30,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "kib": 2**10,
    "m": 10**6,
    "mb": 10**6,
    "mib": 2**20,
    "g": 10**9,
    "gb": 10**9,
    "gib": 2**30,
    "t": 10**12,
    "tb": 10**12,
    "tib": 2**40,
}
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_amount(resource: str, text: str) -> float:
    """``cpu 2`` -> 2.0; ``memory 2GiB`` -> bytes (a bare number is GiB)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", text)
    if resource not in ("cpu", "gpu", "memory"):
        raise UsageError(f"Unknown resource '{resource}'.", "Use one of: cpu, gpu, memory.")
    if match is None:
        raise UsageError(f"Cannot read the amount '{text}'.", "Examples: 2, 0.5, 4GiB, 512MiB.")
    value, unit = float(match.group(1)), match.group(2).lower()
    if resource != "memory":
        if unit:
            raise UsageError(f"{resource} amounts have no unit: '{text}'.", "Example: 2 or 0.5.")
        return value
    if unit not in _UNITS:
        raise UsageError(f"Unknown memory unit '{match.group(2)}'.", "Use MiB, GiB, MB or GB.")
    return float(int(value * _UNITS[unit]))


def parse_duration(text: str) -> float:
    """``90`` / ``90s`` / ``10m`` / ``2h`` / ``1d`` -> seconds."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([smhd]?)\s*", text.lower())
    if match is None or float(match.group(1)) <= 0:
        raise UsageError(f"Cannot read the duration '{text}'.", "Examples: 90s, 10m, 2h, 1d.")
    return float(match.group(1)) * _SECONDS[match.group(2)]


def parse_thresholds(values: list[str]) -> dict[str, float]:
    """``["70"]`` -> memory 70; ``["cpu=80", "gpu=90"]`` -> both."""
    out: dict[str, float] = {}
    for value in values:
        name, sep, number = value.partition("=")
        if not sep:
            name, number = "memory", value
        name = name.strip().lower()
        if name not in ("cpu", "memory", "gpu"):
            raise UsageError(f"Unknown threshold '{name}'.", "Use cpu=N, memory=N or gpu=N.")
        try:
            percent = float(number)
        except ValueError:
            raise UsageError(f"The threshold '{value}' is not a number.") from None
        if not 0 <= percent <= 100:
            raise UsageError(f"The threshold '{value}' is not a percentage (0-100).")
        out[name] = percent
    return out


def reserve(
    cluster: ClusterModel,
    kind: str,
    resource: str,
    amount: str,
    node: str | None = None,
    priority: str | None = None,
    ttl: str | None = None,
) -> dict[str, Any]:
    """Reserve ``amount`` (text: 2, 0.5, 4GiB) of ``resource`` as a boost on ``node`` or
    a shared allocation (``kind`` boost or share); the controller's row for it."""
    if node is not None:
        cluster.node(node)
    args: dict[str, Any] = {
        "kind": kind,
        "node": node,
        "resource": resource,
        "amount": parse_amount(resource, amount),
    }
    if kind == "boost":
        args["priority"] = priority or "normal"
        args["ttl"] = parse_duration(ttl) if ttl else None
    row, _ = call(cluster, "reserve", args)
    return dict(row)


def find(cluster: ClusterModel, rid: str, kind: str) -> dict[str, Any]:
    """The live reservation ``rid`` of ``kind`` (NotFound naming the live ones)."""
    rows, _ = call(cluster, "reservations", {"kind": kind})
    for row in rows:
        if row["id"] == rid:
            return dict(row)
    known = ", ".join(r["id"] for r in rows) or "none"
    raise NotFound(f"No live {kind} '{rid}'.", f"Live ones: {known}.")


def release(cluster: ClusterModel, rid: str, kind: str) -> dict[str, Any]:
    """Release reservation ``rid`` (NotFound when there is no live one of that id)."""
    row, _ = call(cluster, "release", {"id": rid, "kind": kind})
    return dict(row)


def command_line(op: str, args: dict[str, Any] | None, with_payload: bool) -> list[str]:
    """What ``call`` runs on the head for ``op`` (pure). Who asks (``auth``) goes on
    stdin's first line, then the payload: no token is ever on a command line."""
    command = ["python", "-m", "grid_ops.runtime.client", op, "--args", json.dumps(args or {})]
    command.append("--auth")
    return [*command, "--stdin"] if with_payload else command


# A user's token that the calls of this context carry instead of this machine's: the API
# server sets it for each request that came with one (grid_ops.server.guard).
_ASKER: contextvars.ContextVar[str | None] = contextvars.ContextVar("grid_asker", default=None)


@contextlib.contextmanager
def acting_as(user_token: str) -> Iterator[None]:
    """Controller calls made inside carry ``user_token`` (checked already)."""
    mark = _ASKER.set(user_token)
    try:
        yield
    finally:
        _ASKER.reset(mark)


def token(cluster: ClusterModel) -> str | None:
    """This machine's token for ``cluster`` ('grid-ops user login'), if it has one."""
    from grid_ops import paths, secretfile

    path = paths.user_token_file(cluster.id)
    fix = f"Log in again ('grid-ops user login'), or chmod 600 {path}."
    return secretfile.read(path, "your token for this cluster", fix)


def who(cluster: ClusterModel, token_file: bool = True) -> dict[str, Any]:
    """Who asks: this machine's token for the cluster (``token_file``), and its login
    name (the owner on a cluster without users)."""
    import getpass

    return {"token": token(cluster) if token_file else None, "user": getpass.getuser()}


def call(
    cluster: ClusterModel,
    op: str,
    args: dict[str, Any] | None = None,
    payload: bytes | None = None,
    timeout: float | None = None,
    auth: dict[str, Any] | None = None,
) -> tuple[Any, bytes]:
    """One controller operation on the head: its result and payload bytes (``timeout``:
    the controller deadline unless given; ``auth``: who asks, instead of this machine's
    token for the cluster)."""
    from grid_ops import model
    from grid_ops.drivers import remote

    timeout = timeout or cluster.deadlines.controller

    command = command_line(op, args, payload is not None)
    acting = _ASKER.get()
    if auth is None and acting is not None:
        auth = {"token": acting}
    asker = who(cluster, token_file=auth is None)
    asker.update(auth or {})
    model.ensure_control_dir()
    head = cluster.head
    try:
        proc = subprocess.run(
            remote.argv(cluster, head, command),
            input=json.dumps(asker).encode() + b"\n" + (payload or b""),
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise Unavailable(
            f"The controller on the head ({head}) did not answer in {timeout:g} s.",
            "Check 'grid-ops cluster status'.",
        ) from None
    line, _, rest = proc.stdout.partition(b"\n")
    try:
        answer: dict[str, Any] = json.loads(line)
    except ValueError:
        answer = {}
    if not answer:
        raise _transport_error(head, proc.returncode, proc.stderr.decode(errors="replace"))
    if answer.get("down"):
        why = str(answer.get("error") or "")
        detail = f" ({why})" if why.startswith("its last start failed") else ""
        raise Unavailable(
            f"The grid-ops controller does not run on the head ({head}){detail}.",
            "Start the cluster with 'grid-ops cluster start' (it starts the controller too).",
        )
    if not answer.get("ok"):
        refused: type[GridOpsError] = UsageError
        if answer.get("missing"):
            refused = NotFound
        elif answer.get("conflict"):
            refused = Conflict
        elif answer.get("forbidden"):
            refused = Forbidden
        raise refused(str(answer.get("error")), str(answer.get("hint") or "") or None)
    size = int(answer.get("payload") or 0)
    if len(rest) != size:
        raise GridOpsError(f"The head ({head}) sent {len(rest)} of {size} bytes.", "Retry.")
    return answer.get("result"), rest


def _transport_error(head: str, code: int, stderr: str) -> GridOpsError:
    last = (stderr.strip().splitlines() or [f"exit {code}"])[-1]
    if code == EXIT_SSH_FAILED:
        return Unavailable(
            f"Cannot reach the head ({head}) over SSH: {last}",
            "Check it with 'grid-ops ping'.",
        )
    if code == EXIT_MISSING_ROOT or "No module named" in stderr:
        return Unavailable(
            f"The head ({head}) has no grid-ops runtime: {last}",
            "Run 'grid-ops provision' and 'grid-ops cluster start' first.",
        )
    return Unavailable(f"The controller call on the head ({head}) failed: {last}")
