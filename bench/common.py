"""Helpers shared by the benchmarks: timing and result files."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from grid_ops import lab
from grid_ops.model import config
from grid_ops.model.config import ClusterConfig

RESULTS = Path(__file__).resolve().parent / "results"


def timed(fn: Callable[[], object], runs: int) -> list[float]:
    """Wall seconds of ``runs`` calls of ``fn``."""
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def run(cmd: list[str], **kwargs: object) -> None:
    subprocess.run(cmd, check=True, capture_output=True, **kwargs)  # type: ignore[call-overload]


def report(name: str, data: dict[str, object]) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n")
    print(json.dumps(data, indent=2))


def median(values: list[float]) -> float:
    return round(statistics.median(values), 4)


def parse_args(doc: str | None, runs: int) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--runs", type=int, default=runs)
    return parser.parse_args()


@dataclass
class LabBench:
    """A lab brought up for one benchmark run, with its config and the grid-ops CLI."""

    work: Path
    config_path: Path
    config: ClusterConfig
    exe: str = field(default_factory=lambda: str(Path(sys.executable).parent / "grid-ops"))

    def close_connections(self) -> None:
        """Drop every open ssh connection to the lab (for cold measurements)."""
        lab._kill(lab._controller_ssh_pids({n.host for n in self.config.nodes}))

    def cold(self, fn: Callable[[], object], runs: int) -> list[float]:
        out: list[float] = []
        for _ in range(runs):
            self.close_connections()
            out += timed(fn, 1)
        return out


def compile_package() -> None:
    """Byte-compile grid_ops as an installed package is (pip compiles on install): an
    editable checkout under PYTHONDONTWRITEBYTECODE would otherwise compile every module
    from source on every start and measure that instead of grid-ops."""
    import compileall

    import grid_ops

    compileall.compile_dir(str(Path(grid_ops.__file__).parent), quiet=1)


@contextmanager
def lab_bench(nodes: int) -> Iterator[LabBench]:
    """A fresh lab of ``nodes`` nodes with its own state dir, torn down afterwards."""
    compile_package()
    work = Path(tempfile.mkdtemp(prefix="grid-ops-bench-"))
    os.environ["GRID_OPS_STATE_DIR"] = str(work / "state")
    cfg_path = work / "lab.yaml"
    lab.up(nodes, cfg_path)
    try:
        yield LabBench(work=work, config_path=cfg_path, config=config.load(cfg_path))
    finally:
        lab.down()
