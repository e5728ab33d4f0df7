"""Bringing a running cluster to its config: what was applied, what differs, the plan.

``apply`` compares three things: the config (the model and each node's stamp it gives),
what each node says was applied to it (its stamp, read in one plain-ssh fan-out), and
what grid-ops last applied to the cluster (``applied.json`` in the cluster's state dir:
each node's config, so a node deleted from the config can still be reached to be
removed, and the controller's settings). The plan (pure) says, per node: add, change
(venv and/or Ray), start (stamp current, Ray down), current, remove; the CLI carries it
out with the playbooks (scale, ray_stop, remove_node) and the controller.
"""

from __future__ import annotations

import json
import os

from grid_ops import layout
from grid_ops.model import ClusterModel, NodeModel, ensure_control_dir, stamp
from grid_ops.model import root_expr as model_root
from grid_ops.paths import state_dir_name
from grid_ops.record import factory, record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


FORMAT = 1


@record
class NodeState:
    """What one node said when its stamp was read."""

    name: str
    reachable: bool
    stamp: dict[str, Any] | None = None
    ray_running: bool = False
    drained: str | None = None
    venv_id: str = ""  # the venv build in use ("" when unknown or none)
    cluster_id: str = ""  # the cluster the node notes it belongs to ("": none)
    error: str | None = None


@record
class Plan:
    """What apply will do, by node name."""

    add: list[str]  # in the config, no stamp: never applied
    change: dict[str, list[str]]  # stamp differs: some of stamp.PARTS
    start: list[str]  # stamp current, but Ray does not run there (and not drained)
    current: list[str]  # nothing to do
    remove: list[str]  # applied before, no longer in the config
    unreachable: list[str]  # could not be read (config nodes: apply fails there)
    drained: dict[str, str]  # name -> reason (Ray is not started there)
    restart_all: bool  # the head's stamp differs: the whole cluster restarts
    controller: bool  # the controller's settings change (nodes added or removed)
    foreign: dict[str, str] = factory(dict)  # name -> id: nodes of another cluster

    @property
    def visit(self) -> list[str]:
        """Nodes the scale playbook runs on."""
        return [*self.add, *self.change, *self.start]

    @property
    def empty(self) -> bool:
        return not (self.visit or self.remove or self.controller)

    def to_json(self) -> dict[str, Any]:
        return {
            "add": self.add,
            "change": self.change,
            "start": self.start,
            "current": self.current,
            "remove": self.remove,
            "unreachable": self.unreachable,
            "drained": self.drained,
            "restart_all": self.restart_all,
            "controller": self.controller,
            "foreign": self.foreign,
        }


# ---------------------------------------------------------------------------------------
# what grid-ops last applied to the cluster


def applied_file(cluster: str) -> str:
    return os.path.join(state_dir_name(), "clusters", cluster, "applied.json")


def read_applied(cluster: str) -> dict[str, Any]:
    """``{"format", "nodes": {name: node config}, "controller": settings}`` ({} if none)."""
    try:
        with open(applied_file(cluster), encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return {}
    return data


def write_applied(cluster: ClusterModel, applied: list[str], kept: dict[str, Any]) -> None:
    """Record the nodes now applied (``applied``, from the config) and ``kept``: nodes
    still to remove (their config as last applied), so a later apply finds them."""
    from grid_ops.fsutil import write_atomic

    config = cluster.config
    nodes = {n.name: n.model_dump(mode="json") for n in config.nodes if n.name in applied}
    nodes.update(kept)
    data = {"format": FORMAT, "nodes": nodes, "controller": cluster.controller}
    write_atomic(applied_file(cluster.id), json.dumps(data, indent=1) + "\n", mode=0o600)


# ---------------------------------------------------------------------------------------
# reading every node's stamp: one round trip per node


def read_states(cluster: ClusterModel, nodes: list[NodeModel]) -> dict[str, NodeState]:
    """Each node's stamp, Ray process, drain note and cluster id, read over ssh in
    parallel (remote_root as the node reported it, else as the config says it)."""
    from grid_ops.drivers import spawn

    ensure_control_dir()
    out: dict[str, NodeState] = {}
    jobs: list[tuple[list[str], str | None]] = []
    asked: list[str] = []
    for node in nodes:
        jobs.append((node.argv(stamp.read_command(node.root or cluster.remote_root)), None))
        asked.append(node.name)
    done = spawn.run_all(jobs, cluster.forks, cluster.deadlines.command) if jobs else []
    for name, child in zip(asked, done, strict=True):
        if child is None:
            out[name] = NodeState(name=name, reachable=False, error="no answer in time")
        elif child.rc == layout.EXIT_MISSING_ROOT:
            out[name] = NodeState(name=name, reachable=True)
        elif child.rc != 0:
            last = (child.stderr.strip().splitlines() or [f"exit {child.rc}"])[-1]
            out[name] = NodeState(name=name, reachable=False, error=last[:300])
        else:
            read = stamp.parse_read(child.stdout)
            out[name] = NodeState(name=name, reachable=True, **read)
    return out


# ---------------------------------------------------------------------------------------
# the plan (pure)


def plan(
    cluster: ClusterModel,
    want: dict[str, dict[str, Any]],
    states: dict[str, NodeState],
    applied: dict[str, Any],
    full: bool = False,
) -> Plan:
    """What apply does: ``want`` the stamps the config gives, ``states`` what the nodes
    said, ``applied`` the last applied state; ``full`` visits every config node."""
    before = applied.get("nodes") or {}
    add: list[str] = []
    change: dict[str, list[str]] = {}
    start: list[str] = []
    current: list[str] = []
    unreachable: list[str] = []
    drained: dict[str, str] = {}
    for node in cluster.nodes:
        state = states.get(node.name) or NodeState(name=node.name, reachable=False)
        if not state.reachable:
            unreachable.append(node.name)
            continue
        if state.drained:
            drained[node.name] = state.drained
        parts = stamp.differs(want[node.name], state.stamp)
        if state.stamp is None and state.ray_running and state.venv_id != cluster.venv_id:
            change[node.name] = ["venv"]  # a Ray of other requirements: restarted on ours
        elif state.stamp is None:
            # never applied : provisioned, and Ray started unless
            # it runs; a Ray that runs on the cluster's venv build is adopted as it is
            add.append(node.name)
        elif parts:
            change[node.name] = parts
        elif not state.ray_running and not state.drained:
            start.append(node.name)
        elif full:
            change[node.name] = []
        else:
            current.append(node.name)
    names = {n.name for n in cluster.nodes}
    remove = sorted(n for n in before if n not in names)
    unreachable += [n for n in remove if not (states.get(n) and states[n].reachable)]
    restart_all = stamp.restarts(change.get(cluster.head, []))
    settings = applied.get("controller")
    return Plan(
        add=add,
        change=change,
        start=start,
        current=current,
        remove=remove,
        unreachable=unreachable,
        drained=drained,
        restart_all=restart_all,
        # Nothing recorded (a cluster started by 'cluster start', or another machine's
        # apply): the controller's settings are not known here, so they are handed in.
        controller=settings != cluster.controller,
        foreign=foreign(cluster, states),
    )


def removed_configs(applied: dict[str, Any], names: list[str]) -> list[dict[str, Any]]:
    """The config of each node to remove, as last applied."""
    before = applied.get("nodes") or {}
    return [before[n] for n in names if isinstance(before.get(n), dict)]


def forget(cluster: str, names: list[str]) -> None:
    """Drop ``names`` from the applied state (after 'reset': nothing is applied there)."""
    from grid_ops.fsutil import write_atomic

    data = read_applied(cluster)
    if not data:
        return
    nodes = {k: v for k, v in (data.get("nodes") or {}).items() if k not in names}
    data["nodes"] = nodes
    write_atomic(applied_file(cluster), json.dumps(data, indent=1) + "\n", mode=0o600)


def provisioned(cluster: ClusterModel, states: dict[str, NodeState]) -> list[str]:
    """The nodes whose stamp says their venv and runtime are what the config gives, on
    the cluster's venv build ('provision' leaves them out of its walk). A node that
    notes another cluster's id is never one: the walk's check refuses it."""
    want = stamp.stamps(cluster)
    others = foreign(cluster, states)
    out = []
    for node in cluster.nodes:
        state = states.get(node.name)
        if state is None or not state.reachable or state.stamp is None or node.name in others:
            continue
        parts = stamp.differs(want[node.name], state.stamp)
        if not {"venv", "runtime"} & set(parts) and state.venv_id == cluster.venv_id:
            out.append(node.name)
    return out


# ---------------------------------------------------------------------------------------
# what apply says (the full CLI and the quick path print the same)

NOTHING_TO_DO = "Nothing to do: every node is current."


def describe_change(parts: list[str]) -> str:
    if not parts:
        return "--full: visit"
    said = {
        "venv": "requirements changed",
        "runtime": "grid-ops runtime changed",
        "ray": "Ray settings changed",
    }
    todo = []
    if "venv" in parts:
        todo.append("build the new venv")
    elif "runtime" in parts:
        todo.append("push the runtime")
    todo.append("restart Ray" if stamp.restarts(parts) else "Ray keeps running")
    return ", ".join(said[p] for p in parts) + ": " + ", ".join(todo)


def plan_lines(
    cluster: ClusterModel, plan: Plan, states: dict[str, NodeState], config_names: list[str]
) -> list[str]:
    """The plan as text, one line per node with something to say (none: no lines)."""
    rows: list[str] = []
    rows += [f"{name}: add: provision, start Ray" for name in plan.add]
    rows += [f"{name}: {describe_change(parts)}" for name, parts in plan.change.items()]
    rows += [f"{name}: Ray not running: start it" for name in plan.start]
    for name in plan.remove:
        state = states.get(name)
        reachable = bool(state and state.reachable)
        how = "drain, stop, clean up" if reachable else "unreachable: drop untouched"
        rows.append(f"{name}: remove: {how}")
    for name in plan.unreachable:
        if name in config_names:
            state = states.get(name)
            rows.append(f"{name}: unreachable: {(state.error if state else None) or 'no answer'}")
    rows += [f"{name}: drained ({why}): Ray stays off" for name, why in plan.drained.items()]
    if not rows:
        return []
    head = f"apply plan for {cluster.name} ({len(plan.current)} node(s) current):"
    tail = []
    if plan.restart_all:
        tail.append("  the head changes: the whole cluster's Ray restarts")
    if plan.controller:
        tail.append("  the controller takes the new node set")
    return [head, *(f"  {row}" for row in rows), *tail]


def noop_document(plan: Plan, check: bool, seconds: float) -> dict[str, Any]:
    """``apply --json`` when nothing is to be done."""
    doc: dict[str, Any] = {"plan": plan.to_json(), "check": check}
    if not check:
        doc.update(window_s=None, not_current=[], seconds=round(seconds, 3))
    return doc


# ---------------------------------------------------------------------------------------
# nodes of another cluster


def foreign(cluster: ClusterModel, states: dict[str, NodeState]) -> dict[str, str]:
    """The nodes that note another cluster's id, with that id."""
    return {
        name: state.cluster_id
        for name, state in states.items()
        if state.cluster_id and state.cluster_id != cluster.id
    }


def refuse_foreign(cluster: ClusterModel, foreign: dict[str, str], command: str) -> None:
    """Stop ``command`` before it touches anything when a node notes another cluster's
    id (two configs of one name, or a host typed wrong): one paragraph naming them."""
    if not foreign:
        return
    from grid_ops.errors import Conflict

    names = ", ".join(f"{n} (cluster {i[:64]!r})" for n, i in sorted(foreign.items()))
    ids = sorted(set(foreign.values()))
    which = f'cluster_id: "{ids[0][:64]}"' if len(ids) == 1 else "that cluster's cluster_id"
    raise Conflict(
        f"{command} refused: {names} belong{'s' * (len(foreign) == 1)} to another grid-ops "
        f"cluster, not to '{cluster.name}' (id {cluster.id}); nothing was changed.",
        "Check the nodes' hosts in the config. If this config manages that cluster (a copy "
        f"of its config, say), put {which} in it; to take the nodes over on purpose, run "
        "again with --adopt.",
    )


def adopt(cluster: ClusterModel, names: list[str]) -> list[str]:
    """Note this cluster's id on ``names`` (over plain ssh, in parallel), so every later
    run treats them as this cluster's. Returns the nodes where that failed."""
    import shlex

    from grid_ops.drivers import spawn

    note, draft = shlex.quote(layout.CLUSTER_ID), shlex.quote(layout.CLUSTER_ID + ".new")
    jobs: list[tuple[list[str], str | None]] = []
    for name in names:
        node = cluster.node(name)
        line = (
            f"cd -- {model_root(node.root or cluster.remote_root)} && "
            f"mkdir -p -m 700 -- {shlex.quote(layout.STATE)} && "
            f"printf '%s\\n' {shlex.quote(cluster.id)} > {draft} && mv -f -- {draft} {note}"
        )
        jobs.append((node.argv(line), None))
    done = spawn.run_all(jobs, cluster.forks, cluster.deadlines.command) if jobs else []
    return [n for n, child in zip(names, done, strict=True) if child is None or child.rc != 0]
