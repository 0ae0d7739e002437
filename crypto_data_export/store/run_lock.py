"""The run lock: one export run per folder at a time (cron's ``--manual`` during the service's
cycle must not write the same files twice); the kernel releases it if the process dies."""

from __future__ import annotations

import os
from pathlib import Path

from crypto_data_export.core.errors import RunLockedError, StorageError
from crypto_data_export.core.file_lock import FileLock
from crypto_data_export.store.layout import ExportFolder


def _busy(path: Path) -> RunLockedError:
    return RunLockedError(f"another export run holds {path} (the service or a cron job); nothing was done")


def _cannot_open(path: Path, exc: OSError) -> StorageError:
    return StorageError(f"cannot open the run lock {path}: {exc.strerror or exc}")


class RunLock(FileLock):
    """Fails at once if held; the holder writes its PID into the lock file for whoever inspects it."""

    def __init__(self, folder: Path) -> None:
        super().__init__(ExportFolder(Path(folder)).run_lock, on_busy=_busy, on_error=_cannot_open)

    def acquire(self) -> None:
        super().acquire()
        os.ftruncate(self.fd, 0)
        os.write(self.fd, f"{os.getpid()}\n".encode())
