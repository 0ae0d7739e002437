"""Faults 3 and 4: the disk fills up while writing; the export folder cannot be written or created."""

from __future__ import annotations

import os
import resource
import shutil
import stat
import subprocess
import sys

import pytest

from tests.support import (
    MANAGER,
    assert_folder_sound,
    closed_opens,
    export_files,
    manager_env,
    one_line,
    run_manager,
    seed_export,
    snapshot,
)

HOUR_MS = 3_600_000


def _limit_file_size(max_bytes: int):
    def apply() -> None:  # runs in the child between fork and exec
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))

    return apply


def test_disk_full_while_writing(tmp_path, sandbox):
    """EFBIG/ENOSPC mid-write: the old file survives byte for byte, the error names the path, exit 1."""
    folder = tmp_path / "exports"
    now = sandbox.now_ms()
    old = seed_export(
        folder,
        "BTCUSDT",
        "1h",
        closed_opens("1h", now - 2 * 24 * HOUR_MS, now - 3 * HOUR_MS),
        "BTCUSDT_1h_20000101_000000.csv",
    )
    old_bytes = old.read_bytes()
    # 60 days of hourly candles is ~260 KB; the process may not write a file beyond 64 KB.
    env = manager_env(folder, sandbox.base_url, "BTCUSDT", EXPORT_LOOKBACK_DAYS="60", MAX_FILES_PER_SYMBOL="1")
    result = run_manager(env, "--manual", preexec_fn=_limit_file_size(64 * 1024))

    assert result.returncode == 1, result.stdout + result.stderr
    assert old.read_bytes() == old_bytes, "the previous export was damaged"
    assert [p.name for p in export_files(folder)] == [old.name]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors and "BTCUSDT" in errors[0] and str(folder) in errors[0] and "File too large" in errors[0], (
        result.stderr
    )
    assert_folder_sound(folder)


def test_export_folder_not_creatable(tmp_path, sandbox):
    """EXPORT_DIR below a regular file: one-line error, exit 1, no request, nothing touched."""
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file, not a folder\n")
    before = snapshot(tmp_path)
    env = manager_env(blocker / "sub", sandbox.base_url, "BTCUSDT")
    result = run_manager(env, "--manual", cwd=tmp_path)

    assert result.returncode == 1, result.stdout + result.stderr
    assert one_line(result.stderr) and str(blocker / "sub") in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert sandbox.requests == []
    assert snapshot(tmp_path) == before


def test_export_folder_is_a_file(tmp_path, sandbox):
    """EXPORT_DIR names an existing regular file: one-line error, exit 1, the file untouched."""
    blocker = tmp_path / "exports"
    blocker.write_text("precious\n")
    before = snapshot(tmp_path)
    result = run_manager(manager_env(blocker, sandbox.base_url, "BTCUSDT"), "--manual", cwd=tmp_path)

    assert result.returncode == 1, result.stdout + result.stderr
    assert one_line(result.stderr) and str(blocker) in result.stderr, result.stderr
    assert sandbox.requests == []
    assert snapshot(tmp_path) == before


def _read_only_runner(folder) -> list[str] | None:
    """A command prefix that runs the child with ``folder`` mounted read-only (a private
    mount namespace, so nothing outside the child sees it), or None where that is not possible."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    script = 'mount --bind "$0" "$0" && mount -o remount,ro,bind "$0" "$0" && exec "$@"'
    prefix = [unshare, "-m", "--propagation", "private", "sh", "-c", script, str(folder)]
    probe = subprocess.run([*prefix, "sh", "-c", 'touch "$0/.probe"', str(folder)], capture_output=True, timeout=10)
    if probe.returncode == 0 or b"Read-only" not in probe.stderr:
        (folder / ".probe").unlink(missing_ok=True)
        return None
    return prefix


def test_export_folder_read_only(tmp_path, sandbox):
    """A read-only export folder (mounted ro): one-line error naming it, exit 1, nothing touched, no request."""
    folder = tmp_path / "exports"
    now = sandbox.now_ms()
    seed_export(
        folder, "BTCUSDT", "1h", closed_opens("1h", now - 2 * 24 * HOUR_MS, now), "BTCUSDT_1h_20000101_000000.csv"
    )
    (folder / "logs").mkdir()
    prefix = _read_only_runner(folder)
    if prefix is None:
        if os.geteuid() == 0:
            pytest.skip("no private read-only bind mount here, and root ignores chmod")
        os.chmod(folder, stat.S_IRUSR | stat.S_IXUSR)
        os.chmod(folder / "logs", stat.S_IRUSR | stat.S_IXUSR)
        prefix = []
    try:
        before = snapshot(tmp_path)
        env = manager_env(folder, sandbox.base_url, "BTCUSDT")
        result = subprocess.run(
            [*prefix, sys.executable, str(MANAGER), "--manual"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=20,
        )
        assert result.returncode == 1, result.stdout + result.stderr
        assert one_line(result.stderr) and str(folder) in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
        assert sandbox.requests == []
        assert snapshot(tmp_path) == before
    finally:
        os.chmod(folder, stat.S_IRWXU)
        os.chmod(folder / "logs", stat.S_IRWXU)
