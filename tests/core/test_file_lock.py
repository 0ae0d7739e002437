"""FileLock on real lock files: fail at once, wait until a deadline, never through a symlink."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from crypto_data_export.core import file_lock
from crypto_data_export.core.errors import RunLockedError, StorageError
from crypto_data_export.core.file_lock import FileLock
from crypto_data_export.store.layout import RUN_LOCK_NAME
from crypto_data_export.store.run_lock import RunLock


class Busy(Exception):
    pass


class CannotOpen(Exception):
    pass


def lock(path: Path, wait_seconds: float = 0.0) -> FileLock:
    return FileLock(
        path,
        wait_seconds=wait_seconds,
        on_busy=lambda p: Busy(str(p)),
        on_error=lambda p, exc: CannotOpen(f"{p}: {exc.strerror}"),
    )


def test_a_held_lock_fails_at_once_then_is_free_after_release(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "x.lock"
    sleeps: list[float] = []
    monkeypatch.setattr(file_lock.time, "sleep", sleeps.append)
    with lock(path):
        with pytest.raises(Busy, match="x.lock"):
            lock(path).acquire()
        assert sleeps == [], "a lock without a wait retried"
    with lock(path):
        pass


def test_a_held_lock_is_retried_until_the_deadline(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    with lock(path):
        started = time.monotonic()
        with pytest.raises(Busy):
            lock(path, wait_seconds=0.3).acquire()
        assert time.monotonic() - started >= 0.3


def test_a_symlink_in_place_of_the_lock_is_refused_and_its_target_not_created(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    (tmp_path / "x.lock").symlink_to(target)
    with pytest.raises(CannotOpen):
        lock(tmp_path / "x.lock").acquire()
    assert not target.exists()


def test_run_lock_writes_its_pid_and_keeps_its_messages(tmp_path: Path) -> None:
    with RunLock(tmp_path):
        assert (tmp_path / RUN_LOCK_NAME).read_text() == f"{os.getpid()}\n"
        with pytest.raises(RunLockedError, match="another export run holds .*; nothing was done"):
            RunLock(tmp_path).acquire()
    (tmp_path / RUN_LOCK_NAME).unlink()
    (tmp_path / RUN_LOCK_NAME).symlink_to(tmp_path / "elsewhere")
    with pytest.raises(StorageError, match="cannot open the run lock"):
        RunLock(tmp_path).acquire()
