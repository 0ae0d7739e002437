"""An exclusive ``flock`` on a lock file, opened without following a symlink (a planted link
cannot make us lock a file elsewhere); the kernel releases it if the process dies, even on
``kill -9``. Used by the run lock, the service lock and the state lock."""

from __future__ import annotations

import errno
import fcntl
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Self

POLL_SECONDS = 0.1
LOCK_FILE_MODE = 0o640
WAIT_FOREVER = math.inf


def _held_elsewhere(path: Path) -> BlockingIOError:
    return BlockingIOError(errno.EWOULDBLOCK, "held by another process", str(path))


class FileLock:
    """``with FileLock(path, on_error=...) as lock:``; ``wait_seconds`` 0 fails at once if the
    lock is held, ``WAIT_FOREVER`` blocks. ``on_busy(path)`` builds the error when the wait
    runs out, ``on_error(path, exc)`` the one when the lock file cannot be opened."""

    def __init__(
        self,
        path: Path,
        *,
        wait_seconds: float = 0.0,
        on_busy: Callable[[Path], Exception] = _held_elsewhere,
        on_error: Callable[[Path, OSError], Exception],
    ) -> None:
        self.path = Path(path)
        self.wait_seconds = wait_seconds
        self._on_busy = on_busy
        self._on_error = on_error
        self._fd: int | None = None

    @property
    def fd(self) -> int:
        if self._fd is None:
            raise RuntimeError(f"{self.path} is not locked")
        return self._fd

    def acquire(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, LOCK_FILE_MODE)
        except OSError as exc:
            raise self._on_error(self.path, exc) from exc
        deadline = time.monotonic() + self.wait_seconds
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | (0 if self.wait_seconds == WAIT_FOREVER else fcntl.LOCK_NB))
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise self._on_busy(self.path) from None
                    time.sleep(POLL_SECONDS)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
