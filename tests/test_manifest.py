"""The node's manifest of what grid-ops made, and 'reset' taking back only that
(grid_ops/module_utils/grid_manifest.py, the module grid_paths, the runtime's records),
on directories of this machine: a user's own code and lib beside grid-ops' dirs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from grid_ops import layout
from grid_ops.module_utils import grid_manifest as gm
from grid_ops.runtime import private, venvs
from tests.conftest import REPO

MINE = "my own work, not grid-ops'\n"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home of the node user's own: code/mine.txt and lib/ made before grid-ops."""
    home = tmp_path / "home"
    (home / "code").mkdir(parents=True)
    (home / "code" / "mine.txt").write_text(MINE)
    (home / "lib" / "mypkg").mkdir(parents=True)
    (home / ".bashrc").write_text("# mine\n")
    monkeypatch.setenv("HOME", str(home))
    return home


def names(tmp_path: Path | None = None) -> dict[str, Any]:
    found = layout.as_vars()
    # the short dir in a temp dir of the test's own; else one that is never made (the
    # user's real /tmp/grid-ops-<uid> may exist, made by anything else run as this user)
    where = tmp_path if tmp_path is not None else REPO / "tests" / "no-short-dir-here"
    found["short_dir"] = str(where / layout.SHORT_DIR)
    return found


def provision(root: Path) -> None:
    """What the roles make, in their order: bootstrap, venv, then Ray's temp dir."""
    lay = names()
    gm.make_dirs(str(root), lay, [_dir(".", "0700"), _dir("code", "0700"), _dir("jobs", "0700")])
    gm.make_dirs(
        str(root), lay, [_dir("wheelhouse", "0755"), _dir("lib", "0755"), _dir("venvs", "0755")]
    )
    (root / "lib" / "grid_ops").mkdir(exist_ok=True)
    (root / "wheelhouse" / layout.WHEELHOUSE_MARKER).write_text("{}")
    build = root / "venvs" / "abc123"
    (build / "bin").mkdir(parents=True)
    (build / "bin" / "python").write_text("")
    (build / layout.BUILD_MARKER).write_text("ray\n")
    gm.make_dirs(str(root), lay, [{"name": "ray", "mode": "0700", "enforce": False}])


def _dir(name: str, mode: str) -> dict[str, Any]:
    return {"name": name, "mode": mode, "enforce": True}


def manifest(root: Path) -> dict[str, Any]:
    return dict(json.loads((root / layout.MANIFEST).read_text()))


def kept(report: dict[str, Any]) -> dict[str, str]:
    return {k["name"]: k["reason"] for k in report["kept"]}


def test_remote_root_at_the_users_home_reset_keeps_their_code_and_lib(home: Path) -> None:
    provision(home)
    data = manifest(home)
    assert data["complete"] is True
    assert set(data["created"]) == {"state", "jobs", "wheelhouse", "venvs", "ray"}
    assert oct((home / layout.MANIFEST).stat().st_mode & 0o777) == "0o600"
    # grid-ops writes into the user's lib (the runtime) and code (synced code): still theirs
    (home / "lib" / "grid_ops" / "layout.py").write_text("")

    report = gm.take_back(str(home), names())

    assert sorted(report["removed"]) == ["jobs", "ray", "state", "venvs", "wheelhouse"]
    assert (home / "code" / "mine.txt").read_text() == MINE
    assert (home / "lib" / "mypkg").is_dir() and (home / ".bashrc").exists()
    assert kept(report) == {"code": gm.KEPT_BEFORE, "lib": gm.KEPT_BEFORE, ".": gm.KEPT_HOME}
    assert report["changed"] and not report["errors"]
    for name in ("state", "jobs", "wheelhouse", "venvs", "ray"):
        assert not (home / name).exists(), name

    # the second reset: no manifest and no state left, nothing is grid-ops' any more (a
    # lib holding only the runtime grid-ops pushed into it stays the user's too)
    shutil.rmtree(home / "lib" / "mypkg")
    again = gm.take_back(str(home), names())
    assert again["removed"] == [] and not again["changed"]
    assert kept(again) == {"code": gm.KEPT_NO_STATE, "lib": gm.KEPT_NO_STATE, ".": gm.KEPT_HOME}
    assert (home / "lib" / "grid_ops").is_dir()


def test_provisioning_twice_changes_nothing_and_a_check_run_changes_nothing(
    tmp_path: Path,
) -> None:
    root = tmp_path / "deep" / "grid-ops"
    lay = names()
    wanted = [_dir(".", "0700"), _dir("code", "0700")]
    assert gm.make_dirs(str(root), lay, wanted, check=True)
    assert not root.exists()
    assert gm.make_dirs(str(root), lay, wanted)
    assert set(manifest(root)["created"]) == {".", "state", "code"}
    assert gm.make_dirs(str(root), lay, wanted) == []
    os.chmod(root / "code", 0o755)  # an enforced mode is put back, nothing else noted
    assert gm.make_dirs(str(root), lay, wanted) == [f"mode 700 on {root / 'code'}"]
    assert gm.make_dirs(str(root), lay, wanted) == []


def test_a_remote_root_grid_ops_made_goes_when_empty_and_stays_with_a_users_file(
    tmp_path: Path,
) -> None:
    root = tmp_path / "grid-ops"
    provision(root)
    assert "." in manifest(root)["created"]
    (root / "notes.txt").write_text(MINE)
    report = gm.take_back(str(root), names())
    assert kept(report) == {".": "holds what grid-ops did not make (notes.txt)"}
    assert (root / "notes.txt").read_text() == MINE

    fresh = tmp_path / "fresh"
    provision(fresh)
    report = gm.take_back(str(fresh), names())
    assert "." in report["removed"] and not fresh.exists() and report["kept"] == []
    assert gm.take_back(str(fresh), names()) == {
        "removed": [],
        "kept": [],
        "errors": [],
        "changed": False,
    }


def test_a_root_that_was_there_is_kept_even_when_empty(tmp_path: Path) -> None:
    root = tmp_path / "mine"
    root.mkdir()
    provision(root)
    report = gm.take_back(str(root), names())
    assert kept(report) == {".": gm.KEPT_ROOT_BEFORE} and root.is_dir()
    assert list(root.iterdir()) == []


def test_a_users_own_state_dir_keeps_its_files_and_its_manifest_forgets_what_went(
    tmp_path: Path,
) -> None:
    root = tmp_path / "mine"
    (root / "state").mkdir(parents=True)
    (root / "state" / "diary.txt").write_text(MINE)
    provision(root)
    assert manifest(root)["complete"] is False  # state was there: begun late
    report = gm.take_back(str(root), names())
    assert (root / "state" / "diary.txt").read_text() == MINE
    assert kept(report)["state"] == gm.KEPT_NO_MARKER
    assert sorted(report["removed"]) == ["code", "jobs", "lib", "ray", "venvs", "wheelhouse"]
    assert manifest(root)["created"] == []  # a venvs made by the user later is theirs
    (root / "venvs").mkdir()
    assert "venvs" in kept(gm.take_back(str(root), names()))


def _legacy_node(root: Path) -> None:
    """What an older grid-ops left: no manifest, its own markers."""
    for rel in ("code/project", "jobs/train-20250101-120000", "ray/session_2025_1"):
        (root / rel).mkdir(parents=True)
    (root / "state").mkdir()
    (root / "state" / "applied.json").write_text("{}")
    (root / "state" / "ray_auth_token").write_text("x")
    (root / "state" / "run").mkdir()
    build = root / "venvs" / "abc"
    build.mkdir(parents=True)
    (build / layout.BUILD_MARKER).write_text("ray\n")
    (root / "venv").symlink_to("venvs/abc")
    (root / "lib" / "grid_ops").mkdir(parents=True)
    (root / "lib" / "grid_ops" / "layout.py").write_text("")
    (root / "wheelhouse").mkdir()
    (root / "wheelhouse" / layout.WHEELHOUSE_MARKER).write_text("{}")


def test_a_node_an_older_grid_ops_provisioned_is_judged_by_its_markers(tmp_path: Path) -> None:
    root = tmp_path / "grid-ops"
    _legacy_node(root)
    report = gm.take_back(str(root), names())
    assert sorted(report["removed"]) == sorted(
        ["venv", "venvs", "state", "lib", "jobs", "wheelhouse", "ray"]
    )
    assert kept(report) == {
        "code": gm.KEPT_NO_MARKER,
        ".": "holds what grid-ops did not make (code)",
    }
    assert (root / "code" / "project").is_dir()


def test_without_markers_a_legacy_nodes_dirs_are_kept(tmp_path: Path) -> None:
    root = tmp_path / "home"
    _legacy_node(root)
    (root / "lib" / "mypkg").mkdir()  # the user's lib, the runtime pushed into it
    (root / "venvs" / "notes").mkdir()
    (root / "state" / "diary.txt").write_text(MINE)
    (root / "jobs" / "my-stuff").mkdir()
    (root / "venv").unlink()
    (root / "venv").symlink_to("/opt/my-env")
    report = gm.take_back(str(root), names())
    assert set(kept(report)) == {"lib", "venvs", "state", "jobs", "venv", "code", "."}
    assert sorted(report["removed"]) == ["ray", "wheelhouse"]
    assert (root / "state" / "diary.txt").exists() and (root / "lib" / "mypkg").is_dir()


def test_a_legacy_node_applied_again_keeps_being_judged_by_markers(tmp_path: Path) -> None:
    root = tmp_path / "grid-ops"
    _legacy_node(root)
    shutil.rmtree(root / "jobs")
    provision(root)  # the new grid-ops: jobs is made (and noted) now
    data = manifest(root)
    assert data["complete"] is False and data["created"] == ["jobs"]
    report = gm.take_back(str(root), names())
    assert "jobs" in report["removed"] and "state" in report["removed"]
    assert set(kept(report)) == {"code", "."}


def test_a_tampered_manifest_names_nothing_outside_grid_ops_layout(
    tmp_path: Path, home: Path
) -> None:
    root = home / "grid-ops"
    provision(root)
    outside = tmp_path / "precious"
    outside.mkdir()
    data = manifest(root)
    data["created"] += [str(outside), "../precious", "/", str(home), "code/../../precious"]
    (root / layout.MANIFEST).write_text(json.dumps(data))
    gm.take_back(str(root), names())
    assert outside.is_dir() and home.is_dir()


def test_a_link_grid_ops_made_goes_and_what_it_points_at_stays(tmp_path: Path) -> None:
    root = tmp_path / "grid-ops"
    provision(root)
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "keep.txt").write_text(MINE)
    (root / "jobs" / "link").symlink_to(target)
    gm.take_back(str(root), names())
    assert (target / "keep.txt").read_text() == MINE and not root.exists()


def test_the_short_dir_is_noted_by_the_runtime_and_removed_only_where_noted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "grid-ops"
    other = tmp_path / "other-cluster"
    provision(root)
    provision(other)
    shared = tmp_path / "tmp"
    shared.mkdir()
    monkeypatch.setattr(private, "SHARED_TMP", str(shared))
    monkeypatch.setenv("GRID_OPS_ROOT", str(root))
    short = private.short_dir()
    monkeypatch.setenv("GRID_OPS_ROOT", str(other))
    assert private.short_dir() == short  # there already: not the other cluster's
    lay = names(shared)
    assert str(short) in manifest(root)["created"]
    assert str(short) not in manifest(other)["created"]

    report = gm.take_back(str(other), lay)
    assert kept(report) == {str(short): gm.KEPT_SHORT} and short.is_dir()
    report = gm.take_back(str(root), lay)
    assert str(short) in report["removed"] and not short.exists()


def test_venv_switch_notes_its_link_and_refuses_a_users_own_venv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "home"
    provision(root)
    (root / "venvs" / "abc123" / "bin" / "python").write_text("")
    (root / "venv").mkdir()  # the user's own venv, not grid-ops'
    (root / "venv" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    with pytest.raises(venvs.NoBuild, match="not grid-ops'"):
        venvs.switch(str(root), "abc123")
    assert (root / "venv" / "pyvenv.cfg").exists() and not (root / "venvs" / "legacy").exists()
    (root / "venv" / "pyvenv.cfg").unlink()
    (root / "venv").rmdir()
    (root / "venvs" / "my-env").mkdir()  # the user's, in grid-ops' venvs: never pruned
    assert venvs.switch(str(root), "abc123")["switched"]
    assert "venv" in manifest(root)["created"]
    assert (root / "venvs" / "my-env").is_dir()
    assert "venv" in gm.take_back(str(root), names())["removed"]


def test_the_wheelhouse_marker_is_the_one_grid_wheelhouse_writes() -> None:
    text = (REPO / "roles" / "grid_venv" / "library" / "grid_wheelhouse.py").read_text()
    assert f'MARKER = "{layout.WHEELHOUSE_MARKER}"' in text


def test_the_grid_paths_module_makes_notes_and_takes_back_through_ansible(
    tmp_path: Path, home: Path
) -> None:
    """The module itself, as the roles run it (ansible's module_utils path, check mode)."""
    root = home
    lay = json.dumps(names())
    env = dict(
        os.environ,
        ANSIBLE_LIBRARY=str(REPO / "roles" / "grid_facts" / "library"),
        ANSIBLE_MODULE_UTILS=str(REPO / "grid_ops" / "module_utils"),
        ANSIBLE_LOCALHOST_WARNING="False",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_PYTHON_INTERPRETER=sys.executable,
    )

    def run(args: dict[str, Any], *extra: str) -> dict[str, Any]:
        proc = subprocess.run(
            [str(Path(sys.executable).parent / "ansible"), "localhost", "-m", "grid_paths",
             "-a", json.dumps(args), "--one-line", *extra],
            capture_output=True, text=True, env=env, timeout=120, check=False, cwd=tmp_path,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return dict(json.loads(proc.stdout.split("=>", 1)[1]))

    make = {"root": str(root), "layout": json.loads(lay), "dirs": [_dir("code", "0700")]}
    assert run(make, "--check")["changed"] and not (root / "state").exists()
    assert run(make)["changed"]
    assert manifest(root)["created"] == ["state"]
    assert not run(make)["changed"]
    gone = run({"root": str(root), "layout": json.loads(lay), "state": "absent"})
    facts = gone["ansible_facts"]["grid_reset"]
    assert facts["removed"] == ["state"]
    assert {k["name"] for k in facts["kept"]} == {"code", "lib", "."}
    assert (root / "code" / "mine.txt").read_text() == MINE
