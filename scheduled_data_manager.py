"""The scheduled data manager: one cycle every ``EXPORT_PERIOD_HOURS``, and its CLI.

A cycle is: take the run lock -> export every symbol (incremental, closed
candles, concurrent) -> cleanup with retention, validation and quarantine
-> duplicate scan -> state and status report, all written atomically.
A failing symbol is logged and recorded and the others go on.

    python scheduled_data_manager.py              # the loop: a cycle now, then every period
    python scheduled_data_manager.py --manual     # one cycle (cron runs this)
    python scheduled_data_manager.py --status     # what is there, how old, what is missing

Exit codes: 0 ok, 1 a symbol or step failed, 2 usage or configuration
error, 75 another run holds the lock (cron overlapping the service).
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import schedule

from config.settings import Settings, SettingsError, load_settings
from config.symbols_config import SymbolError, parse_symbol_list, unique_in_order
from errors import ExportError, RunLockedError
from exchange_client import ExchangeClient
from export_historical_data import build_client
from export_job import ExportJob, ExportReport, SymbolOutcome
from file_manager import CleanupResult, DuplicateReport, FileManager, FolderScan
from process_info import is_manager_process
from run_lock import RunLock
from run_state import RunState, load_state, to_iso, update_state, utc_now
from status_report import build_status_report, write_status_report

logger = logging.getLogger("scheduled_data_manager")

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_LOCKED = 0, 1, 2, 75


@dataclass
class CycleReport:
    """Everything one run did, for the CLI summary and the tests."""

    export: ExportReport | None = None
    cleanup: CleanupResult | None = None
    duplicates: DuplicateReport | None = None
    status: dict[str, Any] = field(default_factory=dict)
    skipped_reason: str | None = None
    dry_run: bool = False

    @property
    def exit_code(self) -> int:
        if self.export is not None and not self.export.ok and not self.export.stopped:
            return EXIT_FAILED
        if self.export is not None and self.export.banned_until is not None:
            return EXIT_FAILED
        if self.skipped_reason is not None:
            return EXIT_FAILED
        if self.cleanup is not None and self.cleanup.errors:
            return EXIT_FAILED  # e.g. a corrupt file that could not be quarantined is still there
        return EXIT_OK


class ScheduledDataManager:
    """Export, clean and report on a schedule; the guide's attribute names are kept."""

    def __init__(
        self,
        settings: Settings,
        *,
        symbols: Sequence[str] | None = None,
        stop_event: threading.Event | None = None,
        client: ExchangeClient | None = None,
        on_symbol_done: Callable[[SymbolOutcome], None] | None = None,
    ) -> None:
        self.settings = settings
        self.on_symbol_done = on_symbol_done
        self.export_period_hours = settings.export_period_hours
        self.max_files_per_symbol = settings.max_files_per_symbol
        self.data_retention_days = settings.data_retention_days
        self.export_dir = settings.export_dir
        self.symbols = tuple(symbols) if symbols else settings.symbols
        # Protection in cleanup covers every configured symbol, not only this run's.
        protected = unique_in_order([*settings.symbols, *self.symbols])
        self.files = FileManager(settings.export_dir, settings.kline_interval, protected,
                                 settings.max_files_per_symbol, settings.data_retention_days, logger=logging.getLogger("file_manager"))
        self.stop_event = stop_event or threading.Event()
        self._client = client
        self._job: ExportJob | None = None

    # -- pieces ----------------------------------------------------------------
    @property
    def job(self) -> ExportJob:
        """Built on first use so that --status and --cleanup-only never touch the network."""
        if self._job is None:
            self._client = self._client or build_client(self.settings)
            self._job = ExportJob(self.settings, self.files, self._client, stop_event=self.stop_event,
                                  on_symbol_done=self.on_symbol_done)
        return self._job

    def service_status(self, state: RunState) -> str:
        if state.service_pid == os.getpid() and not self.stop_event.is_set():
            return "running"
        if state.service_pid and is_manager_process(state.service_pid):
            return "running"
        return "stopped"

    # -- a cycle ---------------------------------------------------------------
    def run_cycle(self, *, export: bool = True, cleanup: bool = True, dry_run: bool = False) -> CycleReport:
        """One cycle under the run lock (RunLockedError if another run holds it)."""
        if dry_run:
            return self._run_steps(export, cleanup, dry_run=True)
        self.files.ensure_folder()
        with RunLock(self.export_dir):
            return self._run_steps(export, cleanup, dry_run=False)

    def _run_steps(self, export: bool, cleanup: bool, dry_run: bool) -> CycleReport:
        report = CycleReport(dry_run=dry_run)
        started = utc_now()
        state = load_state(self.export_dir)
        if export:
            self._export_step(report, state, dry_run)
        if cleanup and not self.stop_event.is_set():
            report.cleanup = self.files.cleanup(dry_run=dry_run)
        # One pass over the folder serves the duplicate report, the validations
        # and the statistics of the status report: the cleanup's own scan minus
        # what it removed or quarantined, or (no cleanup) one scan now.
        scan = None if report.cleanup is None else report.cleanup.remaining
        if scan is None:
            scan = self.files.scan()
        if report.cleanup is not None:
            report.duplicates = self.files.find_duplicates(scan_result=scan)
        if not dry_run:
            state = update_state(self.export_dir, lambda s: self._record(s, report, started, export, cleanup))
        report.status = self.write_status(state, write=not dry_run, scan=scan)
        return report

    def _export_step(self, report: CycleReport, state: RunState, dry_run: bool) -> None:
        ban = state.ban_end()
        if ban is not None:
            report.skipped_reason = f"export skipped: the exchange banned this IP until {to_iso(ban)}"
            logger.warning(report.skipped_reason)
            return
        report.export = self.job.run(self.symbols, dry_run=dry_run)
        ok, failed = len(report.export.succeeded), len(report.export.failed)
        logger.info("export: %d ok, %d failed in %.1f s", ok, failed, report.export.seconds)

    def _record(self, state: RunState, report: CycleReport, started: datetime, export: bool, cleanup: bool) -> None:
        now = utc_now()
        if report.cleanup is not None:
            state.cleanup_count += 1
        if not export:
            return
        state.last_cycle_start, state.last_cycle_end = to_iso(started), to_iso(now)
        exp = report.export
        if exp is None:
            state.last_cycle_result = "skipped: banned"
            return
        if exp.server_time_ms is not None:
            state.last_exchange_contact = to_iso(now)
        if exp.banned_until is not None:
            state.banned_until = to_iso(exp.banned_until)
        for outcome in exp.outcomes.values():
            self._record_symbol(state, outcome, now)
        state.last_cycle_failed_symbols = [o.symbol for o in exp.failed if o.error_kind != "stopped"]
        if exp.succeeded:
            state.export_count += 1
            state.last_successful_cycle = to_iso(now)
        state.last_cycle_result = "stopped" if exp.stopped else ("ok" if exp.ok else "partial" if exp.succeeded else "failed")

    @staticmethod
    def _record_symbol(state: RunState, outcome: SymbolOutcome, now: datetime) -> None:
        if outcome.error_kind == "stopped":
            return
        entry = state.symbol(outcome.symbol)
        if outcome.ok:
            entry.last_success, entry.last_file = to_iso(now), outcome.path
            entry.last_error = entry.last_error_at = entry.last_error_kind = None
        else:
            entry.last_error, entry.last_error_at, entry.last_error_kind = outcome.error, to_iso(now), outcome.error_kind

    # -- status ----------------------------------------------------------------
    def write_status(self, state: RunState | None = None, *, write: bool = True,
                     scan: FolderScan | None = None) -> dict[str, Any]:
        """Build the status report from the files as they are now; write it atomically."""
        state = state or load_state(self.export_dir)
        scan = scan or self.files.scan()
        validations = self.files.validate_all(dry_run=True, scan_result=scan)
        report = build_status_report(self.settings, state, validations, self.files.file_statistics(scan_result=scan),
                                     self.service_status(state))
        if write and self.export_dir.is_dir():
            write_status_report(self.export_dir, report)
        return report

    # -- the loop --------------------------------------------------------------
    def run_forever(self) -> int:
        """A cycle now, then every period, until SIGTERM/SIGINT sets the stop flag."""
        self.files.ensure_folder()
        update_state(self.export_dir, self._mark_running)
        scheduler = schedule.Scheduler()
        scheduler.every(self.export_period_hours * 3600).seconds.do(self._scheduled_cycle)
        logger.info("scheduler started (pid %d): a cycle every %g h", os.getpid(), self.export_period_hours)
        self._scheduled_cycle()
        while not self.stop_event.is_set():
            idle = scheduler.idle_seconds
            if idle is None:
                break
            if idle > 0 and self.stop_event.wait(idle):  # sleeps without spinning: ~0 % CPU
                break
            scheduler.run_pending()
        update_state(self.export_dir, self._mark_stopped)
        self.write_status()
        logger.info("scheduler stopped cleanly")
        return EXIT_OK

    def _scheduled_cycle(self) -> None:
        """The scheduled job: a failure is logged and the loop lives on."""
        try:
            report = self.run_cycle()
            cleanup = report.cleanup.summary() if report.cleanup is not None else "not run"
            logger.info("cycle finished with exit code %d; cleanup: %s", report.exit_code, cleanup)
        except RunLockedError as exc:
            logger.warning("cycle skipped: %s", exc)
        except Exception:  # the loop must survive anything a cycle raises
            logger.exception("cycle failed")

    @staticmethod
    def _mark_running(state: RunState) -> None:
        state.service_pid, state.service_status, state.service_started = os.getpid(), "running", to_iso(utc_now())

    @staticmethod
    def _mark_stopped(state: RunState) -> None:
        if state.service_pid == os.getpid():
            state.service_pid = None
        state.service_status = "stopped"


# -- CLI -----------------------------------------------------------------------
EPILOG = """examples:
  python scheduled_data_manager.py                      run the scheduler (a cycle now, then every 2 h)
  python scheduled_data_manager.py --manual             one cycle: export + cleanup + status (cron)
  python scheduled_data_manager.py --export-only --symbols BTCUSDT,ETHUSDT
  python scheduled_data_manager.py --cleanup-only --dry-run   show what cleanup would remove
  python scheduled_data_manager.py --status --json      the status report as JSON
  python scheduled_data_manager.py --health             exit 0 healthy, 1 degraded, 2 down

exit codes: 0 ok, 1 a symbol or step failed, 2 usage/config error, 75 another run holds the lock
settings come from the environment or .env (see .env.example)"""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scheduled_data_manager.py",
        description="Scheduled export of closed crypto candles (klines) to one CSV per symbol.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--manual", action="store_true", help="run one cycle (export + cleanup) and exit")
    mode.add_argument("--export-only", action="store_true", help="run the export step only")
    mode.add_argument("--cleanup-only", action="store_true", help="run cleanup, validation and the duplicate report only")
    mode.add_argument("--status", action="store_true", help="print the status (and write status_report.json)")
    mode.add_argument("--health", action="store_true", help="print the health checks; exit 0 healthy, 1 degraded, 2 down")
    parser.add_argument("--json", action="store_true", help="with --status or --health: print JSON")
    parser.add_argument("--symbols", help="comma list of symbols for this run only, e.g. BTCUSDT,ETHUSDT")
    parser.add_argument("--dry-run", action="store_true", help="with --manual, --export-only or --cleanup-only: change nothing, show what would happen")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every step on the console")
    args = parser.parse_args(argv)
    if args.dry_run and not (args.manual or args.export_only or args.cleanup_only):
        parser.error("--dry-run goes with --manual, --export-only or --cleanup-only")
    if args.json and not (args.status or args.health):
        parser.error("--json goes with --status or --health")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    from cli_output import print_cycle, print_health, print_status, progress_bar
    from logging_setup import QUIET, configure_logging

    args = parse_args(argv)
    try:
        settings = load_settings()
        symbols = parse_symbol_list(args.symbols) if args.symbols is not None else None
        if symbols is not None and not symbols:
            raise SymbolError("--symbols is empty: give a comma list such as BTCUSDT,ETHUSDT")
    except (SettingsError, SymbolError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    read_only = args.status or args.health or args.dry_run
    one_shot = args.manual or args.export_only or args.cleanup_only or read_only
    console_level = logging.DEBUG if args.verbose else (QUIET if one_shot else logging.INFO)
    try:
        configure_logging(None if read_only else settings.export_dir, settings.log_level, console_level=console_level)
    except OSError as exc:
        print(f"error: cannot write the logs in {settings.export_dir / 'logs'}: {exc.strerror or exc}; "
              "check EXPORT_DIR and its permissions", file=sys.stderr)
        return EXIT_FAILED
    stop_event = threading.Event()
    bar = progress_bar(len(symbols or settings.symbols), enabled=(args.manual or args.export_only) and not args.verbose)
    manager = ScheduledDataManager(settings, symbols=symbols, stop_event=stop_event,
                                   on_symbol_done=(lambda _outcome: bar.update(1)) if bar is not None else None)
    try:
        if args.health:
            report = manager.write_status(write=False)
            return print_health(report, as_json=args.json)
        if args.status:
            print_status(manager.write_status(), as_json=args.json)
            return EXIT_OK
        _install_stop_handlers(stop_event)
        if args.manual or args.export_only or args.cleanup_only:
            try:
                cycle = manager.run_cycle(export=not args.cleanup_only, cleanup=not args.export_only,
                                          dry_run=args.dry_run)
            finally:
                if bar is not None:
                    bar.close()
            print_cycle(cycle)
            return cycle.exit_code
        return manager.run_forever()
    except RunLockedError as exc:
        print(f"busy: {exc}", file=sys.stderr)
        return EXIT_LOCKED
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED


def _install_stop_handlers(stop_event: threading.Event) -> None:
    """SIGTERM/SIGINT finish the current symbol, keep files whole, then exit 0."""

    def request_stop(signum: int, _frame: object) -> None:
        logger.info("received %s: finishing the current work, then stopping", signal.Signals(signum).name)
        stop_event.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)


if __name__ == "__main__":
    sys.exit(main())
