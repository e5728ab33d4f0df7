"""Passive GPU health checks from ``nvidia-smi -q -x`` (the one parser of it).

Runs on the nodes inside the health fact module (as Ansible module_utils, and in the
probe that sends the module over plain ssh) with the node's own Python 3 standard
library only (3.8 and later: no newer syntax).

Each failed check is a dict: ``check`` (a stable name), ``severity`` ("sick": keep work
off the node; "warning": say so, keep it in service), ``reason`` (one line) and ``gpu``
(the GPU's index, or None for the node). A field nvidia-smi does not report for a card
(``N/A``, ``[N/A]``, ``[Not Supported]``, missing) never fails a check: unknown is not
sick.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

SMI_ARGS = ("-q", "-x")
SICK = "sick"
WARNING = "warning"
# nvidia-smi's clock event (throttle) reasons that mean the hardware is in trouble;
# older drivers name the same elements clocks_throttle_reason_*.
SLOWDOWNS = {
    "hw_slowdown": (WARNING, "hardware slowdown (HW_SLOWDOWN: a power or cooling fault)"),
    "hw_thermal_slowdown": (SICK, "hardware thermal slowdown (the GPU is overheating)"),
    "hw_power_brake_slowdown": (WARNING, "power brake slowdown (the external power brake)"),
    "sw_thermal_slowdown": (WARNING, "software thermal slowdown (clocks cut to cool down)"),
}


def _text(node: ET.Element | None, path: str) -> str | None:
    """The text at ``path`` below ``node``, or None when it is missing or not reported."""
    if node is None:
        return None
    found = node.find(path)
    if found is None or found.text is None:
        return None
    text = found.text.strip()
    if not text or text.strip("[]").lower() in ("n/a", "not supported", "unknown error"):
        return None
    return text


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text.split()[0])
    except (ValueError, IndexError):
        return None


def _yes(text: str | None) -> bool | None:
    if text is None:
        return None
    word = text.strip().lower()
    if word in ("yes", "active", "enabled"):
        return True
    if word in ("no", "not active", "disabled"):
        return False
    return None


def _uncorrectable(ecc: ET.Element | None) -> int | None:
    """Volatile (since the driver loaded) uncorrectable ECC errors: the sum of every
    ``*uncorrectable*`` count (Hopper and later: sram/dram), or the older
    ``double_bit/total``. None when the card reports none of them."""
    volatile = ecc.find("volatile") if ecc is not None else None
    if volatile is None:
        return None
    counts = [_int(_text(child, ".")) for child in volatile if "uncorrectable" in child.tag]
    older = _int(_text(volatile, "double_bit/total"))
    known = [c for c in [*counts, older] if c is not None]
    return sum(known) if known else None


def parse(text: str) -> dict[str, object]:
    """The parts of ``nvidia-smi -q -x`` the checks read; ValueError when it is not
    that XML."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise ValueError(f"nvidia-smi -q -x printed no XML: {exc}") from None
    if root.tag != "nvidia_smi_log":
        raise ValueError(f"nvidia-smi -q -x printed <{root.tag}>, not <nvidia_smi_log>")
    gpus: list[dict[str, object]] = []
    for index, gpu in enumerate(root.findall("gpu")):
        reasons = gpu.find("clocks_event_reasons")
        prefix = "clocks_event_reason_"
        if reasons is None:
            reasons = gpu.find("clocks_throttle_reasons")
            prefix = "clocks_throttle_reason_"
        ecc = gpu.find("ecc_errors")
        pages = gpu.find("retired_pages")
        rows = gpu.find("remapped_rows")
        gpus.append(
            {
                "index": index,  # nvidia-smi's order, as --query-gpu's index
                "bus_id": gpu.get("id", ""),
                "uuid": _text(gpu, "uuid") or "",
                "name": _text(gpu, "product_name") or "",
                "persistence_mode": _yes(_text(gpu, "persistence_mode")),
                "ecc_mode": _yes(_text(gpu, "ecc_mode/current_ecc")),
                "ecc_uncorrectable_volatile": _uncorrectable(ecc),
                "memory_repair_pending": any(
                    _yes(_text(ecc, tag))
                    for tag in ("channel_repair_pending", "tpc_repair_pending")
                ),
                "memory_unrepairable": _yes(_text(ecc, "unrepairable_memory")),
                "retired_pages_pending": _yes(_text(pages, "pending_retirement"))
                or _yes(_text(pages, "pending_blacklist")),
                "remapped_rows_pending": _yes(_text(rows, "remapped_row_pending")),
                "remapped_rows_failure": _yes(_text(rows, "remapped_row_failure")),
                "slowdowns": sorted(
                    name for name in SLOWDOWNS if _yes(_text(reasons, prefix + name))
                ),
            }
        )
    return {
        "driver_version": _text(root, "driver_version") or "",
        "cuda_version": _text(root, "cuda_version") or "",
        "attached_gpus": _int(_text(root, "attached_gpus")),
        "gpus": gpus,
    }


def _fail(check: str, severity: str, reason: str, gpu: object = None) -> dict[str, object]:
    return {"check": check, "severity": severity, "reason": reason, "gpu": gpu}


def checks(report: dict[str, object], expected: int | None) -> list[dict[str, object]]:
    """The failed checks of one node's parsed report; ``expected``: the GPUs its config
    gives (None: whatever is there is right)."""
    failed: list[dict[str, object]] = []
    gpus = list(report["gpus"])  # type: ignore[call-overload]
    attached = report.get("attached_gpus")
    found = len(gpus)
    if expected is not None and found < expected:
        failed.append(
            _fail("gpu_count", SICK, f"{found} GPU(s) found, the config gives {expected}")
        )
    elif isinstance(attached, int) and found < attached:
        failed.append(
            _fail("gpu_count", SICK, f"the driver counts {attached} GPU(s) but reports {found}")
        )
    for gpu in gpus:
        at = gpu["index"]
        where = f"GPU {at}"
        errors = gpu["ecc_uncorrectable_volatile"]
        if isinstance(errors, int) and errors > 0:
            failed.append(
                _fail(
                    "ecc_uncorrectable",
                    SICK,
                    f"{where}: {errors} uncorrectable ECC error(s) since the driver loaded",
                    at,
                )
            )
        if gpu["remapped_rows_failure"] or gpu["memory_unrepairable"]:
            failed.append(
                _fail(
                    "memory_unrepairable",
                    SICK,
                    f"{where}: memory row remapping failed (the card needs service)",
                    at,
                )
            )
        if gpu["remapped_rows_pending"] or gpu["memory_repair_pending"]:
            failed.append(
                _fail(
                    "remap_pending",
                    SICK,
                    f"{where}: a memory repair is pending (reset the GPU)",
                    at,
                )
            )
        if gpu["retired_pages_pending"]:
            failed.append(
                _fail(
                    "retired_pages_pending",
                    SICK,
                    f"{where}: retired pages are pending (reset the GPU)",
                    at,
                )
            )
        for name in gpu["slowdowns"]:
            severity, why = SLOWDOWNS[str(name)]
            failed.append(_fail(name, severity, f"{where}: {why}", at))
        if gpu["persistence_mode"] is False:
            failed.append(
                _fail(
                    "persistence_mode",
                    WARNING,
                    f"{where}: persistence mode is off (nvidia-smi -pm 1)",
                    at,
                )
            )
    return failed


def driver_failed(detail: str) -> dict[str, object]:
    """The check a node fails when nvidia-smi is there but does not answer."""
    return _fail("driver", SICK, f"nvidia-smi is installed but failed: {detail}")
