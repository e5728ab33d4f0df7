"""Users' tokens at the API: on a cluster with ``users:``, a request may carry a user's
own token instead of the serve token; the head says whose it is (``whoami``), and the
request's controller calls then carry it, so the head checks what that user may do.

Answers are kept a short while by the token's digest (a known token for ``KEEP_KNOWN``
seconds, an unknown one for ``KEEP_UNKNOWN``), so a page polling every few seconds costs
the head one check a minute."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from typing import TYPE_CHECKING

from grid_ops.errors import Forbidden, GridOpsError

if TYPE_CHECKING:
    from grid_ops.model import ClusterModel

log = logging.getLogger("grid_ops.serve")
KEEP_KNOWN = 60.0
KEEP_UNKNOWN = 5.0


class UserTokens:
    """``check(token)``: whether the head knows ``token`` as a user's (cached)."""

    def __init__(self, cluster: ClusterModel) -> None:
        self.cluster = cluster
        self.lock = threading.Lock()
        self.seen: dict[str, tuple[bool, float]] = {}

    def __call__(self, token: str) -> bool:
        key = hashlib.sha256(token.encode()).hexdigest()
        now = time.monotonic()
        with self.lock:
            known, until = self.seen.get(key, (False, 0.0))
        if now < until:
            return known
        from grid_ops.actions import users

        try:
            users.check(self.cluster, token)
            known = True
        except Forbidden:
            known = False
        except GridOpsError as exc:  # the head cannot say now: refuse, ask again soon
            log.warning("cannot check a user's token with the head: %s", exc.message)
            return False
        with self.lock:
            self.seen[key] = (known, now + (KEEP_KNOWN if known else KEEP_UNKNOWN))
        return known
