"""Run the scheduler in the background: start, stop, status, restart, systemd unit.

The pidfile is only a hint (PIDs are reused): nothing is signalled unless the process runs our
scheduler, started when the pidfile says, and serves this export folder (``inspect``).
``EXPORT_DIR/.service.lock`` serialises the commands (two ``start`` cannot both launch)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from crypto_data_export.core.atomic_io import atomic_write_text
from crypto_data_export.core.clock import to_iso, utc_now
from crypto_data_export.core.errors import ServiceError, StorageError
from crypto_data_export.core.exit_codes import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_NOT_RUNNING, EXIT_OK, EXIT_UNKNOWN
from crypto_data_export.core.file_lock import FileLock
from crypto_data_export.core.logfiles import open_log_append
from crypto_data_export.core.processes import MANAGER_COMMAND, MANAGER_SCRIPT, is_manager_process, process_start_ticks
from crypto_data_export.core.text import printable
from crypto_data_export.service.inspect import format_duration, inspect_service, loop_serving, summarize_status_report
from crypto_data_export.service.pidfile import remove_pidfile, write_pidfile
from crypto_data_export.service.service_log import ServiceLog
from crypto_data_export.service.systemd_unit import UNIT_NAME, render_unit
from crypto_data_export.settings.settings import SETTING_VARIABLES
from crypto_data_export.store.layout import ExportFolder

# A checkout runs the guide's script from the repository root, where .env lives; an installed
# package (pip, pipx) runs its console command, installed beside the interpreter, from the
# folder the service was set up in.
CHECKOUT_DIR = Path(__file__).resolve().parents[2]
if (CHECKOUT_DIR / MANAGER_SCRIPT).is_file():
    INSTALL_DIR, MANAGER_PATH = CHECKOUT_DIR, CHECKOUT_DIR / MANAGER_SCRIPT
else:
    INSTALL_DIR, MANAGER_PATH = Path.cwd(), Path(sys.executable).absolute().parent / MANAGER_COMMAND

POLL_SECONDS = 0.1
KILL_WAIT_SECONDS = 5.0
LOCK_WAIT_SECONDS = 120.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # Ctrl-C, kill, a closed terminal


def service_lock(path: Path) -> FileLock:
    """Held around check-and-act: two simultaneous ``start`` must not both launch."""
    return FileLock(
        path,
        wait_seconds=LOCK_WAIT_SECONDS,
        on_busy=lambda p: ServiceError(f"another data_export_service command holds {p}; try again later"),
        on_error=lambda p, exc: ServiceError(f"cannot open the service lock {p}: {exc.strerror or exc}"),
    )


@dataclass
class Outcome:
    """What a command did: lines for stdout, lines for stderr, the exit code."""

    exit_code: int = EXIT_OK
    lines: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _failed(*errors: str) -> Outcome:
    return Outcome(EXIT_FAILED, errors=list(errors))


def _stop_again(process: subprocess.Popen[bytes]) -> None:
    """Stop a scheduler this start launched but will not record in the pidfile."""
    process.terminate()
    try:
        process.wait(timeout=KILL_WAIT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class DataExportService:
    """Start and stop one detached scheduler per export folder."""

    def __init__(self, export_dir: Path, environment: Mapping[str, str] | None = None) -> None:
        self.folder = ExportFolder(Path(os.path.abspath(export_dir)))
        self.log = ServiceLog(self.folder.service_log)
        self.environment = dict(environment) if environment is not None else dict(os.environ)

    def start(self, wait_seconds: float = 1.0) -> Outcome:
        self._ensure_folders()
        with service_lock(self.folder.service_lock):
            return self._start_locked(wait_seconds)

    def _start_locked(self, wait_seconds: float) -> Outcome:
        outcome = Outcome()
        current = inspect_service(self.folder.pidfile, self.folder.root)
        if current.state == "running":
            return _failed(f"error: already running (PID {current.pid}); use 'stop' or 'restart'")
        if current.state == "unverified":
            return _failed(f"error: {current.describe()}")
        if (by_hand := loop_serving(self.folder.root, self.folder.state)) is not None:
            return _failed(
                f"error: a scheduler started outside the service already runs on {printable(self.folder.root)} "
                f"(PID {by_hand}); stop it first (kill -TERM {by_hand}), then run 'start'"
            )
        if current.state != "stopped":
            outcome.errors.append(f"warning: {current.describe()}; it will be replaced")
        self.log.rotate()
        # Atomic for Ctrl-C, SIGTERM and SIGHUP: from the launch to the pidfile they are only noted; then
        # either the pidfile names the scheduler or the scheduler is stopped again.
        asked: list[int] = []
        handlers = {sig: signal.signal(sig, lambda signum, _frame: asked.append(signum)) for sig in STOP_SIGNALS}
        try:
            process = self._launch()
            with contextlib.suppress(subprocess.TimeoutExpired):  # a bad start usually dies within a second
                process.wait(timeout=0.0 if asked else max(0.0, wait_seconds))
            if process.returncode is not None:
                self.log.event(f"start failed: the scheduler exited at once with code {process.returncode}")
                return _failed(
                    f"error: the scheduler exited at once with code {process.returncode}; "
                    f"last lines of {self.folder.service_log}:",
                    *("  " + printable(line, 500) for line in self.log.tail()),
                )
            try:
                if asked:
                    self.log.event("start interrupted: the scheduler is stopped again")
                    _stop_again(process)
                    return Outcome(EXIT_INTERRUPTED, errors=["interrupted: the scheduler was stopped again"])
                real_folder = Path(os.path.realpath(self.folder.root))
                write_pidfile(self.folder.pidfile, process.pid, real_folder, process_start_ticks(process.pid))
            except StorageError as exc:
                _stop_again(process)
                return _failed(f"error: {exc}; the scheduler was stopped again")
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
        process.returncode = 0  # it outlives this command by design: Popen must not warn that it still runs
        self.log.event(f"started scheduler PID {process.pid}")
        outcome.lines.append(f"started (PID {process.pid}); log: {self.folder.service_log}")
        return outcome

    def _ensure_folders(self) -> None:
        try:
            self.folder.service_log.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ServiceError(
                f"cannot create {self.folder.service_log.parent}: {exc.strerror or exc}; check EXPORT_DIR"
            ) from exc

    def _launch(self) -> subprocess.Popen[bytes]:
        try:
            log_fd = open_log_append(self.folder.service_log)
        except OSError as exc:
            raise ServiceError(f"cannot open the service log {self.folder.service_log}: {exc.strerror or exc}") from exc
        # Our environment plus the settings read from ./.env, EXPORT_DIR absolute: the scheduler
        # runs in the install folder, where another .env could point it elsewhere.
        settings = {name: self.environment[name] for name in SETTING_VARIABLES if name in self.environment}
        try:
            return subprocess.Popen(
                [sys.executable, str(MANAGER_PATH)],
                stdin=subprocess.DEVNULL,
                stdout=log_fd,
                stderr=log_fd,
                cwd=INSTALL_DIR,
                env={**os.environ, **settings, "EXPORT_DIR": str(self.folder.root)},
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            raise ServiceError(f"cannot launch {MANAGER_PATH}: {exc.strerror or exc}") from exc
        finally:
            os.close(log_fd)

    def stop(self, timeout: float = 30.0) -> Outcome:
        if not self.folder.root.is_dir():
            return Outcome(lines=["not running"])
        with service_lock(self.folder.service_lock):
            return self._stop_locked(timeout)

    def _stop_locked(self, timeout: float) -> Outcome:
        current = inspect_service(self.folder.pidfile, self.folder.root)
        if current.state == "stopped":
            return Outcome(lines=["not running"])
        if current.state == "unverified":  # maybe ours, maybe not: neither signalled nor forgotten
            return _failed(f"error: {current.describe()}; pidfile kept")
        if current.state != "running" or current.pid is None:
            remove_pidfile(self.folder.pidfile)
            self.log.event(f"{current.describe()}; removed")
            if current.state == "unsafe":  # someone tampered with the folder: worth a non-zero exit
                return _failed(f"error: {current.describe()}; removed it (not its target), nothing was signalled")
            joiner = ", " if current.detail.endswith(")") else "; "  # "(process N is not running), removed"
            return Outcome(lines=[f"{current.describe()}{joiner}removed", "not running"])
        return self._signal_and_wait(current.pid, timeout)

    def _signal_and_wait(self, pid: int, timeout: float) -> Outcome:
        ticks = process_start_ticks(pid)
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass  # gone already
        except PermissionError as exc:
            raise ServiceError(
                f"not allowed to signal PID {pid}: it belongs to another user; run stop as that user"
            ) from exc
        self.log.event(f"sent SIGTERM to scheduler PID {pid}")
        outcome = Outcome()
        if self._wait_gone(pid, ticks, timeout):
            outcome.lines.append(f"stopped (PID {pid})")
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            if not self._wait_gone(pid, ticks, KILL_WAIT_SECONDS):
                return _failed(f"error: PID {pid} survived SIGKILL; pidfile kept")
            self.log.event(f"scheduler PID {pid} ignored SIGTERM for {timeout:g} s: killed with SIGKILL")
            outcome.errors.append(f"warning: PID {pid} did not stop within {timeout:g} s: killed with SIGKILL")
            outcome.lines.append(f"stopped (PID {pid}, killed)")
        remove_pidfile(self.folder.pidfile)
        self.log.event(f"scheduler PID {pid} stopped")
        return outcome

    @staticmethod
    def _wait_gone(pid: int, ticks: int | None, timeout: float) -> bool:
        """Gone, or the PID already belongs to something else (then ours is gone too)."""
        deadline = time.monotonic() + max(0.0, timeout)
        while is_manager_process(pid) and (ticks is None or process_start_ticks(pid) == ticks):
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL_SECONDS)
        return True

    def restart(self, timeout: float = 30.0, wait_seconds: float = 1.0) -> Outcome:
        self._ensure_folders()
        with service_lock(self.folder.service_lock):
            outcome = self._stop_locked(timeout)
            if outcome.exit_code != EXIT_OK:
                return outcome
            started = self._start_locked(wait_seconds)
            return Outcome(started.exit_code, outcome.lines + started.lines, outcome.errors + started.errors)

    def status(self) -> Outcome:
        current = inspect_service(self.folder.pidfile, self.folder.root)
        if current.state == "running":
            uptime = "unknown" if current.started_at is None else format_duration(time.time() - current.started_at)
            lines, code = [f"running (PID {current.pid}, up {uptime})"], EXIT_OK
        elif current.state == "unverified":
            lines, code = [current.describe()], EXIT_UNKNOWN
        elif current.state == "stopped":
            lines, code = ["stopped"], EXIT_NOT_RUNNING
        else:
            lines, code = [f"{current.describe()}; the service is not running"], EXIT_NOT_RUNNING
        if current.state != "running" and (by_hand := loop_serving(self.folder.root, self.folder.state)) is not None:
            lines.append(f"  a scheduler started outside the service runs on this folder (PID {by_hand})")
        lines += [f"  pidfile: {self.folder.pidfile}", f"  log: {self.folder.service_log}"]
        lines += summarize_status_report(self.folder.status_report)
        return Outcome(code, lines)


def write_systemd_unit(output: Path, export_dir: Path, user: str) -> Path:
    target = output / UNIT_NAME if output.is_dir() else output
    text = render_unit(
        python=Path(sys.executable).absolute(),
        install_dir=INSTALL_DIR,
        manager_script=MANAGER_PATH,
        export_dir=Path(os.path.abspath(export_dir)),
        user=user,
        generated_at=to_iso(utc_now()) or "",
    )
    atomic_write_text(target, text)
    os.chmod(target, 0o644)  # a unit file is read by systemd and by whoever inspects it
    return target
