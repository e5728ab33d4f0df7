"""A cluster's identity: an id made once, not its name.

Two configs may carry the same ``name`` (every ``grid-ops init`` writes the same starter
name), so nothing is keyed by it: every token, record and cache on this machine is kept
under the cluster's id, and each node carries the id of the cluster that provisioned it
(``layout.CLUSTER_ID``), so ``apply`` and ``reset`` refuse a node of another cluster.

The id is the config's ``cluster_id`` when it sets one (a config shared by several
operators of one cluster carries it), else made once for the config file and kept in
this machine's state dir (``ids/<digest of the file's path>.json``). A config that was
never read from a file (built in memory) gets an id kept under its name instead.

Standard library only at import.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import time

from grid_ops.paths import state_dir_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

ID_RE = re.compile(r"[a-z0-9][a-z0-9-]{6,61}[a-z0-9]")
ID_RULE = (
    "must be 8 to 63 characters of lowercase letters, digits and '-', starting and "
    "ending with a letter or digit"
)


def valid(value: str) -> bool:
    return ID_RE.fullmatch(value) is not None


def new_id() -> str:
    """A fresh id: 16 random hex digits."""
    return secrets.token_hex(8)


def registry_file(source: str) -> str:
    """Where the id of the config at ``source`` (an absolute path, or ``name:NAME`` for a
    config built in memory) is kept."""
    import hashlib

    digest = hashlib.sha256(source.encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return os.path.join(state_dir_name(), "ids", f"{digest}.json")


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    found = data.get("id") if isinstance(data, dict) else None
    return found if isinstance(found, str) and valid(found) else None


def of_source(source: str, name: str) -> str:
    """The id of the config at ``source``: the one kept for it, else made now (kept
    0600 in a 0700 dir). Made at most once: two processes asking at once get the same.
    The first id made for a config of ``name`` takes over the state an older grid-ops
    kept under that name."""
    path = registry_file(source)
    found = _read(path)
    if found:
        return found
    from grid_ops.fsutil import write_atomic

    folder = os.path.dirname(path)
    os.makedirs(folder, mode=0o700, exist_ok=True)
    made = new_id()
    text = json.dumps({"id": made, "config": source, "name": name, "made": time.time()})
    draft = f"{path}.{made}.draft"
    write_atomic(draft, text + "\n", mode=0o600)
    try:
        os.link(draft, path)  # fails when another process made it first
    except FileExistsError:
        pass
    finally:
        with contextlib.suppress(OSError):
            os.unlink(draft)
    found = _read(path)
    if found is None:
        raise OSError(f"cannot read {path}")
    if found == made:
        adopt_legacy(name, made)
    return found


def legacy_moves() -> list[Callable[[str], str]]:
    """Each piece of per-cluster state as a function of its key (the id now; the name
    before grid-ops knew ids)."""
    from grid_ops import facts, lifecycle
    from grid_ops.drivers import inventory
    from grid_ops.paths import serve_token_file

    return [
        lambda key: os.path.dirname(lifecycle.applied_file(key)),
        lambda key: str(inventory.ray_token_file(key).parent),
        facts.cache_name,
        lambda key: str(serve_token_file(key)),
    ]


def adopt_legacy(name: str, made: str) -> None:
    """Move what an older grid-ops kept under the cluster's name to its new id (its Ray
    token above all: the nodes hold the same). Pieces already kept under the id stay."""
    if name == made:
        return
    for where in legacy_moves():
        old, new = where(name), where(made)
        if os.path.lexists(old) and not os.path.lexists(new):
            with contextlib.suppress(OSError):
                os.makedirs(os.path.dirname(new), mode=0o700, exist_ok=True)
                os.rename(old, new)
