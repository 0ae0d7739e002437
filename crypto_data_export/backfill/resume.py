"""A REST backfill that survives Ctrl-C, SIGTERM or a crash: pages kept in resume journals
(``store.journal``; docs/backfill.md, "Resume after a stop or a crash")."""

from __future__ import annotations

import heapq
import logging
import threading
from collections.abc import Iterable, Iterator
from itertools import takewhile
from pathlib import Path

import pyarrow as pa

from crypto_data_export.core.candles import SeriesId, exchange_host, first_open_ms
from crypto_data_export.core.errors import ExportError, StopRequested
from crypto_data_export.exchange.history import HistoricalDataExporter, SymbolExport
from crypto_data_export.exchange.klines import rows_to_frame
from crypto_data_export.store.journal import PageJournal, covering, release_folder

logger = logging.getLogger(__name__)


def stoppable(chunks: Iterable[pa.Table], stop_event: threading.Event) -> Iterator[pa.Table]:
    """Stop between chunks: a year of 1m is 526 REST pages, Ctrl-C must not wait for them
    (a scheduled export, by contrast, lets the symbol in progress finish). Checked once more after
    the last chunk: the writer publishes only once the chunks end, so a stop that came while the
    last one was made leaves no file either (a run stopped on request writes nothing)."""
    for chunk in chunks:
        if stop_event.is_set():
            raise StopRequested("stopped on request; the file is not written")
        yield chunk
    if stop_event.is_set():
        raise StopRequested("stopped on request; the file is not written")


class JournalSource:
    """REST pages, every one journaled; a rerun starts after the pages already kept."""

    def __init__(self, folder: Path, stop_event: threading.Event) -> None:
        self.folder, self.stop_event = folder, stop_event  # EXPORT_DIR/.backfill_partial
        self.used: dict[tuple[str, str], list[Path]] = {}  # the journals a series' published file makes useless

    def chunks(self, history: HistoricalDataExporter, export: SymbolExport) -> Iterable[pa.Table]:
        chunks = history.iter_chunks(export, lambda start, until: self.pages(history, export, start, until))
        return stoppable(chunks, self.stop_event)

    def written(self, symbol: str, interval: str) -> None:
        release_folder(self.folder, self.used.pop((symbol, interval), []))

    def pages(
        self, history: HistoricalDataExporter, export: SymbolExport, start_ms: int, until_ms: int | None
    ) -> Iterator[pa.Table]:
        """Candles opening in [start_ms, until_ms], in order: the pages kept in the journal of this series
        (each checked like an exchange page, one at a time; the journal is cut at a bad one) and REST
        pages (``spans_of``, journaled as they arrive) for the spans they leave out."""
        last_closed = history.last_closed_open_ms(export.server_time_ms, until_ms)
        client = history.client
        series = SeriesId(exchange_host(client.base_url), client.market.name, export.symbol, history.interval)
        journal = covering(self.folder, series, start_ms)
        kept: list[tuple[int, int, tuple[int, str]]] = []
        beyond = False
        for first, last, rows, where in takewhile(lambda _: not self.stop_event.is_set(), journal.pages()):
            try:
                history.check_page(rows_to_frame(rows), len(rows), first, last)  # the rules of a REST page
            except (ExportError, ValueError, TypeError, IndexError) as exc:
                journal.cut(f"a kept page fails the checks ({str(exc).removeprefix('the exchange sent ')})")
                break
            beyond = beyond or last > last_closed  # it holds more than this span
            if max(first, start_ms) <= min(last, last_closed):
                kept.append((max(first, start_ms), min(last, last_closed), where))
        spans, missing, end = [], [], start_ms - 1  # the kept pages that do not overlap, the spans between them
        for first, last, where in sorted(kept):
            if first > end:
                missing += [(end + 1, first - 1)] if first > end + 1 else []
                spans.append((first, last, where))
                end = last
        missing += [(end + 1, last_closed)] if end < last_closed else []
        if spans:
            logger.info("%s: resuming with %d page(s) kept in %s", export.symbol, len(spans), journal.path.name)
        elif journal.start_ms != start_ms:  # not this span's: its pages would not be found from this start
            journal = PageJournal(self.folder, series, start_ms)
        ours = export.window_end_ms is None or (journal.start_ms >= export.window_start_ms and not beyond)
        if journal.writable and ours:  # a --days window moves on, its journals go with its file; a range keeps others'
            self.used.setdefault((export.symbol, history.interval), []).append(journal.path)
        kept_pages = (
            rows_to_frame([row for row in journal.rows_at(where) if first <= row[0] <= last])
            for first, last, where in spans
        )
        pages = (page for page in kept_pages if len(page))
        yield from heapq.merge(pages, history.spans_of(export, missing, journal.append), key=first_open_ms)
