"""The lab: N SSH nodes on one Linux box, as network namespaces on one bridge.

Each node is a network namespace with its own veth into the bridge ``gridlab0``, its own
sshd (own config, host key, ``AllowUsers``) running in its own UTS, mount and PID
namespace (own hostname, ``/etc/hosts`` and process table: sshd is the node's PID 1, so
Ray's search for "the raylet on this host" finds only the node's own, as on a machine of
its own, and killing sshd takes every process of the node down), and its own Unix user
and home. The controller
(this box's root namespace) gets a key and a known_hosts file that pins every node's host
key, so host-key checking stays on. Addresses come from one private subnet that exists only
on the lab's bridge and inside its namespaces.

Everything the lab makes carries a marker (namespace and link prefix, user comment), so a
later ``up`` or ``down`` finds and clears stale state even when the state file is gone.
``$GRID_OPS_LAB`` (0 to 9) picks one of several labs on the machine: each has markers,
bridge and subnet of its own (lab 0: ``gridlab0``, ``gridlab-node1``, user ``gridlab1``,
10.231.0.0/24; lab 1: ``gridlab1``, ``gridlab1-node1``, user ``gridlab1n1``,
10.231.1.0/24), and ``down`` clears only its own.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from grid_ops.errors import LabError
from grid_ops.fsutil import write_atomic
from grid_ops.paths import state_dir

LAB_ENV = "GRID_OPS_LAB"  # which lab of this machine: 0 (the default) to 9


def _index() -> int:
    """This process's lab (``$GRID_OPS_LAB``): several labs can run side by side on one
    machine (the lab tests run two at once), each with its own bridge, namespaces,
    users and subnet, and none touches another's."""
    raw = os.environ.get(LAB_ENV, "").strip() or "0"
    if not raw.isdigit() or int(raw) > 9:
        raise LabError(f"{LAB_ENV}={raw!r} is not a lab number.", "Use 0 to 9 (0 by default).")
    return int(raw)


INDEX = _index()
_TAG = str(INDEX) if INDEX else ""  # lab 0 keeps the names it always had
BRIDGE = f"gridlab{INDEX}"
NS_PREFIX = f"gridlab{_TAG}-"
VETH_PREFIX = f"gridlab{_TAG}-v"
USER_PREFIX = f"gridlab{_TAG}n" if INDEX else "gridlab"  # its users: <prefix><n>
USER_COMMENT = "grid-ops lab node"
DEFAULT_SUBNET = f"10.231.{INDEX}.0/24"
MAX_NODES = 64  # the README promises 2-50 nodes; the lab covers them
SSHD = "/usr/sbin/sshd"
APT_PACKAGES = [
    "openssh-server",
    "openssh-client",
    "rsync",
    "iproute2",
    "util-linux",
    "procps",
    "python3",
    "python3-venv",
]
NEEDED_TOOLS = {
    "/usr/sbin/sshd": "openssh-server",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "rsync": "rsync",
    "ip": "iproute2",
    "unshare": "util-linux",
    "pkill": "procps",
}

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


@dataclass
class LabNode:
    name: str
    namespace: str
    user: str
    ip: str
    veth: str

    @property
    def home(self) -> Path:
        return Path("/home") / self.user


@dataclass
class LabState:
    subnet: str
    bridge_ip: str
    config_path: str
    nodes: list[LabNode] = field(default_factory=list)

    def node(self, name: str) -> LabNode:
        for node in self.nodes:
            if node.name == name:
                return node
        known = ", ".join(n.name for n in self.nodes) or "none"
        raise LabError(f"The lab has no node '{name}'.", f"Lab nodes: {known}.")


# ---------------------------------------------------------------------------------------
# paths and small helpers


def lab_dir() -> Path:
    return state_dir() / "lab"


def _state_file() -> Path:
    return lab_dir() / "state.json"


def _node_dir(name: str) -> Path:
    return lab_dir() / "nodes" / name


def key_file() -> Path:
    return lab_dir() / "id_ed25519"


def known_hosts_file() -> Path:
    return lab_dir() / "known_hosts"


def _sh(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(
            list(args), capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError:
        raise LabError(f"'{args[0]}' is not installed.", "Run 'grid-ops lab up' as root.") from None
    except subprocess.TimeoutExpired:
        raise LabError(f"'{' '.join(args)}' did not finish in {timeout:.0f} s.") from None
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise LabError(
            f"'{' '.join(args)}' failed (exit {proc.returncode}): "
            f"{detail[-1] if detail else 'no output'}.",
            "Run 'grid-ops lab down' to clear partial state, then try again.",
        )
    return proc


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError(
            "The lab needs root: it creates network namespaces, a bridge, users and sshd daemons.",
            "Run it as root (e.g. 'sudo grid-ops lab up'), or point grid-ops at real nodes "
            "with a cluster config ('grid-ops init').",
        )


def _missing_tools() -> list[str]:
    missing = []
    for tool, package in NEEDED_TOOLS.items():
        found = Path(tool).exists() if tool.startswith("/") else shutil.which(tool)
        if not found:
            missing.append(package)
    # Nodes build their venvs from the system Python, which needs venv support (ensurepip).
    probe = ["/usr/bin/python3", "-c", "import ensurepip, venv"]
    if not Path(probe[0]).exists() or subprocess.run(probe, capture_output=True).returncode:
        missing.append("python3-venv")
    return sorted(set(missing))


def ensure_packages(progress: Progress = _quiet) -> None:
    """Install openssh-server, rsync and friends with apt-get if any is missing."""
    missing = _missing_tools()
    if not missing:
        return
    if not shutil.which("apt-get"):
        raise LabError(
            f"The lab needs {', '.join(missing)} and this system has no apt-get.",
            "Install those packages with your package manager, then run 'grid-ops lab up' again.",
        )
    progress(f"installing {' '.join(missing)} with apt-get")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *APT_PACKAGES],
    ):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
            raise LabError(
                f"'{' '.join(cmd)}' failed: {tail[0] if tail else 'no output'}.",
                f"Install {', '.join(missing)} by hand, then run 'grid-ops lab up' again.",
            )


def load_state() -> LabState | None:
    try:
        raw = json.loads(_state_file().read_text())
    except (OSError, ValueError):
        return None
    nodes = [LabNode(**n) for n in raw.pop("nodes", [])]
    return LabState(nodes=nodes, **raw)


def _save_state(state: LabState) -> None:
    write_atomic(_state_file(), json.dumps(asdict(state), indent=2) + "\n")


def _require_state() -> LabState:
    state = load_state()
    if state is None:
        raise LabError("No lab is up.", "Start one with 'grid-ops lab up --nodes 3 -o lab.yaml'.")
    return state


# ---------------------------------------------------------------------------------------
# discovery of what the lab made (also without a state file)


def _lab_namespaces() -> list[str]:
    proc = _sh("ip", "netns", "list", check=False)
    names = [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]
    return [n for n in names if owns_namespace(n)]


def _lab_users() -> list[str]:
    users: list[str] = []
    try:
        lines = Path("/etc/passwd").read_text().splitlines()
    except OSError:
        return users
    for line in lines:
        parts = line.split(":")
        if len(parts) > 4 and owns_user(parts[0], parts[4]):
            users.append(parts[0])
    return users


def owns_user(name: str, comment: str) -> bool:
    """Is the account ``name`` (its passwd comment ``comment``) a node user of this lab,
    and not of another lab on the machine (pure)?"""
    mine = re.fullmatch(re.escape(USER_PREFIX) + r"[0-9]+", name) is not None
    return mine and comment.startswith(USER_COMMENT)


def owns_namespace(name: str) -> bool:
    """Is the network namespace ``name`` one of this lab's (pure)?"""
    return name.startswith(NS_PREFIX)


def _link_exists(name: str) -> bool:
    return _sh("ip", "link", "show", name, check=False).returncode == 0


def _pids_of_user(user: str) -> list[int]:
    proc = _sh("pgrep", "-u", user, check=False)
    return [int(p) for p in proc.stdout.split()]


def _tcp_peers(ips: set[str]) -> set[str]:
    """Socket inodes of this namespace's TCP connections to any of ``ips``."""
    wanted = {socket.inet_aton(ip)[::-1].hex().upper() for ip in ips}
    inodes: set[str] = set()
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return inodes
    for line in lines:
        fields = line.split()
        if len(fields) > 9 and fields[2].split(":")[0] in wanted:
            inodes.add(fields[9])
    return inodes


def _controller_ssh_pids(ips: set[str]) -> list[int]:
    """ssh clients of this box connected to lab nodes, ControlPersist masters included."""
    inodes = _tcp_peers(ips)
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv0 = (entry / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            if not (os.path.basename(argv0) == "ssh" or argv0.startswith("ssh: ")):
                continue
            links = {os.readlink(fd) for fd in (entry / "fd").iterdir()}
        except OSError:
            continue
        if any(link[8:-1] in inodes for link in links if link.startswith("socket:[")):
            pids.append(int(entry.name))
    return pids


def _kill(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _kill_user(user: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        pids = _pids_of_user(user)
        if not pids:
            return
        _kill(pids)
        if time.monotonic() > deadline:
            raise LabError(f"Processes of lab user {user} survive SIGKILL: {pids}.")
        time.sleep(0.05)


# The lab's nodes share this machine's temp dir (a real node has its own /tmp).
NODE_TEMP = Path("/tmp")


def _remove_temp_of(user: str) -> list[Path]:
    """Remove what ``user`` (a lab user, its processes gone) left at the top of the
    shared temp dir (Ray's dashboard forkserver dirs of a killed head, the private short
    dir): with the user gone, a later user given the same uid would own them. A link is
    removed, never followed."""
    import pwd

    try:
        uid = pwd.getpwnam(user).pw_uid
    except KeyError:
        return []
    removed = []
    for entry in sorted(NODE_TEMP.iterdir()):
        try:
            info = entry.lstat()
            if info.st_uid != uid:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except OSError:
            continue
        removed.append(entry)
    return removed


def _kill_namespace(ns: str) -> None:
    for _ in range(50):
        pids = [int(p) for p in _sh("ip", "netns", "pids", ns, check=False).stdout.split()]
        if not pids:
            return
        _kill(pids)
        time.sleep(0.05)


def _sshd_pid(node: LabNode) -> int | None:
    """The node's sshd (this machine's pid of the node's PID 1), if it runs."""
    listed = _sh("ip", "netns", "pids", node.namespace, check=False).stdout.split()
    for pid in listed:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if fields.get("NSpid", "").split()[-1:] == ["1"] and not fields.get(
            "State", ""
        ).strip().startswith("Z"):
            return int(pid)
    return None


# ---------------------------------------------------------------------------------------
# down


def down(progress: Progress = _quiet) -> dict[str, list[str]]:
    """Remove every namespace, link, user, process and file the lab made."""
    require_root()
    state = load_state()
    namespaces = set(_lab_namespaces())
    users = set(_lab_users())
    ips: set[str] = set()
    if state:
        namespaces |= {n.namespace for n in state.nodes}
        users |= {n.user for n in state.nodes}
        ips = {n.ip for n in state.nodes}
        for node in state.nodes:
            pid = _sshd_pid(node)
            if pid:
                _kill([pid])
    existing_ns = set(_lab_namespaces())
    for ns in sorted(namespaces & existing_ns):
        _kill_namespace(ns)
    for user in sorted(users):
        _kill_user(user)
    if ips:
        _kill(_controller_ssh_pids(ips))
    removed: dict[str, list[str]] = {"namespaces": [], "links": [], "users": [], "temp": []}
    for ns in sorted(namespaces & existing_ns):
        _sh("ip", "netns", "del", ns)
        removed["namespaces"].append(ns)
    links = [BRIDGE] + [f"{VETH_PREFIX}{i}" for i in range(1, MAX_NODES + 1)]
    for link in links:
        if _link_exists(link):
            # A node's veth also goes with its namespace, a moment after 'netns del'.
            proc = _sh("ip", "link", "del", link, check=False)
            if proc.returncode != 0 and _link_exists(link):
                raise LabError(
                    f"Could not remove the lab link {link}: {proc.stderr.strip()}",
                    f"Remove it with 'ip link del {link}'.",
                )
            removed["links"].append(link)
    removed["temp"] = [str(p) for user in sorted(users) for p in _remove_temp_of(user)]
    for user in sorted(users):
        _sh("userdel", "-r", "-f", user, check=False)
        if user in _lab_users():
            raise LabError(f"Could not remove lab user {user}.", "Remove it with 'userdel -r'.")
        removed["users"].append(user)
    if lab_dir().exists():
        shutil.rmtree(lab_dir())
    if any(removed.values()):
        progress(
            f"removed {len(removed['namespaces'])} namespaces, {len(removed['links'])} links, "
            f"{len(removed['users'])} users, {len(removed['temp'])} of their entries in "
            f"{NODE_TEMP}"
        )
    return removed


# ---------------------------------------------------------------------------------------
# up


def _check_subnet(subnet: str, nodes: int) -> ipaddress.IPv4Network:
    try:
        net = ipaddress.IPv4Network(subnet, strict=True)
    except ValueError as exc:
        raise LabError(f"--subnet {subnet} is not an IPv4 network: {exc}.") from None
    if not net.is_private or net.is_loopback:
        raise LabError(
            f"--subnet {subnet} is not a private range.",
            "Use a private range such as 10.231.0.0/24; the lab never uses other addresses.",
        )
    if net.num_addresses < nodes + 12:
        raise LabError(f"--subnet {subnet} is too small for {nodes} nodes.", "Use a /24.")
    routes = json.loads(_sh("ip", "-j", "route", "show").stdout or "[]")
    for route in routes:
        dst = route.get("dst", "")
        if dst in ("", "default") or route.get("dev") == BRIDGE:
            continue
        try:
            other = ipaddress.ip_network(dst, strict=False)
        except ValueError:
            continue
        if other.version == 4 and net.overlaps(other):
            raise LabError(
                f"--subnet {subnet} overlaps a network this machine already uses ({dst}).",
                "Pick another private range with --subnet.",
            )
    return net


def _sshd_config(node: LabNode) -> str:
    d = _node_dir(node.name)
    return "\n".join(
        [
            "# sshd of a grid-ops lab node; made by 'grid-ops lab up'",
            "Port 22",
            f"ListenAddress {node.ip}",
            f"HostKey {d / 'ssh_host_ed25519_key'}",
            "PidFile none",
            f"AllowUsers {node.user}",
            "UsePAM no",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            "PermitRootLogin no",
            "AuthorizedKeysFile .ssh/authorized_keys",
            "StrictModes yes",
            "MaxStartups 100:30:200",
            "MaxSessions 100",
            "X11Forwarding no",
            "PrintMotd no",
            "Subsystem sftp internal-sftp",
            "",
        ]
    )


def _hosts_file(state: LabState) -> str:
    lines = ["127.0.0.1 localhost", "::1 localhost ip6-localhost ip6-loopback"]
    lines += [f"{n.ip} {n.name}" for n in state.nodes]
    lines.append(f"{state.bridge_ip} controller")
    return "\n".join(lines) + "\n"


def _start_sshd(node: LabNode) -> None:
    d = _node_dir(node.name)
    cfg = d / "sshd_config"
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    check = _sh(SSHD, "-t", "-f", str(cfg), check=False)
    if check.returncode != 0:
        raise LabError(f"sshd rejects the config of lab node {node.name}: {check.stderr.strip()}.")
    script = (
        f"hostname {node.name} && mount --bind {d / 'hosts'} /etc/hosts && "
        f"exec {SSHD} -D -f {cfg} -E {d / 'sshd.log'}"
    )
    # sshd -D is the PID 1 of the node's own PID namespace (it reaps what is orphaned
    # there); setsid -f detaches it from this process, --kill-child ties it to unshare.
    argv = [
        "setsid", "-f", "ip", "netns", "exec", node.namespace,
        "unshare", "--uts", "--mount", "--propagation", "private",
        "--pid", "--fork", "--mount-proc", "--kill-child",
        "sh", "-c", script,
    ]  # fmt: skip
    with open(d / "node.log", "ab") as log:  # what fails before sshd logs on its own
        subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, check=False)


def _wait_port(ip: str, port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((ip, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def _make_user(node: LabNode, pubkey: str) -> None:
    _sh("useradd", "-m", "-s", "/bin/bash", "-c", f"{USER_COMMENT} {node.name}", node.user)
    _sh("usermod", "-p", "*", node.user)  # '!' would lock the account for sshd
    ssh_dir = node.home / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    (ssh_dir / "authorized_keys").write_text(pubkey)
    os.chmod(ssh_dir / "authorized_keys", 0o600)
    _sh("chown", "-R", f"{node.user}:{node.user}", str(ssh_dir))


def _cluster_yaml(state: LabState, memory_gb: float) -> str:
    import yaml

    from grid_ops import identity

    data = {
        "name": "lab",
        # new nodes, a new cluster: copies of this file (edited variants) are the same one
        "cluster_id": identity.new_id(),
        "remote_root": "~/" + REMOTE_ROOT,
        "python_interpreter": "/usr/bin/python3",
        "ssh": {
            "key_file": str(key_file()),
            "known_hosts_file": str(known_hosts_file()),
            "connect_timeout": 5,
        },
        "nodes": [
            {
                "name": n.name,
                "host": n.ip,
                "port": 22,
                "user": n.user,
                "role": "head" if i == 0 else "worker",
                "gpu_count": 0,
                "memory_gb": memory_gb,
                "tags": ["lab"],
            }
            for i, n in enumerate(state.nodes)
        ],
    }
    header = (
        "# Cluster config of the grid-ops lab: network-namespace nodes on this machine.\n"
        "# Written by 'grid-ops lab up'; 'grid-ops lab down' removes the nodes.\n"
    )
    return header + yaml.safe_dump(data, sort_keys=False)


def up(
    nodes: int,
    config_path: Path,
    subnet: str = DEFAULT_SUBNET,
    memory_gb: float = 2.0,
    progress: Progress = _quiet,
) -> LabState:
    """Bring up ``nodes`` SSH nodes and write their cluster config to ``config_path``."""
    require_root()
    if not 1 <= nodes <= MAX_NODES:
        raise LabError(f"--nodes must be between 1 and {MAX_NODES} (got {nodes}).")
    ensure_packages(progress)
    net = _check_subnet(subnet, nodes)
    down(progress)
    hosts = list(net.hosts())
    state = LabState(
        subnet=str(net),
        bridge_ip=str(hosts[0]),
        config_path=str(config_path.resolve()),
        nodes=[
            LabNode(
                name=f"node{i}",
                namespace=f"{NS_PREFIX}node{i}",
                user=f"{USER_PREFIX}{i}",
                ip=str(hosts[9 + i]),
                veth=f"{VETH_PREFIX}{i}",
            )
            for i in range(1, nodes + 1)
        ],
    )
    try:
        _build(state, progress)
        config_text = _cluster_yaml(state, memory_gb)
        write_atomic(config_path, config_text)
    except BaseException:
        progress("lab up failed; removing what it made")
        down()
        raise
    return state


def _build(state: LabState, progress: Progress) -> None:
    lab_dir().mkdir(parents=True, exist_ok=True)
    os.chmod(lab_dir(), 0o700)
    _save_state(state)  # first, so a crash half-way is still cleaned up by 'down'
    _sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "grid-ops-lab", "-f", str(key_file()))
    pubkey = Path(f"{key_file()}.pub").read_text()
    prefix = ipaddress.IPv4Network(state.subnet).prefixlen
    progress(f"bridge {BRIDGE} {state.bridge_ip}/{prefix}")
    _sh("ip", "link", "add", BRIDGE, "type", "bridge")
    _sh("ip", "addr", "add", f"{state.bridge_ip}/{prefix}", "dev", BRIDGE)
    _sh("ip", "link", "set", BRIDGE, "up")
    known_hosts = []
    for node in state.nodes:
        progress(f"node {node.name}: {node.ip}, user {node.user}")
        ns = node.namespace
        _sh("ip", "netns", "add", ns)
        _sh("ip", "link", "add", node.veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        _sh("ip", "link", "set", node.veth, "master", BRIDGE, "up")
        _sh("ip", "-n", ns, "addr", "add", f"{node.ip}/{prefix}", "dev", "eth0")
        _sh("ip", "-n", ns, "link", "set", "eth0", "up")
        _sh("ip", "-n", ns, "link", "set", "lo", "up")
        _sh("ip", "-n", ns, "route", "add", "default", "via", state.bridge_ip)
        _make_user(node, pubkey)
        d = _node_dir(node.name)
        d.mkdir(parents=True, exist_ok=True)
        hostkey = d / "ssh_host_ed25519_key"
        _sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", node.name, "-f", str(hostkey))
        parts = Path(f"{hostkey}.pub").read_text().split()
        known_hosts.append(f"{node.ip} {parts[0]} {parts[1]}")
        write_atomic(d / "sshd_config", _sshd_config(node))
        write_atomic(d / "hosts", _hosts_file(state))
        _start_sshd(node)
    write_atomic(known_hosts_file(), "\n".join(known_hosts) + "\n")
    for node in state.nodes:
        if not _wait_port(node.ip, 22, timeout=10):
            log = (_node_dir(node.name) / "sshd.log").read_text(errors="replace")[-400:]
            raise LabError(f"sshd of lab node {node.name} does not answer on {node.ip}:22. {log}")


# ---------------------------------------------------------------------------------------
# status, kill, revive


def status() -> dict[str, Any]:
    """What is up: per node, whether its namespace, user and sshd exist and answer."""
    state = load_state()
    namespaces = set(_lab_namespaces())
    if state is None:
        return {"up": False, "nodes": [], "stale_namespaces": sorted(namespaces)}
    users = set(_lab_users())
    rows = []
    for node in state.nodes:
        pid = _sshd_pid(node)
        rows.append(
            {
                "name": node.name,
                "ip": node.ip,
                "user": node.user,
                "namespace": node.namespace in namespaces,
                "user_exists": node.user in users,
                "sshd_pid": pid,
                "ssh": bool(pid) and _wait_port(node.ip, 22, timeout=0.5),
                "processes": len(_pids_of_user(node.user)) if node.user in users else 0,
            }
        )
    return {
        "up": True,
        "subnet": state.subnet,
        "config": state.config_path,
        "nodes": rows,
    }


def kill(name: str) -> LabNode:
    """Stop a node's sshd and every process of its user: the node becomes unreachable."""
    require_root()
    node = _require_state().node(name)
    _kill_namespace(node.namespace)
    _kill_user(node.user)
    return node


def block(name: str, target: str, blocked: bool = True) -> tuple[LabNode, LabNode]:
    """Make ``target`` unreachable from ``name`` (a 'prohibit' route in ``name``'s
    namespace: its connections to ``target`` fail at once, as a firewall that rejects
    them would), or reachable again (``blocked`` False). SSH from this machine to both
    is untouched."""
    require_root()
    state = _require_state()
    node, other = state.node(name), state.node(target)
    if node.name == other.name:
        raise LabError(f"A node cannot be blocked from itself ({name}).")
    route = ["ip", "netns", "exec", node.namespace, "ip", "route"]
    present = f"prohibit {other.ip}" in _sh(*route, "show", check=False).stdout
    if blocked and not present:
        _sh(*route, "add", "prohibit", f"{other.ip}/32")
    elif not blocked and present:
        _sh(*route, "del", "prohibit", f"{other.ip}/32")
    return node, other


REMOTE_ROOT = "grid-ops"  # under each node user's home: the lab config's remote_root
FULL_SIZE = "64m"  # the filesystem 'fill' puts over a node's remote_root


def fill(name: str, full: bool = True) -> LabNode:
    """Make ``name``'s disk look full to grid-ops (``full``), or undo it: in the node's
    own mount namespace, a 64 MiB filesystem goes over its remote_root, holding a link
    to each entry of the real one (kept reachable under a bind mount), so every file is
    where it was and only the free space under remote_root changes."""
    require_root()
    node = _require_state().node(name)
    pid = _sshd_pid(node)
    if pid is None:
        raise LabError(f"Lab node {name} is not running.", f"grid-ops lab revive {name}")
    root = node.home / REMOTE_ROOT
    real = node.home / ".grid-ops-real"
    enter = ["nsenter", "-t", str(pid), "-m", "-p", "--"]  # its mounts, its /proc
    mounted = str(root) in _sh(*enter, "cat", "/proc/self/mounts").stdout
    if full and not mounted:
        if not root.is_dir():
            raise LabError(f"{root} does not exist yet.", "Provision the lab first.")
        real.mkdir(mode=0o700, exist_ok=True)
        script = (
            'set -e; mount --bind "$1" "$2"; '
            'mount -t tmpfs -o "size=$3,mode=0700,uid=$4,gid=$5" tmpfs "$1"; '
            'for e in "$2"/* "$2"/.[!.]*; do [ -e "$e" ] || [ -L "$e" ] || continue; '
            'ln -s "$e" "$1/$(basename "$e")"; done; chown -h "$4:$5" "$1"/* 2>/dev/null || true'
        )
        owner = root.stat()
        _sh(
            *enter, "sh", "-c", script, "fill", str(root), str(real), FULL_SIZE,
            str(owner.st_uid), str(owner.st_gid),
        )  # fmt: skip
    elif not full and mounted:
        _sh(*enter, "sh", "-c", 'umount "$1" && umount "$2"', "fill", str(root), str(real))
    return node


def revive(name: str) -> LabNode:
    """Start a killed node's sshd again."""
    require_root()
    node = _require_state().node(name)
    if _sshd_pid(node) is None:
        _start_sshd(node)
    if not _wait_port(node.ip, 22, timeout=10):
        raise LabError(f"sshd of lab node {name} does not answer on {node.ip}:22 after revive.")
    return node
