"""Drain this node out of the cluster, or clear its drain note (runs on the node).

``python -m grid_ops.runtime.drain set --node NAME --reason TEXT [--quarantine]`` writes
the drain note (``layout.DRAIN_NOTE`` under GRID_OPS_ROOT, the reason) and asks the
head's GCS to drain the node's Ray node (the caller has had the controller evacuate it
first): Ray schedules nothing new there, running tasks finish, and the node leaves Ray
once idle. While the note exists, 'cluster start' and 'apply' do not start Ray on the
node, the health ranking skips it, and the controller places nothing there.

Who drained the node is in the note's reason: only ``--quarantine`` (the health gate)
writes one that starts with ``layout.QUARANTINE``, and the gate lifts only such a note. Any
other reason that would read so (``reason_problem``: any case, any spacing) is refused,
here and by 'grid-ops node drain' before it evacuates anything: an operator's drain can
never pose as a quarantine that a healthy round lifts.

``python -m grid_ops.runtime.drain clear [--only-if TEXT]`` removes the note (only one
whose reason starts with TEXT: a health round lifts its own quarantine, never an
operator's drain); 'node undrain' then starts the node's Ray again. Prints one JSON line
(``{"error": …}`` and exit 2 for a refused reason).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from grid_ops import layout
from grid_ops.fsutil import write_atomic
from grid_ops.layout import QUARANTINE

# A drained node's running work gets this long before 'apply' stops it anyway.
DEFAULT_DEADLINE_S = 600


MAX_REASON = 500


def normal_reason(reason: str) -> str:
    """The reason as the note keeps it: one line, runs of white space as one space, cut
    to MAX_REASON characters ("drained" when nothing is left)."""
    return " ".join(str(reason).split())[:MAX_REASON] or "drained"


def reason_problem(reason: str) -> str | None:
    """Why an operator's drain cannot have ``reason``; None when it can. A reason that
    starts like the health gate's quarantine (in any case or spacing) is refused: a
    healthy round would take it for its own and return the node to service."""
    tag = QUARANTINE.strip().casefold()
    if not normal_reason(reason).casefold().replace(" :", ":").startswith(tag):
        return None
    return (
        f"A drain reason may not start with '{tag}': that marks the health gate's own "
        "quarantine, which a health round lifts as soon as the node answers well, and "
        "this drain is meant to hold until 'grid-ops node undrain'. Word the reason "
        "otherwise, e.g. 'held for RMA (was quarantined)'."
    )


def _note_path() -> str:
    return os.path.join(os.environ.get("GRID_OPS_ROOT") or os.getcwd(), layout.DRAIN_NOTE)


def ray_node_id(address: str, name: str) -> str | None:
    """The alive Ray node that joined as config node ``name`` (by its resource)."""
    from ray._raylet import GcsClient

    client = GcsClient(address=address)
    for node_id, info in client.get_all_node_info(timeout=10).items():
        if info.state == 0 and layout.node_name(info.resources_total) == name:
            return str(node_id.hex())
    return None


def drain_in_ray(address: str, name: str, reason: str, deadline_s: float) -> str:
    """Ask the GCS to drain ``name``'s Ray node: "drained", "not running" or "refused: …"."""
    from ray._raylet import GcsClient
    from ray.core.generated import autoscaler_pb2

    node_id = ray_node_id(address, name)
    if node_id is None:
        return "not running"
    deadline_ms = int(time.time() * 1000 + deadline_s * 1000) if deadline_s > 0 else 0
    accepted, why = GcsClient(address=address).drain_node(
        node_id,
        autoscaler_pb2.DrainNodeReason.Value("DRAIN_NODE_REASON_PREEMPTION"),
        f"grid-ops: {reason}",
        deadline_ms,
    )
    return "drained" if accepted else f"refused: {why}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="action", required=True)
    setter = sub.add_parser("set", help="write the note and drain the node in Ray")
    setter.add_argument("--node", required=True, help="this node's name in the config")
    setter.add_argument("--reason", required=True)
    setter.add_argument("--deadline", type=float, default=DEFAULT_DEADLINE_S)
    setter.add_argument("--address", default="", help="the head's GCS (default $RAY_ADDRESS)")
    setter.add_argument(
        "--quarantine",
        action="store_true",
        help=f"the health gate's drain: the reason is noted with {QUARANTINE.strip()!r} "
        "first (a later healthy round lifts it); without it such a reason is refused",
    )
    clear = sub.add_parser("clear", help="remove the note")
    clear.add_argument(
        "--only-if", default="", help="only a note whose reason starts with this text"
    )
    args = parser.parse_args(argv)
    out: dict[str, Any]
    if args.action == "clear":
        path = _note_path()
        try:
            with open(path, encoding="utf-8") as handle:
                reason = handle.readline().strip()
            if not reason.startswith(args.only_if):
                out = {"cleared": False, "reason": reason}
            else:
                os.unlink(path)
                out = {"cleared": True, "reason": reason}
        except FileNotFoundError:
            out = {"cleared": False}
    else:
        reason = normal_reason(args.reason)
        problem = None if args.quarantine else reason_problem(reason)
        if problem is not None:
            sys.stdout.write(json.dumps({"error": problem}) + "\n")
            return 2
        if args.quarantine and not reason.startswith(QUARANTINE):
            reason = normal_reason(QUARANTINE + reason)
        write_atomic(_note_path(), reason + "\n", mode=0o600)
        from grid_ops.module_utils.grid_node_os import raylets

        address = args.address or os.environ.get("RAY_ADDRESS") or ""
        ray = "no address"
        if not raylets():  # nothing of Ray to drain here (and its GCS may be down too)
            ray = "not running"
        elif address:
            try:
                ray = drain_in_ray(address, args.node, reason, args.deadline)
            except Exception as exc:  # the GCS or controller is down: the note holds
                ray = f"not reached: {_first_line(exc)}"
        out = {"drained": True, "reason": reason, "ray": ray}
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
