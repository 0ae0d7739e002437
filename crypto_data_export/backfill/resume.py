"""A REST backfill that survives Ctrl-C, SIGTERM or a crash: pages kept in resume journals.

``ResumableExporter`` is ``HistoricalDataExporter`` whose REST pages are appended to a
journal (``crypto_data_export.store.journal``) before they are used. A rerun reads the journal of the same
symbol, interval and span, checks its candles against the window it asks for (the same
rules as a page from the exchange: on the grid, in order, inside the window, closed), and
asks the exchange only from the candle after the last one kept. The journal goes once the
symbol's file is published.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pandas as pd

from crypto_data_export.core.candles import CANDLE_COLUMNS
from crypto_data_export.core.errors import ExportError
from crypto_data_export.exchange.history import HistoricalDataExporter, SymbolExport
from crypto_data_export.exchange.klines import rows_to_frame
from crypto_data_export.settings.intervals import floor_open_ms
from crypto_data_export.store.journal import PageJournal, PartialFolder

logger = logging.getLogger(__name__)


def frame_rows(page: pd.DataFrame) -> list[list[Any]]:
    """A candle frame as JSON-ready rows that ``rows_to_frame`` turns back into the same frame."""
    return [
        [v if isinstance(v, str) else int(v) for v in row] for row in page[list(CANDLE_COLUMNS)].itertuples(index=False)
    ]


class ResumableExporter(HistoricalDataExporter):
    """Every REST page journaled; a rerun starts after the pages already kept."""

    partial: PartialFolder | None = None

    def iter_closed_pages(
        self,
        symbol: str,
        start_ms: int,
        server_time_ms: int,
        tally: SymbolExport | None = None,
        *,
        until_ms: int | None = None,
    ) -> Iterator[pd.DataFrame]:
        if self.partial is None:
            yield from super().iter_closed_pages(symbol, start_ms, server_time_ms, tally, until_ms=until_ms)
            return
        last_closed = self.last_closed_open_ms(server_time_ms)
        if until_ms is not None:
            last_closed = min(last_closed, floor_open_ms(until_ms, self.interval))
        journal = self.partial.covering(symbol, self.interval, start_ms)
        kept = self._kept(journal, start_ms, last_closed)
        cursor = start_ms
        if len(kept):
            logger.info("%s: resuming after %d candles kept in %s", symbol, len(kept), journal.path.name)
            yield kept
            cursor = int(kept["open_time"].iloc[-1]) + 1
        for page in super().iter_closed_pages(symbol, cursor, server_time_ms, tally, until_ms=until_ms):
            journal.append(frame_rows(page))
            yield page

    def _kept(self, journal: PageJournal, start_ms: int, last_closed: int) -> pd.DataFrame:
        """The journal's candles inside [start_ms, last_closed], checked like an exchange page;
        an empty frame (and a fresh journal) when they cannot serve this span."""
        rows = journal.load()
        if not rows:
            return rows_to_frame([])
        try:
            page = rows_to_frame(rows)
            page = page[(page["open_time"] >= start_ms) & (page["open_time"] <= last_closed)].reset_index(drop=True)
            self._check_page(page, len(page), start_ms, last_closed)
        except (ExportError, ValueError, TypeError, IndexError) as exc:
            journal.discard(f"its candles fail the checks: {exc}")
            return rows_to_frame([])
        if page.empty:  # it does not reach this span: pages appended to it would leave a hole
            journal.discard("it does not cover this range")
        return page
