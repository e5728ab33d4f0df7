"""Sick GPU nodes derived from the real H100 capture (tests/fixtures/gpu-h100), in the
same format: `nvidia-smi -q -x` with one field changed the way a sick card reports it.

Each variant edits the real XML as text, line by line, so everything else stays exactly
what the driver printed."""

from __future__ import annotations

import re
from pathlib import Path

FIXTURE = Path(__file__).parent / "fixtures" / "gpu-h100" / "nvidia-smi-q.idle.xml"
# What a node prints when the driver does not answer (nvidia-smi exits 9).
DRIVER_ERROR = (
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
    "Make sure that the latest NVIDIA driver is installed and running.\n"
)


def real() -> str:
    return FIXTURE.read_text()


def _once(text: str, old: str, new: str, after: str = "") -> str:
    """``text`` with the first ``old`` after ``after`` replaced by ``new`` (it must be there)."""
    start = text.index(after) if after else 0
    at = text.index(old, start)
    return text[:at] + new + text[at + len(old) :]


def two_gpus(text: str | None = None) -> str:
    """A well node with two of the captured card (the second on the next bus id)."""
    text = text or real()
    block = text[text.index("\t<gpu id=") : text.index("</gpu>") + len("</gpu>\n")]
    second = block.replace('gpu id="00000000:00:06.0"', 'gpu id="00000000:00:07.0"')
    second = re.sub(r"GPU-0bc60ea9-[0-9a-f-]+", "GPU-0bc60ea9-73e2-6fa3-43f3-d0badee38d82", second)
    second = second.replace("<minor_number>0</minor_number>", "<minor_number>1</minor_number>")
    text = text.replace("<attached_gpus>1</attached_gpus>", "<attached_gpus>2</attached_gpus>")
    at = text.index("</gpu>") + len("</gpu>\n")
    return text[:at] + second + text[at:]


def running(pid: int, text: str | None = None) -> str:
    """The busy card with its one process (``python3``, 21482 MiB) as process ``pid``."""
    text = text or real()
    return _once(text, "<pid>430</pid>", f"<pid>{pid}</pid>", after="<processes>")


def one_gpu_lost(text: str | None = None) -> str:
    """Two GPUs attached, one fell off the bus: the driver counts 2 and reports 1."""
    return (text or real()).replace(
        "<attached_gpus>1</attached_gpus>", "<attached_gpus>2</attached_gpus>"
    )


def ecc_errors(count: int = 3) -> str:
    return _once(real(), "<dram_uncorrectable>0<", f"<dram_uncorrectable>{count}<", "<volatile>")


def remap_pending() -> str:
    return _once(real(), "<remapped_row_pending>No<", "<remapped_row_pending>Yes<")


def thermal_slowdown() -> str:
    return _once(
        real(),
        "<clocks_event_reason_hw_thermal_slowdown>Not Active<",
        "<clocks_event_reason_hw_thermal_slowdown>Active<",
    )


def persistence_off() -> str:
    return _once(real(), "<persistence_mode>Enabled<", "<persistence_mode>Disabled<")


def not_reported() -> str:
    """Every value the checks read given as a card that does not report it does."""
    text = real()
    for tag in (
        "persistence_mode",
        "dram_uncorrectable",
        "sram_uncorrectable_parity",
        "sram_uncorrectable_secded",
        "remapped_row_pending",
        "remapped_row_failure",
        "unrepairable_memory",
        "channel_repair_pending",
        "tpc_repair_pending",
    ):
        text = re.sub(rf"<{tag}>[^<]*<", f"<{tag}>[Not Supported]<", text)
    return re.sub(r"<(clocks_event_reason_[a-z_]+)>[^<]*<", r"<\1>[N/A]<", text)


def fields_missing() -> str:
    """The same card on a driver that prints none of those sections."""
    text = real()
    for section in ("ecc_errors", "retired_pages", "remapped_rows", "clocks_event_reasons"):
        text = re.sub(rf"\t*<{section}>.*?</{section}>\n", "", text, count=1, flags=re.S)
    return re.sub(r"\t*<persistence_mode>[^<]*</persistence_mode>\n", "", text)
