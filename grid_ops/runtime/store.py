"""The controller's state on the head's disk: one JSON document, replaced atomically.

What must outlive a controller or head restart lives here: reservations (boosts and
shared allocations), the offload policy and its recent decisions, the memory pool's
directory, and the cluster settings the controller was last started with.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from grid_ops.fsutil import write_atomic

STATE_FILE = "state.json"


def empty() -> dict[str, Any]:
    return {
        "settings": {},
        "reservations": {},
        "released": [],
        "offload": {"policy": None, "decisions": []},
        "pool": {},
    }


def load(directory: Path) -> dict[str, Any]:
    data = empty()
    try:
        stored = json.loads((directory / STATE_FILE).read_text())
    except (OSError, ValueError):
        return data
    if isinstance(stored, dict):
        data.update({k: v for k, v in stored.items() if k in data})
    return data


def save(directory: Path, data: dict[str, Any]) -> None:
    write_atomic(directory / STATE_FILE, json.dumps(data, indent=1, default=str), mode=0o600)
