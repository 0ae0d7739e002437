"""Fault 8: the service's pidfile is stale (PID reused by another program), garbage, or a symlink.

Whatever the pidfile says, ``data_export_service.py`` never signals a process
that is not our scheduler and never follows the link.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from crypto_data_export.core.processes import is_manager_process
from tests.support import (
    SERVICE,
    assert_folder_sound,
    kill_quietly,
    manager_env,
    pending_signals,
    run_service,
    start_bystander,
    wait_until,
)

PIDFILE = "data_export_service.pid"

pytestmark = pytest.mark.skipif(not SERVICE.exists(), reason="data_export_service.py is not there yet")


@pytest.fixture
def bystander(procs):
    """An unrelated live process (``sleep``) standing for a program that got a reused PID."""
    proc = start_bystander()
    procs.append(proc)
    return proc


def _alive(proc: subprocess.Popen) -> bool:
    """Alive and never signalled: the bystander blocks stop signals, so one sent stays pending."""
    return proc.poll() is None and not pending_signals(proc.pid)


@pytest.fixture
def service_env(tmp_path, sandbox):
    folder = tmp_path / "exports"
    folder.mkdir()
    env = manager_env(folder, sandbox.base_url, "BTCUSDT", EXPORT_PERIOD_HOURS="1")
    yield env
    # Whatever happened, no scheduler of this test survives it.
    try:
        text = (folder / PIDFILE).read_text().split("\n", 1)[0].strip()  # line 1: the PID
    except OSError:
        return
    if text.isdigit() and is_manager_process(int(text)) and f"EXPORT_DIR={folder}" in _environ_of(int(text)):
        kill_quietly(int(text))


def _environ_of(pid: int) -> str:
    try:
        return open(f"/proc/{pid}/environ", "rb").read().replace(b"\0", b"\n").decode(errors="replace")
    except OSError:
        return ""


def test_stale_pidfile_whose_pid_is_now_another_program(service_env, bystander):
    folder = service_env["EXPORT_DIR"]
    pidfile = os.path.join(folder, PIDFILE)
    with open(pidfile, "w") as handle:
        handle.write(f"{bystander.pid}\n")

    status = run_service(service_env, "status")
    assert status.returncode == 3, status.stdout + status.stderr
    assert "stale" in status.stdout + status.stderr
    stop = run_service(service_env, "stop", "--timeout", "2")
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert "stale" in stop.stdout + stop.stderr
    assert _alive(bystander), "stop signalled a process that is not the scheduler"
    assert not os.path.lexists(pidfile), "the stale pidfile should be removed"


def test_stale_pidfile_is_replaced_by_start_and_stop_stops_only_ours(service_env, bystander):
    folder = service_env["EXPORT_DIR"]
    pidfile = os.path.join(folder, PIDFILE)
    with open(pidfile, "w") as handle:
        handle.write(f"{bystander.pid}\n")
    start = run_service(service_env, "start", "--wait", "0.3")
    assert start.returncode == 0, start.stdout + start.stderr
    ours = int(open(pidfile).readline())
    assert ours != bystander.pid and is_manager_process(ours)
    wait_until(lambda: os.path.exists(os.path.join(folder, "status_report.json")), "the first cycle")

    stop = run_service(service_env, "stop", "--timeout", "10")
    assert stop.returncode == 0, stop.stdout + stop.stderr
    wait_until(lambda: not is_manager_process(ours), "our scheduler to exit")
    assert _alive(bystander)
    assert not os.path.lexists(pidfile)
    assert_folder_sound(Path(folder))


@pytest.mark.parametrize("content", [b"garbage\xff\x00\n", b"-1\n", b"1\n"], ids=["binary_text", "minus_one", "init"])
def test_garbage_pidfile(content, service_env, bystander):
    """Nothing is signalled (``kill(-1)`` would hit every process, ``kill(0)`` our group)."""
    folder = service_env["EXPORT_DIR"]
    pidfile = os.path.join(folder, PIDFILE)
    with open(pidfile, "wb") as handle:
        handle.write(content)
    stop = run_service(service_env, "stop", "--timeout", "1")
    assert stop.returncode in (0, 1), stop.stdout + stop.stderr
    assert "Traceback" not in stop.stderr
    assert _alive(bystander)
    assert not os.path.lexists(pidfile)


def test_pidfile_is_a_symlink(tmp_path, service_env, bystander):
    """The link is never followed: its target (naming a live PID) is neither read into a signal nor changed."""
    folder = service_env["EXPORT_DIR"]
    pidfile = os.path.join(folder, PIDFILE)
    target = tmp_path / "elsewhere.pid"
    target.write_text(f"{bystander.pid}\n")
    os.symlink(target, pidfile)

    status = run_service(service_env, "status")
    assert status.returncode == 3, status.stdout + status.stderr
    stop = run_service(service_env, "stop", "--timeout", "1")
    assert stop.returncode == 1, stop.stdout + stop.stderr
    assert "symbolic link" in stop.stderr
    assert _alive(bystander)
    assert target.read_text() == f"{bystander.pid}\n", "the link's target was changed"
    assert not os.path.lexists(pidfile), "the link itself should be removed"
