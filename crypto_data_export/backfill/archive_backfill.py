"""Backfill from the exchange's bulk archive, verified by checksum, the rest from REST.

Which file serves which period, the checks before a row is used, the cache and the rerun:
docs/backfill.md ("Backfill from the archive"). Nothing unverified is ever used.
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pyarrow as pa

from crypto_data_export.backfill.resume import JournalSource, stoppable
from crypto_data_export.core.candles import open_times
from crypto_data_export.core.clock import ms_to_iso
from crypto_data_export.core.errors import ExchangeError, StopRequested, StorageError
from crypto_data_export.core.intervals import DAY_MS, first_open_from_ms, fixed_length_ms, floor_open_ms
from crypto_data_export.core.rules import gaps
from crypto_data_export.exchange.archive import (
    DAILY_INTERVALS,
    NO_CHECKSUM,
    ArchiveClient,
    ArchiveError,
    ArchiveNotPublished,
    ArchivePeriod,
    ArchiveUnavailable,
    ArchiveUnusable,
    DownloadStopped,
    check_digest,
    check_zip,
    day_bounds,
    days_of,
    month_bounds,
    read_period_frame,
    sha256_of,
)
from crypto_data_export.exchange.client import ExchangeClient
from crypto_data_export.exchange.history import HistoricalDataExporter, SymbolExport, candles_in_window
from crypto_data_export.pipeline.export_job import ExportJob
from crypto_data_export.pipeline.run_summary import ExportReport, SymbolOutcome
from crypto_data_export.report.console import ArchiveProgress
from crypto_data_export.settings.settings import Settings
from crypto_data_export.store.files import FileManager
from crypto_data_export.store.journal import release_folder, remove_file
from crypto_data_export.store.layout import ExportFolder
from crypto_data_export.store.run_lock import RunLock

logger = logging.getLogger(__name__)

SOURCES: tuple[str, ...] = ("auto", "archive", "rest")
CACHE_MAX_AGE_SECONDS = 2 * 86_400  # older verified zips are from an abandoned run: not worth trusting
MONTHLY_MIN_DAYS = 8  # fewer days of a past month in the range: their daily files (fewer bytes)
MAX_HOLES = 3  # holes of one archive file asked about on REST; with more, its period comes from REST
RECENT_MS = 31 * DAY_MS  # a month missing from the archive for longer has no daily files either
_WAIT_SLICE = 0.2  # how often a waiting symbol looks at the stop flag
_CACHE_NAME = re.compile(
    r"^[A-Z0-9]{1,20}-[0-9]{1,2}(?:[smhdw]|mo)-[0-9]{4}-[0-9]{2}(?:-[0-9]{2})?\.zip"
    r"(?P<part>\.[0-9]+\.[0-9a-f]{8}\.part)?$"
)


@dataclass(frozen=True)
class RestSpan:
    """Open times in [start_ms, end_ms) that come from the REST API."""

    start_ms: int
    end_ms: int


Segment = ArchivePeriod | RestSpan


@dataclass
class ArchiveTally:
    """Where one symbol's candles came from."""

    archive_files: int = 0
    archive_rows: int = 0
    downloaded_bytes: int = 0
    refused: list[str] = field(default_factory=list)  # "<zip>: <reason>", filled from REST (auto)
    cached: list[Path] = field(default_factory=list)
    # Each part's source, for the dataset's metadata: an archive file and its SHA-256, or a REST range
    sources: list[dict[str, object]] = field(default_factory=list)


@dataclass
class ArchiveBackfillResult:
    report: ExportReport
    tallies: dict[str, ArchiveTally]  # empty if the archive was not used


def plan_segments(symbol: str, interval: str, start_ms: int, end_ms: int, today_ms: int) -> list[Segment]:
    """Archive periods, then a REST span, covering open times in [start_ms, end_ms): a past month's
    file if the range covers ``MONTHLY_MIN_DAYS`` of it, else daily files for days over before
    ``today_ms``; the rest from REST. Rows outside the range are dropped later."""
    if start_ms >= end_ms:
        return []
    if interval not in DAILY_INTERVALS:
        return [RestSpan(start_ms, end_ms)]
    segments: list[Segment] = []
    t = start_ms
    while t < min(end_ms, today_ms):
        month_start, month_end = month_bounds(t)
        if (
            interval != "1s"  # a month of 1s is 2.6 M rows in one frame: days keep memory bounded
            and month_end <= today_ms
            and min(month_end, end_ms) - t >= MONTHLY_MIN_DAYS * DAY_MS
        ):
            segments.append(ArchivePeriod(symbol, interval, "monthly", month_start, month_end))
            t = month_end
            continue
        day_start, day_end = day_bounds(t)
        if day_end > today_ms:
            break
        segments.append(ArchivePeriod(symbol, interval, "daily", day_start, day_end))
        t = day_end
    if t < end_ms:
        segments.append(RestSpan(t, end_ms))
    return segments


class ArchiveFetcher:
    """Checksum, download (streamed to a temp file), verify, keep in ``folder``: one task per period,
    whose future gives the verified zip and the bytes downloaded for it (0: kept by an interrupted run).
    The ``.CHECKSUM`` is asked for (a second pool) while the zip streams: one round trip of latency,
    not two. ``folder``'s files are ours only by name; a symlink is never followed. The caller holds
    the run lock."""

    def __init__(
        self, client: ArchiveClient, folder: Path, workers: int, stop_event: threading.Event, progress: ArchiveProgress
    ) -> None:
        self.client, self.folder, self.stop_event, self.progress = client, folder, stop_event, progress
        client.stop_event = stop_event  # a stop cuts its downloads short, even mid-read
        if folder.is_symlink():
            raise StorageError(f"{folder} is a symbolic link; remove it (the archive cache must be a real folder)")
        try:
            folder.mkdir(exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create {folder}: {exc.strerror or exc}; check permissions") from exc
        for entry in os.scandir(folder):  # unfinished downloads (their writers are gone) and stale zips
            match = _CACHE_NAME.fullmatch(entry.name)
            if match is None or not entry.is_file(follow_symlinks=False):
                continue
            if match["part"] or time.time() - entry.stat(follow_symlinks=False).st_mtime > CACHE_MAX_AGE_SECONDS:
                remove_file(Path(entry.path))
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="archive")
        self._checksums = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="checksum")
        self._lock = threading.Lock()
        # The first transport failure (unreachable, HTTP 5xx, past its deadline): the archive is
        # given up for the run, so the other periods cost neither retries nor a warning each.
        self.unreachable: ArchiveUnavailable | None = None

    def submit(self, periods: list[ArchivePeriod]) -> dict[ArchivePeriod, Future[tuple[Path, int]]]:
        self.progress.count(planned=len(periods))
        return {period: self._pool.submit(self._fetch, period) for period in periods}

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._checksums.shutdown(wait=True, cancel_futures=True)

    def _fetch(self, period: ArchivePeriod) -> tuple[Path, int]:
        try:
            if self.stop_event.is_set():
                raise DownloadStopped(period, "stopped on request")
            if self.unreachable:
                raise ArchiveUnavailable(
                    period, f"not tried: the archive failed earlier in this run ({self.unreachable})"
                )
            checksum = self._checksums.submit(self.client.checksum, period)
            try:
                return self._fetch_verified(period, checksum)
            except OSError as exc:
                reason = f"cannot keep the download in {self.folder}: {exc.strerror or exc}"
                raise ArchiveError(period, reason) from exc
        except ArchiveUnavailable as exc:
            with self._lock:
                self.unreachable = self.unreachable or exc
            raise
        finally:
            self.progress.count(done=1)

    def _fetch_verified(self, period: ArchivePeriod, checksum: Future[str | None]) -> tuple[Path, int]:
        target = self.folder / period.zip_name
        if target.is_file() and not target.is_symlink():  # left by an interrupted run
            with open(target, "rb") as handle:
                if sha256_of(handle) == checksum.result():
                    return target, 0
        part = self.folder / f"{period.zip_name}.{os.getpid()}.{secrets.token_hex(4)}.part"
        self.folder.mkdir(exist_ok=True)  # a series done released its zips, and the folder if that emptied it
        try:
            with open(part, "wb") as handle:
                actual = self.client.download(
                    period, handle, on_bytes=self.progress.add_bytes, should_stop=self.stop_event.is_set
                )
            if (expected := checksum.result()) is None:
                raise ArchiveUnusable(period, NO_CHECKSUM)
            check_digest(period, expected, actual)
            with open(part, "rb") as handle:
                check_zip(handle, period)
            os.replace(part, target)
            return target, target.stat().st_size
        finally:
            remove_file(part)  # gone already after the rename; a failed or stopped download's bytes go


class ArchiveSource:
    """Candles from verified archive files; what the archive lacks from ``rest`` (REST pages
    kept in resume journals). ``strict`` (``--source archive``): a refused file fails the symbol."""

    def __init__(self, fetcher: ArchiveFetcher, rest: JournalSource, client: ExchangeClient, *, strict: bool) -> None:
        self.fetcher, self.rest, self.client, self.strict = fetcher, rest, client, strict
        self.stop_event = fetcher.stop_event
        self.tallies: dict[str, ArchiveTally] = {}

    def chunks(self, history: HistoricalDataExporter, export: SymbolExport) -> Iterable[pa.Table]:
        self.tallies[export.symbol] = ArchiveTally()
        chunks = history.iter_chunks(export, lambda start, until: self._range(history, export, start, until))
        return stoppable(chunks, self.stop_event)

    def pages(
        self, history: HistoricalDataExporter, export: SymbolExport, start_ms: int, until_ms: int | None
    ) -> Iterator[pa.Table]:
        """Candles opening in [start_ms, until_ms], as ``JournalSource.pages`` (the dataset backfill's range fetch)."""
        self.tallies.setdefault(export.symbol, ArchiveTally())
        return stoppable(self._range(history, export, start_ms, until_ms), self.stop_event)

    def written(self, symbol: str, interval: str) -> None:
        release_folder(self.fetcher.folder, self.tallies[symbol].cached)  # the zips have served their purpose
        self.rest.written(symbol, interval)

    def _range(
        self, history: HistoricalDataExporter, export: SymbolExport, start_ms: int, until_ms: int | None
    ) -> Iterator[pa.Table]:
        """Candles opening in [start_ms, until_ms]: archive periods in order, adjacent REST spans merged."""
        end_ms = history.last_closed_open_ms(export.server_time_ms) + (fixed_length_ms(history.interval) or 0)
        end_ms = end_ms if until_ms is None else min(end_ms, until_ms + 1)
        today_ms = day_bounds(export.server_time_ms)[0]
        segments = plan_segments(export.symbol, history.interval, start_ms, end_ms, today_ms)
        futures = self.fetcher.submit([s for s in segments if isinstance(s, ArchivePeriod)])
        resolved = itertools.chain.from_iterable(
            [(s, None)] if isinstance(s, RestSpan) else self._use(export, s, futures[s], start_ms, end_ms)
            for s in segments
        )
        # The spans are contiguous: a run of them without archive candles is one REST range.
        for from_rest, group in itertools.groupby(resolved, key=lambda pair: pair[1] is None):
            if from_rest:
                start, end = (spans := [span for span, _ in group])[0].start_ms, spans[-1].end_ms
                self.tallies[export.symbol].sources.append({"kind": "rest", "from_ms": start, "until_ms": end - 1})
                yield from self.rest.pages(history, export, start, end - 1)
            else:
                yield from (frame for _, frame in group if frame is not None and len(frame))

    def _use(
        self, export: SymbolExport, period: ArchivePeriod, fetched: Future[tuple[Path, int]], start_ms: int, end_ms: int
    ) -> Iterator[tuple[RestSpan, pa.Table | None]]:
        """A period's (span, its candles inside the span, closed on the exchange's clock); (span, None): take REST."""
        span = RestSpan(max(period.start_ms, start_ms), min(period.end_ms, end_ms))
        tally = self.tallies[export.symbol]
        try:
            path, downloaded = self._wait(fetched)
            tally.cached.append(path)
            with open(path, "rb") as handle:
                frame = read_period_frame(handle, period)
                digest = sha256_of(handle)  # verified against the .CHECKSUM as it was kept
            frame = candles_in_window(frame, span.start_ms, export.server_time_ms, span.end_ms)
            if lacks := self._lacks(period, span, frame):
                raise ArchiveUnusable(period, lacks)
        except ArchiveNotPublished:
            if period.kind == "monthly" and period.end_ms > day_bounds(export.server_time_ms)[0] - RECENT_MS:
                # A month that ended lately may not be out yet (monthly files come days
                # later), while its days are; an older missing month has no data at all.
                days = self.fetcher.submit([d for d in days_of(period) if d.end_ms > start_ms and d.start_ms < end_ms])
                for day, future in days.items():
                    yield from self._use(export, day, future, start_ms, end_ms)
            else:
                yield span, None
            return
        except (ArchiveError, OSError) as exc:
            if isinstance(exc, OSError):
                exc = ArchiveError(period, f"cannot read the kept zip: {exc.strerror}")
            self._refuse(export.symbol, exc)
            yield span, None
            return
        tally.archive_files += 1
        tally.downloaded_bytes += downloaded
        tally.archive_rows += len(frame)
        # The open times it covered: a hole in them is confirmed empty (``_lacks``)
        covered = {"from_ms": span.start_ms, "until_ms": floor_open_ms(span.end_ms - 1, period.interval)}
        tally.sources.append({"kind": "archive", "file": period.zip_name, "sha256": digest, **covered})
        yield span, frame

    def _lacks(self, period: ArchivePeriod, span: RestSpan, frame: pa.Table) -> str:
        """What a file lacks that the exchange has ('' if nothing): its candles are counted against
        the interval grid, and a hole (a listing in the period, an outage) is accepted only if the
        REST API has no candle in it either (one request of one candle a hole, MAX_HOLES at most)."""
        interval = period.interval
        first, end = first_open_from_ms(span.start_ms, interval), first_open_from_ms(span.end_ms, interval)
        holes = gaps(np.append(open_times(frame), end), interval, after_ms=floor_open_ms(first - 1, interval))
        if len(holes) > MAX_HOLES:
            return f"holds {len(frame)} candles, with {len(holes)} holes on the {interval} grid"
        for start, last, missing in holes:
            rows = self.client.klines(period.symbol, interval, start_ms=start, end_ms=last, limit=1)
            if rows and start <= rows[0][0] <= last:
                return (
                    f"holds {len(frame)} candles, {missing} missing from {ms_to_iso(start)} on; the REST API has them"
                )
        return ""

    def _refuse(self, symbol: str, exc: ArchiveError) -> None:
        """auto: name the file in the log and take its period from REST; archive: fail the symbol."""
        if self.strict:
            raise ExchangeError(
                f"{exc}; with --source archive a refused archive file is an error "
                "(rerun with --source auto to take that period from the REST API)"
            ) from exc
        if isinstance(exc, ArchiveUnavailable):  # the archive is given up: one warning for the run
            if exc is self.fetcher.unreachable:
                logger.warning("%s; this run takes the remaining periods from the REST API", exc)
            return
        logger.warning("%s: %s; taking that period from the REST API instead", symbol, exc)
        self.tallies[symbol].refused.append(f"{exc.period.zip_name}: {exc.reason}")

    def _wait(self, future: Future[tuple[Path, int]]) -> tuple[Path, int]:
        """The future's result, or StopRequested as soon as a stop is requested."""
        while not wait([future], timeout=_WAIT_SLICE).done and not self.stop_event.is_set():
            pass
        if self.stop_event.is_set() or isinstance(future.exception(), DownloadStopped):
            raise StopRequested("stopped on request")
        return future.result()


# A dataset backfill's series: (its candle source, the exporter of its interval, symbol, server time) -> outcome
Fill = Callable[[ArchiveSource | JournalSource, HistoricalDataExporter, str, int], SymbolOutcome]


def archive_backfill(
    settings: Settings,
    source: str = "auto",
    *,
    stop_event: threading.Event | None = None,
    on_symbol_done: Callable[[SymbolOutcome], None] | None = None,
    progress: ArchiveProgress | None = None,
    on_candles: Callable[[int], None] | None = None,
    window: tuple[int, int] | None = None,
    fill: Fill | None = None,
    workspace: Path | None = None,
) -> ArchiveBackfillResult:
    """The backfill of ``export_historical_data.py``: the export pass over a long window (or
    ``window``, open times [start, end)) under the run lock. Every file is validated as it is
    written, so a bad answer fails its symbol and never sits in the folder as data. ``fill``
    (``dataset_fill.DatasetFill``) does each series instead of the job's file export: the dataset
    under EXPORT_DIR, its archive cache and journals (and the run lock) in ``workspace`` (default
    EXPORT_DIR/backfill; one per shard, so that shards fill one dataset at once)."""
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}")
    stop_event = stop_event or threading.Event()
    # One interval per backfill: a year of candles is a long run, chosen per interval.
    settings = replace(settings, kline_intervals=(settings.kline_interval,))
    folder = ExportFolder(settings.export_dir)
    files = FileManager.from_settings(settings)
    files.ensure_folder()
    if fill is not None:
        folder = ExportFolder(workspace or folder.backfill)
        FileManager.from_settings(replace(settings, export_dir=folder.root)).ensure_folder()
    # REST pages go to resume journals first: a rerun after Ctrl-C asks only for what is missing.
    journals = JournalSource(folder.backfill_partial, stop_event)
    candles: JournalSource | ArchiveSource = journals
    with RunLock(folder.root), ExchangeClient.from_settings(settings) as client, ExitStack() as stack:
        if source != "rest" and settings.kline_interval not in DAILY_INTERVALS:
            logger.warning(
                "the archive is not used for %s candles (they straddle its daily files); the REST API gives them",
                settings.kline_interval,
            )
        elif source != "rest":
            archive = stack.enter_context(ArchiveClient.from_settings(settings, pool_size=2 * settings.workers))
            progress = progress or ArchiveProgress(enabled=False)
            fetcher = ArchiveFetcher(archive, folder.archive_cache, settings.workers, stop_event, progress)
            stack.callback(fetcher.close)
            candles = ArchiveSource(fetcher, journals, client, strict=source == "archive")
        report = ExportJob(
            settings,
            files,
            client,
            source=candles,
            stop_event=stop_event,
            on_symbol_done=on_symbol_done,
            on_candles=on_candles,
            window=window,
            backfill=True,
            fill=None if fill is None else functools.partial(fill, candles),
        ).run(settings.symbols)
    for outcome in report.failed if stop_event.is_set() else []:
        outcome.error_kind = "stopped"
        outcome.error = "stopped on request; rerun to resume (verified archive files and fetched pages are kept)"
    return ArchiveBackfillResult(report, candles.tallies if isinstance(candles, ArchiveSource) else {})
