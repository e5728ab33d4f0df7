"""Pure logic of the controller and its CLI (the lab tests in test_runtime.py run the same
paths on real Ray): amounts, placement choices, pressure, counters, the wire format."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from grid_ops.drivers import control
from grid_ops.errors import UsageError
from grid_ops.runtime import nodes, offload, pool, protocol, reservations, store
from grid_ops.runtime.nodes import NodeView, Refused
from grid_ops.runtime.taskstats import Totals


def test_amounts_durations_and_thresholds_parse_as_users_write_them() -> None:
    assert control.parse_amount("cpu", "2") == 2.0
    assert control.parse_amount("gpu", "0.5") == 0.5
    assert control.parse_amount("memory", "512MiB") == 512 * 2**20
    assert control.parse_amount("memory", "2") == 2 * 2**30  # bare number = GiB
    assert control.parse_amount("memory", "1.5GB") == 1.5e9
    with pytest.raises(UsageError, match="no unit"):
        control.parse_amount("cpu", "2GiB")
    with pytest.raises(UsageError, match="Unknown resource 'disk'"):
        control.parse_amount("disk", "1")
    with pytest.raises(UsageError, match="Cannot read the amount"):
        control.parse_amount("cpu", "lots")
    assert control.parse_duration("90") == 90
    assert control.parse_duration("10m") == 600
    assert control.parse_duration("2h") == 7200
    with pytest.raises(UsageError, match="duration"):
        control.parse_duration("soon")
    assert control.parse_thresholds(["70"]) == {"memory": 70.0}
    assert control.parse_thresholds(["cpu=80", "gpu=90"]) == {"cpu": 80.0, "gpu": 90.0}
    with pytest.raises(UsageError, match="not a percentage"):
        control.parse_thresholds(["cpu=120"])


RAY_NODES = [
    {"NodeManagerAddress": "10.0.0.1", "NodeID": "old", "Alive": False,
     "Resources": {"grid_node:n1": 1.0}},
    {"NodeManagerAddress": "10.0.0.1", "NodeID": "a", "Alive": True,
     "Resources": {"CPU": 2.0, "memory": 4e9, "grid_node:n1": 1.0}},
    # registered under another address than any config host (an alias, a NAT):
    {"NodeManagerAddress": "172.17.0.5", "NodeID": "b", "Alive": True,
     "Resources": {"CPU": 4.0, "GPU": 1.0, "grid_node:n2": 1.0}},
    {"NodeManagerAddress": "10.0.0.7", "NodeID": "x", "Alive": True,
     "Resources": {"CPU": 8.0}},  # a node grid-ops did not start
]  # fmt: skip
FREE = {"a": {"CPU": 1.0, "memory": 4e9}, "b": {"CPU": 4.0, "GPU": 1.0}}


def test_config_names_match_ray_nodes_by_the_name_they_joined_with_alive_first() -> None:
    views = nodes.build(["n1", "n2", "n3"], RAY_NODES, FREE)
    assert views["n1"].node_id == "a" and views["n1"].alive  # the restarted node, not "old"
    assert views["n2"].node_id == "b" and views["n2"].ip == "172.17.0.5"  # whatever address
    assert views["n2"].free == {"CPU": 4.0, "GPU": 1.0}
    assert not views["n3"].alive and views["n3"].node_id is None
    assert set(views) == {"n1", "n2", "n3"}  # the node grid-ops did not start is no one's
    with pytest.raises(Refused, match="Unknown node 'n9'"):
        nodes.require(views, "n9")
    with pytest.raises(Refused, match="not part of the running Ray cluster"):
        nodes.require(views, "n3")


def test_boost_and_share_checks_name_what_is_free() -> None:
    views = nodes.build(["n1", "n2"], RAY_NODES, FREE)
    with pytest.raises(Refused, match=r"'n1' has 1 CPU free \(of 2 CPU\); 2 CPU was asked"):
        reservations.check_free(views["n1"], "cpu", 2)
    reservations.check_free(views["n1"], "cpu", 1)
    with pytest.raises(Refused, match="Unknown resource"):
        reservations.validate("disk", 1, "normal")
    with pytest.raises(Refused, match="Unknown priority"):
        reservations.validate("cpu", 1, "urgent")
    # most free wins, within half of each node's total
    assert reservations.pick_shared_node(views, "cpu", 1, 0.5, {}).name == "n2"
    assert reservations.pick_shared_node(views, "cpu", 1, 0.5, {"n2": 1.5}).name == "n1"
    with pytest.raises(Refused, match="No node can share 3 CPU"):
        reservations.pick_shared_node(views, "cpu", 3, 0.5, {})
    record = {"id": "boost-1", "kind": "boost", "node": "n2", "resource": "cpu", "amount": 1,
              "state": "active"}  # fmt: skip
    assert reservations.public(record, views, "CREATED")["state"] == "active"
    assert reservations.public(record, views, "RESCHEDULING")["state"] == "pending"
    lost = nodes.build(["n2"], [n for n in RAY_NODES if n["NodeID"] != "b"], FREE)
    assert reservations.public(record, lost, "RESCHEDULING")["state"] == "node-lost"
    assert reservations.expired({"expires_at": 10.0}, now=11.0)
    assert not reservations.expired({"expires_at": None}, now=11.0)


def test_pool_choice_respects_capacity_replicas_and_the_asked_node() -> None:
    views = {n: NodeView(n, ip, n, True) for n, ip in (("a", "1"), ("b", "2"), ("c", "3"))}
    directory = {"x": {"size": 60, "nodes": ["a"]}}
    assert pool.choose(views, directory, "k", 30, 2, 100, None) == ["b", "c"]  # most room
    assert pool.choose(views, directory, "k", 30, 1, 100, "a") == ["a"]
    assert pool.choose(views, directory, "x", 90, 1, 100, "a") == ["a"]  # replacing x frees a
    with pytest.raises(Refused, match="Node 'a' has 40 bytes of pool room"):
        pool.choose(views, directory, "k", 50, 1, 100, "a")
    with pytest.raises(Refused, match="larger than a node's pool capacity"):
        pool.choose(views, directory, "k", 101, 1, 100, None)
    with pytest.raises(Refused, match="3 replicas were asked for"):
        pool.choose(views, directory, "k", 50, 3, 100, None)
    views["c"].alive = False
    assert pool.choose(views, {}, "k", 10, 2, 100, None) == ["a", "b"]
    assert pool.used_by_node({"x": {"size": 5, "nodes": ["a", "b"]}}) == {"a": 5, "b": 5}
    store_ = pool.PoolStore(capacity=10)
    assert store_.put("k", b"12345") == 5
    with pytest.raises(MemoryError, match="pool store full"):
        store_.put("j", b"123456")
    assert store_.put("k", b"1234567890") == 10  # replacing counts only the new size
    assert store_.keys() == {"k": 10} and store_.get("k") == b"1234567890"
    # a smaller pool (memory_pool_gb changed in place): what it holds stays, nothing more
    assert store_.resize(4) == 10 and store_.get("k") == b"1234567890"
    with pytest.raises(MemoryError, match="10 of 4 bytes"):
        store_.put("j", b"1")
    store_.delete("k")
    assert store_.put("j", b"1234") == 4


def test_offload_pressure_and_target_choice() -> None:
    limits = {"cpu": 80.0, "memory": 70.0, "gpu": 90.0}
    assert offload.over({"cpu": 50.0, "memory": 40.0, "gpu": None}, limits) == []
    assert offload.over({"cpu": 95.0, "memory": 71.0, "gpu": 91.0}, limits) == [
        "cpu 95% > 80%", "memory 71% > 70%", "gpu 91% > 90%"
    ]  # fmt: skip
    free = {"w1": {"CPU": 1.0}, "w2": {"CPU": 3.0}}
    totals = {"w1": {"CPU": 2.0}, "w2": {"CPU": 8.0}}
    assert offload.least_loaded(free, totals) == "w1"  # 50% free beats 37.5%
    assert offload.least_loaded({}, totals) is None
    sampler = offload.Sampler()
    values = sampler.sample()
    assert 0.0 <= float(values["cpu"] or 0) <= 100.0
    assert 0.0 < float(values["memory"] or 0) < 100.0
    assert offload.policy(True, {"cpu": 50})["thresholds"] == {**limits, "cpu": 50}


def test_task_totals_add_up_reports() -> None:
    a, b = Totals(), Totals()
    a.started = 3
    a.observe("succeeded", 0.05)
    a.observe("failed", 2.0)
    b.started = 1
    b.observe("succeeded", 0.3)
    total = Totals()
    total.add(a.to_json())
    total.add(b.to_json())
    assert total.completed == {"succeeded": 2, "failed": 1}
    assert total.active() == 1 and total.count == 3
    assert total.buckets[:3] == [1, 2, 2]  # cumulative: <=0.1, <=0.5, <=1.0


def test_state_file_round_trip_and_wire_format(tmp_path: Path) -> None:
    data = store.empty()
    data["pool"]["k"] = {"size": 1, "nodes": ["a"]}
    store.save(tmp_path, data)
    assert store.load(tmp_path)["pool"] == {"k": {"size": 1, "nodes": ["a"]}}
    assert store.load(tmp_path / "none")["reservations"] == {}
    assert protocol.socket_path(tmp_path).parent == tmp_path
    # a state dir too long for a socket path: the user's checked private short dir
    far = protocol.socket_path(Path("/x" * 60))
    assert far.parent == Path(f"/tmp/grid-ops-{os.getuid()}")
    assert far.parent.stat().st_mode & 0o777 == 0o700
    assert far != protocol.socket_path(Path("/y" * 60))  # one socket per state dir
    # a real Unix socket: header, binary payload both ways, refusal with hint
    path = protocol.socket_path(tmp_path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(2)

    def serve() -> None:
        for _ in range(2):
            conn, _ = server.accept()
            with conn, conn.makefile("rwb") as stream:
                request = protocol.read_line(stream)
                body = protocol.read_exact(stream, request["payload"])
                if request["op"] == "echo":
                    protocol.write_message(stream, {"ok": True, "result": len(body)}, body[::-1])
                else:
                    protocol.write_message(stream, {"ok": False, "error": "no", "hint": "h"})

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    blob = bytes(range(256)) * 5000
    result, back = protocol.call(tmp_path, "echo", {}, blob)
    assert result == len(blob) and back == blob[::-1]
    with pytest.raises(protocol.RemoteError, match="no") as refused:
        protocol.call(tmp_path, "other")
    assert refused.value.hint == "h"
    thread.join(timeout=5)
    server.close()
    with pytest.raises(protocol.ControllerDown):
        protocol.call(tmp_path / "elsewhere", "ping")


def _mode(path: Path) -> int:
    return os.lstat(path).st_mode & 0o777


def test_the_controller_state_dir_is_closed_to_0700_and_its_files_to_0600(
    tmp_path: Path,
) -> None:
    """A state dir made looser before (an older grid-ops, a umask of 0): the controller's
    start closes it and every file it keeps there, and opens new ones 0600."""
    import json
    import subprocess
    import sys

    state = tmp_path / "state" / "controller"
    state.mkdir(parents=True)
    for name, mode in (("state.json", 0o644), ("ensure.log", 0o666), ("ensure.lock", 0o664)):
        (state / name).write_text("{}")
        os.chmod(state / name, mode)
    os.chmod(state, 0o777)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(state / "old.sock"))
    sock.close()
    os.chmod(state / "old.sock", 0o777)
    # the controller's own start, as the head runs it (Ray is not here: it fails, and says so)
    proc = subprocess.run(
        [sys.executable, "-m", "grid_ops.runtime.controller", "ensure", "--settings", "{}",
         "--state-dir", str(state), "--address", "127.0.0.1:1"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert json.loads(proc.stdout.splitlines()[-1])["changed"] is False, proc.stderr
    assert _mode(state) == 0o700
    files = sorted(os.listdir(state))
    assert files == ["ensure.json", "ensure.lock", "ensure.log", "old.sock", "state.json"]
    assert {name: _mode(state / name) for name in files} == dict.fromkeys(files, 0o600)

    store.save(state, store.empty())
    assert _mode(state / store.STATE_FILE) == 0o600

    # a state dir that is a link (to a dir someone else could read) is refused, untouched
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o755)
    os.chmod(elsewhere, 0o755)
    link = tmp_path / "state" / "linked"
    link.symlink_to(elsewhere)
    proc = subprocess.run(
        [sys.executable, "-m", "grid_ops.runtime.controller", "ensure", "--settings", "{}",
         "--state-dir", str(link), "--background"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "cannot be made private" in json.loads(proc.stdout)["error"]
    assert os.listdir(elsewhere) == [] and _mode(elsewhere) == 0o755
    with pytest.raises(PermissionError, match="not a directory"):
        protocol.private_state(link)


def test_a_task_that_ends_is_reported_at_once_and_quick_ends_share_one_report(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The worker's counts go to the controller when a task ends, not at the next tick:
    Ray ends a job's workers with its driver, so a count that waits for a tick is lost."""
    from grid_ops.runtime import taskstats

    monkeypatch.setattr(taskstats, "FLUSH_SECONDS", 600.0)  # a tick would time the test out
    monkeypatch.setattr(taskstats, "_pending", taskstats.Totals())
    sent: list[dict[str, Any]] = []
    with taskstats._lock:
        taskstats._pending.started += 3
    for seconds in (0.1, 0.2, 7.0):
        taskstats._finished("succeeded" if seconds < 5 else "failed", seconds)
    taskstats.flush_loop(sent.append, rounds=1)
    assert len(sent) == 1
    assert sent[0]["started"] == 3 and sent[0]["completed"] == {"succeeded": 2, "failed": 1}
    assert sent[0]["count"] == 3 and sent[0]["sum"] == pytest.approx(7.3)
    assert not taskstats._ended.is_set()

    monkeypatch.setattr(taskstats, "FLUSH_SECONDS", 0.01)  # only starts: sent at the tick
    with taskstats._lock:
        taskstats._pending.started += 1
    taskstats.flush_loop(sent.append, rounds=1)
    assert sent[1]["started"] == 1 and sent[1]["count"] == 0
    taskstats.flush_loop(sent.append, rounds=1)  # nothing new: nothing sent
    assert len(sent) == 2
