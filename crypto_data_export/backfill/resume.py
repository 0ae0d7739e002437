"""A REST backfill that survives Ctrl-C, SIGTERM or a crash: pages kept in resume journals.

``JournalSource`` is the candle source whose REST pages are appended to a journal
(``crypto_data_export.store.journal``) as the exchange sent them, before they are used. A rerun
reads the journal of the same symbol, interval and span, checks its candles against the
window it asks for (the same rules as a page from the exchange: on the grid, in order, inside
the window, closed), and asks the exchange only from the candle after the last one kept.
The journal goes once the symbol's file is published.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa

from crypto_data_export.core.errors import ExportError, StopRequested
from crypto_data_export.exchange.history import HistoricalDataExporter, SymbolExport
from crypto_data_export.exchange.klines import rows_to_frame
from crypto_data_export.settings.intervals import floor_open_ms
from crypto_data_export.store.journal import PageJournal, PartialFolder

logger = logging.getLogger(__name__)


def stoppable(chunks: Iterable[pa.Table], stop_event: threading.Event) -> Iterator[pa.Table]:
    """Stop between chunks: a year of 1m is 526 REST pages, Ctrl-C must not wait for them
    (a scheduled export, by contrast, lets the symbol in progress finish)."""
    for chunk in chunks:
        if stop_event.is_set():
            raise StopRequested("stopped on request; the file is not written")
        yield chunk


class JournalSource:
    """REST pages, every one journaled; a rerun starts after the pages already kept."""

    def __init__(self, partial: PartialFolder, stop_event: threading.Event) -> None:
        self.partial = partial
        self.stop_event = stop_event

    def chunks(self, history: HistoricalDataExporter, export: SymbolExport) -> Iterable[pa.Table]:
        chunks = history.iter_chunks(export, lambda start, until: self.pages(history, export, start, until))
        return stoppable(chunks, self.stop_event)

    def written(self, symbol: str, interval: str) -> None:
        self.partial.release(symbol, interval)

    def pages(
        self, history: HistoricalDataExporter, export: SymbolExport, start_ms: int, until_ms: int | None
    ) -> Iterator[pa.Table]:
        """Candles opening in [start_ms, until_ms]: those kept in the journal, then REST pages."""
        last_closed = history.last_closed_open_ms(export.server_time_ms)
        if until_ms is not None:
            last_closed = min(last_closed, floor_open_ms(until_ms, history.interval))
        journal = self.partial.covering(export.symbol, history.interval, start_ms)
        cursor, kept = self._kept(history, journal, start_ms, last_closed)
        if kept is not None:
            logger.info("%s: resuming after %d candles kept in %s", export.symbol, len(kept), journal.path.name)
            yield kept
        yield from history.pages_of(export, cursor, until_ms, on_rows=journal.append)

    @staticmethod
    def _kept(
        history: HistoricalDataExporter, journal: PageJournal, start_ms: int, last_closed: int
    ) -> tuple[int, pa.Table | None]:
        """Where REST resumes, and the journal's candles inside [start_ms, last_closed] checked like an
        exchange page; (start_ms, None), and a fresh journal, when they cannot serve this span."""
        rows: list[list[Any]] = journal.load()
        if not rows:
            return start_ms, None
        try:
            rows = [row for row in rows if start_ms <= row[0] <= last_closed]
            page = rows_to_frame(rows)
            history.check_page(page, len(rows), start_ms, last_closed)  # the rules of a REST page
        except (ExportError, ValueError, TypeError, IndexError) as exc:
            journal.discard(f"its candles fail the checks: {exc}")
            return start_ms, None
        if not rows:  # it does not reach this span: pages appended to it would leave a hole
            journal.discard("it does not cover this range")
            return start_ms, None
        return int(rows[-1][0]) + 1, page
