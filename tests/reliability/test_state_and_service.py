"""State files, the service, settings, the loop and health, attacked from outside.

Each test drives the real CLIs as subprocesses against the sandbox exchange
(the loop's clock test runs the real loop in-process, with injected clocks)
and checks: a clear one-line message, the documented exit code, no
traceback, every earlier valid file intact, no foreign file changed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crypto_data_export.core.processes import is_manager_process, pid_alive
from tests.support import (
    assert_folder_sound,
    export_files,
    finish,
    kill_quietly,
    manager_env,
    one_line,
    run_cli,
    run_manager,
    run_service,
    snapshot,
    wait_until,
)

HOUR_MS = 3_600_000
PIDFILE = "data_export_service.pid"
WRITER = {"writer": "crypto-data-export", "format_version": 1}


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr + result.stdout, result.stderr


def set_aside_files(folder: Path, name: str) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name.startswith((name + ".foreign-", name + ".corrupt-")))


def pid_in(pidfile: Path) -> int:
    return int(pidfile.read_text().split("\n", 1)[0])


@pytest.fixture
def schedulers() -> Iterator[list[int]]:
    """PIDs of schedulers a test started through the service; killed at teardown if still alive."""
    started: list[int] = []
    yield started
    for pid in started:
        if is_manager_process(pid):
            kill_quietly(pid)


def service_start(env: dict[str, str], schedulers: list[int]) -> int:
    result = run_service(env, "start", "--wait", "0.3")
    assert result.returncode == 0, result.stdout + result.stderr
    pid = pid_in(Path(env["EXPORT_DIR"]) / PIDFILE)
    schedulers.append(pid)
    return pid


def first_cycle_done(folder: Path) -> bool:
    try:
        return json.loads((folder / "status_report.json").read_text())["last_cycle"]["finished"] is not None
    except (OSError, ValueError, KeyError, TypeError):
        return False


# -- 1. own only what is ours --------------------------------------------------------------
def test_foreign_state_and_status_files_are_set_aside_never_overwritten(tmp_path, sandbox):
    folder = tmp_path / "exports"
    folder.mkdir()
    foreign_state = b'{"export_count": 3, "note": "written by my own tool"}\n'
    foreign_status = b'{"writer": "someone-else", "format_version": 1, "timestamp": "x"}\n'
    (folder / "state.json").write_bytes(foreign_state)
    (folder / "status_report.json").write_bytes(foreign_status)
    (folder / "state.json.bak").write_text("the other tool's backup\n")
    env = manager_env(folder, sandbox.base_url, "BTCUSDT")

    result = run_manager(env, "--manual")
    assert result.returncode == 0, result.stderr
    no_traceback(result)
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2 and all("kept as" in w for w in warnings), result.stderr
    [state_aside] = set_aside_files(folder, "state.json")
    [status_aside] = set_aside_files(folder, "status_report.json")
    assert state_aside.name.startswith("state.json.foreign-") and state_aside.read_bytes() == foreign_state
    assert status_aside.name.startswith("status_report.json.foreign-") and status_aside.read_bytes() == foreign_status
    state = json.loads((folder / "state.json").read_text())
    report = json.loads((folder / "status_report.json").read_text())
    assert state["writer"] == report["writer"] == "crypto-data-export"
    assert state["export_count"] == 1  # a fresh count: the other tool's 3 was never ours
    assert list(report)[:4] == ["timestamp", "system_status", "configuration", "file_statistics"]

    # Our own files are ours: the next run sets nothing aside. A second foreign file gets a
    # name of its own; the first one kept is never overwritten.
    again = run_manager(env, "--manual")
    assert again.returncode == 0 and "warning:" not in again.stderr, again.stderr
    (folder / "state.json").write_bytes(b'{"other": 1}\n')
    third = run_manager(env, "--manual")
    assert third.returncode == 0, third.stderr
    asides = set_aside_files(folder, "state.json")
    assert len(asides) == 2 and state_aside.read_bytes() == foreign_state
    assert {p.read_bytes() for p in asides} == {foreign_state, b'{"other": 1}\n'}
    assert (folder / "state.json.bak").read_text() == "the other tool's backup\n"
    assert_folder_sound(folder)


def test_a_symlinked_service_lock_is_never_followed(tmp_path, sandbox, schedulers):
    folder = tmp_path / "exports"
    outside = tmp_path / "outside"
    folder.mkdir()
    outside.mkdir()
    (outside / "target").write_text("precious\n")
    os.symlink(outside / "target", folder / ".service.lock")
    before = snapshot(outside)
    env = manager_env(folder, sandbox.base_url, "BTCUSDT", EXPORT_PERIOD_HOURS="1")
    result = run_service(env, "start", "--wait", "0.3")
    assert result.returncode == 1, result.stdout + result.stderr
    no_traceback(result)
    assert one_line(result.stderr) and ".service.lock" in result.stderr
    assert not (folder / PIDFILE).exists()
    assert snapshot(outside) == before


# -- 2. bad state heals ----------------------------------------------------------------------
BAD_STATES = {
    "string_count": {**WRITER, "export_count": "7", "cleanup_count": 5},
    "list_symbols": {**WRITER, "symbols": ["BTCUSDT"], "cleanup_count": 5},
    "nested_garbage": {
        **WRITER,
        "cleanup_count": 5,
        "symbols": {"BTCUSDT": [1, {"a": [[]]}], "ETHUSDT": {"last_error": {"x": [1]}}, "../x": {}},
        "last_cycle_failed_symbols": {"a": 1},
        "banned_until": 5,
        "service_pid": "1",
        "service_status": ["running"],
        "last_successful_cycle": "yesterday",
    },
}
BAD_FILES = {
    "null": b"null\n",
    "deep_nesting": b"[" * 100_000 + b"]" * 100_000,
}


@pytest.mark.parametrize("case", list(BAD_STATES) + list(BAD_FILES))
def test_wrong_shaped_state_heals_without_a_traceback(case, tmp_path, sandbox):
    folder = tmp_path / "exports"
    folder.mkdir()
    raw = BAD_FILES[case] if case in BAD_FILES else json.dumps(BAD_STATES[case]).encode()
    (folder / "state.json").write_bytes(raw)
    env = manager_env(folder, sandbox.base_url, "BTCUSDT,ETHUSDT")

    looked = run_manager(env, "--status")
    no_traceback(looked)
    assert looked.returncode == 0, looked.stderr
    assert "warning: state file" in looked.stderr
    assert (folder / "state.json").read_bytes() == raw, "a read-only command changed the state file"

    result = run_manager(env, "--manual")
    assert result.returncode == 0, result.stderr
    no_traceback(result)
    assert [line for line in result.stderr.splitlines() if line.startswith("warning: state file")], result.stderr
    [kept] = set_aside_files(folder, "state.json")
    assert kept.read_bytes() == raw  # the bad file is kept as it was, under a new name
    state = json.loads((folder / "state.json").read_text())
    assert state["writer"] == "crypto-data-export" and state["export_count"] == 1
    if case in BAD_STATES:  # the fields that were right survive the repair
        assert state["cleanup_count"] == 6
        assert kept.name.startswith("state.json.corrupt-")
    assert state["banned_until"] is None
    assert len(export_files(folder)) == 2
    assert_folder_sound(folder)
    log = (folder / "logs" / "scheduled_data_manager.log").read_text()
    assert "Traceback" not in log


def test_the_loop_and_the_service_survive_a_wrong_shaped_state(tmp_path, sandbox, schedulers):
    folder = tmp_path / "exports"
    folder.mkdir()
    (folder / "state.json").write_text(json.dumps(BAD_STATES["nested_garbage"]))
    env = manager_env(folder, sandbox.base_url, "BTCUSDT", EXPORT_PERIOD_HOURS="1")
    pid = service_start(env, schedulers)
    wait_until(lambda: first_cycle_done(folder), "the first cycle")
    status = run_service(env, "status")
    assert status.returncode == 0 and f"running (PID {pid}" in status.stdout, status.stdout + status.stderr
    stop = run_service(env, "stop", "--timeout", "10")
    assert stop.returncode == 0, stop.stderr
    assert not pid_alive(pid)
    log = (folder / "logs" / "data_export_service.log").read_text()
    assert "Traceback" not in log and "wrong fields" in log


STATUS_REPORTS = {
    "wrong_sections": json.dumps({**WRITER, "system_status": "x", "health": [], "last_cycle": 5, "timestamp": {}}),
    "not_ours": json.dumps({"timestamp": "t", "system_status": {"service_status": "running"}}),
    "a_list": "[1, 2, 3]",
    "truncated": '{"writer": "crypto-data-',
}


@pytest.mark.parametrize("case", list(STATUS_REPORTS))
def test_service_status_with_a_wrong_shaped_status_report(case, tmp_path, sandbox):
    folder = tmp_path / "exports"
    folder.mkdir()
    (folder / "status_report.json").write_text(STATUS_REPORTS[case])
    env = manager_env(folder, sandbox.base_url, "BTCUSDT")
    result = run_service(env, "status")
    assert result.returncode == 3, result.stdout + result.stderr
    no_traceback(result)
    report_lines = [line for line in result.stdout.splitlines() if "last status report" in line]
    assert len(report_lines) == 1, result.stdout
    if case != "wrong_sections":
        assert "not one of ours" in report_lines[0]
    assert (folder / "status_report.json").read_text() == STATUS_REPORTS[case]


# -- 3. numbers with an upper bound ------------------------------------------------------------
def run_each(jobs: list[tuple[str, list[str], dict[str, str], Path]]) -> list[subprocess.CompletedProcess[str]]:
    """Run CLIs one after another, each a real process (forked warm: cheaper than starting them together)."""
    return [run_cli(name, *args, env=env, cwd=cwd) for name, args, env, cwd in jobs]


HUGE = ["EXPORT_PERIOD_HOURS", "EXPORT_LOOKBACK_DAYS", "DATA_RETENTION_DAYS", "HTTP_TIMEOUT_SECONDS"]


def test_huge_numbers_in_settings_exit_2_naming_the_range(tmp_path, sandbox):
    folder = tmp_path / "exports"
    envs = [manager_env(folder, sandbox.base_url, "BTCUSDT", **{variable: "1e300"}) for variable in HUGE]
    jobs = [("scheduled_data_manager.py", ["--manual"], env, tmp_path) for env in envs]
    jobs.append(("data_export_service.py", ["start"], envs[0], tmp_path))
    jobs.append(("scheduled_data_manager.py", ["--health"], envs[1], tmp_path))
    for (_, _, env, _), result in zip(jobs, run_each(jobs), strict=True):
        variable = next(v for v in HUGE if env.get(v) == "1e300")
        assert result.returncode == 2, result.stdout + result.stderr
        no_traceback(result)
        assert one_line(result.stderr)
        assert variable in result.stderr and "'1e300'" in result.stderr and "up to" in result.stderr
    assert not folder.exists() and sandbox.requests == []


# -- 4. no system folder as the export folder --------------------------------------------------
SYSTEM = ["/", "/etc", "/usr", "/var", "/proc/1", "/root/", "HOME"]


def test_system_and_home_folders_are_refused(tmp_path, sandbox):
    home = tmp_path / "home"
    home.mkdir()
    jobs = []
    for where in SYSTEM:
        folder = str(home) if where == "HOME" else where
        env = manager_env(Path(folder), sandbox.base_url, "BTCUSDT", HOME=str(home))
        jobs.append(("scheduled_data_manager.py", ["--manual"], env, tmp_path))
        if where == "HOME":
            jobs.append(("scheduled_data_manager.py", ["--status"], env, tmp_path))
        if where == "/":
            jobs.append(("data_export_service.py", ["start"], env, tmp_path))
    before = {folder: sorted(os.listdir(folder)) for folder in ("/", "/etc", "/usr", "/var", str(home))}
    for (_, args, env, _), result in zip(jobs, run_each(jobs), strict=True):
        assert result.returncode == 2, (env["EXPORT_DIR"], args, result.stdout + result.stderr)
        no_traceback(result)
        assert one_line(result.stderr) and "EXPORT_DIR" in result.stderr and "folder" in result.stderr
    assert {folder: sorted(os.listdir(folder)) for folder in before} == before
    assert sandbox.requests == []


def test_a_subfolder_of_home_is_fine(tmp_path, sandbox):
    home = tmp_path / "home"
    home.mkdir()
    env = manager_env(home / "exports", sandbox.base_url, "BTCUSDT", HOME=str(home))
    result = run_manager(env, "--manual", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert len(export_files(home / "exports")) == 1


# -- 5. stop and start act only for this folder -----------------------------------------------
def test_stop_in_one_install_leaves_the_other_installs_scheduler_running(tmp_path, sandbox, schedulers):
    folder_a, folder_b = tmp_path / "a" / "exports", tmp_path / "b" / "exports"
    folder_a.parent.mkdir()
    folder_b.parent.mkdir()
    env_a = manager_env(folder_a, sandbox.base_url, "BTCUSDT", EXPORT_PERIOD_HOURS="1")
    env_b = manager_env(folder_b, sandbox.base_url, "ETHUSDT", EXPORT_PERIOD_HOURS="1")
    pid_a = service_start(env_a, schedulers)
    pid_b = service_start(env_b, schedulers)
    wait_until(lambda: first_cycle_done(folder_a) and first_cycle_done(folder_b), "both first cycles")
    record_a = (folder_a / PIDFILE).read_text().splitlines()
    # A crashes (kill -9): its pidfile stays behind.
    os.kill(pid_a, signal.SIGKILL)
    wait_until(lambda: not pid_alive(pid_a), "A's scheduler to die")
    pidfile_a = folder_a / PIDFILE

    plants = {
        # After a reboot, B's scheduler got the PID that A's pidfile names.
        "reused_pid": "\n".join([str(pid_b), *record_a[1:]]) + "\n",
        # A's folder restored from a copy of B's, pidfile included.
        "copied_pidfile": (folder_b / PIDFILE).read_text(),
        # A pidfile from an older version: a bare PID; B's environment says it serves B.
        "bare_pid": f"{pid_b}\n",
    }
    for case, text in plants.items():
        pidfile_a.write_text(text)
        status = run_service(env_a, "status")
        assert status.returncode == 3, (case, status.stdout + status.stderr)
        assert "stale" in status.stdout and "not signalled" in status.stdout, (case, status.stdout)
        stop = run_service(env_a, "stop", "--timeout", "5")
        assert stop.returncode == 0, (case, stop.stdout + stop.stderr)
        no_traceback(stop)
        assert "not signalled" in stop.stdout, (case, stop.stdout)
        assert is_manager_process(pid_b), f"{case}: stop for folder A signalled B's scheduler"
        assert not pidfile_a.exists(), case

    # B's own stop still works, and it is the only signal B ever received.
    assert run_service(env_b, "stop", "--timeout", "10").returncode == 0
    assert not pid_alive(pid_b)
    received = (folder_b / "logs" / "scheduled_data_manager.log").read_text().count("received SIGTERM")
    assert received == 1, "a stop for folder A signalled B's scheduler"


def test_service_start_refuses_while_a_loop_started_by_hand_serves_the_folder(tmp_path, sandbox, start_manager):
    folder = tmp_path / "exports"
    env = manager_env(folder, sandbox.base_url, "BTCUSDT", EXPORT_PERIOD_HOURS="1")
    loop = start_manager(env)
    wait_until(lambda: first_cycle_done(folder), "the hand-started loop's first cycle")
    start = run_service(env, "start", "--wait", "0.3")
    assert start.returncode == 1, start.stdout + start.stderr
    no_traceback(start)
    assert one_line(start.stderr) and f"PID {loop.pid}" in start.stderr and "outside the service" in start.stderr
    assert not (folder / PIDFILE).exists() and loop.poll() is None
    status = run_service(env, "status")
    assert status.returncode == 3 and f"PID {loop.pid}" in status.stdout
    loop.send_signal(signal.SIGTERM)
    code, _out, err = finish(loop)
    assert code == 0, err


# -- 6. the loop's clock ---------------------------------------------------------------------------
class ClockedStop(threading.Event):
    """A stop flag whose waits between cycles pass at once on fake clocks; inside a cycle (the
    rate limiter, a retry backoff) they are real waits."""

    def __init__(self, clocks: Any) -> None:
        super().__init__()
        self.clocks, self.in_cycle = clocks, False

    def wait(self, timeout: float | None = None) -> bool:
        if self.in_cycle:
            return super().wait(timeout)
        if not self.is_set():
            self.clocks.advance(timeout or 0.0)
        return self.is_set()


def test_the_loop_keeps_its_period_when_the_wall_clock_steps_back(tmp_path, sandbox, monkeypatch):
    """The real loop and real cycles against the sandbox; each cycle steps the wall clock back a day."""
    from crypto_data_export.scheduler.manager import ScheduledDataManager
    from crypto_data_export.settings.settings import load_settings
    from tests.support import Clocks, schedule_reads

    folder = tmp_path / "exports"
    settings = load_settings(
        {**manager_env(folder, sandbox.base_url, "BTCUSDT", EXPORT_PERIOD_HOURS="2"), "LOG_LEVEL": "WARNING"},
        env_file=None,
    )
    clocks = Clocks()
    schedule_reads(monkeypatch, clocks)
    stop = ClockedStop(clocks)
    manager = ScheduledDataManager(settings, stop_event=stop, monotonic=lambda: clocks.mono, wall=lambda: clocks.wall)
    real_cycle = manager._scheduled_cycle
    starts: list[float] = []

    def cycle() -> None:
        starts.append(clocks.mono)
        stop.in_cycle = True
        real_cycle()
        stop.in_cycle = False
        clocks.advance(60.0)  # the cycle took a minute
        clocks.wall -= 86400  # and the wall clock was stepped back a day
        if len(starts) == 3:
            stop.set()

    monkeypatch.setattr(manager, "_scheduled_cycle", cycle)
    assert manager.run_forever() == 0
    assert starts == pytest.approx([1000.0, 1000.0 + 7260, 1000.0 + 2 * 7260])
    assert len(export_files(folder)) >= 1


def test_sigterm_ends_the_wait_between_cycles_at_once(tmp_path, sandbox, start_manager):
    folder = tmp_path / "exports"
    env = manager_env(folder, sandbox.base_url, "BTCUSDT", EXPORT_PERIOD_HOURS="1")
    loop = start_manager(env)
    wait_until(lambda: first_cycle_done(folder), "the first cycle")  # then the loop waits for the hour
    loop.send_signal(signal.SIGTERM)
    code, _out, err = finish(loop)  # a loop that ignored SIGTERM would wait out the hour: past the hang guard
    assert code == 0, err
    assert json.loads((folder / "state.json").read_text())["service_status"] == "stopped"


# -- 7. health tells the truth about the data ---------------------------------------------------------
def test_health_is_degraded_by_a_trailing_outage_or_a_halted_market(tmp_path, sandbox_factory):
    now = int(time.time() * 1000)
    six_hours_ago = (now // HOUR_MS - 6) * HOUR_MS
    exchange = sandbox_factory(
        gaps={"BTCUSDT": [(six_hours_ago, now + 24 * HOUR_MS)]},  # no candle for the last six hours
        delisted={"SOLUSDT": six_hours_ago},  # trading halted six hours ago
    )
    folder = tmp_path / "exports"
    env = manager_env(folder, exchange.base_url, "BTCUSDT,ETHUSDT,SOLUSDT", EXPORT_PERIOD_HOURS="1")
    run = run_manager(env, "--manual")
    assert run.returncode in (0, 1), run.stderr
    no_traceback(run)
    assert len(export_files(folder)) == 3  # every file was just (re)written

    health = run_manager(env, "--health")
    assert health.returncode == 1, health.stdout + health.stderr
    [fresh] = [line for line in health.stdout.splitlines() if "symbols_fresh" in line]
    assert fresh.startswith("FAIL") and "BTCUSDT" in fresh and "SOLUSDT" in fresh and "ETHUSDT" not in fresh
    report = json.loads(run_manager(env, "--status", "--json").stdout)
    assert [s for s, e in report["symbols"].items() if not e["fresh"]] == ["BTCUSDT", "SOLUSDT"]
    assert report["symbols"]["BTCUSDT"]["newest_close_age_hours"] >= 5
    assert report["health"]["status"] == "degraded"


def test_health_is_down_when_the_export_folder_is_a_file(tmp_path, sandbox):
    folder = tmp_path / "exports"
    folder.write_text("not a folder\n")
    env = manager_env(folder, sandbox.base_url, "BTCUSDT")
    for args in (["--health"], ["--health", "--json"]):
        result = run_manager(env, *args)
        assert result.returncode == 2, result.stdout + result.stderr
        no_traceback(result)
        assert "down" in result.stdout
        assert "FAIL export_folder" in result.stdout or '"passed": false' in result.stdout
    assert folder.read_text() == "not a folder\n" and sandbox.requests == []


# -- 8. foreign text is escaped before it reaches a terminal or a log -------------------------------
FORGED = "\x1b[2J\x1b[31mred\rINFO data_export_service: forged line\n"


def test_a_foreign_command_line_cannot_forge_output_or_log_lines(tmp_path, sandbox, procs):
    # A bystander that waits until the procs fixture kills it, with a hostile command line.
    bystander = subprocess.Popen([sys.executable, "-c", "import signal; signal.pause()", FORGED])
    procs.append(bystander)
    folder = tmp_path / "exports"
    (folder / "logs").mkdir(parents=True)
    (folder / PIDFILE).write_text(f"{bystander.pid}\n")
    env = manager_env(folder, sandbox.base_url, "BTCUSDT")
    outputs = [run_service(env, "status"), run_service(env, "stop", "--timeout", "1")]
    for result in outputs:
        no_traceback(result)
        text = result.stdout + result.stderr
        assert "\x1b" not in text and "\r" not in text
        assert "\\x1b[31mred\\rINFO" in text  # shown, escaped
        assert not any(line.startswith("INFO data_export_service: forged") for line in text.splitlines())
    assert bystander.poll() is None
    log = (folder / "logs" / "data_export_service.log").read_text()
    assert "\x1b" not in log and "\r" not in log
    assert all(" INFO data_export_service: " in line for line in log.splitlines())
    assert not any(line.startswith("INFO data_export_service: forged") for line in log.splitlines())


def test_foreign_text_in_the_state_file_is_escaped_on_the_console(tmp_path, sandbox):
    folder = tmp_path / "exports"
    folder.mkdir()
    state: dict[str, Any] = {**WRITER, "symbols": {"BTCUSDT": {"last_error": FORGED, "last_error_at": None}}}
    (folder / "state.json").write_text(json.dumps(state))
    env = manager_env(folder, sandbox.base_url, "BTCUSDT")
    result = run_manager(env, "--status")
    no_traceback(result)
    assert "\x1b" not in result.stdout + result.stderr and "\r" not in result.stdout
    assert "\\x1b[2J" in result.stdout  # shown, escaped
    # An export folder whose very name is hostile: the warning naming it, on the console and in
    # the log file, stays one line.
    hostile = tmp_path / ("x" + FORGED + "y")
    hostile.mkdir()
    (hostile / "state.json").write_text(json.dumps({**WRITER, "export_count": "many"}))
    result = run_manager(dict(env, EXPORT_DIR=str(hostile)), "--manual")
    assert result.returncode == 0, result.stderr
    assert "warning: state file" in result.stderr and one_line(result.stderr)
    for text in (result.stderr, (hostile / "logs" / "scheduled_data_manager.log").read_text()):
        assert "\x1b" not in text and "\r" not in text
        assert not any(line.startswith("INFO data_export_service: forged") for line in text.splitlines())
