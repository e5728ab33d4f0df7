"""Who calls the controller: users, their tokens, and what each may touch.

The config's ``users:`` (name, role, quota) reach the controller in its settings. A
user's token is made on the head (``user-token``) and shown once; the head keeps only
its SHA-256, in ``users.json`` in the controller's state dir (0600). Each call through
the socket carries the caller's token; the controller resolves it to a ``Caller``.

A cluster without ``users:`` has one user: calls carry no token, every caller is an
admin, and a job's submitter is whoever the operator's machine says it is.

This is attribution and fairness for a trusted lab, not isolation: the members reach
the head as the cluster's one Unix user, so one who wants to can read its files.

Standard library only.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grid_ops.fsutil import write_atomic
from grid_ops.runtime.nodes import Denied, Refused

USERS_FILE = "users.json"
ADMIN, MEMBER = "admin", "member"
INTERNAL = "grid-ops"  # the cluster's own code (an actor call, not the socket)
NO_TOKEN_HINT = (
    "Ask an admin of the cluster for your token ('grid-ops user token NAME' on their "
    "machine) and keep it on yours with 'grid-ops user login'."
)


@dataclass(frozen=True)
class Caller:
    """Who asks: a configured user, the one user of a cluster without users, or the
    cluster's own code."""

    name: str
    role: str

    @property
    def admin(self) -> bool:
        return self.role == ADMIN


CLUSTER_CODE = Caller(INTERNAL, ADMIN)


def configured(settings: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The settings' users by name (empty: a cluster without users)."""
    rows = settings.get("users") or []
    return {str(u["name"]): dict(u) for u in rows if isinstance(u, dict) and u.get("name")}


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Tokens:
    """The token digests kept on the head, one per user (a new token replaces the old)."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / USERS_FILE

    def _load(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise Refused(
                f"The head's token file {self.path} cannot be read ({exc}).",
                "Remove it on the head and make every user's token again "
                "('grid-ops user token NAME').",
            ) from None
        rows = data.get("tokens") if isinstance(data, dict) else None
        if not isinstance(rows, dict):
            return {}  # not ours: no token matches, so every call is refused
        return {str(k): str(v) for k, v in rows.items() if isinstance(v, str)}

    def holders(self) -> list[str]:
        """The users that have a token."""
        return sorted(self._load())

    def issue(self, name: str) -> str:
        """A new token for ``name`` (their old one stops working)."""
        token = secrets.token_urlsafe(32)
        rows = {**self._load(), name: digest(token)}
        write_atomic(self.path, json.dumps({"tokens": rows}, indent=1) + "\n", mode=0o600)
        return token

    def revoke(self, name: str) -> bool:
        rows = self._load()
        if rows.pop(name, None) is None:
            return False
        write_atomic(self.path, json.dumps({"tokens": rows}, indent=1) + "\n", mode=0o600)
        return True

    def owner(self, token: str) -> str | None:
        """The user whose token this is (constant-time per entry), else None."""
        given = digest(token)
        found = None
        for name, kept in self._load().items():
            if hmac.compare_digest(given, kept):
                found = name
        return found


def identify(
    settings: Mapping[str, Any], tokens: Tokens, token: str | None, claimed: str = ""
) -> Caller:
    """The caller a socket request's ``token`` names (Refused: none, or not known). On
    a cluster without users it is whoever the operator's machine says (``claimed``)."""
    users = configured(settings)
    if not users:
        return Caller(claimed, ADMIN)
    if not token:
        raise Denied("This cluster has users: a call needs your token.", NO_TOKEN_HINT)
    name = tokens.owner(token)
    if name is None:
        raise Denied("Your token is not known to this cluster (replaced or made elsewhere).",
                      NO_TOKEN_HINT)  # fmt: skip
    if name not in users:
        raise Denied(
            f"'{name}' is no longer a user of this cluster (not in its config's users).",
            "Ask an admin to add you back to users: and run 'grid-ops apply'.",
        )
    return Caller(name, str(users[name].get("role") or MEMBER))


def may_issue(settings: Mapping[str, Any], tokens: Tokens, caller: Caller, name: str) -> None:
    """Whether ``caller`` may make ``name``'s token: an admin may make anyone's; before
    any admin holds a token, the first admin's may be made by whoever reaches the head
    (they hold the cluster's SSH key, which is more)."""
    users = configured(settings)
    if not users:
        raise Refused(
            "This cluster has no users: nobody needs a token.",
            "List them under users: in the config (one with role: admin) and run 'grid-ops apply'.",
        )
    if name not in users:
        raise Refused(f"No user '{name}' in the config.", f"Users: {', '.join(sorted(users))}.")
    if caller.admin:
        return
    admins = {n for n, u in users.items() if u.get("role") == ADMIN}
    if not admins & set(tokens.holders()) and name in admins:
        return
    raise Denied(f"Only an admin makes tokens; you are {caller.name or 'not identified'}.")


def check_owner(caller: Caller, owner: str, what: str, verb: str) -> None:
    """Refuse ``caller`` acting on ``what`` owned by ``owner`` unless it is theirs or
    they are an admin."""
    if caller.admin or not owner or caller.name == owner:
        return
    raise Denied(
        f"{what} belongs to {owner}; only {owner} or an admin may {verb} it.",
        "See whose work is whose with 'grid-ops job list' or 'grid-ops status'.",
    )
