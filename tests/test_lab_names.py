"""Several labs on one machine ($GRID_OPS_LAB): each has names and a subnet of its own and
claims only its own users and namespaces, so one lab's 'down' never touches another's
(the lab tier runs two labs at once). The labs themselves run in tests/test_lab.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import REPO

SHOW = """
import json
from grid_ops import lab
print(json.dumps({
    "bridge": lab.BRIDGE, "ns": lab.NS_PREFIX, "veth": lab.VETH_PREFIX,
    "user": lab.USER_PREFIX, "subnet": lab.DEFAULT_SUBNET,
    "owns_users": [u for u in ("gridlab3", "gridlab12", "gridlab1n3", "gridlab2n1", "gridlabx")
                   if lab.owns_user(u, lab.USER_COMMENT + " node3")],
    "owns_ns": [n for n in ("gridlab-node1", "gridlab1-node1", "gridlab2-node1")
                if lab.owns_namespace(n)],
}))
"""


def _lab(index: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "GRID_OPS_LAB"}
    if index:
        env["GRID_OPS_LAB"] = index
    return subprocess.run([sys.executable, "-c", SHOW], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=60, check=False)  # fmt: skip


def test_each_lab_has_its_own_names_and_claims_only_its_own_users() -> None:
    default = json.loads(_lab("").stdout)
    assert default == json.loads(_lab("0").stdout)
    assert default == {
        "bridge": "gridlab0", "ns": "gridlab-", "veth": "gridlab-v", "user": "gridlab",
        "subnet": "10.231.0.0/24", "owns_users": ["gridlab3", "gridlab12"],
        "owns_ns": ["gridlab-node1"],
    }  # fmt: skip
    second = json.loads(_lab("1").stdout)
    assert second == {
        "bridge": "gridlab1", "ns": "gridlab1-", "veth": "gridlab1-v", "user": "gridlab1n",
        "subnet": "10.231.1.0/24", "owns_users": ["gridlab1n3"], "owns_ns": ["gridlab1-node1"],
    }  # fmt: skip
    assert len("gridlab9-v64") <= 15  # a Linux interface name


def test_an_unknown_lab_number_is_a_clear_error() -> None:
    for bad in ("10", "x", "-1"):
        proc = _lab(bad)
        assert proc.returncode != 0
        assert f"GRID_OPS_LAB='{bad}' is not a lab number" in proc.stderr
