"""One export pass over many symbols: fetch on a bounded pool, write atomically.

Every symbol is independent: one that fails (unknown, delisted, the
exchange failing for it) is recorded with its reason and the others go on.
Only a 418 ban stops the pass, because every further request would extend
the ban. The pool is small and shares one rate limiter (see
``exchange.limiter``), so latency is hidden without exceeding the budget.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd

from common.clock import ms_to_iso, utc_now
from common.errors import ExchangeError, ExportError, IPBannedError, NoDataError, StorageError, UnknownSymbolError
from config.settings import Settings
from cycle.run_lock import RunLock
from exchange.client import ExchangeClient
from exchange.history import HistoricalDataExporter, SymbolExport
from store.file_manager import FileManager
from store.layout import export_file_name

logger = logging.getLogger("export_historical_data")


@dataclass
class SymbolOutcome:
    """What happened to one symbol in one pass."""

    symbol: str
    ok: bool
    path: str | None = None
    rows: int = 0
    reused_rows: int = 0
    fetched_rows: int = 0
    calls: int = 0
    error: str | None = None
    error_kind: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ExportReport:
    """The pass as a whole: per-symbol outcomes, a ban if one happened, a stop."""

    outcomes: dict[str, SymbolOutcome] = field(default_factory=dict)
    banned_until: datetime | None = None
    stopped: bool = False
    server_time_ms: int | None = None
    seconds: float = 0.0

    @property
    def failed(self) -> list[SymbolOutcome]:
        return [o for o in self.outcomes.values() if not o.ok]

    @property
    def succeeded(self) -> list[SymbolOutcome]:
        return [o for o in self.outcomes.values() if o.ok]

    @property
    def ok(self) -> bool:
        return not self.failed and self.banned_until is None


def error_kind(exc: BaseException) -> str:
    """A stable short name for the status report."""
    for kind, cls in (
        ("banned", IPBannedError),
        ("unknown_symbol", UnknownSymbolError),
        ("no_data", NoDataError),
        ("storage", StorageError),
        ("exchange", ExchangeError),
    ):
        if isinstance(exc, cls):
            return kind
    return "internal"


class ExportJob:
    """Export a list of symbols into the folder of a FileManager."""

    def __init__(
        self,
        settings: Settings,
        file_manager: FileManager,
        client: ExchangeClient | None = None,
        *,
        stop_event: threading.Event | None = None,
        on_symbol_done: Callable[[SymbolOutcome], None] | None = None,
    ) -> None:
        self.settings = settings
        self.files = file_manager
        self.client = client or ExchangeClient.from_settings(settings)
        self.exporter = HistoricalDataExporter(self.client, settings.kline_interval, settings.lookback_days)
        self.stop_event = stop_event or threading.Event()
        self.on_symbol_done = on_symbol_done
        self._limits_loaded = False

    def run(self, symbols: Sequence[str], *, dry_run: bool = False, lookback_days: float | None = None) -> ExportReport:
        report = ExportReport()
        started = time.monotonic()
        try:
            report.server_time_ms = self._prepare(symbols)
        except IPBannedError as exc:
            report.banned_until = exc.banned_until
            self._fail_all(report, symbols, exc)
            return report
        except ExchangeError as exc:
            logger.error("exchange not usable: %s", exc)
            self._fail_all(report, symbols, exc)
            return report
        self._run_pool(report, symbols, dry_run, lookback_days)
        report.stopped = self.stop_event.is_set()
        report.seconds = time.monotonic() - started
        return report

    def _prepare(self, symbols: Sequence[str]) -> int:
        """Server time (for closed candles and our minute windows) and the weight budget."""
        server_ms = self.client.sync_clock()
        if not self._limits_loaded:
            limit = self.client.load_rate_limits(symbols[0] if symbols else None)
            logger.info("exchange %s: weight budget %d per minute", self.client.base_url, limit)
            self._limits_loaded = True
        return server_ms

    def _run_pool(self, report: ExportReport, symbols: Sequence[str], dry_run: bool, lookback: float | None) -> None:
        workers = max(1, min(self.settings.workers, len(symbols)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="export") as pool:
            futures = {pool.submit(self._export_one, s, report.server_time_ms, dry_run, lookback): s for s in symbols}
            for future in as_completed(futures):
                outcome = future.result()
                report.outcomes[outcome.symbol] = outcome
                if outcome.error_kind == "banned" and report.banned_until is None:
                    report.banned_until = self.client.limiter.banned_until
                if self.on_symbol_done is not None:
                    self.on_symbol_done(outcome)
        report.outcomes = {s: report.outcomes[s] for s in symbols if s in report.outcomes}

    def _export_one(self, symbol: str, server_ms: int | None, dry_run: bool, lookback: float | None) -> SymbolOutcome:
        started = time.monotonic()
        if self.stop_event.is_set():
            return SymbolOutcome(symbol, False, error="not started: stop requested", error_kind="stopped")
        try:
            outcome = self._fetch_and_write(symbol, server_ms, dry_run, lookback)
        except ExportError as exc:
            outcome = SymbolOutcome(symbol, False, error=str(exc), error_kind=error_kind(exc))
            log = logger.warning if isinstance(exc, (NoDataError, UnknownSymbolError)) else logger.error
            log("%s: export failed: %s", symbol, exc)
        except Exception as exc:  # the per-symbol boundary: one bug must not stop the other symbols
            logger.exception("%s: unexpected error during export", symbol)
            outcome = SymbolOutcome(symbol, False, error=f"internal error: {exc!r}", error_kind="internal")
        outcome.seconds = round(time.monotonic() - started, 3)
        return outcome

    def _fetch_and_write(
        self, symbol: str, server_ms: int | None, dry_run: bool, lookback: float | None
    ) -> SymbolOutcome:
        previous = self.files.newest_valid_export(symbol, quarantine=not dry_run)
        export = self.exporter.plan(
            symbol, previous[1] if previous else None, server_time_ms=server_ms, lookback_days=lookback
        )
        if dry_run:
            name = export_file_name(symbol, self.settings.kline_interval, utc_now(), self.files.file_format)
            logger.info(
                "%s: dry run: would reuse %d candles, fetch from %s and write %s",
                symbol,
                export.reused_rows,
                ms_to_iso(export.requested_from_ms),
                name,
            )
            return SymbolOutcome(symbol, True, path=name, reused_rows=export.reused_rows)
        path, rows = self.files.write_export(symbol, self._candle_chunks(export))
        # The fresh file was just written from the validated previous file and
        # the exchange's closed candles: retention need not read it back.
        self.files.prune_symbol(symbol, known_valid=[path])
        logger.info(
            "%s: wrote %s (%d rows: %d reused, %d fetched, %d calls)",
            symbol,
            path.name,
            rows,
            export.reused_rows,
            export.fetched_rows,
            export.calls,
        )
        return SymbolOutcome(
            symbol,
            True,
            path=str(path),
            rows=rows,
            reused_rows=export.reused_rows,
            fetched_rows=export.fetched_rows,
            calls=export.calls,
        )

    def _candle_chunks(self, export: SymbolExport) -> Iterable[pd.DataFrame]:
        """Where a symbol's candles come from (a backfill may take them from the bulk archive)."""
        return self.exporter.iter_chunks(export)

    def _fail_all(self, report: ExportReport, symbols: Sequence[str], exc: ExportError) -> None:
        for symbol in symbols:
            report.outcomes[symbol] = SymbolOutcome(symbol, False, error=str(exc), error_kind=error_kind(exc))


def backfill(
    settings: Settings,
    *,
    on_symbol_done: Callable[[SymbolOutcome], None] | None = None,
    stop_event: threading.Event | None = None,
    make_job: Callable[..., ExportJob] = ExportJob,
) -> ExportReport:
    """The standalone backfill: the same pass over a long window, under the run lock.

    ``make_job`` builds the job (``ExportJob``'s signature); the archive backfill
    passes one whose candles come from the bulk archive where it can."""
    files = FileManager.from_settings(settings)
    files.ensure_folder()
    with RunLock(settings.export_dir), ExchangeClient.from_settings(settings) as client:
        job = make_job(settings, files, client, stop_event=stop_event, on_symbol_done=on_symbol_done)
        report = job.run(settings.symbols)
        _check_written_files(files, report)
        return report


def _check_written_files(files: FileManager, report: ExportReport) -> None:
    """A backfill has no cleanup pass after it: validate what it wrote (streamed) right away.

    A file that fails is quarantined, as a cycle's cleanup would do, and its
    symbol reported as failed, so a bad answer never sits in the folder as data.
    """
    for outcome in report.succeeded:
        path = Path(outcome.path or "")
        validation = files.validate_file(path)
        if not validation.valid:
            files.quarantine(path, validation.reason or "invalid")
            outcome.ok, outcome.error_kind = False, "invalid_data"
            outcome.error = f"the exchange's data failed validation ({validation.reason}); file quarantined"
