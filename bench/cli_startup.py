"""`grid-ops --help` wall time vs a bare interpreter start, same venv, same run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import compile_package, median, report, run, timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    exe = str(Path(sys.executable).parent / "grid-ops")
    compile_package()
    run([exe, "--help"])  # warm the page cache
    bare = timed(lambda: run([sys.executable, "-c", "pass"]), args.runs)
    help_ = timed(lambda: run([exe, "--help"]), args.runs)
    sub = timed(lambda: run([exe, "lab", "--help"]), args.runs)
    report(
        "cli_startup",
        {
            "runs": args.runs,
            "python_bare_s": median(bare),
            "grid_ops_help_s": median(help_),
            "grid_ops_lab_help_s": median(sub),
            "help_minus_bare_s": round(median(help_) - median(bare), 4),
            "target_s": 0.5,
        },
    )


if __name__ == "__main__":
    main()
