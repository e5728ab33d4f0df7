"""Private runtime paths: the short private dir, the controller socket's peer check.

These run as root in CI (the lab needs it) and use a second uid (nobody) through a
forked child, so the checks meet a real other user, not a mock."""

from __future__ import annotations

import os
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from grid_ops.runtime import private, protocol

NOBODY = 65534


def _as_nobody(action: object) -> int:
    """Run ``action()`` in a child process as uid/gid nobody; its exit code."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            action()  # type: ignore[operator]
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.fixture
def shared(tmp_path: Path) -> Iterator[Path]:
    """A directory every user may enter (as /tmp is), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="grid-ops-test-"))
    path.chmod(0o777)
    yield path
    import shutil

    shutil.rmtree(path, ignore_errors=True)


# the root tier (pytest -m root): a second uid to act as
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs a second uid (run as root)")


def test_a_private_dir_is_made_0700_and_an_open_one_of_ours_is_closed(tmp_path: Path) -> None:
    made = private.private_dir(tmp_path / "p")
    assert made.stat().st_mode & 0o777 == 0o700
    (tmp_path / "open").mkdir(mode=0o755)
    assert private.private_dir(tmp_path / "open").stat().st_mode & 0o777 == 0o700


def test_a_link_or_a_file_in_place_of_the_private_dir_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(private.NotPrivate, match="not a directory"):
        private.private_dir(tmp_path / "link")
    (tmp_path / "file").write_text("x")
    with pytest.raises(private.NotPrivate, match="not a directory"):
        private.private_dir(tmp_path / "file")


@pytest.mark.root
@needs_root
def test_a_dir_another_user_made_first_is_refused_not_reused(shared: Path) -> None:
    taken = shared / "grid-ops-taken"
    assert _as_nobody(lambda: os.mkdir(taken, 0o777)) == 0
    with pytest.raises(private.NotPrivate, match="belongs to uid 65534"):
        private.private_dir(taken)
    assert taken.stat().st_uid == NOBODY  # left as it was


def test_the_private_dir_command_says_why_it_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(private, "SHARED_TMP", str(tmp_path))
    (tmp_path / f"grid-ops-{os.getuid()}").symlink_to(tmp_path)
    assert private.main() == 1
    assert "not a directory" in capsys.readouterr().err
    (tmp_path / f"grid-ops-{os.getuid()}").unlink()
    assert private.main() == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / f"grid-ops-{os.getuid()}")


@pytest.mark.root
@needs_root
def test_the_socket_refuses_a_peer_of_another_uid_both_ways(shared: Path) -> None:
    # our server: a client of another uid gets no answer
    path = shared / "ours.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    path.chmod(0o777)
    server.listen(1)
    seen: list[str] = []

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            try:
                protocol.check_peer(conn)
                seen.append("answered")
            except PermissionError as exc:
                seen.append(str(exc))

    thread = threading.Thread(target=serve)
    thread.start()

    def connect() -> None:
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.connect(str(path))
        client.recv(1)

    assert _as_nobody(connect) == 0
    thread.join(10)
    server.close()
    assert seen and "peer is uid 65534" in seen[0]

    # a socket another uid put where ours should be: the client never speaks to it
    state = shared / "state"
    state.mkdir()
    state.chmod(0o777)
    ready = shared / "ready"

    def impostor() -> None:
        fake = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        fake.bind(str(state / protocol.SOCKET_NAME))
        os.chmod(state / protocol.SOCKET_NAME, 0o777)
        fake.listen(1)
        ready.write_text("1")
        conn, _ = fake.accept()
        data = conn.recv(1 << 16)
        (shared / "captured").write_bytes(data)

    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            impostor()
        finally:
            os._exit(0)
    try:
        for _ in range(200):
            if ready.exists():
                break
            threading.Event().wait(0.02)
        with pytest.raises(protocol.ControllerDown, match="peer is uid 65534"):
            protocol.call(state, "memory.store", {"key": "k"}, b"secret payload", timeout=5)
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    assert not (shared / "captured").exists() or b"secret" not in (shared / "captured").read_bytes()
