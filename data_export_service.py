"""Run the scheduler in the background: start, stop, status, restart, systemd unit.

    python data_export_service.py start [--wait 1]      launch scheduled_data_manager.py detached
    python data_export_service.py stop [--timeout 30]  SIGTERM, wait, SIGKILL only if it hangs
    python data_export_service.py status               running/stopped/stale, uptime, last report
    python data_export_service.py restart
    python data_export_service.py create-systemd-service [--user NAME] [--output PATH]

The pidfile (``EXPORT_DIR/data_export_service.pid``) is only a hint: PIDs are
reused, so nothing is signalled unless the process behind the PID is running
our scheduler script (``process_info.is_manager_process``). A pidfile that is
a symlink, holds garbage or names a dead or foreign process is reported and
removed, and no process is touched. ``EXPORT_DIR/.service.lock`` serialises
the commands, so two simultaneous ``start`` cannot both launch.

Exit codes: 0 ok, 1 failure, 2 usage or configuration error; ``status``
follows LSB: 0 running, 3 not running.
"""
from __future__ import annotations

import argparse
import errno
import fcntl
import getpass
import json
import os
import pwd
import re
import shlex
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any

from atomic_io import atomic_write_text
from config.settings import SETTING_VARIABLES, Settings, SettingsError, load_settings, read_environment
from errors import ExportError, StorageError
from logging_setup import LOG_BACKUPS, MAX_LOG_BYTES
from process_info import MANAGER_SCRIPT, command_line, is_manager_process, pid_alive, process_start_time
from status_report import STATUS_NAME
from systemd_unit import UNIT_NAME, render_unit

INSTALL_DIR = Path(__file__).resolve().parent
MANAGER_PATH = INSTALL_DIR / MANAGER_SCRIPT
PIDFILE_NAME = "data_export_service.pid"
SERVICE_LOG_NAME = "data_export_service.log"
SERVICE_LOCK_NAME = ".service.lock"
DEFAULT_SERVICE_USER = "crypto-export"

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_RUNNING = 0, 1, 2, 3
POLL_SECONDS = 0.1
KILL_WAIT_SECONDS = 5.0
LOCK_WAIT_SECONDS = 120.0
MAX_PID = 4_194_304  # the kernel's upper bound for pid_max
LOG_TAIL_LINES = 12


class ServiceError(ExportError):
    """The background service could not be started, stopped or inspected."""


# -- paths and the pidfile ----------------------------------------------------------
@dataclass(frozen=True)
class ServicePaths:
    export_dir: Path
    pidfile: Path
    log: Path
    lock: Path

    @classmethod
    def for_export_dir(cls, export_dir: Path) -> ServicePaths:
        folder = Path(os.path.abspath(export_dir))
        return cls(folder, folder / PIDFILE_NAME, folder / "logs" / SERVICE_LOG_NAME, folder / SERVICE_LOCK_NAME)


@dataclass(frozen=True)
class Pidfile:
    """What the pidfile says: ``missing``, ``unsafe`` (not a regular file), ``invalid`` or ``ok``."""

    kind: str
    pid: int | None = None
    detail: str = ""


def read_pidfile(path: Path) -> Pidfile:
    """Read without following a symlink and without blocking on a FIFO."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return Pidfile("missing")
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return Pidfile("unsafe", detail="it is a symbolic link")
        raise ServiceError(f"cannot read the pidfile {path}: {exc.strerror or exc}") from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return Pidfile("unsafe", detail="it is not a regular file")
        raw = os.read(fd, 64)
    finally:
        os.close(fd)
    text = raw.decode("ascii", errors="replace").strip()
    if re.fullmatch(r"\d{1,7}", text) and 1 < int(text) <= MAX_PID:
        return Pidfile("ok", int(text))
    return Pidfile("invalid", detail=f"content {text[:20]!r} is not a process id")


def remove_pidfile(path: Path) -> None:
    """Unlink the entry itself: for a symlink that is the link, never its target."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise ServiceError(f"cannot remove the pidfile {path}: {exc.strerror or exc}; remove it by hand") from exc


class ServiceLock:
    """Exclusive flock on ``EXPORT_DIR/.service.lock`` around check-and-act."""

    def __init__(self, path: Path, wait_seconds: float = LOCK_WAIT_SECONDS) -> None:
        self.path, self.wait_seconds = path, wait_seconds
        self._fd: int | None = None

    def __enter__(self) -> ServiceLock:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640)
        except OSError as exc:
            raise ServiceError(f"cannot open the service lock {self.path}: {exc.strerror or exc}") from exc
        deadline = time.monotonic() + self.wait_seconds
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise ServiceError(f"another data_export_service command holds {self.path}; try again later") from None
                time.sleep(POLL_SECONDS)
        self._fd = fd
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the flock
            self._fd = None


# -- what is running ----------------------------------------------------------------
@dataclass(frozen=True)
class ServiceState:
    """``running``, ``stopped`` (no pidfile), ``stale`` (dead or foreign PID), ``unsafe`` or ``invalid``."""

    state: str
    pid: int | None = None
    detail: str = ""
    started_at: float | None = None

    def describe(self) -> str:
        return self.detail if self.state == "stale" else f"{self.state} {self.detail}"


def inspect_service(paths: ServicePaths) -> ServiceState:
    info = read_pidfile(paths.pidfile)
    if info.kind == "missing":
        return ServiceState("stopped")
    if info.kind != "ok" or info.pid is None:
        return ServiceState(info.kind, detail=f"pidfile {paths.pidfile}: {info.detail}")
    pid = info.pid
    if not pid_alive(pid):
        return ServiceState("stale", pid, f"stale pidfile (process {pid} is not running)")
    if not is_manager_process(pid):
        program = " ".join(command_line(pid)) or "unknown program"
        return ServiceState("stale", pid, f"stale pidfile: PID {pid} is now another program ({program[:120]}), not signalled")
    return ServiceState("running", pid, started_at=process_start_time(pid))


@dataclass
class Outcome:
    """What a command did: lines for stdout, lines for stderr, the exit code."""

    exit_code: int = EXIT_OK
    lines: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def extend(self, other: Outcome) -> Outcome:
        self.lines += other.lines
        self.errors += other.errors
        self.exit_code = other.exit_code
        return self


def child_environment(settings_env: Mapping[str, str], export_dir: Path) -> dict[str, str]:
    """Our environment, plus the settings this command read from ./.env, with EXPORT_DIR absolute.

    The scheduler runs in the install folder; without this it could read
    another .env and write to a different folder than the pidfile's.
    """
    env = dict(os.environ)
    env.update({name: settings_env[name] for name in SETTING_VARIABLES if name in settings_env})
    env["EXPORT_DIR"] = str(export_dir)
    return env


def _open_append(path: Path) -> int:
    """The service log, opened without following a planted symlink."""
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640)


def _utc_stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class DataExportService:
    """Start and stop one detached scheduler per export folder."""

    def __init__(self, paths: ServicePaths, environment: Mapping[str, str] | None = None) -> None:
        self.paths = paths
        self.environment = dict(environment) if environment is not None else dict(os.environ)

    # -- start ----------------------------------------------------------------------
    def start(self, wait_seconds: float = 1.0) -> Outcome:
        self._ensure_folders()
        with ServiceLock(self.paths.lock):
            return self._start_locked(wait_seconds)

    def _start_locked(self, wait_seconds: float) -> Outcome:
        outcome = Outcome()
        current = inspect_service(self.paths)
        if current.state == "running":
            return Outcome(EXIT_FAILED, errors=[f"error: already running (PID {current.pid}); "
                                                "use 'stop' or 'restart'"])
        if current.state != "stopped":
            outcome.errors.append(f"warning: {current.describe()}; it will be replaced")
        self._rotate_log()
        process = self._launch()
        if not self._confirm(process, wait_seconds):
            self.log_event(f"start failed: the scheduler exited at once with code {process.returncode}")
            tail = self.log_tail()
            return Outcome(EXIT_FAILED, errors=[
                f"error: the scheduler exited at once with code {process.returncode}; "
                f"last lines of {self.paths.log}:", *("  " + line for line in tail)])
        try:
            atomic_write_text(self.paths.pidfile, f"{process.pid}\n")
        except StorageError as exc:
            self._terminate(process)
            return Outcome(EXIT_FAILED, errors=[f"error: {exc}; the scheduler was stopped again"])
        _detach(process)
        self.log_event(f"started scheduler PID {process.pid}")
        outcome.lines.append(f"started (PID {process.pid}); log: {self.paths.log}")
        return outcome

    def _ensure_folders(self) -> None:
        try:
            self.paths.log.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ServiceError(f"cannot create {self.paths.log.parent}: {exc.strerror or exc}; "
                               "check EXPORT_DIR and its permissions") from exc

    def _launch(self) -> subprocess.Popen[bytes]:
        try:
            log_fd = _open_append(self.paths.log)
        except OSError as exc:
            raise ServiceError(f"cannot open the service log {self.paths.log}: {exc.strerror or exc}") from exc
        try:
            return subprocess.Popen(
                [sys.executable, str(MANAGER_PATH)], stdin=subprocess.DEVNULL, stdout=log_fd, stderr=log_fd,
                cwd=INSTALL_DIR, env=child_environment(self.environment, self.paths.export_dir),
                start_new_session=True, close_fds=True)
        except OSError as exc:
            raise ServiceError(f"cannot launch {MANAGER_PATH}: {exc.strerror or exc}") from exc
        finally:
            os.close(log_fd)

    @staticmethod
    def _confirm(process: subprocess.Popen[bytes], wait_seconds: float) -> bool:
        """Still alive after ``wait_seconds`` (a bad start usually dies within a second)."""
        deadline = time.monotonic() + max(0.0, wait_seconds)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        return process.poll() is None

    @staticmethod
    def _terminate(process: subprocess.Popen[bytes]) -> None:
        process.terminate()
        try:
            process.wait(timeout=KILL_WAIT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    # -- stop -----------------------------------------------------------------------
    def stop(self, timeout: float = 30.0) -> Outcome:
        if not self.paths.export_dir.is_dir():
            return Outcome(lines=["not running"])
        with ServiceLock(self.paths.lock):
            return self._stop_locked(timeout)

    def _stop_locked(self, timeout: float) -> Outcome:
        current = inspect_service(self.paths)
        if current.state == "stopped":
            return Outcome(lines=["not running"])
        if current.state != "running" or current.pid is None:
            remove_pidfile(self.paths.pidfile)
            self.log_event(f"{current.describe()}; removed")
            if current.state == "unsafe":  # someone tampered with the folder: worth a non-zero exit
                return Outcome(EXIT_FAILED, errors=[f"error: {current.describe()}; removed it (not its target), "
                                                    "nothing was signalled"])
            joiner = ", " if current.detail.endswith(")") else "; "  # "(process N is not running), removed"
            return Outcome(lines=[f"{current.describe()}{joiner}removed", "not running"])
        return self._signal_and_wait(current.pid, timeout)

    def _signal_and_wait(self, pid: int, timeout: float) -> Outcome:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        except PermissionError as exc:
            raise ServiceError(f"not allowed to signal PID {pid}: it belongs to another user; "
                               "run stop as that user") from exc
        self.log_event(f"sent SIGTERM to scheduler PID {pid}")
        outcome = Outcome()
        if self._wait_gone(pid, timeout):
            outcome.lines.append(f"stopped (PID {pid})")
        else:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            if not self._wait_gone(pid, KILL_WAIT_SECONDS):
                return Outcome(EXIT_FAILED, errors=[f"error: PID {pid} survived SIGKILL; pidfile kept"])
            self.log_event(f"scheduler PID {pid} ignored SIGTERM for {timeout:g} s: killed with SIGKILL")
            outcome.errors.append(f"warning: PID {pid} did not stop within {timeout:g} s: killed with SIGKILL")
            outcome.lines.append(f"stopped (PID {pid}, killed)")
        remove_pidfile(self.paths.pidfile)
        self.log_event(f"scheduler PID {pid} stopped")
        return outcome

    @staticmethod
    def _wait_gone(pid: int, timeout: float) -> bool:
        """Gone, or the PID already belongs to something else (then ours is gone too)."""
        deadline = time.monotonic() + max(0.0, timeout)
        while is_manager_process(pid):
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL_SECONDS)
        return True

    # -- restart, status -----------------------------------------------------------
    def restart(self, timeout: float = 30.0, wait_seconds: float = 1.0) -> Outcome:
        self._ensure_folders()
        with ServiceLock(self.paths.lock):
            outcome = self._stop_locked(timeout)
            if outcome.exit_code != EXIT_OK:
                return outcome
            return outcome.extend(self._start_locked(wait_seconds))

    def status(self, now: float | None = None) -> Outcome:
        current = inspect_service(self.paths)
        now = time.time() if now is None else now
        if current.state == "running":
            uptime = "unknown" if current.started_at is None else format_duration(now - current.started_at)
            lines = [f"running (PID {current.pid}, up {uptime})"]
            code = EXIT_OK
        elif current.state == "stopped":
            lines, code = ["stopped"], EXIT_NOT_RUNNING
        else:
            lines, code = [f"{current.describe()}; the service is not running"], EXIT_NOT_RUNNING
        lines += [f"  pidfile: {self.paths.pidfile}", f"  log: {self.paths.log}"]
        lines += summarize_status_report(self.paths.export_dir / STATUS_NAME)
        return Outcome(code, lines)

    # -- the service log ------------------------------------------------------------
    def log_event(self, message: str) -> None:
        """One line in the service log; a log that cannot be written must not fail the command."""
        try:
            fd = _open_append(self.paths.log)
        except OSError:
            return
        try:
            os.write(fd, f"{_utc_stamp()} INFO data_export_service: {message}\n".encode())
        except OSError:
            pass
        finally:
            os.close(fd)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> list[str]:
        try:
            with open(self.paths.log, "rb") as handle:
                handle.seek(max(0, os.fstat(handle.fileno()).st_size - 16384))
                text = handle.read().decode(errors="replace")
        except OSError:
            return []
        return text.splitlines()[-lines:]

    def _rotate_log(self) -> None:
        """Rotate at start only: the scheduler holds the log as stdout while it runs."""
        log = self.paths.log
        try:
            if log.is_symlink() or not log.is_file() or log.stat().st_size < MAX_LOG_BYTES:
                return
            for index in range(LOG_BACKUPS - 1, 0, -1):
                older = log.with_name(f"{log.name}.{index}")
                if older.exists():
                    os.replace(older, log.with_name(f"{log.name}.{index + 1}"))
            os.replace(log, log.with_name(f"{log.name}.1"))
        except OSError:
            pass  # an unrotated log is better than a service that does not start


def _detach(process: subprocess.Popen[bytes]) -> None:
    """The scheduler outlives this command by design: tell Popen not to warn that it still runs."""
    process.returncode = 0


def format_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{days}d {clock}" if days else clock


def summarize_status_report(path: Path) -> list[str]:
    """The last status report in a few lines (the scheduler writes it after every cycle)."""
    try:
        report: Any = json.loads(path.read_text(encoding="utf-8"))
        system, files = report.get("system_status", {}), report.get("file_statistics", {})
        cycle, health = report.get("last_cycle") or {}, report.get("health") or {}
    except FileNotFoundError:
        return ["  last status report: none yet"]
    except (OSError, ValueError, AttributeError) as exc:
        return [f"  last status report: unreadable ({path}: {exc})"]
    finished = cycle.get("finished") or "never"
    return [
        f"  last status report ({report.get('timestamp', '?')}): service_status={system.get('service_status', '?')}, "
        f"health={health.get('status', '?')}",
        f"  exports: {system.get('export_count', '?')}, last cycle: {cycle.get('result') or 'none'} "
        f"(finished {finished}), total files: {files.get('total_files', '?')}",
    ]


# -- the systemd unit ----------------------------------------------------------------
USER_NAME = re.compile(r"[a-z_][a-z0-9_.-]{0,31}\$?", re.IGNORECASE)


def default_service_user(environ: Mapping[str, str], euid: int, current_user: str) -> str:
    """The sudo caller, else the current user, never root."""
    sudo_user = environ.get("SUDO_USER", "")
    if sudo_user and sudo_user != "root":
        return sudo_user
    return current_user if euid != 0 else DEFAULT_SERVICE_USER


def check_service_user(user: str) -> str | None:
    """Why ``user`` cannot run the service, or None."""
    if not USER_NAME.fullmatch(user):
        return f"--user {user!r} is not a valid user name"
    try:
        uid = pwd.getpwnam(user).pw_uid
    except KeyError:
        uid = None
    if user == "root" or uid == 0:
        return f"--user {user}: refusing to run the exporter as root; give an unprivileged user"
    return None


def user_exists(user: str) -> bool:
    try:
        pwd.getpwnam(user)
    except KeyError:
        return False
    return True


def write_systemd_unit(output: Path, export_dir: Path, user: str) -> Path:
    target = output / UNIT_NAME if output.is_dir() else output
    text = render_unit(python=Path(sys.executable).absolute(), install_dir=INSTALL_DIR, manager_script=MANAGER_PATH,
                       export_dir=Path(os.path.abspath(export_dir)), user=user, generated_at=_utc_stamp())
    atomic_write_text(target, text)
    os.chmod(target, 0o644)  # a unit file is read by systemd and by whoever inspects it
    return target


def _current_user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return getpass.getuser()


# -- CLI ---------------------------------------------------------------------------
EPILOG = """examples:
  python data_export_service.py start                 run the scheduler in the background
  python data_export_service.py status                exit 0 running, 3 not running
  python data_export_service.py stop --timeout 60     SIGTERM, then SIGKILL after 60 s
  python data_export_service.py create-systemd-service --user crypto-export

files: EXPORT_DIR/data_export_service.pid, EXPORT_DIR/logs/data_export_service.log
exit codes: 0 ok, 1 failure, 2 usage/config error, 3 (status) not running"""


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 86400:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds from 0 to 86400")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="data_export_service.py", description="Run the scheduled data manager as a background service.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    wait_help = "seconds the scheduler must stay up to count as started (default 1)"
    timeout_help = "seconds to wait after SIGTERM before SIGKILL (default 30)"
    start = commands.add_parser("start", help="launch the scheduler detached")
    start.add_argument("--wait", type=_seconds, default=1.0, help=wait_help)
    stop = commands.add_parser("stop", help="stop the scheduler cleanly")
    stop.add_argument("--timeout", type=_seconds, default=30.0, help=timeout_help)
    commands.add_parser("status", help="running or not, uptime, last status report")
    restart = commands.add_parser("restart", help="stop, then start")
    restart.add_argument("--timeout", type=_seconds, default=30.0, help=timeout_help)
    restart.add_argument("--wait", type=_seconds, default=1.0, help=wait_help)
    unit = commands.add_parser("create-systemd-service", help=f"write a hardened {UNIT_NAME}")
    unit.add_argument("--user", help="the unprivileged user to run as (default: $SUDO_USER, "
                                     f"the current user, or {DEFAULT_SERVICE_USER} when run as root)")
    unit.add_argument("--output", type=Path, default=Path(UNIT_NAME), help=f"where to write it (default ./{UNIT_NAME})")
    return parser.parse_args(argv)


def _report(outcome: Outcome) -> int:
    for line in outcome.lines:
        print(line)
    for line in outcome.errors:
        print(line, file=sys.stderr)
    return outcome.exit_code


def _create_unit(args: argparse.Namespace, settings: Settings) -> int:
    user = args.user or default_service_user(os.environ, os.geteuid(), _current_user())
    problem = check_service_user(user)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    export_dir = Path(os.path.abspath(settings.export_dir))
    try:
        path = write_systemd_unit(args.output, export_dir, user)
    except (ValueError, ExportError, OSError) as exc:
        print(f"error: cannot write the unit: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"wrote {path.absolute()} (runs as {user}, writes only {export_dir})")
    if not user_exists(user):
        print(f"note: user {user} does not exist yet: sudo useradd --system --no-create-home "
              f"--shell /usr/sbin/nologin {user}")
    print(f"note: {user} must own the export folder: sudo install -d -o {user} -m 0750 {shlex.quote(str(export_dir))}")
    print("install and enable it:")
    print(f"  sudo cp {shlex.quote(str(path.absolute()))} /etc/systemd/system/")
    print("  sudo systemctl daemon-reload")
    print("  sudo systemctl enable --now crypto-data-export")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        environment = read_environment()
        settings = load_settings(environment, env_file=None)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.command == "create-systemd-service":
        return _create_unit(args, settings)
    service = DataExportService(ServicePaths.for_export_dir(settings.export_dir), environment)
    try:
        if args.command == "start":
            return _report(service.start(args.wait))
        if args.command == "stop":
            return _report(service.stop(args.timeout))
        if args.command == "restart":
            return _report(service.restart(args.timeout, args.wait))
        return _report(service.status())
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_NOT_RUNNING if args.command == "status" else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
