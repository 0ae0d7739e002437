"""The run lock: one export run per folder at a time.

cron firing ``--manual`` while the service is mid-cycle must not write the
same files twice, so every run that changes the folder holds an exclusive,
non-blocking ``fcntl.flock`` on ``EXPORT_DIR/.run.lock`` for its whole
duration. The kernel releases it when the process dies, even on ``kill -9``,
so a crash never leaves a stale lock behind.
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from errors import RunLockedError, StorageError

LOCK_NAME = ".run.lock"


class RunLock:
    """Context manager around a non-blocking exclusive flock."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640)
        except OSError as exc:
            raise StorageError(f"cannot open the run lock {self.path}: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(fd)
            raise RunLockedError(
                f"another export run holds {self.path} (the service or a cron job); nothing was done"
            ) from exc
        self._fd = fd
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()
