"""How a use case reports progress while it works, without knowing who listens.

The CLI passes one that draws on the terminal (grid_ops.cli.progress.Console); the API
server, --json runs and tests pass :data:`QUIET` or their own. A use case says notes
(``info``), trouble that does not stop it (``warn``), and each playbook run's per-host
progress (``playbook``: a context around the run, giving the callback that
grid_ops.drivers.ansible.run calls with host, task and status).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    HostProgress = Callable[[str, str, "str | None"], None]


def _ignore(host: str, task: str, status: str | None) -> None:
    """No one watches this run."""


class Progress:
    """Says nothing: the base of every listener, and what a caller without one passes."""

    def info(self, text: str) -> None:
        """A note on what is being done."""

    def warn(self, text: str) -> None:
        """Trouble the use case goes on past (it is in the result too, where it matters)."""

    def playbook(self, title: str, hosts: list[str]) -> AbstractContextManager[HostProgress]:
        """Around one playbook run on ``hosts``: the per-host callback."""
        return nullcontext(_ignore)


QUIET = Progress()
