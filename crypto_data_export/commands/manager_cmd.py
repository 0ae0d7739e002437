"""``scheduled_data_manager.py``: the loop, one-shot cycles, status and health (see EPILOG).
The work is done by ``ScheduledDataManager`` (importable from here)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
from collections.abc import Sequence
from pathlib import Path

import crypto_data_export.report.console as console
from crypto_data_export.core.cli import console_command, script_parser
from crypto_data_export.core.exit_codes import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from crypto_data_export.report.logging_setup import QUIET, configure_logging
from crypto_data_export.scheduler.manager import ScheduledDataManager
from crypto_data_export.settings.settings import SettingsError, load_settings
from crypto_data_export.settings.symbols import SymbolError, parse_symbol_list
from crypto_data_export.store.layout import ExportFolder

__all__ = ["ScheduledDataManager", "main"]

logger = logging.getLogger(__name__)

EPILOG = """examples:
  python scheduled_data_manager.py                      run the scheduler (a cycle now, then every 2 h)
  python scheduled_data_manager.py --manual             one cycle: export + cleanup + status (cron)
  python scheduled_data_manager.py --export-only --symbols BTCUSDT,ETHUSDT
  python scheduled_data_manager.py --cleanup-only --dry-run   show what cleanup would remove
  python scheduled_data_manager.py --status --json      the status report as JSON
  python scheduled_data_manager.py --health             exit 0 healthy, 1 degraded, 2 down
  python scheduled_data_manager.py --status --verify    validate every file now, not the last cycle's verdicts
  python scheduled_data_manager.py --list-symbols       which symbols, selected by which rule

exit codes: 0 ok, 1 a symbol or step failed, 2 usage/config error, 75 another run holds the lock,
130 stopped by Ctrl-C or SIGTERM before the end (files written are whole; the loop exits 0)
settings come from the environment or .env (see .env.example)"""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = script_parser(
        "scheduled_data_manager.py", "Scheduled export of closed crypto candles (klines) to one CSV per symbol.", EPILOG
    )
    mode = parser.add_mutually_exclusive_group()
    modes = {
        "--manual": "run one cycle (export + cleanup) and exit",
        "--export-only": "run the export step only",
        "--cleanup-only": "run cleanup, validation and the duplicate report only",
        "--status": "print the status (and write status_report.json)",
        "--health": "print the health checks; exit 0 healthy, 1 degraded, 2 down",
        "--list-symbols": "print the symbols a cycle would export now and the rule that selected each "
        "(with EXPORT_QUOTE_ASSET this asks the exchange)",
    }
    for flag, text in modes.items():
        mode.add_argument(flag, action="store_true", help=text)
    parser.add_argument("--json", action="store_true", help="with --status or --health: print JSON")
    parser.add_argument(
        "--verify",
        action="store_true",
        help="with --status or --health: validate every export file now "
        "(by default they show the verdicts of the last cycle and one listing of the folder)",
    )
    parser.add_argument(
        "--html", metavar="PATH", help="with --status: also write the status page to PATH (e.g. /tmp/status.html)"
    )
    parser.add_argument("--symbols", help="comma list of symbols for this run only, e.g. BTCUSDT,ETHUSDT")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="with --manual, --export-only or --cleanup-only: change nothing, show what would happen",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log every step on the console")
    args = parser.parse_args(argv)
    if args.dry_run and not (args.manual or args.export_only or args.cleanup_only):
        parser.error("--dry-run goes with --manual, --export-only or --cleanup-only")
    for flag in ("json", "verify"):
        if getattr(args, flag) and not (args.status or args.health):
            parser.error(f"--{flag} goes with --status or --health")
    if args.html is not None and not args.status:
        parser.error("--html goes with --status")
    if args.html is not None and not args.html.strip():
        parser.error("--html needs a file path, e.g. --html /tmp/status.html")
    if args.symbols is not None and (args.status or args.health or args.cleanup_only):
        parser.error(
            "--symbols does not go with --status, --health or --cleanup-only (they cover every configured symbol)"
        )
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = load_settings()
        symbols = parse_symbol_list(args.symbols) if args.symbols is not None else None
        if symbols is not None and not symbols:
            raise SymbolError("--symbols is empty: give a comma list such as BTCUSDT,ETHUSDT")
    except (SettingsError, SymbolError) as exc:
        return console.fail(exc, EXIT_USAGE)
    read_only = args.status or args.health or args.dry_run or args.list_symbols
    one_shot = args.manual or args.export_only or args.cleanup_only or read_only
    console_level = logging.DEBUG if args.verbose else (QUIET if one_shot else logging.INFO)
    try:
        configure_logging(None if read_only else settings.export_dir, settings.log_level, console_level=console_level)
    except OSError as exc:
        logs, why = ExportFolder(settings.export_dir).logs, exc.strerror or exc
        return console.fail(f"cannot write the logs in {logs}: {why}; check EXPORT_DIR and its permissions")
    progress = console.SymbolProgress(
        len(symbols or settings.symbols) * len(settings.kline_intervals),
        enabled=(args.manual or args.export_only) and not args.verbose,
    )
    manager = ScheduledDataManager(settings, symbols=symbols, on_symbol_done=progress.advance)
    code = console.exit_code_of(lambda: _run(manager, args, progress))
    if one_shot:  # the loop logs them on its console already
        console.print_notices(manager.notices)
    return code


def _run(manager: ScheduledDataManager, args: argparse.Namespace, progress: console.SymbolProgress) -> int:
    _ = manager.dataset  # a dataset in a bucket is checked once, before anything runs (StoreSetupError: exit 2)
    if args.health:
        return console.print_health(manager.write_status(write=False, verify=args.verify), as_json=args.json)
    if args.status:
        writable = os.access(manager.export_dir, os.W_OK)  # saved for the page and metrics; a read-only folder is read
        report = manager.write_status(write=writable, verify=args.verify, page=args.verify)  # the page reads files
        if args.html is not None:
            page = Path(args.html).expanduser()
            manager.publish_page(report, page)
            if not args.json:
                print(f"status page: {page}")
        console.print_status(report, as_json=args.json)
        return EXIT_OK
    if args.list_symbols:
        plan = manager.current_selection()
        code = console.print_selection(plan.selected_by, plan.problem)
        return EXIT_USAGE if plan.refused else code

    def request_stop(signum: int, _frame: object) -> None:
        """SIGTERM/SIGINT finish the current symbol and keep files whole; the loop then exits 0, a one-shot run 130."""
        logger.info("received %s: finishing the current work, then stopping", signal.Signals(signum).name)
        manager.stop_event.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    if not (args.manual or args.export_only or args.cleanup_only):
        return manager.run_forever()
    try:
        cycle = manager.run_cycle(export=not args.cleanup_only, cleanup=not args.export_only, dry_run=args.dry_run)
    finally:
        progress.close()
    console.print_cycle(cycle)
    return EXIT_INTERRUPTED if manager.stop_event.is_set() else cycle.exit_code


run = console_command(main)

if __name__ == "__main__":
    run()
