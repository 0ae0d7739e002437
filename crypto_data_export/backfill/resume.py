"""A REST backfill that survives Ctrl-C, SIGTERM or a crash: pages kept in resume journals.

``JournalSource``'s REST pages are appended to a journal (``store.journal``) as the exchange
sent them, before they are used. A rerun checks the journal's candles against the window it
asks for (the rules of an exchange page) and asks the exchange only from the candle after the
last one kept. The journal goes once the symbol's file is published.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from itertools import takewhile
from pathlib import Path

import pyarrow as pa

from crypto_data_export.core.candles import SeriesId, exchange_host
from crypto_data_export.core.errors import ExportError, StopRequested
from crypto_data_export.exchange.history import HistoricalDataExporter, SymbolExport
from crypto_data_export.exchange.klines import rows_to_frame
from crypto_data_export.store.journal import PageJournal, covering, release_folder

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
        """Candles opening in [start_ms, until_ms]: those kept in the journal of this series (each
        page checked like an exchange page, one at a time; the journal is cut at a bad one), then REST pages."""
        last_closed = history.last_closed_open_ms(export.server_time_ms, until_ms)
        client = history.client
        series = SeriesId(exchange_host(client.base_url), client.market.name, export.symbol, history.interval)
        journal = covering(self.folder, series, start_ms)
        cursor, beyond = start_ms, False
        for kept in takewhile(lambda _: not self.stop_event.is_set(), journal.pages()):  # then pages_of stops
            try:
                rows = [row for row in kept if cursor <= row[0] <= last_closed]
                beyond = beyond or kept[-1][0] > last_closed  # it holds more than this span
                page = rows_to_frame(rows)
                history.check_page(page, len(rows), cursor, last_closed)  # the rules of a REST page
            except (ExportError, ValueError, TypeError, IndexError) as exc:
                journal.cut(f"a kept page fails the checks ({str(exc).removeprefix('the exchange sent ')})")
                break
            if rows:
                cursor = int(rows[-1][0]) + 1
                yield page
        if cursor > start_ms:
            logger.info("%s: resuming after the candles kept in %s", export.symbol, journal.path.name)
        elif journal.start_ms != start_ms:  # its pages end before this span: pages appended to it would leave a hole
            journal = PageJournal(self.folder, series, start_ms)
        ours = export.window_end_ms is None or (journal.start_ms >= export.window_start_ms and not beyond)
        if journal.writable and ours:  # a --days window moves on, its journals go with its file; a range keeps others'
            self.used.setdefault((export.symbol, history.interval), []).append(journal.path)
        yield from history.pages_of(export, cursor, until_ms, on_rows=journal.append)
