"""The digest of the grid-ops runtime: the node side of the package (layout.NODE_PACKAGE
without layout.RUNTIME_EXCLUDE), the files provision pushes to every node. On the
operator's machine it is what the nodes should have; on a node (``python -m
grid_ops.runtime.digest``, the grid_ray role's stamp) what that node has.

A change detector, so CRC-32 over names and contents (zlib loads in a fraction of
hashlib's time, on the quick path). Standard library only.
"""

from __future__ import annotations

import os

from grid_ops import layout


def package_dir() -> str:
    """The grid_ops package this module belongs to."""
    return os.path.dirname(os.path.realpath(layout.__file__))


def _skipped(name: str) -> bool:
    import fnmatch

    return any(fnmatch.fnmatch(name, p) for p in layout.RUNTIME_EXCLUDE)


def files(here: str) -> list[str]:
    """The node side's files under package dir ``here``, relative, in a fixed order."""
    found = []
    for entry in sorted(layout.NODE_PACKAGE):
        path = os.path.join(here, entry)
        if os.path.isfile(path):
            found.append(entry)
            continue
        for top, dirs, names in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not _skipped(d))
            found += [
                os.path.relpath(os.path.join(top, n), here)
                for n in sorted(names)
                if not _skipped(n)
            ]
    return found


def runtime_digest(here: str | None = None) -> str:
    """The digest of the node side of the package at ``here`` (this one by default)."""
    import zlib

    here = here or package_dir()
    crc, size = 0, 0
    for rel in files(here):
        crc = zlib.crc32(rel.encode() + b"\0", crc)
        with open(os.path.join(here, rel), "rb") as handle:
            data = handle.read()
        crc = zlib.crc32(data + b"\0", crc)
        size += len(data)
    return f"{crc:08x}-{size:x}"


if __name__ == "__main__":  # on a node: the digest of the runtime it has (grid_ray's stamp)
    print(runtime_digest())
