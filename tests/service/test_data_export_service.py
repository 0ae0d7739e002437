"""data_export_service.py as a user runs it: real subprocesses, a real scheduler, the sandbox exchange.

Every scheduler a test starts is stopped in the fixture's teardown (and
killed if it would not stop), so no process outlives the test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from crypto_data_export.core.processes import is_manager_process, pid_alive
from crypto_data_export.sandbox.fake_exchange import SandboxExchange
from crypto_data_export.service.systemd_unit import protect_home_mode
from crypto_data_export.settings.settings import SETTING_VARIABLES
from tests.support import HANG_GUARD, REPO, pending_signals, run_cli, start_bystander, wait_until

ROOT = REPO
SCRIPT = ROOT / "data_export_service.py"
PIDFILE = "data_export_service.pid"


class Service:
    """Runs the CLI against one export folder and remembers every scheduler it started."""

    def __init__(self, tmp_path: Path, base_url: str, name: str = "exports") -> None:
        self.cwd = tmp_path
        self.export_dir = tmp_path / name
        self.pidfile = self.export_dir / PIDFILE
        self.env = {k: v for k, v in os.environ.items() if k not in SETTING_VARIABLES and k != "SUDO_USER"}
        self.env.update(
            {
                "EXPORT_DIR": str(self.export_dir),
                "BINANCE_BASE_URL": base_url,
                "EXPORT_SYMBOLS": "BTCUSDT,ETHUSDT",
                "EXPORT_PERIOD_HOURS": "0.001",
                "HTTP_BACKOFF_SECONDS": "0",
                "HTTP_TIMEOUT_SECONDS": "2",
            }
        )
        self.started: list[int] = []

    def run(self, *args: str, timeout: float = HANG_GUARD) -> subprocess.CompletedProcess[str]:
        result = run_cli(SCRIPT.name, *args, env=self.env, cwd=self.cwd, timeout=timeout)
        pid = self.pid()
        if pid is not None and pid not in self.started and is_manager_process(pid):
            self.started.append(pid)
        return result

    def pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().split("\n", 1)[0])  # line 1: the PID
        except (OSError, ValueError):
            return None

    def cleanup(self) -> None:
        if any(is_manager_process(pid) for pid in self.started):
            self.run("stop", "--timeout", "5")
        for pid in self.started:
            if is_manager_process(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def make_service(tmp_path: Path, sandbox: SandboxExchange) -> Iterator[Callable[..., Service]]:
    services: list[Service] = []

    def make(name: str = "exports") -> Service:
        services.append(Service(tmp_path, sandbox.base_url, name))
        return services[-1]

    yield make
    for service in services:
        service.cleanup()


@pytest.fixture
def service(make_service: Callable[..., Service]) -> Service:
    return make_service()


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A live process that is not ours, to stand for a reused PID (a signal sent to it stays pending)."""
    process = start_bystander()
    yield process
    process.kill()
    process.wait()


def status_report(service: Service) -> dict:
    return json.loads((service.export_dir / "status_report.json").read_text())


# -- start, status, stop ---------------------------------------------------------------
def test_start_status_refuse_second_start_and_stop_cleanly(service: Service) -> None:
    started = service.run("start", "--wait", "0.5")
    assert started.returncode == 0, started.stderr
    pid = service.pid()
    assert pid is not None and is_manager_process(pid)
    assert f"PID {pid}" in started.stdout
    record = service.pidfile.read_text().splitlines()
    assert record[0] == str(pid)  # line 1 stays the bare PID, for scripts
    assert record[1] == f"export_dir={json.dumps(os.path.realpath(service.export_dir))}"
    assert record[2].startswith("start_ticks=") and int(record[2].split("=")[1]) > 0

    status = service.run("status")
    assert status.returncode == 0
    assert "running" in status.stdout and str(pid) in status.stdout

    again = service.run("start", "--wait", "0.5")
    assert again.returncode == 1
    assert f"PID {pid}" in again.stderr and len(again.stderr.strip().splitlines()) == 1
    assert service.pid() == pid

    # Let a cycle finish so the stop interrupts a real, working scheduler.
    wait_until(lambda: (service.export_dir / "status_report.json").exists(), "the first cycle")
    stopped = service.run("stop", "--timeout", "10")
    assert stopped.returncode == 0, stopped.stderr
    assert f"stopped (PID {pid})" in stopped.stdout and "SIGKILL" not in stopped.stderr
    assert not service.pidfile.exists()
    assert not pid_alive(pid)
    assert [p.name for p in service.export_dir.rglob(".*.tmp")] == []
    assert status_report(service)["system_status"]["service_status"] == "stopped"
    log = (service.export_dir / "logs" / "data_export_service.log").read_text()
    assert f"started scheduler PID {pid}" in log and f"scheduler PID {pid} stopped" in log

    after = service.run("status")
    assert after.returncode == 3 and "stopped" in after.stdout
    assert "service_status=stopped" in after.stdout
    second_stop = service.run("stop")
    assert second_stop.returncode == 0 and "not running" in second_stop.stdout


def test_restart_replaces_the_scheduler(service: Service) -> None:
    assert service.run("start", "--wait", "0.5").returncode == 0
    first = service.pid()
    restarted = service.run("restart", "--timeout", "10", "--wait", "0.5")
    assert restarted.returncode == 0, restarted.stderr
    second = service.pid()
    assert second is not None and second != first
    assert first is not None and not is_manager_process(first)
    assert is_manager_process(second)
    assert service.run("stop", "--timeout", "10").returncode == 0
    assert not is_manager_process(second)


def test_status_when_never_started(service: Service) -> None:
    result = service.run("status")
    assert result.returncode == 3
    assert result.stdout.startswith("stopped")
    stop = service.run("stop")
    assert stop.returncode == 0 and "not running" in stop.stdout


# -- pidfiles that must not be trusted ---------------------------------------------------
def test_pidfile_naming_another_program_is_stale_and_never_signalled(
    service: Service, sleeper: subprocess.Popen[bytes]
) -> None:
    service.export_dir.mkdir()
    service.pidfile.write_text(f"{sleeper.pid}\n")
    status = service.run("status")
    assert status.returncode == 3
    assert "stale" in status.stdout and "another program" in status.stdout and "sleep" in status.stdout
    assert service.pidfile.exists()  # status only reports

    stop = service.run("stop", "--timeout", "2")
    assert stop.returncode == 0, stop.stderr
    assert f"PID {sleeper.pid} is now another program" in stop.stdout and "not signalled" in stop.stdout
    assert not service.pidfile.exists()
    assert sleeper.poll() is None and not pending_signals(sleeper.pid), "the unrelated process was signalled"


def test_garbage_pidfile_is_reported_and_removed(service: Service) -> None:
    service.export_dir.mkdir()
    service.pidfile.write_text("not-a-pid\n")
    status = service.run("status")
    assert status.returncode == 3 and "invalid" in status.stdout
    stop = service.run("stop")
    assert stop.returncode == 0 and "invalid" in stop.stdout
    assert not service.pidfile.exists()


def test_pidfile_with_a_dead_pid_is_stale(service: Service) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    service.export_dir.mkdir()
    service.pidfile.write_text(f"{gone.pid}\n")
    status = service.run("status")
    assert status.returncode == 3 and f"process {gone.pid} is not running" in status.stdout
    stop = service.run("stop")
    assert stop.returncode == 0
    assert f"stale pidfile (process {gone.pid} is not running), removed" in stop.stdout
    assert not service.pidfile.exists()


def test_symlinked_pidfile_is_not_followed(make_service: Callable[..., Service], tmp_path: Path) -> None:
    # The link points at the pidfile of a real scheduler elsewhere: following it would stop that one.
    other = make_service("other_exports")
    assert other.run("start", "--wait", "0.5").returncode == 0
    other_pid = other.pid()
    target_text = other.pidfile.read_text()

    service = make_service()
    service.export_dir.mkdir()
    service.pidfile.symlink_to(other.pidfile)
    status = service.run("status")
    assert status.returncode == 3 and "symbolic link" in status.stdout
    stop = service.run("stop", "--timeout", "2")
    assert stop.returncode == 1
    assert "symbolic link" in stop.stderr and "nothing was signalled" in stop.stderr
    assert not service.pidfile.is_symlink() and not service.pidfile.exists()
    assert other.pidfile.read_text() == target_text
    assert other_pid is not None and is_manager_process(other_pid)


# -- configuration and the systemd unit --------------------------------------------------
def test_bad_configuration_exits_2_with_one_line(service: Service) -> None:
    service.env["EXPORT_PERIOD_HOURS"] = "-1"
    result = service.run("start")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "EXPORT_PERIOD_HOURS" in result.stderr
    assert not service.pidfile.exists()


REQUIRED_DIRECTIVES = (
    "Type=exec",
    "Restart=on-failure",
    "RestartSec=30",
    "NoNewPrivileges=yes",
    "ProtectSystem=strict",
    "PrivateTmp=yes",
    "UMask=0027",
    "Environment=PYTHONUNBUFFERED=1",
    "KillSignal=SIGTERM",
    "TimeoutStopSec=60",
    "CapabilityBoundingSet=",
    "WantedBy=multi-user.target",
    "User=nobody",
)


def test_create_systemd_service_names_the_unit_it_wrote(service: Service, tmp_path: Path) -> None:
    unit = tmp_path / "my-exporter.service"
    result = service.run("create-systemd-service", "--output", str(unit), "--user", "nobody")
    assert result.returncode == 0, result.stderr
    assert "/etc/systemd/system/my-exporter.service" in result.stdout
    assert "systemctl enable --now my-exporter.service" in result.stdout
    assert "crypto-data-export" not in result.stdout.split("install and enable it:")[1]


def test_create_systemd_service_refuses_a_name_systemd_cannot_load(service: Service, tmp_path: Path) -> None:
    result = service.run("create-systemd-service", "--output", str(tmp_path / "x.txt"), "--user", "nobody")
    assert result.returncode == 2 and "ending in .service" in result.stderr
    assert not (tmp_path / "x.txt").exists()


def test_create_systemd_service_writes_a_hardened_unit(service: Service, tmp_path: Path) -> None:
    unit = tmp_path / "crypto-data-export.service"
    result = service.run("create-systemd-service", "--output", str(unit), "--user", "nobody")
    assert result.returncode == 0, result.stderr
    assert str(unit) in result.stdout
    assert "sudo systemctl daemon-reload" in result.stdout and "enable --now crypto-data-export" in result.stdout
    lines = unit.read_text().splitlines()
    for directive in REQUIRED_DIRECTIVES:
        assert directive in lines, directive
    assert f"ExecStart={sys.executable} {ROOT / 'scheduled_data_manager.py'}" in lines
    assert f"WorkingDirectory={ROOT}" in lines
    assert f"EnvironmentFile=-{ROOT}/.env" in lines
    assert f"ReadWritePaths={service.export_dir}" in lines
    assert [line for line in lines if line.startswith("ProtectHome=")] == [
        f"ProtectHome={protect_home_mode([sys.executable, ROOT, service.export_dir])}"
    ]

    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed: verify and security checks skipped")
    verify = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=30)
    assert verify.returncode == 0, verify.stderr
    security = subprocess.run(
        [analyze, "security", "--offline=yes", str(unit)], capture_output=True, text=True, timeout=30
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", security.stdout)
    assert match, security.stdout + security.stderr
    assert float(match.group(1)) <= 3.9


def test_create_systemd_service_refuses_root(service: Service, tmp_path: Path) -> None:
    unit = tmp_path / "root.service"
    result = service.run("create-systemd-service", "--output", str(unit), "--user", "root")
    assert result.returncode == 2 and "root" in result.stderr
    assert not unit.exists()


def test_protect_home_mode() -> None:
    assert protect_home_mode(["/usr/bin/python3", "/opt/crypto-export"]) == "yes"
    assert protect_home_mode(["/usr/bin/python3", "/home/ana/crypto"]) == "read-only"
    assert protect_home_mode(["/root/.pyenv/versions/3.11.7/bin/python"]) == "read-only"
    assert protect_home_mode(["/homework/app"]) == "yes"


def test_start_reports_a_scheduler_that_exits_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import crypto_data_export.service.daemon
    import data_export_service

    failing = tmp_path / "failing_manager.py"
    failing.write_text("import sys\nprint('cannot start: broken install', file=sys.stderr)\nsys.exit(3)\n")
    monkeypatch.setattr(crypto_data_export.service.daemon, "MANAGER_PATH", failing)
    monkeypatch.chdir(tmp_path)
    for name in SETTING_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("EXPORT_DIR", str(tmp_path / "exports"))
    assert data_export_service.main(["start", "--wait", "2"]) == 1
    err = capsys.readouterr().err
    assert "exited at once with code 3" in err and "cannot start: broken install" in err
    assert not (tmp_path / "exports" / PIDFILE).exists()


def test_ctrl_c_during_start_leaves_no_scheduler_without_a_pidfile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C in start's first second: either the pidfile names the scheduler or it is stopped (SIGTERM
    and SIGHUP take the same path; not sent here, as their default would end the test process)."""
    import crypto_data_export.service.daemon as daemon
    import data_export_service

    waiting = tmp_path / "waiting_manager.py"
    waiting.write_text("import signal\nsignal.pause()\n")  # a scheduler that waits to be stopped
    monkeypatch.setattr(daemon, "MANAGER_PATH", waiting)
    launched: list[subprocess.Popen[bytes]] = []
    launch = daemon.DataExportService._launch

    def launch_then_interrupt(self: daemon.DataExportService) -> subprocess.Popen[bytes]:
        launched.append(launch(self))
        os.kill(os.getpid(), signal.SIGINT)  # as the user's Ctrl-C, right after the launch
        return launched[0]

    monkeypatch.setattr(daemon.DataExportService, "_launch", launch_then_interrupt)
    monkeypatch.chdir(tmp_path)
    for name in SETTING_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("EXPORT_DIR", str(tmp_path / "exports"))
    before = signal.getsignal(signal.SIGINT)
    try:
        assert data_export_service.main(["start", "--wait", "5"]) == 130
    finally:  # never leave the stand-in running, whatever start did
        alive = [process for process in launched if process.poll() is None]
        for process in alive:
            process.kill()
            process.wait()
    assert not alive and not (tmp_path / "exports" / PIDFILE).exists()
    assert "interrupted: the scheduler was stopped again" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGINT) is before and launched[0].returncode == -signal.SIGTERM
