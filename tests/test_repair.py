"""Repair planning and its state (pure; the lab test in tests/test_repair_lab.py runs the
same path on real nodes): which nodes a watch round restarts, the backoff, when repair
gives up and quarantines, and that its state file cannot be used against its owner."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from grid_ops import facts, repair

DOWN = {"check": "ray_down", "severity": "sick", "reason": "Ray is not running", "gpu": None}
RULES = repair.Policy(enabled=True, attempts=3, backoff=30.0, quarantine=True)


def _rec(name: str, **values: Any) -> dict[str, Any]:
    rec = facts.record(name, {"ray_running": True, "ray_version": "2.60.0"}, 1.0, 3.0)
    rec.update(values)
    return rec


def _empty() -> dict[str, Any]:
    return {"nodes": {}, "events": []}


def test_backoff_doubles_from_the_setting_and_stops_at_an_hour() -> None:
    assert [repair.backoff(n, 30.0) for n in range(6)] == [0.0, 30.0, 60.0, 120.0, 240.0, 480.0]
    assert repair.backoff(12, 30.0) == repair.backoff(500, 30.0) == 3600.0


def test_which_nodes_a_round_repairs() -> None:
    given_up = repair.quarantine_reason(3, "ray start failed")
    records = [
        _rec("head"),
        _rec("down", ray_running=False, checks=[DOWN]),
        _rec("ops", ray_running=False, drained="fan swap"),  # an operator's drain: left off
        _rec("given_up", ray_running=False, drained=given_up),
        _rec("other", checks=[DOWN, {**DOWN, "check": "disk"}]),  # quarantined instead
        {**facts.unreachable("gone", "no answer"), "checks": [DOWN]},
    ]
    state = _empty()
    assert repair.plan(records, "head", state, RULES, now=1000.0) == [
        ("down", repair.START),
        ("given_up", repair.LIFT),
    ]
    state["nodes"]["down"] = {"failures": 1, "next_at": 1030.0}  # backing off
    assert repair.plan(records, "head", state, RULES, now=1029.0) == [("given_up", repair.LIFT)]
    assert repair.plan(records, "head", state, RULES, now=1030.0)[0] == ("down", repair.START)
    head_down = [_rec("head", ray_running=False), *records[1:]]
    assert repair.plan(head_down, "head", state, RULES, now=5000.0) == []  # cluster stopped
    off = repair.Policy(enabled=False, attempts=3, backoff=30.0, quarantine=True)
    assert repair.plan(records, "head", _empty(), off, now=1000.0) == []


def test_three_failed_repairs_in_a_row_quarantine_and_a_success_resets() -> None:
    state = _empty()
    verdicts = [repair.settle(state, "n2", False, "ray start: exit 1", RULES, now=t)
                for t in (0.0, 30.0, 90.0)]  # fmt: skip
    assert verdicts == [False, False, True]
    assert state["nodes"]["n2"] == {"failures": 3, "next_at": 90.0 + 120.0}
    assert repair.settle(state, "n2", True, "", RULES, now=300.0, action=repair.LIFT) is False
    assert state["nodes"] == {}
    assert [(e["ok"], e["failures"], e["quarantined"]) for e in state["events"]] == [
        (False, 1, False), (False, 2, False), (False, 3, True), (True, 0, False),
    ]  # fmt: skip
    assert state["events"][-1]["action"] == "restart Ray, lift the quarantine"
    no_gate = repair.Policy(enabled=True, attempts=1, backoff=1.0, quarantine=False)
    assert repair.settle(_empty(), "n3", False, "x", no_gate, now=0.0) is False  # report only
    reason = repair.quarantine_reason(3, "ray start: exit 1")
    assert facts.repair_quarantined({"drained": reason})
    assert not facts.repair_quarantined({"drained": "ray_down: an operator's words"})


def test_the_state_file_is_private_kept_short_and_replaces_what_is_in_its_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRID_OPS_STATE_DIR", str(tmp_path / "state"))
    name = Path(repair.state_name("c0ffee"))
    name.parent.mkdir(parents=True)
    victim = tmp_path / "victim.txt"
    victim.write_text("the user's own file\n")
    name.symlink_to(victim)  # planted link: the save must not write through it
    assert repair.load("c0ffee") == _empty()  # not a repair state: read as none
    state = _empty()
    for t in range(repair.EVENTS_KEPT + 7):
        repair.settle(state, "n2", False, "x", RULES, now=float(t))
    repair.save("c0ffee", state)
    assert victim.read_text() == "the user's own file\n"
    assert not name.is_symlink() and stat.S_IMODE(os.stat(name).st_mode) == 0o600
    kept = json.loads(name.read_text())["events"]
    assert len(kept) == repair.EVENTS_KEPT and kept[-1]["failures"] == repair.EVENTS_KEPT + 7
    assert repair.recent("c0ffee", 2) == kept[-2:]
    name.write_text("{not json")
    assert repair.load("c0ffee") == _empty()
