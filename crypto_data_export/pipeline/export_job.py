"""One export pass over many series (symbol x interval): fetch on a bounded pool, write atomically.

The series share one client and weight limiter (one budget). Each is independent: one that
fails is recorded with its reason, its previous file left as it was, and the others go on.
Only a 418 ban stops the pass: every further request would extend the ban.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

import pyarrow as pa

from crypto_data_export.core.clock import ms_to_iso
from crypto_data_export.core.errors import (
    ExchangeError,
    ExportError,
    InvalidDataError,
    IPBannedError,
    NoDataError,
    OlderDataError,
    StopRequested,
    StorageError,
    UnknownSymbolError,
)
from crypto_data_export.exchange.client import ExchangeClient
from crypto_data_export.exchange.history import CandleSource, HistoricalDataExporter, RestPages
from crypto_data_export.pipeline.run_summary import ExportReport, SymbolOutcome
from crypto_data_export.settings.settings import Settings
from crypto_data_export.store.cleanup_report import CleanupResult, merge_cleanups
from crypto_data_export.store.dataset import DatasetSink
from crypto_data_export.store.files import FileManager, require_forward
from crypto_data_export.store.layout import series_key
from crypto_data_export.store.scan import ScanStopped
from crypto_data_export.store.validation import FileValidation

logger = logging.getLogger(__name__)

_ERROR_KINDS: tuple[tuple[str, type[Exception] | tuple[type[Exception], ...]], ...] = (
    ("stopped", (StopRequested, ScanStopped)),
    ("older_data", OlderDataError),
    ("invalid_data", InvalidDataError),
    ("banned", IPBannedError),
    ("unknown_symbol", UnknownSymbolError),
    ("no_data", NoDataError),
    ("storage", StorageError),
    ("exchange", ExchangeError),
)


def error_kind(exc: BaseException) -> str:
    """A stable short name for the status report."""
    return next((kind for kind, cls in _ERROR_KINDS if isinstance(exc, cls)), "internal")


class ExportJob:
    """Export a list of symbols into a sink (the rolling files of a FileManager, or a DatasetSink), their
    missing candles from ``source``.
    ``window``: a backfill's open times [start, end) instead of the look-back; ``on_candles``: a progress bar;
    ``backfill``: a new file removes only the files whose every candle it holds (``FileManager.cleanup``);
    ``fill``: does each series instead of the file export (a dataset backfill), on the same pool and report."""

    def __init__(
        self,
        settings: Settings,
        file_manager: FileManager | DatasetSink,
        client: ExchangeClient | None = None,
        *,
        source: CandleSource | None = None,
        stop_event: threading.Event | None = None,
        on_symbol_done: Callable[[SymbolOutcome], None] | None = None,
        on_candles: Callable[[int], None] | None = None,
        window: tuple[int, int] | None = None,
        backfill: bool = False,
        fill: Callable[[HistoricalDataExporter, str, int], SymbolOutcome] | None = None,
    ) -> None:
        self.settings, self.files, self.backfill = settings, file_manager, backfill or window is not None
        self.client = client or ExchangeClient.from_settings(settings)
        # One exporter per interval, all on the one client (one weight budget).
        ahead_ms = int(settings.max_ahead_hours * 3_600_000)
        self.exporters = {
            i: HistoricalDataExporter(self.client, i, settings.lookback_days, max_ahead_of_local_ms=ahead_ms)
            for i in settings.kline_intervals
        }
        self.source: CandleSource = source or RestPages()
        self.stop_event = stop_event or threading.Event()
        # series key -> (from, to) open times with no candle, learnt by earlier runs (state.json)
        self.known_empty: dict[str, tuple[int, int]] = {}
        self.on_candles, self.on_symbol_done, self.window, self.fill = on_candles, on_symbol_done, window, fill
        # The client's waits (rate limit, 429 pause, retry backoff, pages) and reads end on the same stop.
        self.client.limiter.stop_event = self.client.stop_event = self.stop_event
        self._limits_loaded = False
        self.listed: set[object] = set()  # a dry run's: the symbols exchangeInfo lists (nothing else is asked)

    def series_key(self, symbol: str, interval: str) -> str:
        return series_key(symbol, interval, self.settings.market, single=self.settings.single_series)

    def series(self, symbols: Sequence[str]) -> list[tuple[str, str]]:
        """Every (symbol, interval) pair of a pass, symbol by symbol."""
        return [(symbol, interval) for symbol in symbols for interval in self.settings.kline_intervals]

    def run(self, symbols: Sequence[str], *, dry_run: bool = False, lookback_days: float | None = None) -> ExportReport:
        # The client lives as long as the loop: this pass's share is the difference of its counters.
        stats = self.client.stats
        before = (stats.requests, stats.weight, stats.rate_limited, stats.banned)
        report = ExportReport(dry_run=dry_run)
        started = time.monotonic()
        try:
            report.server_time_ms = self._prepare(symbols)
            if dry_run:
                entries = self.client.exchange_info(None).get("symbols")
                entries = entries if isinstance(entries, list) else []  # a broken answer lists nothing
                self.listed = {e.get("symbol") for e in entries if isinstance(e, dict)}
        except StopRequested as exc:
            report.stopped = True
            self._fail_all(report, symbols, exc)
        except ExchangeError as exc:  # host down, wrong URL, banned: nothing can start
            logger.error("exchange not usable: %s", exc)
            report.exchange_error = str(exc)
            report.banned_until = exc.banned_until if isinstance(exc, IPBannedError) else None
            self._fail_all(report, symbols, exc)
        else:
            self._run_pool(report, symbols, dry_run, lookback_days)
            report.stopped = self.stop_event.is_set()
        report.seconds = time.monotonic() - started
        after = (stats.requests, stats.weight, stats.rate_limited, stats.banned)
        spent = [a - b for a, b in zip(after, before, strict=True)]
        report.calls, report.weight, report.rate_limited, report.banned_answers = spent
        return report

    def adopt_exchange_info(self, info: Mapping[str, Any]) -> None:
        """Take the rate limits from this cycle's exchangeInfo answer (a symbol universe's), not asking again."""
        self._limits(self.client.load_rate_limits(info=info))

    def _prepare(self, symbols: Sequence[str]) -> int:
        """Server time and the weight budget: on the first pass both from one exchangeInfo answer, later /time alone."""
        if self._limits_loaded:
            return self.client.sync_clock()
        server_ms, limit = self.client.sync_clock_and_limits(symbols[0] if symbols else None)
        self._limits(limit)
        return server_ms

    def _limits(self, limit: int) -> None:
        if not self._limits_loaded:
            logger.info("exchange %s: weight budget %d per minute", self.client.base_url, limit)
        self._limits_loaded = True

    def _run_pool(self, report: ExportReport, symbols: Sequence[str], dry_run: bool, lookback: float | None) -> None:
        series = self.series(symbols)
        workers = max(1, min(self.settings.workers, len(series)))
        with self.files.listed_once(), ThreadPoolExecutor(max_workers=workers, thread_name_prefix="export") as pool:
            args = (report.server_time_ms, dry_run, lookback)
            for future in as_completed([pool.submit(self._export_one, s, i, *args) for s, i in series]):
                outcome = future.result()
                report.outcomes[outcome.key] = outcome
                if outcome.error_kind == "banned" and report.banned_until is None:
                    report.banned_until = self.client.limiter.banned_until
                if self.on_symbol_done is not None:
                    self.on_symbol_done(outcome)
        keys = [self.series_key(s, i) for s, i in series]
        report.outcomes = {k: report.outcomes[k] for k in keys if k in report.outcomes}

    def _export_one(
        self, symbol: str, interval: str, server_ms: int | None, dry_run: bool, lookback: float | None
    ) -> SymbolOutcome:
        started = time.monotonic()
        name = self.series_key(symbol, interval)
        ledger = CleanupResult(dry_run=dry_run)  # files met on the way and quarantined
        try:
            if self.stop_event.is_set():
                raise StopRequested("not started: stop requested")
            with self.files.for_interval(interval).writer(symbol) as held:
                if not held:  # a backfill is writing this series: not a failure, the next cycle catches up
                    outcome = SymbolOutcome(
                        symbol, True, warning="skipped this cycle: another writer (a backfill) holds it"
                    )
                    logger.info("%s: %s", name, outcome.warning)
                elif self.fill is not None and server_ms is not None:
                    outcome = self.fill(self.exporters[interval], symbol, server_ms)
                else:
                    outcome = self._fetch_and_write(symbol, interval, server_ms, dry_run, lookback, ledger)
        except (StopRequested, ScanStopped) as exc:  # asked for: not a failure, logged as such
            outcome = SymbolOutcome(symbol, False, error=str(exc), error_kind="stopped")
            logger.info("%s: %s", name, exc)
        except ExportError as exc:
            outcome = SymbolOutcome(symbol, False, error=str(exc), error_kind=error_kind(exc))
            log = logger.warning if isinstance(exc, (NoDataError, UnknownSymbolError)) else logger.error
            log("%s: export failed: %s", name, exc)
        except Exception as exc:  # the per-series boundary: one bug must not stop the other series
            logger.exception("%s: unexpected error during export", name)
            outcome = SymbolOutcome(symbol, False, error=f"internal error: {exc!r}", error_kind="internal")
        outcome.cleanup = merge_cleanups([ledger, outcome.cleanup], dry_run=dry_run)
        outcome.seconds = round(time.monotonic() - started, 3)
        return self._named(outcome, interval)

    def _named(self, outcome: SymbolOutcome, interval: str) -> SymbolOutcome:
        outcome.interval, outcome.market = interval, self.settings.market
        outcome.key = self.series_key(outcome.symbol, interval)
        return outcome

    def _fetch_and_write(
        self,
        symbol: str,
        interval: str,
        server_ms: int | None,
        dry_run: bool,
        lookback: float | None,
        ledger: CleanupResult,
    ) -> SymbolOutcome:
        files, exporter = self.files.for_interval(interval), self.exporters[interval]
        name = self.series_key(symbol, interval)
        # Only the window's candles are held (the plan below keeps the same ones).
        keep_from = 0 if server_ms is None else exporter.window_start_ms(server_ms, lookback, self.window)
        previous = files.newest_valid_export(symbol, quarantine=not dry_run, record=ledger, candles_from=keep_from)
        export = exporter.plan(
            symbol,
            previous.candles if previous else None,
            server_time_ms=server_ms,
            lookback_days=lookback,
            known_empty=self.known_empty.get(name),
            window=self.window,
        )
        # An explicit window writes a file of its own, next to the files of other ranges: it
        # replaces none (an older range is not "older data"); a backfill removes only what its
        # file covers (retention would rank ranges against each other and drop one of them).
        replacing = previous if self.window is None else None
        # An exchange whose clock is behind the newest candle kept could only send older
        # data: refuse before asking it for anything (the write checks the data itself again).
        newest = exporter.last_closed_open_ms(export.server_time_ms)
        require_forward(newest, replacing)
        if dry_run:
            if symbol not in self.listed:
                message = f"{self.client.base_url} does not list {symbol} (exchangeInfo); a run would fail"
                raise UnknownSymbolError(message, 400, -1121)
            # The file the real run would write (if the exchange answers) and the prune after it.
            path = files.export_path(symbol)
            planned = FileValidation(path, True, rows=export.reused_rows, last_open_ms=newest)
            pruned = files.cleanup(dry_run=True, symbols=[symbol], known={path: planned})
            of = f" of {previous.file.name}" if previous else ""
            logger.info(
                "%s: dry run: would reuse %d candles%s, fetch from %s and write %s",
                *(name, export.reused_rows, of, ms_to_iso(export.requested_from_ms), path.name),
            )
            return SymbolOutcome(
                symbol, True, path=str(path), reused_rows=export.reused_rows, cleanup=pruned, verdict=planned
            )
        chunks = self._counted(self.source.chunks(exporter, export))
        path, verdict = files.write_export(symbol, chunks, replacing=replacing, now_ms=export.server_time_ms)
        self.source.written(symbol, interval)
        if export.mismatch is not None and previous is not None:
            export.mismatch += f"; {previous.file.name} was not reused, the window was fetched again"
            logger.warning("%s: %s", name, export.mismatch)
        # Only now, with the new file written, fsynced, valid and published, may older ones go.
        # The previous file was judged byte for byte moments ago (``newest_valid_export``): not read again.
        # A backfill removes what its file covers, never a file it did not reuse (its candles differ).
        judged = {previous.file.path: previous.validation} if previous else None
        written = {path: verdict}
        cover = path if self.backfill else None
        skip = self.backfill and export.mismatch is not None
        pruned = CleanupResult() if skip else files.cleanup(symbols=[symbol], known=written, judged=judged, cover=cover)
        logger.info(
            "%s: wrote %s (%d rows: %d reused, %d fetched, %d calls)",
            *(name, path.name, verdict.rows, export.reused_rows, export.fetched_rows, export.calls),
        )
        learnt = {k: getattr(export, k) for k in ("fetched_rows", "calls", "empty_from_ms", "data_from_ms")}
        learnt["warning"] = export.mismatch
        return SymbolOutcome(
            symbol, True, str(path), verdict.rows, export.reused_rows, cleanup=pruned, verdict=verdict, **learnt
        )

    def _counted(self, chunks: Iterable[pa.Table]) -> Iterator[pa.Table]:
        for chunk in chunks:
            if self.on_candles is not None:
                self.on_candles(len(chunk))
            yield chunk

    def _fail_all(self, report: ExportReport, symbols: Sequence[str], exc: ExportError) -> None:
        for symbol, interval in self.series(symbols):
            outcome = SymbolOutcome(symbol, False, error=str(exc), error_kind=error_kind(exc))
            report.outcomes[self.series_key(symbol, interval)] = self._named(outcome, interval)
