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

import os
import re
from collections.abc import Iterable

TYPE_CHECKING = False
if TYPE_CHECKING:
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


def _any(values: Iterable[bool | None]) -> bool | None:
    """True if any is, None if none is known, else False."""
    known = [v for v in values if v is not None]
    return any(known) if known else None


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
    import xml.etree.ElementTree as ET  # here: a node without GPUs never loads it

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
                "memory_repair_pending": _any(
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


def smi_missing(expected: int) -> dict[str, object]:
    """The check a node fails when the config gives it GPUs and it has no nvidia-smi."""
    return _fail("gpu_count", SICK, f"no nvidia-smi found, the config gives {expected} GPU(s)")


def failed(check: str, severity: str, reason: str) -> dict[str, object]:
    """A failed check of the node (not of one GPU), for the fact module's other checks."""
    return _fail(check, severity, reason)


def driver_failed(detail: str) -> dict[str, object]:
    """The check a node fails when nvidia-smi is there but does not answer."""
    return _fail("driver", SICK, f"nvidia-smi is installed but failed: {detail}")


# Xid events (the NVIDIA driver's error reports in the kernel log): what each number means
# for the node, after NVIDIA's Xid catalogue. Errors a program causes (13, 31, 43) or
# that the driver contained are warnings; a card that fell off the bus, lost memory or a
# link, or whose firmware failed is sick. An Xid not listed is a warning.
XIDS = {
    13: (WARNING, "graphics engine exception (often the program)"),
    31: (WARNING, "GPU memory page fault (often the program)"),
    43: (WARNING, "GPU stopped processing (often the program)"),
    48: (SICK, "double-bit ECC error"),
    61: (SICK, "internal micro-controller breakpoint"),
    62: (SICK, "internal micro-controller halt"),
    63: (WARNING, "ECC page retirement or row remap recorded (reset the GPU)"),
    64: (SICK, "ECC page retirement or row remap failed"),
    74: (SICK, "NVLink error"),
    79: (SICK, "the GPU has fallen off the bus"),
    92: (WARNING, "high single-bit ECC error rate"),
    94: (WARNING, "contained ECC error (reset the GPU)"),
    95: (SICK, "uncontained ECC error"),
    119: (SICK, "GSP firmware timeout"),
    120: (SICK, "GSP firmware error"),
    140: (SICK, "unrecovered ECC error"),
}
IGNORED_XIDS = (45,)  # preemptive clean-up after a program ended: not a fault
# Xids older than this (seconds) are history: a fault that lasts shows in the other checks.
XID_WINDOW_S = 3600.0
_XID = re.compile(r"NVRM: Xid \(PCI:([0-9a-fA-F]+):([0-9a-fA-F]+):([0-9a-fA-F]+)[^)]*\): (\d+)")


def bus_key(bus_id: str) -> tuple[int, int, int] | None:
    """(domain, bus, device) of a PCI address as nvidia-smi ('00000000:18:00.0') or the
    kernel log ('0000:18:00') spells it."""
    parts = bus_id.split(".")[0].split(":")
    if len(parts) != 3:
        return None
    try:
        return int(parts[0], 16), int(parts[1], 16), int(parts[2], 16)
    except ValueError:
        return None


def xid_events(
    records: list[str], now_us: int, window_s: float = XID_WINDOW_S
) -> list[dict[str, object]]:
    """Xid events of the last ``window_s`` seconds in /dev/kmsg records
    ('prio,seq,usec,flags;message'; ``now_us``: microseconds since boot, as /proc/uptime),
    each ``{xid, bus, text}``."""
    found: list[dict[str, object]] = []
    for record in records:
        head, _, message = record.partition(";")
        fields = head.split(",")
        match = _XID.search(message)
        if match is None or len(fields) < 3:
            continue
        try:
            when = int(fields[2])
        except ValueError:
            continue
        if now_us - when > window_s * 1e6:
            continue
        domain, bus, device, xid = match.groups()
        found.append(
            {
                "xid": int(xid),
                "bus": (int(domain, 16), int(bus, 16), int(device, 16)),
                "text": message.strip()[:200],
            }
        )
    return found


def read_kmsg(path: str = "/dev/kmsg") -> list[str] | None:
    """Every record in the kernel log, or None when this user may not read it
    (kernel.dmesg_restrict) or it is not there."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    records: list[str] = []
    try:
        while True:
            try:
                data = os.read(fd, 8192)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == 32:  # EPIPE: a record was overwritten while reading
                    continue
                return records or None
            if not data:
                break
            records.append(data.decode("utf-8", "replace"))
    finally:
        os.close(fd)
    return records


def uptime_us(path: str = "/proc/uptime") -> int | None:
    try:
        with open(path, encoding="ascii") as handle:
            return int(float(handle.read().split()[0]) * 1e6)
    except (OSError, ValueError, IndexError):
        return None


def xid_checks(
    events: list[dict[str, object]], gpus: list[dict[str, object]]
) -> list[dict[str, object]]:
    """One failed check per Xid number and GPU of this node (a box's kernel log may
    name other cards: only this node's GPUs count, matched by bus id)."""
    index = {}
    for gpu in gpus:
        key = bus_key(str(gpu.get("bus_id") or ""))
        if key is not None:
            index[key] = gpu["index"]
    seen: dict[tuple[object, int], int] = {}
    for event in events:
        xid = int(event["xid"])  # type: ignore[call-overload]
        at = index.get(event["bus"])  # type: ignore[call-overload]
        if at is None or xid in IGNORED_XIDS:
            continue
        seen[(at, xid)] = seen.get((at, xid), 0) + 1
    failed = []
    for (at, xid), count in sorted(seen.items(), key=lambda item: (str(item[0][0]), item[0][1])):
        severity, why = XIDS.get(xid, (WARNING, "driver error"))
        times = "" if count == 1 else f" ({count} times)"
        failed.append(
            _fail(
                "xid",
                severity,
                f"GPU {at}: Xid {xid}, {why}{times} in the last {XID_WINDOW_S / 60:g} min",
                at,
            )
        )
    return failed
