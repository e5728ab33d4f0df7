"""grid-ops demo: the main job on the embedded default cluster."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from grid_ops.cli.output import err, out, safe

if TYPE_CHECKING:
    from grid_ops.model import ClusterModel

LOCAL_CONFIG = """\
# grid-ops demo cluster: this machine only (not root, so no lab).
name: local
remote_root: {root}
nodes:
  - name: localhost
    host: localhost
    connection: local
    memory_gb: 2
"""


def _step(text: str) -> None:
    err.print(f"\n[bold cyan]==> {safe(text)}[/]")


def demo(
    nodes: Annotated[int, typer.Option("--nodes", "-n", help="Lab nodes (as root).", min=1)] = 3,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Where to write the demo's cluster config.")
    ] = Path("lab.yaml"),
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="Run the steps on this existing cluster config instead (no lab, nothing written).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run the main job end to end on the embedded default cluster (or on -c CONFIG).

    As root: bring up a lab of network-namespace SSH nodes; otherwise: this machine as a
    one-node cluster (local connection, files under ~/grid-ops-demo). Then ping the nodes,
    provision them (venv with pinned Ray, offline from a wheelhouse), start Ray, show its
    status, then every node's health, run a small training job, request and release a
    boost, and store and retrieve an object in the memory pool. Everything stays up for
    you to explore;
    'grid-ops cluster stop -c CONFIG' stops Ray and, for the lab, 'grid-ops lab down'
    removes it.
    """
    from grid_ops.cli.common import load_cluster
    from grid_ops.fsutil import write_file

    if config is not None:
        load_cluster(config)  # a bad config stops here, before anything runs
        output = config
        _step(f"cluster of {config}")
    elif os.geteuid() == 0:
        from grid_ops import lab
        from grid_ops.cli.output import info

        _step(f"lab: {nodes} SSH node(s) as network namespaces")
        lab.up(nodes, output, progress=info)
    else:
        _step("not root: this machine as a one-node cluster")
        write_file(output, LOCAL_CONFIG.format(root=Path.home() / "grid-ops-demo"))
    out.print(f"cluster config: {safe(output)}")
    cluster, path = load_cluster(output)
    _steps(cluster, path)
    shown = safe(output)
    out.print(
        f"\nDone. Try: grid-ops job list -c {shown}   |   "
        f"grid-ops run -c {shown} -- ray status   |   "
        f"grid-ops cluster stop -c {shown}"
        + ("   |   grid-ops lab down" if os.geteuid() == 0 else "")
    )


def _steps(cluster: ClusterModel, path: Path) -> None:
    """The demo's steps: each a use case (grid_ops.actions, the controller's calls) and
    the view its command shows; a failed step stops the demo as its command would."""
    from grid_ops.actions import health, playbooks
    from grid_ops.actions.provision import provision as provision_nodes
    from grid_ops.actions.status import ray_status
    from grid_ops.cli import health_cmd, ping, playbook, provision
    from grid_ops.cli.cluster import show_status
    from grid_ops.cli.progress import console

    progress = console()
    _step("ping: SSH and Python on every node")
    ping.show(
        cluster.name, playbooks.run("ping", cluster, path, title="ping", progress=progress), False
    )
    _step("provision: node venvs with pinned Ray (wheels downloaded once, installed offline)")
    provision.show(provision_nodes(cluster, path, progress=progress), False)
    _step("cluster start: Ray head, then workers")
    playbook.finish(playbooks.start(cluster, path, progress=progress), False, "cluster start")
    _step("cluster status")
    show_status(ray_status(cluster, path, progress), False)
    _step("health: load, memory, GPUs and a score per node, best first")
    health_cmd.show(
        cluster.name, health.check(cluster, path, refresh=True, progress=progress), False
    )
    _step("job: a small training job on Ray Jobs, and the metrics it reported")
    _demo_job(cluster)
    _step("boost: reserve CPU on a node for the head's work, then release it")
    _demo_boost(cluster)
    _step("memory pool: store bytes on the cluster's nodes, read them back exactly")
    _demo_memory(cluster)


DEMO_JOB = (
    "from grid_ops.jobs import report\n"
    "loss = 1.0\n"
    "for epoch in range(1, 4):\n"
    "    loss *= 0.5\n"
    "    report(epoch=epoch, loss=loss)\n"
    "print('demo training done')\n"
)


def _demo_job(cluster: ClusterModel) -> None:
    import time

    from grid_ops.actions import jobs
    from grid_ops.cli import job_cmd

    name = f"demo-{time.strftime('%H%M%S')}"
    jobs.launch(cluster, jobs.job_spec(cluster, name, ["python", "-c", DEMO_JOB]))
    out.print(f"launched job {name}; waiting for it to finish")
    jobs.wait(cluster, name, 300)
    data, record = jobs.outcome(cluster, name)
    job_cmd.show_results(name, data, record, json_out=False)


def _demo_boost(cluster: ClusterModel) -> None:
    from grid_ops.cli import boost_cmd
    from grid_ops.drivers import control

    node = cluster.nodes[-1].name  # a worker when there is one
    row, _ = control.call(
        cluster, "reserve", {"kind": "boost", "node": node, "resource": "cpu", "amount": 0.5,
                         "priority": "normal", "ttl": 600},
    )  # fmt: skip
    out.print(f"boost {safe(row['id'])}: 0.5 CPU on {safe(node)} for 10 minutes")
    rows, _ = control.call(cluster, "reservations", {"kind": "boost"})
    boost_cmd.show_reservations(rows, "Boosts", as_json=False)
    boost_cmd.show_released(row["id"], control.release(cluster, row["id"], "boost"), as_json=False)


def _demo_memory(cluster: ClusterModel) -> None:
    import hashlib
    import os

    from grid_ops.cli import memory_cmd
    from grid_ops.drivers import control
    from grid_ops.errors import GridOpsError

    data = os.urandom(4 * 2**20)
    replicas = min(2, len(cluster.nodes))
    result, _ = control.call(cluster, "memory-store", {"key": "demo", "replicas": replicas},
                             payload=data)  # fmt: skip
    out.print(f"stored 'demo' (4 MiB) on {safe(', '.join(result['nodes']))}")
    rows, _ = control.call(cluster, "memory-list")
    memory_cmd.show_objects(rows, cluster.name, as_json=False)
    _, back = control.call(cluster, "memory-retrieve", {"key": "demo"})
    if back != data:
        raise GridOpsError("The memory pool returned other bytes than were stored.")
    out.print(f"retrieved 'demo': byte-exact (sha256 {hashlib.sha256(data).hexdigest()[:16]}…)")
    control.call(cluster, "memory-delete", {"key": "demo"})
    out.print("deleted demo")
