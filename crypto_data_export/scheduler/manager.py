"""The scheduled data manager: one cycle now, then every ``EXPORT_PERIOD_HOURS``.

A cycle, under the run lock: export every symbol -> cleanup (retention, validation, quarantine)
-> duplicate scan -> state and status report. A failing symbol is recorded and the others go on."""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import crypto_data_export.core.errors as errors
import crypto_data_export.pipeline.selection as selection
import crypto_data_export.report.status_report as status_report
from crypto_data_export.core.atomic_io import atomic_write_text
from crypto_data_export.core.clock import from_ms, iso_to_ms, to_iso, utc_now
from crypto_data_export.core.exit_codes import EXIT_OK
from crypto_data_export.core.intervals import DAY_MS
from crypto_data_export.core.processes import is_manager_process, serves_folder
from crypto_data_export.pipeline.run_summary import CycleReport, ExportReport, SymbolOutcome
from crypto_data_export.report.metrics import metrics_path, push_metrics, write_metrics
from crypto_data_export.report.status_page import disk_of, downsample, render_status_page, sparkline_files
from crypto_data_export.scheduler.loop import CycleLoop, local_wall
from crypto_data_export.settings.market_names import SPOT
from crypto_data_export.settings.settings import DEFAULT_EXPORT_DIR, Settings
from crypto_data_export.store.layout import ExportFolder
from crypto_data_export.store.listing import FolderScan, scan_exports
from crypto_data_export.store.run_lock import RunLock
from crypto_data_export.store.run_state import RunState, load_state, update_state
from crypto_data_export.store.validation import FileValidation

# The one lazy import point, as a benchmark shows it matters (python -m benchmarks.bench_startup): pyarrow,
# numpy and requests cost 0.45 s or more, which --status and --health, reading what the last cycle recorded,
# never need (0.15 s whole process instead of 0.6-1.2 s). They load with the first use of ``files`` or ``job``.
if TYPE_CHECKING:
    from crypto_data_export.exchange.client import ExchangeClient
    from crypto_data_export.pipeline.export_job import ExportJob
    from crypto_data_export.store.dataset import Dataset
    from crypto_data_export.store.files import FileManager

logger = logging.getLogger(__name__)
MAX_NOTICES = 20


class _GuideSetting:
    """The guide's customisation (``self.max_files_per_symbol = 3`` in ``__init__``): the attribute
    is the run's setting, so cleanup, the loop and the status report all use the value set."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, manager: Any, owner: type | None = None) -> Any:
        return getattr(manager.settings, self.name)

    def __set__(self, manager: Any, value: Any) -> None:
        manager.settings = dataclasses.replace(manager.settings, **{self.name: value})


class ScheduledDataManager:
    """Export, clean and report on a schedule; the guide's attribute names are kept."""

    export_period_hours = _GuideSetting()
    max_files_per_symbol = _GuideSetting()
    data_retention_days = _GuideSetting()

    def __init__(
        self,
        settings: Settings,
        *,
        symbols: Sequence[str] | None = None,
        stop_event: threading.Event | None = None,
        client: ExchangeClient | None = None,
        on_symbol_done: Callable[[SymbolOutcome], None] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = local_wall,
    ) -> None:
        self.settings = settings
        # The loop's clocks (CycleLoop): monotonic drives the waits, wall is watched for steps.
        self.monotonic, self.wall = monotonic, wall
        # Warnings about our own files (set aside, repaired) for the CLI to show once.
        self.notices: list[str] = []
        self.on_symbol_done = on_symbol_done
        # The guide's customisation points: set them here (before the first cycle) to override the settings.
        self.export_period_hours = settings.export_period_hours
        self.max_files_per_symbol = settings.max_files_per_symbol
        self.data_retention_days = settings.data_retention_days
        self.export_dir = settings.export_dir
        self.symbols = tuple(symbols) if symbols else settings.symbols
        # A --symbols list is this run's whole list: no universe is resolved for it.
        self.universe = None if symbols else selection.universe_rule(settings)
        self.stop_event = stop_event or threading.Event()
        self._client = client

    @cached_property
    def files(self) -> FileManager:
        """The folder's manager; protection in cleanup covers every configured symbol, not only
        this run's, and its scans stop on the event."""
        from crypto_data_export.store.files import FileManager

        return FileManager.from_settings(self.settings, protected_symbols=self.symbols, stop_event=self.stop_event)

    @cached_property
    def job(self) -> ExportJob:
        """Built on first use so that --status and --cleanup-only never touch the network."""
        from crypto_data_export.exchange.client import ExchangeClient
        from crypto_data_export.pipeline.export_job import ExportJob
        from crypto_data_export.store.dataset import DatasetSink

        client = self._client or ExchangeClient.from_settings(self.settings)
        sink = self.files if self.dataset is None else DatasetSink(self.dataset, self.settings.kline_interval)
        return ExportJob(self.settings, sink, client, stop_event=self.stop_event, on_symbol_done=self.on_symbol_done)

    @cached_property
    def dataset(self) -> Dataset | None:
        """The dataset the cycle appends to (EXPORT_LAYOUT=dataset), else None (and pyarrow not loaded)."""
        if self.settings.export_layout != "dataset":
            return None
        from crypto_data_export.store.dataset import Dataset

        return Dataset.from_settings(self.settings)

    def service_status(self, state: RunState) -> str:
        """``running`` only for a live scheduler loop of this folder (not a reused PID, not
        the loop of another folder whose state file was copied here)."""
        pid = state.service_pid
        if pid == os.getpid():
            return "stopped" if self.stop_event.is_set() else "running"
        if pid and is_manager_process(pid) and serves_folder(pid, self.export_dir, DEFAULT_EXPORT_DIR) is not False:
            return "running"
        return "stopped"

    def _note(self, state: RunState) -> RunState:
        # A loop runs for months: keep the latest only.
        self.notices[:] = list(dict.fromkeys([*self.notices, *state.notices]))[-MAX_NOTICES:]
        return state

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
        state = self._note(load_state(self.export_dir, quiet=not dry_run))
        # Until this cycle resolves the universe, the last resolved one stays protected
        # (an exchange outage must not cost a universe symbol its newest file).
        self.files.protect([*self.symbols, *selection.known_selection(self.settings, state)])
        if export:
            self._export_step(report, state, dry_run)
        # The files just written were judged byte for byte as they were written: not read back.
        # A dry run's cleanup judges the folder as the export would have left it (written, gone).
        written = report.export.written if report.export is not None else None
        gone = report.export.gone if report.export is not None and dry_run else set()
        if cleanup and not self.stop_event.is_set():
            report.cleanup = self.files.cleanup(dry_run=dry_run, known=written, gone=gone)
            if self.dataset is not None and self.settings.dataset_retention_days and not dry_run:
                cutoff = utc_now().timestamp() * 1000 - self.settings.dataset_retention_days * 86_400_000
                for path in self.dataset.remove_older_than(int(cutoff)):  # each logged with its reason
                    report.cleanup.removed.append(path)
                    report.cleanup.reasons[path] = "dataset period older than DATASET_RETENTION_DAYS"
        # One pass over the folder serves the duplicates, the validations and the statistics:
        # the cleanup's own scan minus what it removed or quarantined, or one scan now.
        scan = report.cleanup.remaining if report.cleanup is not None else None
        scan = scan or self.files.scan(known=None if dry_run else written)
        if report.cleanup is not None:
            report.duplicates = self.files.find_duplicates(scan_result=scan)
        if not dry_run:
            state = self._note(
                update_state(self.export_dir, lambda s: self._record(s, report, started, export, cleanup))
            )
        report.status = self.write_status(state, write=not dry_run, scan=scan)
        return report

    def _export_step(self, report: CycleReport, state: RunState, dry_run: bool) -> None:
        if (ban := state.ban_end()) is not None:
            report.skipped_reason = f"export skipped: the exchange banned this IP until {to_iso(ban)}"
            logger.warning(report.skipped_reason)
            return
        plan = self._symbol_plan(report)
        report.selected_by = plan.selected_by
        self.job.known_empty = {}
        for symbol, interval in self.job.series(plan.symbols):
            key = self.job.series_key(symbol, interval)
            entry = state.find_series(key, symbol, interval, self.settings.market)
            known = entry.known_empty() if entry is not None else None
            if known is not None:
                self.job.known_empty[key] = known
        if plan.symbols:
            report.export = self.job.run(plan.symbols, dry_run=dry_run)
        elif report.export is None:  # nothing to export: the universe error says why
            report.export = ExportReport(dry_run=dry_run)
        stopped = sum(o.error_kind == "stopped" for o in report.export.failed)  # asked for: not a failure
        ok, failed = len(report.export.succeeded), len(report.export.failed) - stopped
        logger.info("export: %d ok, %d failed, %d stopped in %.1f s", ok, failed, stopped, report.export.seconds)

    def _symbol_plan(self, report: CycleReport) -> selection.SymbolPlan:
        """This cycle's symbols: the universe resolved now (plus the listed ones), or the list. A universe
        that cannot be resolved, or selects nothing, fails the run; the listed symbols are still exported."""
        if self.universe is None:
            return selection.listed_plan(self.symbols)
        try:
            plan = selection.resolve_plan(self.settings, self.job.client, self.symbols)
        except errors.StopRequested:
            if not self.symbols:
                report.export = ExportReport(stopped=True)
            return selection.listed_plan(self.symbols)
        except errors.ExportError as exc:  # the exchange unreachable, banning us or answering garbage
            report.universe_error = selection.unresolved_message(self.universe, exc)
            if isinstance(exc, errors.IPBannedError):
                report.export = ExportReport(banned_until=exc.banned_until, exchange_error=str(exc))
            logger.error("%s", report.universe_error)
            return selection.listed_plan(self.symbols)
        if plan.exchange_info is not None:
            self.job.adopt_exchange_info(plan.exchange_info)
        if plan.problem is not None:
            report.universe_error, report.universe_refused = plan.problem, plan.refused
            logger.error("%s", plan.problem)
        elif (found := plan.universe) is not None:
            logger.info(
                "symbol universe %s: %d symbols (%d matching), %d calls, weight %d",
                *(self.universe.setting, len(found.symbols), found.matching, found.calls, found.weight),
            )
            # The new universe's newest files are protected; one that just left gets the normal rules.
            self.files.protect(plan.symbols)
        return plan

    def current_selection(self) -> selection.SymbolPlan:
        """The symbols a cycle would export now, each with its rule (asks the exchange for a universe)."""
        if self.universe is None:
            return selection.listed_plan(self.symbols)
        try:
            return selection.resolve_plan(self.settings, self.job.client, self.symbols)
        except errors.UniverseError:
            raise
        except errors.ExportError as exc:
            raise errors.UniverseError(selection.unresolved_message(self.universe, exc)) from exc

    def _record(self, state: RunState, report: CycleReport, started: datetime, export: bool, cleanup: bool) -> None:
        now = utc_now()
        if report.cleanup is not None:
            state.cleanup_count += 1
        if not export:
            return
        state.last_cycle_start, state.last_cycle_end = to_iso(started), to_iso(now)
        if self.universe is not None and report.universe_error is None and report.selected_by:
            state.universe = {s: r for s, r in report.selected_by.items() if r != selection.LISTED}
            state.universe_resolved_at = to_iso(now)
        exp, changed = report.export, report.files_changed
        state.last_cycle_counters = {
            "calls": exp.calls if exp else 0,
            "weight": exp.weight if exp else 0,
            "rate_limited": exp.rate_limited if exp else 0,
            "banned": exp.banned_answers if exp else 0,
            "files_removed": len(changed.removed) if changed else 0,
            "files_quarantined": len(changed.quarantined) if changed else 0,
            "duration_ms": max(0, round((now - started).total_seconds() * 1000)),  # the clock may step back
        }
        if exp is None:
            state.last_cycle_result = "skipped: banned"
            return
        if exp.server_time_ms is not None:
            state.last_exchange_contact = to_iso(now)
        if exp.banned_until is not None:
            state.banned_until = to_iso(exp.banned_until)
        for outcome in exp.outcomes.values():
            if outcome.error_kind != "stopped":
                self._record_symbol(state, outcome, now)
        state.last_cycle_failed_symbols = [o.key for o in exp.failed if o.error_kind != "stopped"]
        if exp.succeeded:
            state.export_count += 1
            state.last_successful_cycle = to_iso(now)
        state.last_cycle_result = report.result  # "ok" only if nothing failed and nothing was quarantined

    @staticmethod
    def _record_symbol(state: RunState, outcome: SymbolOutcome, now: datetime) -> None:
        entry = state.series(outcome.key, outcome.symbol, outcome.interval or "", outcome.market or SPOT)
        if not outcome.ok:
            entry.last_error, entry.last_error_kind = outcome.error, outcome.error_kind
            entry.last_error_at = to_iso(now)
            return
        entry.last_success, entry.last_file = to_iso(now), outcome.path
        entry.last_error = entry.last_error_at = entry.last_error_kind = None
        if outcome.empty_from_ms is not None and outcome.data_from_ms is not None:
            entry.empty_from = to_iso(from_ms(outcome.empty_from_ms), timespec="milliseconds")
            entry.data_from = to_iso(from_ms(outcome.data_from_ms), timespec="milliseconds")

    def write_status(
        self,
        state: RunState | None = None,
        *,
        write: bool = True,
        scan: FolderScan | None = None,
        verify: bool = False,
        page: bool = True,
    ) -> dict[str, Any]:
        """Build the status report; write it atomically (and status.html if ``page``). A cycle gives its
        own ``scan``; ``verify`` validates every file now; otherwise the verdicts are the last cycle's,
        against one listing of the folder. A missing export folder is no error here: health is ``down``."""
        state = state or self._note(load_state(self.export_dir))
        validations: list[FileValidation] = []
        statistics: dict[str, Any] = {}
        validated_at = None
        is_folder = status_report.export_folder_problem(self.export_dir) is None
        if is_folder and scan is None and not verify:
            files = scan_exports(self.export_dir)
            validations, validated_at = status_report.recorded_verdicts(self.export_dir, files)
            statistics = status_report.recorded_statistics(files, validations)
        elif is_folder:
            scan = scan or self.files.scan()
            validations = self.files.validate_all(dry_run=True, scan_result=scan)
            statistics = status_report.recorded_statistics(scan.files, validations)
        dataset = None
        if is_folder and self.dataset is not None:  # EXPORT_LAYOUT=dataset: its footers only
            from crypto_data_export.store.dataset_completeness import dataset_completeness

            dataset = dataset_completeness(self.dataset, ExportFolder(self.export_dir).dataset_footers, keep=write)
        service = self.service_status(state)
        report = status_report.build_status_report(
            self.settings, state, validations, statistics, service, validated_at=validated_at, dataset=dataset
        )
        if write and self.export_dir.is_dir():
            status_report.write_status_report(self.export_dir, report, self.notices)
            self.publish(report, page=page)
        return report

    def publish(self, report: dict[str, Any], *, page: bool = True) -> None:
        """status.html and the metrics file, views of the report: one that cannot be written
        is logged and the cycle goes on (the data and the report are already safe)."""
        try:
            if page:
                self.publish_page(report, ExportFolder(self.export_dir).status_page)
        except errors.StorageError as exc:
            logger.warning("%s", exc)
        target, problems = metrics_path(self.settings), []
        try:
            if target is not None:
                write_metrics(target, report, self.settings.kline_interval)
        except (errors.StorageError, OSError, ValueError) as exc:
            problems.append(f"metrics not written to {target}: {exc}")
        try:
            if self.settings.metrics_pushgateway:
                push_metrics(self.settings.metrics_pushgateway, report, self.settings.kline_interval)
        except OSError as exc:
            problems.append(f"cannot push the metrics: {exc}; check METRICS_PUSHGATEWAY")
        for problem in problems:  # logged; a one-shot run also prints its notices
            logger.warning("%s", problem)
        self._note(RunState(notices=problems))

    def publish_page(self, report: dict[str, Any], page: Path) -> None:
        """Write the status page to ``page`` atomically (StorageError if it cannot be)."""
        closes = {key: downsample(values) for key, values in self._sparkline_closes(report).items()}
        html = render_status_page(report, closes, interval=self.settings.kline_interval, disk=disk_of(page))
        atomic_write_text(page, html)

    def _sparkline_closes(self, report: dict[str, Any]) -> dict[str, list[float]]:
        """Per report key, the closes its sparkline shows: the newest file's, or in the dataset layout
        the look-back window's candles of the series' newest period."""
        if (dataset := self.dataset) is None:
            return self.files.closes_of(sparkline_files(report))
        from crypto_data_export.core.candles import SeriesId
        from crypto_data_export.store.dataset import recent_closes

        closes = {}
        for key, entry in report.get("symbols", {}).items():
            last = iso_to_ms(entry.get("last_candle"))
            if entry.get("valid") and last is not None:
                series = SeriesId(dataset.host, entry.get("market", dataset.market), entry["symbol"], entry["interval"])
                closes[key] = recent_closes(dataset, series, last, last - int(self.settings.lookback_days * DAY_MS))
        return closes

    def run_forever(self) -> int:
        """A cycle now, then on schedule's cadence (``CycleLoop``), until SIGTERM/SIGINT sets the stop flag."""
        self.files.ensure_folder()
        if self.dataset is not None:  # the loop lives across cycles: the next append takes the current periods
            self.dataset.keeps_current = True  # from memory (a one-shot run, a CronJob's pod, would not gain)
        self._note(update_state(self.export_dir, self._mark_running))
        at = f" at {self.settings.export_at}" if self.settings.export_at else ""
        logger.info(
            "scheduler started (pid %d): a cycle now, then every %g h%s", os.getpid(), self.export_period_hours, at
        )
        CycleLoop(
            self._scheduled_cycle,
            self.export_period_hours,
            self.settings.export_at,
            self.stop_event,
            monotonic=self.monotonic,
            wall=self.wall,
            on_planned=self._planned,
        ).run()
        update_state(self.export_dir, self._mark_stopped)
        self.write_status()
        logger.info("scheduler stopped cleanly")
        return EXIT_OK

    def _planned(self, next_run: datetime) -> None:
        """schedule's next run goes into state.json and the status report (the cycle just wrote the page)."""
        try:
            state = update_state(self.export_dir, lambda s: setattr(s, "next_run", to_iso(next_run)))
            self.write_status(self._note(state), page=False)
        except Exception:  # the loop must survive anything, as it does a cycle's failure
            logger.exception("cannot record the next run")

    def _scheduled_cycle(self) -> None:
        """The scheduled job: a failure is logged and the loop lives on."""
        try:
            report = self.run_cycle()
            changed = report.files_changed  # the prunes after each write count too
            cleanup = changed.summary() if changed is not None else "not run"
            logger.info("cycle finished with exit code %d; cleanup: %s", report.exit_code, cleanup)
        except errors.RunLockedError as exc:
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
        state.service_status, state.next_run = "stopped", None
