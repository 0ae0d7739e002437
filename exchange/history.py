"""Historical klines -> candle frames: closed candles only, incremental, paginated.

``HistoricalDataExporter`` turns exchange answers into the candle frame of
``common.candles`` (exact decimal strings, int64 ms times). It only ever keeps
candles whose close time is before the *exchange's* clock, so a skewed local
clock cannot let an unfinished candle into a file, and it asks only for what
is missing after the candles it is given from the previous file.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import pandas as pd

from common.candles import CANDLE_COLUMNS, empty_candle_frame, merge_candles
from common.clock import from_ms
from common.errors import NoDataError
from config.intervals import DAY_MS, fixed_length_ms, floor_open_ms, next_open_ms
from exchange.client import ExchangeClient
from exchange.klines import rows_to_frame

logger = logging.getLogger("export_historical_data")


@dataclass
class SymbolExport:
    """The outcome of one symbol's export: the frame and what it cost."""

    symbol: str
    frame: pd.DataFrame
    window_start_ms: int
    server_time_ms: int
    reused_rows: int = 0
    fetched_rows: int = 0
    calls: int = 0
    requested_from_ms: int | None = None
    # Set when the reused candles start later than the window (the look-back grew):
    # the head of the window, up to this open time, is fetched too.
    head_until_ms: int | None = None


class HistoricalDataExporter:
    """Fetch the closed candles of a symbol over a look-back window."""

    def __init__(
        self,
        client: ExchangeClient,
        interval: str = "1h",
        lookback_days: float = 2.0,
        *,
        page_limit: int | None = None,
    ) -> None:
        self.client = client
        self.interval = interval
        self.lookback_days = lookback_days
        self.page_limit = page_limit or client.market.max_klines_limit

    def window_start_ms(self, server_time_ms: int, lookback_days: float | None = None) -> int:
        """Oldest open time kept: candles that opened within the look-back window."""
        days = self.lookback_days if lookback_days is None else lookback_days
        return server_time_ms - int(days * DAY_MS)

    def last_closed_open_ms(self, server_time_ms: int) -> int:
        """Open time of the newest candle that is closed at ``server_time_ms``."""
        current_open = floor_open_ms(server_time_ms, self.interval)
        # The candle that contains "now" is still open; the one before it is the newest closed.
        return floor_open_ms(current_open - 1, self.interval)

    def plan(
        self,
        symbol: str,
        previous: pd.DataFrame | None = None,
        *,
        server_time_ms: int | None = None,
        lookback_days: float | None = None,
    ) -> SymbolExport:
        """Decide what to reuse from ``previous`` and where fetching starts."""
        now_ms = self.client.sync_clock() if server_time_ms is None else server_time_ms
        start_ms = self.window_start_ms(now_ms, lookback_days)
        kept = _reusable(previous, start_ms, now_ms)
        if kept.empty:
            return SymbolExport(symbol, kept, start_ms, now_ms, requested_from_ms=start_ms)
        first_kept = int(kept["open_time"].iloc[0])
        head_until = first_kept - 1 if first_kept > self._first_open_ms(start_ms) else None
        return SymbolExport(
            symbol,
            kept,
            start_ms,
            now_ms,
            reused_rows=len(kept),
            requested_from_ms=start_ms if head_until is not None else int(kept["open_time"].iloc[-1]) + 1,
            head_until_ms=head_until,
        )

    def _first_open_ms(self, start_ms: int) -> int:
        """The first open time on the grid at or after ``start_ms``."""
        first = floor_open_ms(start_ms, self.interval)
        return first if first >= start_ms else next_open_ms(first, self.interval)

    def iter_chunks(self, export: SymbolExport) -> Iterator[pd.DataFrame]:
        """The window's head if the look-back grew, the reused candles, then each
        fetched page: already sorted and unique.

        Yielding pages one by one lets a year of 1m candles go to disk without
        ever sitting whole in memory. Raises NoDataError when nothing at all
        is closed in the window, so that no empty file is ever written.
        """
        assert export.requested_from_ms is not None
        if export.head_until_ms is not None:
            for page in self.iter_closed_pages(
                export.symbol, export.window_start_ms, export.server_time_ms, export, until_ms=export.head_until_ms
            ):
                export.fetched_rows += len(page)
                yield page
        if len(export.frame):
            yield export.frame
        tail_from = export.requested_from_ms
        if len(export.frame):
            tail_from = int(export.frame["open_time"].iloc[-1]) + 1
        for page in self.iter_closed_pages(export.symbol, tail_from, export.server_time_ms, export):
            export.fetched_rows += len(page)
            yield page
        if export.reused_rows + export.fetched_rows == 0:
            raise NoDataError(
                f"{export.symbol}: the exchange has no closed {self.interval} candle since "
                f"{from_ms(export.window_start_ms):%Y-%m-%d %H:%M:%S+00:00}; the symbol may be delisted or halted"
            )

    def export_symbol(
        self,
        symbol: str,
        previous: pd.DataFrame | None = None,
        *,
        server_time_ms: int | None = None,
        lookback_days: float | None = None,
    ) -> SymbolExport:
        """All closed candles of the window as one frame: ``previous`` reused, the tail fetched."""
        export = self.plan(symbol, previous, server_time_ms=server_time_ms, lookback_days=lookback_days)
        export.frame = merge_candles(list(self.iter_chunks(export)))
        return export

    def iter_closed_pages(
        self,
        symbol: str,
        start_ms: int,
        server_time_ms: int,
        tally: SymbolExport | None = None,
        *,
        until_ms: int | None = None,
    ) -> Iterator[pd.DataFrame]:
        """Pages of closed candles from ``start_ms`` (up to the open time ``until_ms``);
        stops at the first open candle."""
        last_closed = self.last_closed_open_ms(server_time_ms)
        if until_ms is not None:
            last_closed = min(last_closed, floor_open_ms(until_ms, self.interval))
        cursor = start_ms
        while cursor <= last_closed:
            limit = self._page_size(cursor, last_closed)
            rows = self.client.klines(symbol, self.interval, start_ms=cursor, end_ms=last_closed, limit=limit)
            if tally is not None:
                tally.calls += 1
            page = rows_to_frame(rows)
            page = page[
                (page["close_time"] < server_time_ms)
                & (page["open_time"] >= cursor)
                & (page["open_time"] <= last_closed)
            ]
            if page.empty:
                return
            yield page.reset_index(drop=True)
            cursor = int(page["open_time"].iloc[-1]) + 1
            if len(rows) < limit:
                return

    def _page_size(self, cursor: int, last_closed: int) -> int:
        """Ask for exactly the candles still missing (one small call in steady state)."""
        length = fixed_length_ms(self.interval)
        if length is None:
            return self.page_limit
        expected = (last_closed - cursor) // length + 1
        return max(1, min(self.page_limit, expected))


def _reusable(previous: pd.DataFrame | None, start_ms: int, now_ms: int) -> pd.DataFrame:
    """Stored candles still inside the window (and closed by the exchange's clock)."""
    if previous is None or previous.empty:
        return empty_candle_frame()
    mask = (previous["open_time"] >= start_ms) & (previous["close_time"] < now_ms)
    return previous.loc[mask, list(CANDLE_COLUMNS)].reset_index(drop=True)
