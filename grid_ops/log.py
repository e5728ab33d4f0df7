"""grid-ops' own log (stderr): what it runs and decides, at the level asked for.

The level comes from, first to last: the global ``--log-level`` (or ``-v`` for INFO,
``-vv`` for DEBUG, ``-q`` for ERROR), ``$GRID_OPS_LOG_LEVEL``, the config's
``logging.level``, and WARNING. ``logging.format: json`` writes one JSON object a line.
At DEBUG, Ansible runs at verbosity 3 (its output is in each run's directory).

Standard library only, and nothing is set up until a command asks (the quick path does
not log).
"""

from __future__ import annotations

import json
import logging
import os
import sys

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
ENV = "GRID_OPS_LOG_LEVEL"
logger = logging.getLogger("grid_ops")
_chosen: str | None = None  # from the command line


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {
                "time": round(record.created, 3),
                "level": record.levelname,
                "message": record.getMessage(),
            }
        )


def choose(level: str | None) -> None:
    """The level the command line asked for (None: none); applied at once."""
    global _chosen
    _chosen = level.upper() if level else None
    configure(None, "text")


def configure(config_level: str | None, fmt: str) -> None:
    """Set the log up from the command line, the environment and the config's
    ``logging`` section (``config_level``, ``fmt``)."""
    level = _chosen or (os.environ.get(ENV) or "").upper() or (config_level or "WARNING")
    if level not in LEVELS:
        level = "WARNING"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        _JsonFormatter()
        if fmt == "json"
        else logging.Formatter("grid-ops %(levelname)s: %(message)s")
    )
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False


def debugging() -> bool:
    return logger.isEnabledFor(logging.DEBUG)
