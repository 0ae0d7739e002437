"""The backfill of the dataset layout: per series, only the periods it lacks, archive first, then REST.

The range's periods are compared with the stored ones (their footers, identity checked: a file naming another
series is quarantined and its period fetched again). A complete period is skipped; any other is fetched from its
first hole on (verified archive files, REST pages kept in resume journals) and merged under the series lock, each
source (archive file and SHA-256, or REST range) in the period's metadata. Each period is one atomic verified
file: a run killed halfway keeps the periods it wrote, and a rerun fetches only the rest.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pyarrow as pa

from crypto_data_export.backfill.archive_backfill import ArchiveSource, ArchiveTally
from crypto_data_export.backfill.resume import JournalSource
from crypto_data_export.core.candles import empty_candle_frame
from crypto_data_export.core.errors import NoDataError, StopRequested
from crypto_data_export.core.intervals import first_open_from_ms, floor_open_ms, next_open_ms
from crypto_data_export.exchange.history import HistoricalDataExporter, SymbolExport
from crypto_data_export.pipeline.run_summary import SymbolOutcome
from crypto_data_export.store.dataset import Dataset, PeriodInfo, fetched_between, periods_between


@dataclass
class PeriodTally:
    """One series' periods in the range: already stored, and fetched (a period may use both sources)."""

    periods: int = 0
    present: int = 0
    archive: int = 0
    rest: int = 0


def first_missing(
    info: PeriodInfo | None, start_ms: int, end_ms: int, interval: str, served: Sequence[tuple[int, int]] = ()
) -> int | None:
    """The first open time in [start_ms, end_ms) the stored period lacks (None: it has them all): a hole
    (a head before its first candle, a tail after its last: the period was still open when written)
    that no range the exchange served (``served``, the period's sources: REST ranges, verified archive
    files) covered. A period with no file (before a listing) may be covered too."""
    if info is not None and info.complete:
        return None
    first, last = first_open_from_ms(start_ms, interval), floor_open_ms(end_ms - 1, interval)
    holes = [(first, last)]
    if info is not None and info.first_open_ms is not None and info.last_open_ms is not None:
        holes = [(f, to) for f, to, _ in info.gaps] + [(first, info.first_open_ms - 1)]
        holes.append((next_open_ms(info.last_open_ms, interval), last))
        served = [*served, *served_by(info)]
    inside = [(max(f, first), min(floor_open_ms(to, interval), last)) for f, to in holes]
    return min((f for f, to in inside if f <= to and not any(a <= f and to <= b for a, b in served)), default=None)


def served_by(info: PeriodInfo) -> list[tuple[int, int]]:
    """The open times the period's sources covered: the exchange had no candle where the file has none."""
    return [(s["from_ms"], s["until_ms"]) for s in info.sources if "from_ms" in s and "until_ms" in s]


class DatasetFill:
    """The per-series task of a dataset backfill (``archive_backfill(fill=...)``, run by the export job on
    its pool, reported as its series are); ``source``: the files backfill's (``ArchiveSource``, ``JournalSource``)."""

    def __init__(
        self,
        dataset: Dataset,
        stop_event: threading.Event,
        window: tuple[int, int] | None = None,
        on_candles: Callable[[int], None] | None = None,
    ) -> None:
        self.dataset, self.stop_event, self.window = dataset, stop_event, window
        self.on_candles = on_candles or (lambda _count: None)
        self.tallies: dict[str, PeriodTally] = {}

    def __call__(
        self, source: ArchiveSource | JournalSource, history: HistoricalDataExporter, symbol: str, server_ms: int
    ) -> SymbolOutcome:
        """The series filled under its lock (in a bucket its lease), held from the listing of its periods
        to the last one written: a second backfill of it waits, then finds them stored and writes nothing."""
        series = self.dataset.series_of(symbol, history.interval)
        with self.dataset.lock(series, wait=True, stop=self.stop_event):
            end = history.last_closed_open_ms(server_ms) + 1  # open times before it are closed
            start = history.window_start_ms(server_ms, window=self.window)
            end = end if self.window is None else min(end, self.window[1])
            stored = {info.start_ms: info for info in self.dataset.periods(series)}
            # Open times the exchange served (periods with no candle, before a listing, hold no file: see below)
            served = [covered for info in stored.values() for covered in served_by(info)]
            empty_from: int | None = None  # the first of the periods just fetched that had no candle
            tally = self.tallies[symbol] = PeriodTally()
            outcome = SymbolOutcome(symbol, True, path=self.dataset.store.name(self.dataset.series_folder(series)))
            for period_start, period_end in periods_between(history.interval, start, end):
                tally.periods += 1
                info = stored.get(period_start)
                span = (max(period_start, start), min(period_end, end))
                first = first_missing(info, *span, history.interval, served)
                if first is None:
                    tally.present += 1
                    outcome.rows += info.present if info else 0
                    continue
                if self.stop_event.is_set():
                    raise StopRequested("stopped on request; the periods written are kept, a rerun fetches the rest")
                export = SymbolExport(symbol, empty_candle_frame(), first, server_ms, window_end_ms=span[1])
                last = floor_open_ms(span[1] - 1, history.interval)
                files = source.tallies.setdefault(symbol, ArchiveTally()) if isinstance(source, ArchiveSource) else None
                done = len(files.sources) if files else 0  # the archive files and REST ranges used are its sources
                candles = pa.concat_tables([empty_candle_frame(), *source.pages(history, export, first, last)])
                self.on_candles(len(candles))
                sources = files.sources[done:] if files else [{"kind": "rest", "from_ms": first, "until_ms": last}]
                tally.archive += any(s["kind"] == "archive" for s in sources)
                tally.rest += any(s["kind"] == "rest" for s in sources)
                outcome.fetched_rows, outcome.calls = outcome.fetched_rows + len(candles), outcome.calls + export.calls
                if not len(candles):  # recorded in the next period with candles (a file holds at least one)
                    empty_from = first if empty_from is None else empty_from
                    continue
                if empty_from is not None:
                    until = floor_open_ms(first - 1, history.interval)
                    empty = {"kind": "rest", "from_ms": empty_from, "until_ms": until}
                    sources, first, empty_from = [empty, *sources], empty_from, None
                # Every hole in the range fetched was served empty: by REST, or in an archive file whose holes
                # REST confirmed (``ArchiveSource._lacks``).
                fetched = fetched_between(first, span[1])
                written = self.dataset.merge(series, candles, sources, confirmed_empty=fetched, now_ms=server_ms)
                outcome.rows += written[-1].present
            if tally.present < tally.periods:
                source.written(symbol, history.interval)  # its zips and journals have served
            if not outcome.rows:  # as the files backfill: never a silent success with nothing
                raise NoDataError(f"{symbol}: the exchange has no closed {history.interval} candle in the range")
            return outcome
