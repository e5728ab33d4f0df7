"""Scheduling strategies: the pure choice, and where tasks really land on the lab's Ray."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from grid_ops.runtime.scheduler import SchedulingError, choose_node
from tests.conftest import Lab, lab_node

FREE = {
    "n1": {"CPU": 0.0, "GPU": 0.0},
    "n2": {"CPU": 2.0},
    "n3": {"CPU": 1.0, "GPU": 1.0},
}
TOTALS = {"n1": {"CPU": 2.0}, "n2": {"CPU": 2.0}, "n3": {"CPU": 4.0, "GPU": 1.0}}


def test_choices_follow_each_strategy() -> None:
    need = {"CPU": 1.0}
    assert choose_node("local-first", need, FREE, local="n2", totals=TOTALS) == "n2"
    assert choose_node("local-first", need, FREE, local="n1", totals=TOTALS) == "n2"  # full
    assert choose_node("best-fit", need, FREE, local="n1", totals=TOTALS) == "n3"  # tightest
    assert choose_node("load-balanced", need, FREE, local="n1", totals=TOTALS) == "n2"  # 100%
    assert choose_node("gpu-affinity", {"GPU": 1.0}, FREE, local="n1", totals=TOTALS) == "n3"
    spread = [
        choose_node("spread", need, FREE, local="n1", totals=TOTALS, turn=t) for t in range(4)
    ]
    assert spread == ["n2", "n3", "n2", "n3"]  # round robin over the nodes with room


def test_a_busy_cluster_queues_on_a_node_that_can_hold_the_task() -> None:
    busy = {"n1": {"CPU": 0.0}, "n2": {"CPU": 0.0}}
    totals = {"n1": {"CPU": 2.0}, "n2": {"CPU": 4.0}}
    assert choose_node("load-balanced", {"CPU": 1.0}, busy, local="n1", totals=totals) in totals
    assert choose_node("local-first", {"CPU": 1.0}, busy, local="n1", totals=totals) == "n1"
    with pytest.raises(SchedulingError, match="no node has"):
        choose_node("best-fit", {"CPU": 8.0}, busy, local="n1", totals=totals)


def test_impossible_requests_are_clear_errors() -> None:
    with pytest.raises(SchedulingError, match="no node has"):
        choose_node("best-fit", {"CPU": 8.0}, FREE, local="n1")
    with pytest.raises(SchedulingError, match="no node has a free GPU"):
        choose_node("gpu-affinity", {"CPU": 1.0}, {"n1": {"CPU": 2.0}}, local="n1")
    with pytest.raises(ValueError, match="unknown strategy"):
        choose_node("random", {}, FREE, local="n1")


DRIVER = """
import json, socket, time
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy as Pin
from grid_ops.runtime.scheduler import BatchExecutor, SchedulingError, submit

ray.init(logging_level="ERROR", log_to_driver=False)
ids = {n["NodeManagerAddress"]: n["NodeID"] for n in ray.nodes() if n["Alive"]}

def where():
    return socket.gethostname()

out = {"local": ray.get(submit(where, strategy="local-first"))}
out["spread"] = sorted(set(ray.get(
    [submit(where, strategy="spread", resources={"CPU": 0.1}) for _ in range(12)])))

@ray.remote
class Hog:
    def host(self):
        return socket.gethostname()

full = Hog.options(num_cpus=2, scheduling_strategy=Pin(ids[NODE1_IP], soft=False)).remote()
half = Hog.options(num_cpus=1, scheduling_strategy=Pin(ids[NODE3_IP], soft=False)).remote()
ray.get([full.host.remote(), half.host.remote()])
time.sleep(3)  # let the resource view catch up
out["best_fit"] = ray.get(submit(where, strategy="best-fit"))
time.sleep(3)  # the finished task's CPU is back in the view before the next choice
out["load_balanced"] = ray.get(submit(where, strategy="load-balanced"))
try:
    submit(where, strategy="gpu-affinity", resources={"CPU": 0.1})
    out["gpu"] = "placed"
except SchedulingError as exc:
    out["gpu"] = str(exc)
out["batch"] = BatchExecutor(batch_size=4).map(lambda x: x * x, range(10))
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def cluster(lab: Lab) -> Iterator[Lab]:
    lab.start_cluster(restart=True)
    yield lab


@pytest.mark.lab
def test_tasks_land_where_the_strategy_says(cluster: Lab) -> None:
    ips = f"NODE1_IP, NODE3_IP = {lab_node('node1').ip!r}, {lab_node('node3').ip!r}\n"
    proc = cluster.cli("run", "-c", str(cluster.config), "--node", "node1", "--",
                       "python", "-c", ips + DRIVER, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["local"] == "node1"  # the driver's own node
    assert len(out["spread"]) >= 2  # SPREAD uses more than one node
    assert out["load_balanced"] == "node2"  # node1 full, node3 half busy
    assert out["best_fit"] == "node3"  # exactly one CPU left there
    assert "no node has a free GPU" in out["gpu"]
    assert out["batch"] == [x * x for x in range(10)]  # flattened, in order
