"""``python -m grid_ops.runtime.client OP [--args JSON] [--stdin]``: one controller call.

Runs on the head (the CLI reaches it over the cluster's SSH settings) and needs no Ray:
it only speaks to the controller's Unix socket, so a warm round trip costs a Python
start and a few milliseconds. While ``cluster start`` is still starting the controller
or handing it new settings (in the background), the call waits for it. Prints one JSON
line (``{"ok": …, "result" | "error" …, "payload": N}``) and then N raw bytes. Exit 0
on success, 1 when the controller refused the request, 3 when no controller answers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from grid_ops.layout import EXIT_CONTROLLER_DOWN as EXIT_DOWN
from grid_ops.layout import EXIT_REFUSED
from grid_ops.runtime import protocol


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("op")
    parser.add_argument("--args", default="{}", help="JSON object of arguments")
    parser.add_argument(
        "--auth",
        action="store_true",
        help="the first line of standard input is who asks: JSON {token, user}",
    )
    parser.add_argument("--stdin", action="store_true", help="send standard input as payload")
    parser.add_argument("--state-dir", default=protocol.DEFAULT_STATE_DIR)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--wait", type=float, default=120.0, help="for a controller starting")
    opts = parser.parse_args(argv)
    auth = None
    if opts.auth:
        try:
            auth = json.loads(sys.stdin.buffer.readline() or b"{}")
        except ValueError:
            auth = {}
    payload = sys.stdin.buffer.read() if opts.stdin else b""
    out = sys.stdout.buffer
    state = protocol.state_dir(opts.state_dir)
    deadline = time.monotonic() + opts.wait
    # A 'cluster start' under way may still hand the running controller new settings
    # (users among them): a call waits for them, not to be answered under the old ones.
    while _settling(state) and time.monotonic() < deadline:
        time.sleep(0.2)
    while True:
        try:
            result, data = protocol.call(
                state, opts.op, json.loads(opts.args), payload, opts.timeout, auth
            )
            break
        except protocol.ControllerDown as exc:
            started = protocol.ensure_status(state)
            if started["state"] == "starting" and time.monotonic() < deadline:
                time.sleep(0.2)
                continue
            error = str(exc)
            if started["state"] == "failed":
                error = f"its last start failed: {started.get('error')}"
            protocol.write_message(out, {"ok": False, "down": True, "error": error})
            return EXIT_DOWN
        except protocol.RemoteError as exc:
            answer = {"ok": False, "error": str(exc), "hint": exc.hint}
            if exc.missing:
                answer["missing"] = True
            if exc.conflict:
                answer["conflict"] = True
            if exc.forbidden:
                answer["forbidden"] = True
            protocol.write_message(out, answer)
            return EXIT_REFUSED
        except (OSError, ValueError) as exc:
            protocol.write_message(out, {"ok": False, "error": f"{type(exc).__name__}: {exc}"})
            return EXIT_REFUSED
    protocol.write_message(out, {"ok": True, "result": result}, data)
    return 0


def _settling(state: Path) -> bool:
    """Is a 'cluster start' under way bringing the running controller to other settings
    than it has? (No controller at all: the call's own wait below covers that.)"""
    status = protocol.ensure_status(state)
    wanted = status.get("version")
    if status["state"] != "starting" or not wanted:
        return False
    try:
        running, _ = protocol.call(state, "ping", timeout=5)
    except (protocol.ControllerDown, protocol.RemoteError, OSError, ValueError):
        return False
    return bool(running.get("version") != wanted)


if __name__ == "__main__":
    sys.exit(main())
