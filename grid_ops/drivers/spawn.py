"""Children in parallel with the standard library only: posix_spawn, one select loop.

Used by the health probes of both the quick path (grid_ops.cli.quick) and the full CLI
(grid_ops.drivers.probe), and by the quick sync's rsync dry runs. No subprocess import: this
runs at CLI start-up on the quick path.
"""

from __future__ import annotations

import os
import time


class Child:
    """One child (posix_spawn: no subprocess import) and what it wrote."""

    def __init__(self, argv: list[str], stdin_path: str | None, limit: float) -> None:
        self.started = time.monotonic()
        self.wall_started = time.time()
        self.deadline = self.started + limit
        stdin = os.open(stdin_path or os.devnull, os.O_RDONLY)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            self.pid = os.posix_spawnp(
                argv[0],
                argv,
                os.environ,
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, stdin, 0),
                    (os.POSIX_SPAWN_DUP2, out_w, 1),
                    (os.POSIX_SPAWN_DUP2, err_w, 2),
                ],
            )
        except OSError:
            os.close(out_r)
            os.close(err_r)
            raise
        finally:
            for fd in (stdin, out_w, err_w):
                os.close(fd)
        self.out, self.err = out_r, err_r
        self.pipes = {out_r: bytearray(), err_r: bytearray()}
        self.rc: int | None = None
        self.timed_out = False
        self.seconds = 0.0

    @property
    def stdout(self) -> str:
        return bytes(self.pipes[self.out]).decode(errors="replace")

    @property
    def stderr(self) -> str:
        return bytes(self.pipes[self.err]).decode(errors="replace")

    def reap(self) -> bool:
        """Collect the exit status if the child has ended (without waiting)."""
        pid, status = os.waitpid(self.pid, os.WNOHANG)
        if pid == 0:
            return False
        self.rc = os.waitstatus_to_exitcode(status)
        self.seconds = time.monotonic() - self.started
        return True

    def kill(self) -> None:
        import signal

        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        self.timed_out = True


def collect(wave: list[Child]) -> None:
    """Read every child of ``wave`` to the end, together, each until its deadline.

    A child is done when its pipes are closed and it has exited. At its deadline one
    still running is killed; one that has exited while something it started still holds
    its pipes keeps what it wrote."""
    import select

    owner = {fd: p for p in wave for fd in p.pipes}
    pending = set(wave)
    while pending:
        now = time.monotonic()
        waiting = [p for p in pending if p.out not in owner and p.err not in owner]
        wait = min(p.deadline for p in pending) - now
        if waiting:
            wait = min(wait, 0.005)  # pipes closed, exit status not there yet: poll
        ready = select.select(list(owner), [], [], max(wait, 0.0))[0] if owner else []
        if not owner and wait > 0:
            time.sleep(wait)
        for fd in ready:
            chunk = os.read(fd, 65536)
            if chunk:
                owner[fd].pipes[fd] += chunk
            else:
                del owner[fd]
                os.close(fd)
        now = time.monotonic()
        for p in list(pending):
            closed = p.out not in owner and p.err not in owner
            if closed and p.reap():
                pending.discard(p)
            elif now >= p.deadline:
                if not p.reap():
                    p.kill()
                for fd in (p.out, p.err):
                    if owner.pop(fd, None) is not None:
                        os.close(fd)
                pending.discard(p)


def run_all(
    jobs: list[tuple[list[str], str | None]], parallel: int, limit: float
) -> list[Child | None]:
    """Run every (argv, stdin file) ``parallel`` at a time; None where one ran past ``limit``."""
    done: list[Child | None] = []
    step = max(parallel, 1)
    for first in range(0, len(jobs), step):
        wave: list[Child] = []
        try:
            for argv, stdin in jobs[first : first + step]:
                wave.append(Child(argv, stdin, limit))
        except OSError:
            for started in wave:  # leave nothing behind for the full CLI to trip over
                started.kill()
                for fd in started.pipes:
                    os.close(fd)
            raise
        collect(wave)
        done += [None if p.timed_out else p for p in wave]
    return done
