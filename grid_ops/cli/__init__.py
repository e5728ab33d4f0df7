"""The grid-ops command line: the Typer app is in grid_ops.cli.app.

Importing this package loads nothing: the quick path (grid_ops.cli.quick) draws its tables
with grid_ops.cli.views and grid_ops.cli.output without loading Typer or the commands.
"""

from __future__ import annotations


def main() -> None:
    """Run the full CLI (Typer) on sys.argv."""
    from grid_ops.cli.app import main as run

    run()
