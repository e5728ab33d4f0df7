"""Errors a user can act on: one paragraph, what went wrong and what to do next."""

from __future__ import annotations


class GridOpsError(Exception):
    """An error shown to the user as a short paragraph, never as a traceback."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} {self.hint}" if self.hint else self.message


class ConfigError(GridOpsError):
    """The cluster config is missing, unreadable or invalid (exit code 2)."""

    exit_code = 2


class UsageError(GridOpsError):
    """The command line asks for something that cannot be done as asked (exit code 2)."""

    exit_code = 2


class NotFound(UsageError):
    """The command names a node, job, boost or object that does not exist (exit code 2;
    HTTP 404 in the REST API)."""


class Conflict(UsageError):
    """The request clashes with what exists, e.g. a live job of that name (exit code 2;
    HTTP 409)."""


class Forbidden(UsageError):
    """The caller may not do this: another user's job, boost or object, an admin's
    command, no known token (exit code 2; HTTP 403)."""


class Unavailable(GridOpsError):
    """The cluster cannot answer: the head unreachable, Ray or the controller down (exit
    code 1; HTTP 503)."""


class LabError(GridOpsError):
    """The local lab could not be set up, inspected or torn down."""


class AnsibleRunError(GridOpsError):
    """ansible-runner could not start or finish a playbook run."""


def bug_report(exc: BaseException) -> tuple[str, str]:
    """The message and hint shown for an exception grid-ops did not expect (a bug).

    Plain text: whoever prints it escapes it (the exception's text may hold anything).
    """
    return (
        f"Unexpected error ({type(exc).__name__}: {exc}).",
        "This is a grid-ops bug; run again with GRID_OPS_DEBUG=1 to see the traceback, "
        "and report it with that output.",
    )
