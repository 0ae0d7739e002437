"""``data_export_service.py``: start, stop, status, restart, create-systemd-service (see EPILOG).

``status`` follows LSB: 0 running, 3 not running, 4 unknown (a scheduler whose folder cannot be
verified). The work is done by ``service.daemon.DataExportService`` (importable from here)."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from crypto_data_export.core.cli import console_command, script_parser
from crypto_data_export.core.errors import ExportError
from crypto_data_export.core.exit_codes import EXIT_FAILED, EXIT_NOT_RUNNING, EXIT_OK, EXIT_USAGE
from crypto_data_export.core.text import MAX_LINE, printable
from crypto_data_export.report.console import fail
from crypto_data_export.service.daemon import INSTALL_DIR, DataExportService, Outcome, write_systemd_unit
from crypto_data_export.service.systemd_unit import UNIT_NAME
from crypto_data_export.service.users import (
    DEFAULT_SERVICE_USER,
    check_service_user,
    current_user,
    default_service_user,
    unreachable,
    user_exists,
)
from crypto_data_export.settings.settings import Settings, SettingsError, load_settings, read_environment

__all__ = ["DataExportService", "main", "parse_args"]

EPILOG = """examples:
  python data_export_service.py start                 run the scheduler in the background
  python data_export_service.py status                exit 0 running, 3 not running
  python data_export_service.py stop --timeout 60     SIGTERM, then SIGKILL after 60 s
  python data_export_service.py create-systemd-service --user crypto-export

files: EXPORT_DIR/data_export_service.pid, EXPORT_DIR/logs/data_export_service.log
exit codes: 0 ok, 1 failure, 2 usage/config error, 3 (status) not running, 4 (status) unknown,
130 start or restart interrupted by Ctrl-C or SIGTERM (the scheduler it launched is stopped again)"""


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 86400:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds from 0 to 86400")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = script_parser("data_export_service.py", "Run the scheduled data manager as a background service.", EPILOG)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    wait, timeout = argparse.ArgumentParser(add_help=False), argparse.ArgumentParser(add_help=False)
    wait.add_argument("--wait", type=_seconds, default=1.0, help="seconds the scheduler must stay up (default 1)")
    timeout.add_argument("--timeout", type=_seconds, default=30.0, help="seconds from SIGTERM to SIGKILL (default 30)")
    commands.add_parser("start", parents=[wait], help="launch the scheduler detached")
    commands.add_parser("stop", parents=[timeout], help="stop the scheduler cleanly")
    commands.add_parser("status", help="running or not, uptime, last status report")
    commands.add_parser("restart", parents=[timeout, wait], help="stop, then start")
    unit = commands.add_parser("create-systemd-service", help=f"write a hardened {UNIT_NAME}")
    unit.add_argument(
        "--user",
        help="the unprivileged user to run as (default: $SUDO_USER, "
        f"the current user, or {DEFAULT_SERVICE_USER} when run as root)",
    )
    unit.add_argument("--output", type=Path, default=Path(UNIT_NAME), help=f"where to write it (default ./{UNIT_NAME})")
    return parser.parse_args(argv)


def _report(outcome: Outcome) -> int:
    """Each line printed as one line: a path or a value from outside cannot move the cursor."""
    for line in outcome.lines:
        print(printable(line, MAX_LINE))
    for line in outcome.errors:
        print(printable(line, MAX_LINE), file=sys.stderr)
    return outcome.exit_code


def _create_unit(args: argparse.Namespace, settings: Settings) -> int:
    user = args.user or default_service_user(os.environ, os.geteuid(), current_user())
    if problem := check_service_user(user):
        return fail(problem, EXIT_USAGE)
    export_dir = Path(os.path.abspath(settings.export_dir))
    unit_name = UNIT_NAME if args.output.is_dir() else args.output.name
    if not unit_name.endswith(".service") or unit_name == ".service":
        return fail(f"--output {args.output}: systemd needs a unit name ending in .service ({UNIT_NAME})", EXIT_USAGE)
    try:
        path = write_systemd_unit(args.output, export_dir, user)
    except (ValueError, ExportError, OSError) as exc:
        return fail(f"cannot write the unit: {exc}")
    print(f"wrote {path.absolute()} (runs as {user}, writes only {export_dir})")
    if not user_exists(user):
        print(
            f"note: user {user} does not exist yet: sudo useradd --system --no-create-home "
            f"--shell /usr/sbin/nologin {user}"
        )
    print(f"note: {user} must own the export folder: sudo install -d -o {user} -m 0750 {shlex.quote(str(export_dir))}")
    for needed in (Path(sys.executable).absolute(), INSTALL_DIR):  # the unit's interpreter and its folder
        if (problem := unreachable(user, needed)) is not None:
            print(
                f"warning: {problem}; install the project and its virtualenv where it can, e.g. /opt", file=sys.stderr
            )
    print("install and enable it:")
    print(f"  sudo cp {shlex.quote(str(path.absolute()))} /etc/systemd/system/{shlex.quote(path.name)}")
    print("  sudo systemctl daemon-reload")
    print(f"  sudo systemctl enable --now {shlex.quote(path.name)}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        environment = read_environment()
        settings = load_settings(environment, env_file=None)
    except SettingsError as exc:
        return fail(exc, EXIT_USAGE)
    if args.command == "create-systemd-service":
        return _create_unit(args, settings)
    service = DataExportService(settings.export_dir, environment)
    try:
        if args.command == "start":
            return _report(service.start(args.wait))
        if args.command == "stop":
            return _report(service.stop(args.timeout))
        if args.command == "restart":
            return _report(service.restart(args.timeout, args.wait))
        return _report(service.status())
    except ExportError as exc:
        return fail(exc, EXIT_NOT_RUNNING if args.command == "status" else EXIT_FAILED)


run = console_command(main)
