"""Several users on one cluster, the pure parts: who a token names and what they may
touch (grid_ops.runtime.users), quotas in the queue and usage from its records
(grid_ops.runtime.jobqueue), and the config's users:. The lab test of the same paths,
through the CLI and the head's controller, is tests/test_users_lab.py."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from grid_ops.model.config import parse
from grid_ops.runtime import users
from grid_ops.runtime.jobqueue import (
    QUEUED,
    RUNNING,
    SUCCEEDED,
    Attempt,
    Job,
    NodeSlot,
    Quota,
    per_user,
    running_gpus,
    schedule,
    start_attempt,
    usage_table,
)
from grid_ops.runtime.nodes import Refused

HOUR = 3600.0
NOW = 2_000_000.0
SETTINGS = {
    "users": [
        {"name": "ada", "role": "admin", "quota": {}},
        {"name": "bob", "role": "member", "quota": {"gpus": 2, "gpu_hours_per_week": 10}},
        {"name": "cy", "role": "member", "quota": {}},
    ]
}


# --- tokens and callers ----------------------------------------------------------------


def test_a_token_names_its_user_and_only_its_digest_is_kept(tmp_path: Path) -> None:
    tokens = users.Tokens(tmp_path)
    bob = tokens.issue("bob")
    kept = (tmp_path / users.USERS_FILE).read_text()
    assert bob not in kept and users.digest(bob) in kept
    assert stat.S_IMODE(os.stat(tmp_path / users.USERS_FILE).st_mode) == 0o600
    assert users.identify(SETTINGS, tokens, bob) == users.Caller("bob", "member")
    # a new token replaces the old one
    newer = tokens.issue("bob")
    assert users.identify(SETTINGS, tokens, newer).name == "bob"
    with pytest.raises(Refused, match="not known to this cluster"):
        users.identify(SETTINGS, tokens, bob)


def test_without_a_token_or_with_a_wrong_one_a_call_is_refused(tmp_path: Path) -> None:
    tokens = users.Tokens(tmp_path)
    tokens.issue("ada")
    for given in (None, "", "not-a-token"):
        with pytest.raises(Refused) as refused:
            users.identify(SETTINGS, tokens, given, claimed="ada")  # a claim is not a token
        assert "grid-ops user login" in refused.value.hint


def test_a_user_taken_out_of_the_config_is_refused_with_their_old_token(tmp_path: Path) -> None:
    tokens = users.Tokens(tmp_path)
    cy = tokens.issue("cy")
    fewer = {"users": SETTINGS["users"][:2]}
    with pytest.raises(Refused, match="'cy' is no longer a user"):
        users.identify(fewer, tokens, cy)


def test_a_cluster_without_users_takes_the_callers_word(tmp_path: Path) -> None:
    caller = users.identify({}, users.Tokens(tmp_path), None, claimed="alice")
    assert caller == users.Caller("alice", "admin")


def test_only_an_admin_makes_tokens_but_the_first_admin_may_start(tmp_path: Path) -> None:
    tokens = users.Tokens(tmp_path)
    nobody = users.Caller("", "member")
    # before any admin has a token, whoever reaches the head may make an admin's
    with pytest.raises(Refused, match="Only an admin"):
        users.may_issue(SETTINGS, tokens, nobody, "bob")
    users.may_issue(SETTINGS, tokens, nobody, "ada")
    tokens.issue("ada")
    with pytest.raises(Refused, match="Only an admin"):
        users.may_issue(SETTINGS, tokens, nobody, "ada")  # that door is closed now
    bob = users.Caller("bob", "member")
    with pytest.raises(Refused, match="you are bob"):
        users.may_issue(SETTINGS, tokens, bob, "bob")
    users.may_issue(SETTINGS, tokens, users.Caller("ada", "admin"), "bob")
    with pytest.raises(Refused, match="No user 'eve'"):
        users.may_issue(SETTINGS, tokens, users.Caller("ada", "admin"), "eve")
    with pytest.raises(Refused, match="no users"):
        users.may_issue({}, tokens, users.Caller("ada", "admin"), "ada")


def test_a_member_touches_only_their_own_and_the_refusal_names_the_owner() -> None:
    bob, cy, ada = (users.Caller("bob", "member"), users.Caller("cy", "member"),
                    users.Caller("ada", "admin"))  # fmt: skip
    users.check_owner(bob, "bob", "Job train", "cancel")
    users.check_owner(ada, "bob", "Job train", "cancel")
    users.check_owner(users.CLUSTER_CODE, "bob", "Job train", "cancel")
    with pytest.raises(Refused) as refused:
        users.check_owner(cy, "bob", "Job train", "cancel")
    assert str(refused.value) == "Job train belongs to bob; only bob or an admin may cancel it."


def test_a_users_file_of_another_shape_matches_no_token(tmp_path: Path) -> None:
    tokens = users.Tokens(tmp_path)
    for text in (json.dumps({"tokens": ["x"]}), json.dumps([1]), json.dumps({"tokens": {"a": 1}})):
        (tmp_path / users.USERS_FILE).write_text(text)
        assert tokens.holders() == [] and tokens.owner("x") is None
    (tmp_path / users.USERS_FILE).write_text("{")
    with pytest.raises(Refused, match="cannot be read"):
        tokens.owner("x")


# --- the config's users ----------------------------------------------------------------


def config(extra: dict[str, Any]) -> dict[str, Any]:
    return {"name": "c", "nodes": [{"name": "n1", "host": "10.0.0.1"}], **extra}


def test_users_in_the_config_need_an_admin_and_unique_names() -> None:
    cfg = parse(config({"users": [{"name": "ada", "role": "admin"}, {"name": "bob"}]}))
    assert [(u.name, u.role) for u in cfg.users] == [("ada", "admin"), ("bob", "member")]
    assert cfg.users[1].quota.gpus is None
    with pytest.raises(Exception, match="nobody has role admin"):
        parse(config({"users": [{"name": "bob"}]}))
    with pytest.raises(Exception, match="bob listed twice"):
        parse(config({"users": [{"name": "ada", "role": "admin"}, {"name": "bob"},
                                {"name": "bob"}]}))  # fmt: skip
    with pytest.raises(Exception, match="quota"):
        parse(config({"users": [{"name": "ada", "role": "admin", "quota": {"gpus": -1}}]}))
    with pytest.raises(Exception, match="role"):
        parse(config({"users": [{"name": "ada", "role": "root"}]}))


# --- quotas in the queue ---------------------------------------------------------------


def job(id: str, submitter: str, gpus: float = 1, nodes: int = 1, at: float = NOW - 60) -> Job:
    return Job(id=id, name=id, submitter=submitter, submitted_at=at, gpus_per_node=gpus,
               nodes=nodes)  # fmt: skip


def ran(id: str, submitter: str, gpus: float, start: float, end: float | None) -> Job:
    attempt = Attempt(number=1, nodes=("n1",), started_at=start, ended_at=end)
    status = RUNNING if end is None else SUCCEEDED
    return Job(id=id, name=id, submitter=submitter, submitted_at=start, gpus_per_node=gpus,
               status=status, attempts=(attempt,))  # fmt: skip


SLOTS = [NodeSlot("n1", 8, 16, 8, 16), NodeSlot("n2", 8, 16, 8, 16)]
QUOTAS = {"bob": Quota(gpus=2, gpu_hours_per_week=10)}


def test_a_job_over_its_users_gpu_quota_waits_saying_so_and_others_go_on() -> None:
    holding = ran("b0", "bob", gpus=1, start=NOW - HOUR, end=None)
    jobs = [holding, job("b1", "bob", gpus=2), job("c1", "cy", gpus=4)]
    decision = schedule(jobs, SLOTS, NOW, 1e9, quotas=QUOTAS)
    assert [s.job_id for s in decision.starts] == ["c1"]
    assert decision.waiting["b1"] == (
        "over bob's quota: needs 2 GPU(s), bob's jobs hold 1 of 2 allowed at once"
    )
    # once bob's running job ends, the same job starts
    done = ran("b0", "bob", gpus=1, start=NOW - HOUR, end=NOW - 1)
    decision = schedule([done, *jobs[1:]], SLOTS, NOW, 1e9, quotas=QUOTAS)
    assert {s.job_id for s in decision.starts} == {"b1", "c1"}


def test_two_starts_in_one_pass_count_against_one_quota() -> None:
    jobs = [job("b1", "bob", gpus=1, at=NOW - 9), job("b2", "bob", gpus=1, at=NOW - 8),
            job("b3", "bob", gpus=1, at=NOW - 7)]  # fmt: skip
    decision = schedule(jobs, SLOTS, NOW, 1e9, quotas=QUOTAS)
    assert [s.job_id for s in decision.starts] == ["b1", "b2"]
    assert "hold 2 of 2" in decision.waiting["b3"]


def test_gpu_hours_of_the_last_seven_days_stop_new_jobs_until_they_age_out() -> None:
    # 5 GPUs for 2 hours, 3 days ago: 10 GPU-hours, bob's whole week
    spent = ran("b0", "bob", gpus=5, start=NOW - 3 * 24 * HOUR, end=NOW - 3 * 24 * HOUR + 2 * HOUR)
    jobs = [spent, job("b1", "bob", gpus=1)]
    decision = schedule(jobs, SLOTS, NOW, 1e9, quotas=QUOTAS)
    assert decision.starts == ()
    assert decision.waiting["b1"] == (
        "over bob's quota: 10.00 of 10 GPU-hours used in the last 7 days"
    )
    later = NOW + 4 * 24 * HOUR + 1  # the run is now over 7 days old
    assert [s.job_id for s in schedule(jobs, SLOTS, later, 1e9, quotas=QUOTAS).starts] == ["b1"]
    # a CPU-only job is not held by a GPU quota; a user without quota never is
    free = [spent, job("b2", "bob", gpus=0), job("c1", "cy", gpus=8)]
    assert {s.job_id for s in schedule(free, SLOTS, NOW, 1e9, quotas=QUOTAS).starts} == {
        "b2",
        "c1",
    }


# --- usage -----------------------------------------------------------------------------


def test_usage_counts_each_attempts_gpus_and_cpus_inside_the_window() -> None:
    two = Attempt(number=1, nodes=("n1", "n2"), started_at=NOW - 3 * HOUR, ended_at=NOW - HOUR)
    retry = Attempt(number=2, nodes=("n2", "n3"), started_at=NOW - HOUR, ended_at=None)
    big = Job(id="big", name="big", submitter="ann", submitted_at=NOW - 4 * HOUR, nodes=2,
              gpus_per_node=2, cpus_per_node=4, status=RUNNING, attempts=(two, retry))  # fmt: skip
    small = ran("s", "bob", gpus=1, start=NOW - 30 * 60, end=NOW - 15 * 60)
    queued = job("q", "cy")
    by_user = usage_table([big, small, queued], NOW - 10 * HOUR, NOW, "user")
    # ann: 4 GPUs x 2 h + 4 GPUs x 1 h (the open attempt runs to now)
    assert by_user["ann"] == pytest.approx(
        {"gpu_hours": 12.0, "cpu_hours": 24.0, "attempts": 2, "energy_kwh": None,
         "energy_measured": 0}
    )  # fmt: skip
    assert by_user["bob"]["gpu_hours"] == pytest.approx(0.25)
    assert "cy" not in by_user  # a queued job used nothing
    by_node = usage_table([big, small], NOW - 10 * HOUR, NOW, "node")
    assert by_node["n1"]["gpu_hours"] == pytest.approx(4.0 + 0.25)
    assert by_node["n2"]["gpu_hours"] == pytest.approx(4.0 + 2.0)
    assert by_node["n3"]["gpu_hours"] == pytest.approx(2.0)
    # only the part inside the window counts
    last_hour = usage_table([big], NOW - HOUR, NOW, "user")
    assert last_hour["ann"]["gpu_hours"] == pytest.approx(4.0)
    with pytest.raises(ValueError, match="user, node"):
        usage_table([big], 0, NOW, "gpu")


def test_usage_sums_the_measured_energy_and_leaves_unmeasured_attempts_unknown() -> None:
    kwh = 3.6e6  # joules
    measured = Attempt(number=1, nodes=("n1", "n2"), started_at=NOW - 4 * HOUR,
                       ended_at=NOW - 2 * HOUR, energy_j=2 * kwh)  # fmt: skip
    unmeasured = Attempt(number=2, nodes=("n1", "n2"), started_at=NOW - 2 * HOUR,
                         ended_at=NOW - HOUR)  # fmt: skip
    big = Job(id="big", name="big", submitter="ann", submitted_at=NOW - 5 * HOUR, nodes=2,
              gpus_per_node=1, status=SUCCEEDED, attempts=(measured, unmeasured))  # fmt: skip
    dark = ran("d", "bob", gpus=1, start=NOW - HOUR, end=NOW - 1)
    rows = usage_table([big, dark], NOW - 10 * HOUR, NOW, "user")
    assert rows["ann"]["energy_kwh"] == pytest.approx(2.0)
    assert rows["ann"]["energy_measured"] == 1 and rows["ann"]["attempts"] == 2
    assert rows["bob"]["energy_kwh"] is None  # no power readings: unknown, never 0
    # a window holding half of the measured attempt counts half of its energy
    half = usage_table([big], NOW - 3 * HOUR, NOW, "user")
    assert half["ann"]["energy_kwh"] == pytest.approx(1.0)
    by_node = usage_table([big], NOW - 10 * HOUR, NOW, "node")
    assert by_node["n1"]["energy_kwh"] == pytest.approx(1.0)  # split by rank
    assert json.loads(json.dumps(rows))["bob"]["energy_kwh"] is None


def test_running_gpus_are_the_open_attempts_per_submitter() -> None:
    jobs = [
        ran("a", "ann", gpus=2, start=NOW - HOUR, end=None),
        ran("b", "ann", gpus=1, start=NOW - HOUR, end=NOW - 1),
        start_attempt(job("c", "bob", gpus=0.5, nodes=2), ("n1", "n2"), NOW),
        job("d", "cy", gpus=4),
    ]
    assert jobs[3].status == QUEUED
    assert running_gpus(jobs) == {"ann": 2.0, "bob": 1.0}


def test_per_user_numbers_reach_metrics_as_series_by_user() -> None:
    from grid_ops import metrics

    jobs = [
        ran("a", "ann", gpus=2, start=NOW - HOUR, end=None),
        ran("b", "ann", gpus=1, start=NOW - 3 * HOUR, end=NOW - 2 * HOUR),
        job("c", "bob", gpus=4),
    ]
    rows = per_user(jobs, NOW)
    assert rows["ann"] == pytest.approx(
        {"jobs_queued": 0, "jobs_running": 1, "gpus_running": 2.0, "gpu_hours_week": 3.0}
    )
    assert rows["bob"]["jobs_queued"] == 1 and rows["bob"]["gpu_hours_week"] == 0
    from grid_ops.runtime.taskstats import Totals

    numbers = {"active_tasks": 0, "tasks": Totals().to_json(), "boosts_active": 0,
               "pool_bytes": {}, "users": rows}  # fmt: skip
    text = metrics.exposition("c1", [], numbers).decode()
    assert 'grid_user_gpus{user="ann"} 2.0' in text
    assert 'grid_user_gpu_seconds_7d{user="ann"} 10800.0' in text
    assert 'grid_user_jobs_queued{user="bob"} 1.0' in text


def test_a_gpu_process_is_attributed_to_the_unix_user_running_it() -> None:
    import getpass

    from grid_ops.module_utils.grid_node_os import process_user

    assert process_user(os.getpid()) == getpass.getuser()
    assert process_user(2**22 + 7) is None  # no such process (pid_max is at most 2^22)
    for bad in (None, 0, -1, "1"):
        assert process_user(bad) is None
