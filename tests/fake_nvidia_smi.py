#!/usr/bin/python3
"""Test stand-in for nvidia-smi on a lab node: replays a real ``nvidia-smi -q -x`` capture.

Installed per lab node (``install``) as ``~/bin/nvidia-smi`` with the capture beside it
(``~/bin/nvidia-smi.xml``), so each node can report its own GPUs and one can be sick
while the others are well (the cluster config's ``health_check.nvidia_smi`` points
there). Every answer comes from that one XML, as the driver prints it:

- ``-q -x``: the capture itself;
- ``-L``: one line per GPU;
- ``--query-gpu=F,… --format=csv,noheader,nounits`` and ``--query-compute-apps=…``: the
  capture's values for those fields;
- a file ``nvidia-smi.fail`` beside it: what a node whose driver is gone prints, exit 9.

Standard library only (it runs under the node's /usr/bin/python3).
"""

from __future__ import annotations

import os
import pwd
import shutil
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

DRIVER_ERROR = (
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
    "Make sure that the latest NVIDIA driver is installed and running.\n"
)
# --query-gpu field -> where the -q -x capture has it ("@id": the <gpu id=…> attribute).
GPU_PATHS = {
    "name": "product_name",
    "uuid": "uuid",
    "pci.bus_id": "@id",
    "memory.total": "fb_memory_usage/total",
    "memory.used": "fb_memory_usage/used",
    "memory.free": "fb_memory_usage/free",
    "utilization.gpu": "utilization/gpu_util",
    "utilization.memory": "utilization/memory_util",
    "temperature.gpu": "temperature/gpu_temp",
    "power.draw": "gpu_power_readings/instant_power_draw",
    "power.limit": "gpu_power_readings/current_power_limit",
}


def _value(text: str | None) -> str:
    """A -q value as --format=csv,nounits prints it: '81559 MiB' -> '81559'."""
    if text is None:
        return "[N/A]"
    text = text.strip()
    return "[N/A]" if text == "N/A" else text.split(" ")[0] if text[:1].isdigit() else text


def _gpu_field(root: ET.Element, index: int, gpu: ET.Element, field: str) -> str:
    if field == "index":
        return str(index)
    if field == "driver_version":
        return _value(root.findtext("driver_version"))
    path = GPU_PATHS.get(field)
    if path is None:
        raise SystemExit(f'Field "{field}" is not a valid field to query.')
    if path == "@id":
        return gpu.get("id", "")
    return _value(gpu.findtext(path))


def answer(args: list[str], here: Path) -> int:
    if (here / "nvidia-smi.fail").exists():
        sys.stderr.write(DRIVER_ERROR)
        return 9
    text = (here / "nvidia-smi.xml").read_text()
    root = ET.fromstring(text)
    gpus = root.findall("gpu")
    if args[:2] == ["-q", "-x"]:
        sys.stdout.write(text)
    elif args == ["-L"]:
        for index, gpu in enumerate(gpus):
            name, uuid = gpu.findtext("product_name"), gpu.findtext("uuid")
            print(f"GPU {index}: {name} (UUID: {uuid})")
    elif args and args[0].startswith("--query-gpu="):
        fields = args[0].split("=", 1)[1].split(",")
        for index, gpu in enumerate(gpus):
            print(", ".join(_gpu_field(root, index, gpu, f) for f in fields))
    elif args and args[0].startswith("--query-compute-apps="):
        fields = args[0].split("=", 1)[1].split(",")
        for gpu in gpus:
            for proc in gpu.findall("processes/process_info"):
                values = {
                    "gpu_uuid": gpu.findtext("uuid") or "",
                    "pid": _value(proc.findtext("pid")),
                    "process_name": proc.findtext("process_name") or "",
                    "used_memory": _value(proc.findtext("used_memory")),
                }
                print(", ".join(values.get(f, "[N/A]") for f in fields))
    else:
        sys.stderr.write(f"fake nvidia-smi: arguments not replayed: {args}\n")
        return 2
    return 0


# --------------------------------------------------------------------------------------
# on the test's side: put it on a lab node

NODE_PATH = "~/bin/nvidia-smi"  # the config's health_check.nvidia_smi


def install(user: str, xml: str | None, fail: bool = False) -> Path:
    """Give lab node ``user`` this replayed nvidia-smi answering with ``xml`` (None:
    remove it), or failing as a lost driver does. Returns the script's path."""
    entry = pwd.getpwnam(user)
    bin_dir = Path(entry.pw_dir) / "bin"
    script = bin_dir / "nvidia-smi"
    if xml is None:
        shutil.rmtree(bin_dir, ignore_errors=True)
        return script
    bin_dir.mkdir(exist_ok=True)
    shutil.copyfile(__file__, script)
    (bin_dir / "nvidia-smi.xml").write_text(xml)
    failing = bin_dir / "nvidia-smi.fail"
    if fail:
        failing.write_text("driver gone\n")
    else:
        failing.unlink(missing_ok=True)
    for path in (bin_dir, *bin_dir.iterdir()):
        os.chown(path, entry.pw_uid, entry.pw_gid)
    script.chmod(0o755)
    return script


if __name__ == "__main__":
    raise SystemExit(answer(sys.argv[1:], Path(os.path.realpath(__file__)).parent))
