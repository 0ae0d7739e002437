"""Historical klines -> candle tables: closed candles only, incremental, paginated.

Only candles closed by the *exchange's* clock are kept, and only what is missing is asked for,
from the previous file's newest candle on: the file is reused only if that candle is the
exchange's (else ``SymbolExport.mismatch`` says why). Pages are trusted within bounds, never
repaired: at most the rows asked for, the rule book inside the span asked for, and no candle
further ahead of *this machine's* clock than ``max_ahead_of_local_ms``.
"""

from __future__ import annotations

import functools
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pyarrow as pa

from crypto_data_export.core.candles import differing_rows, empty_candle_frame, first_open_ms, last_open_ms, within
from crypto_data_export.core.clock import from_ms, ms_to_iso, to_iso
from crypto_data_export.core.errors import BadResponseError, ClockSkewError, NoDataError, StopRequested
from crypto_data_export.core.intervals import DAY_MS, first_open_from_ms, fixed_length_ms, floor_open_ms, next_open_ms
from crypto_data_export.core.rules import check_candles
from crypto_data_export.exchange.client import ExchangeClient

logger = logging.getLogger(__name__)

# How far ahead of this machine's clock a candle may open: beyond a day, one of the two clocks is wrong.
DEFAULT_MAX_AHEAD_OF_LOCAL_MS = DAY_MS
# The shortest month: an upper bound on how many 1M candles a window can hold.
_SHORTEST_MONTH_MS = 28 * DAY_MS


@dataclass
class SymbolExport:
    """The outcome of one symbol's export: the frame and what it cost."""

    symbol: str
    frame: pa.Table
    window_start_ms: int
    server_time_ms: int
    reused_rows: int = 0
    fetched_rows: int = 0
    calls: int = 0
    requested_from_ms: int | None = None
    # Set when the reused candles start later than the window (the look-back grew):
    # the head of the window, up to this open time, is fetched too.
    head_until_ms: int | None = None
    # What this run learnt: the exchange has no candle from ``empty_from_ms`` up to
    # ``data_from_ms`` (a listing inside the window, an outage), so the next run need not
    # ask again for the head before the reused candles.
    empty_from_ms: int | None = None
    data_from_ms: int | None = None
    # An explicit window's end (a backfill's --end): only candles that open before it.
    window_end_ms: int | None = None
    # Why the stored candles were not reused: the newest one is not the exchange's (see iter_chunks).
    mismatch: str | None = None


# Candles opening in [start_ms, until_ms] (until None: up to the newest closed candle), in order.
RangeFetch = Callable[[int, int | None], Iterable[pa.Table]]
# Told a page's JSON text (as the exchange sent it) and the open times [from, to] it covers (a resume journal).
RowsSink = Callable[[bytes, int, int], None]


class CandleSource(Protocol):
    """Where the export job takes the candles of a series it must fetch: REST pages
    (``RestPages``), the bulk archive first, REST backed by resume journals (``crypto_data_export.backfill``)."""

    def chunks(self, history: HistoricalDataExporter, export: SymbolExport) -> Iterable[pa.Table]:
        """The candles of ``export``'s window, in order (``HistoricalDataExporter.iter_chunks``)."""

    def written(self, symbol: str, interval: str) -> None:
        """The series' file is published: whatever was kept to resume it may go."""


class RestPages:
    """Every missing candle from the REST API, nothing kept between runs."""

    def chunks(self, history: HistoricalDataExporter, export: SymbolExport) -> Iterable[pa.Table]:
        return history.iter_chunks(export)

    def written(self, symbol: str, interval: str) -> None:
        pass


class HistoricalDataExporter:
    """Fetch the closed candles of a symbol over a look-back window."""

    def __init__(
        self,
        client: ExchangeClient,
        interval: str = "1h",
        lookback_days: float = 2.0,
        *,
        page_limit: int | None = None,
        max_ahead_of_local_ms: int = DEFAULT_MAX_AHEAD_OF_LOCAL_MS,
        local_clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.interval = interval
        self.lookback_days = lookback_days
        self.page_limit = page_limit or client.market.page_size
        self.max_ahead_of_local_ms = max_ahead_of_local_ms
        self._local_clock = local_clock

    def last_closed_open_ms(self, server_time_ms: int, until_ms: int | None = None) -> int:
        """Open time of the newest candle that is closed at ``server_time_ms`` (and opens by ``until_ms``)."""
        current_open = floor_open_ms(server_time_ms, self.interval)
        # The candle that contains "now" is still open; the one before it is the newest closed.
        newest = floor_open_ms(current_open - 1, self.interval)
        return newest if until_ms is None else min(newest, floor_open_ms(until_ms, self.interval))

    def window_start_ms(
        self, now_ms: int, lookback_days: float | None = None, window: tuple[int, int] | None = None
    ) -> int:
        """The window's first open time: ``window``'s start, else the look-back from ``now_ms``."""
        days = self.lookback_days if lookback_days is None else lookback_days
        return now_ms - int(days * DAY_MS) if window is None else window[0]

    def plan(
        self,
        symbol: str,
        previous: pa.Table | None = None,
        *,
        server_time_ms: int | None = None,
        lookback_days: float | None = None,
        known_empty: tuple[int, int] | None = None,
        window: tuple[int, int] | None = None,
    ) -> SymbolExport:
        """Decide what to reuse from ``previous`` and where fetching starts. ``window``: explicit open
        times [start, end) (a backfill's range) instead of the look-back; the last closed candle still
        ends it. ``known_empty``: (from, to) open times where an earlier run found no candle; covering
        the window's head before the reused candles, that head is not asked again (one request a cycle)."""
        now_ms = self.client.sync_clock() if server_time_ms is None else server_time_ms
        self._check_clock(self.last_closed_open_ms(now_ms), now_ms, "a time of")  # before any request
        start_ms = self.window_start_ms(now_ms, lookback_days, window)  # candles opened in the look-back
        end_ms = None if window is None else window[1]
        kept = candles_in_window(previous, start_ms, now_ms, end_ms)
        if not len(kept):
            return SymbolExport(symbol, kept, start_ms, now_ms, requested_from_ms=start_ms, window_end_ms=end_ms)
        first_kept = first_open_ms(kept)
        head_known_empty = known_empty is not None and known_empty[0] <= start_ms and known_empty[1] >= first_kept
        gap_at_head = first_kept > first_open_from_ms(start_ms, self.interval)
        head_until = first_kept - 1 if gap_at_head and not head_known_empty else None
        return SymbolExport(
            symbol,
            kept,
            start_ms,
            now_ms,
            reused_rows=len(kept),
            requested_from_ms=start_ms if head_until is not None else last_open_ms(kept),
            head_until_ms=head_until,
            empty_from_ms=known_empty[0] if known_empty and head_known_empty else None,
            data_from_ms=known_empty[1] if known_empty and head_known_empty else None,
            window_end_ms=end_ms,
        )

    def iter_chunks(self, export: SymbolExport, fetch: RangeFetch | None = None) -> Iterator[pa.Table]:
        """The window's head if the look-back grew, the reused candles, then each fetched page (sorted,
        unique; one by one: a year of 1m never sits whole in memory). ``fetch`` gives the candles of a
        range (the archive, a journal; by default REST pages, ``pages_of``). NoDataError when nothing is
        closed in the window, so that no empty file is ever written."""
        assert export.requested_from_ms is not None
        if fetch is None:
            fetch = functools.partial(self.pages_of, export)
        if export.head_until_ms is not None:
            first_open: int | None = None
            for page in fetch(export.window_start_ms, export.head_until_ms):
                export.fetched_rows += len(page)
                first_open = first_open_ms(page) if first_open is None else first_open
                yield page
            export.empty_from_ms = export.window_start_ms
            export.data_from_ms = first_open_ms(export.frame) if first_open is None else first_open
        until = None if export.window_end_ms is None else export.window_end_ms - 1
        if len(export.frame):  # the tail from the newest stored candle on: it must be the exchange's
            tail = iter(fetch(last_open_ms(export.frame), until))
            overlap = next(tail, empty_candle_frame())
            export.mismatch = _mismatch(export.frame, overlap)
            if export.mismatch is None:
                yield export.frame
                pages: Iterable[pa.Table] = itertools.chain([overlap.slice(1)] if len(overlap) > 1 else [], tail)
            else:  # not reused: the window (after a head just fetched) comes from the exchange
                export.reused_rows, refetch_from = 0, first_open_ms(export.frame)
                if export.head_until_ms is None:
                    refetch_from, export.empty_from_ms, export.data_from_ms = export.window_start_ms, None, None
                export.frame = empty_candle_frame()
                pages = fetch(refetch_from, until)
        else:
            pages = fetch(export.requested_from_ms, until)
        for page in pages:
            if export.reused_rows == 0 and export.fetched_rows == 0:  # the window's first candle, fetched
                export.empty_from_ms, export.data_from_ms = export.window_start_ms, first_open_ms(page)
            export.fetched_rows += len(page)
            yield page
        if export.reused_rows + export.fetched_rows == 0:
            raise NoDataError(
                f"{export.symbol}: the exchange has no closed {self.interval} candle since "
                f"{from_ms(export.window_start_ms):%Y-%m-%d %H:%M:%S+00:00}; the symbol may be delisted or halted"
            )

    def pages_of(
        self, export: SymbolExport, start_ms: int, until_ms: int | None, on_rows: RowsSink | None = None
    ) -> Iterator[pa.Table]:
        """Pages of ``export``'s closed candles from ``start_ms`` (up to the open time ``until_ms``): ``spans_of``."""
        last_closed = self.last_closed_open_ms(export.server_time_ms, until_ms)
        return self.spans_of(export, [(start_ms, last_closed)] if start_ms <= last_closed else [], on_rows)

    def spans_of(
        self, export: SymbolExport, spans: list[tuple[int, int]], on_rows: RowsSink | None = None
    ) -> Iterator[pa.Table]:
        """The closed candles opening in each span [from, to] (ascending, disjoint), page by page in order,
        each page checked (``check_page``). The first page is asked for alone (a short window is that one
        call; a symbol listed inside the window shows where its candles start); the others, cut on the
        interval grid, go out in parallel on the client's page pool, at most ``page_slots`` of all series
        asked for and not yet used. ``on_rows(text, from, to)``: each checked page's JSON text as the exchange
        sent it and the open times it covers completely, as they arrive (a resume journal)."""
        if not spans:
            return
        (first, last), *others = spans
        page, covered = self._page(export, first, last, on_rows)
        export.calls += 1
        if len(page):
            yield page
        rest = [(covered + 1, last)] if covered < last else []
        grid = (page for span in rest + others for page in self._grid(*span))
        pending: deque[Future[tuple[pa.Table, int]]] = deque()
        slots, span = self.client.page_slots, next(grid, None)
        try:
            while span is not None or pending:
                self._check_stop(export)
                # Wait for a slot only with none of ours pending: a series holding slots goes on using them.
                while span is not None and (slots.acquire(timeout=0.2) if not pending else slots.acquire(False)):
                    pending.append(self.client.page_pool.submit(self._page, export, *span, on_rows))
                    span = next(grid, None)
                if pending:
                    future = pending.popleft()
                    try:
                        page = future.result()[0]
                    finally:
                        slots.release()
                    export.calls += 1
                    if len(page):
                        yield page
        finally:
            for future in pending:
                future.cancel()
                slots.release()

    def _grid(self, start_ms: int, last_ms: int) -> Iterator[tuple[int, int]]:
        """[start_ms, last_ms] cut on the interval grid into spans of at most ``page_limit`` candles."""
        while start_ms <= last_ms:
            first = first_open_from_ms(start_ms, self.interval)
            end = min(last_ms, next_open_ms(first, self.interval, self.page_limit) - 1)
            yield start_ms, end
            start_ms = end + 1

    def _page(
        self, export: SymbolExport, start_ms: int, last_ms: int, on_rows: RowsSink | None
    ) -> tuple[pa.Table, int]:
        """A checked page of the candles opening in [start_ms, last_ms]; the open time up to which it holds all."""
        self._check_stop(export)
        expected = self._expected_candles(start_ms, last_ms)
        limit = max(1, min(self.page_limit, expected))
        page, text = self.client.klines_page(
            export.symbol, self.interval, start_ms=start_ms, end_ms=last_ms, limit=limit
        )
        self.check_page(page, limit, start_ms, last_ms)
        covered = last_open_ms(page) if len(page) == limit < expected else last_ms
        if on_rows is not None:
            on_rows(text, start_ms, covered)
        return page, covered

    def _check_stop(self, export: SymbolExport) -> None:
        if self.client.limiter.stop_event is not None and self.client.limiter.stop_event.is_set():
            raise StopRequested(
                f"stopped on request after {export.calls} page(s) of {export.symbol}; its previous file is kept"
            )

    def _expected_candles(self, start_ms: int, last_closed: int) -> int:
        """How many candles can open in [start_ms, last_closed] (an upper bound for ``1M``)."""
        first, last = first_open_from_ms(start_ms, self.interval), floor_open_ms(last_closed, self.interval)
        return max(0, (last - first) // (fixed_length_ms(self.interval) or _SHORTEST_MONTH_MS) + 1)

    def check_page(self, page: pa.Table, limit: int, cursor: int, last_closed: int) -> None:
        """The rule book inside the span asked for (open times [cursor, last_closed]), no candle from the future."""
        if len(page) > limit:
            raise BadResponseError(
                f"the exchange sent {len(page)} {self.interval} candles for a page of at most {limit}"
            )
        if not len(page):
            return
        breach = check_candles(page, self.interval, (cursor, last_closed + 1))
        if breach is not None:
            opened = page.column("open_time")[breach.row - 1].as_py()
            phrase = {
                "before": f"opens before the start of the page asked for ({ms_to_iso(cursor)})",
                "after": f"opens after the end of the page asked for ({ms_to_iso(last_closed)})",
                "grid": f"is not on the {self.interval} grid",
                "close": f"does not close when a {self.interval} candle closes",
                "order": "does not come after the candle before it",
            }.get(breach.rule)
            what = breach.reason if phrase is None else f"{phrase} ({breach.reason})"
            raise BadResponseError(
                f"the exchange sent a bad page: row {breach.row} (open_time {opened}, {ms_to_iso(opened)}) {what}"
            )
        self._check_clock(last_open_ms(page), last_open_ms(page), "a candle that opens at")

    def _check_clock(self, newest_open_ms: int, exchange_ms: int, what: str) -> None:
        """Refuse a candle opening too far ahead of this machine's clock: one of the two clocks is wrong."""
        local_ms = int(self._local_clock() * 1000)
        if newest_open_ms <= local_ms + self.max_ahead_of_local_ms:
            return
        days = (exchange_ms - local_ms) / DAY_MS
        raise ClockSkewError(
            f"the exchange's clock gives {what} {to_iso(from_ms(exchange_ms))} but this machine's clock "
            f"says {to_iso(from_ms(local_ms))} ({days:.1f} days ahead, more than the "
            f"{self.max_ahead_of_local_ms / 3_600_000:g} h allowed); nothing is written: check the clock "
            "of this machine (NTP) and BINANCE_BASE_URL"
        )


def _mismatch(stored: pa.Table, fetched: pa.Table) -> str | None:
    """Why the newest stored candle is not the first fetched one (None: it is)."""
    mine, theirs = stored.slice(len(stored) - 1), fetched.slice(0, 1)
    column = next(iter(differing_rows(mine, theirs) if len(theirs) else ["open_time"]), None)
    if column is None:
        return None
    value, other = mine.column(column)[0].as_py(), theirs.column(column)[0].as_py() if len(theirs) else None
    return f"the newest stored candle, {ms_to_iso(last_open_ms(stored))}, has {column} {value}, exchange {other}"


def candles_in_window(previous: pa.Table | None, start_ms: int, now_ms: int, end_ms: int | None = None) -> pa.Table:
    """Stored candles still inside the window (opened before ``end_ms`` if given, and
    closed by the exchange's clock)."""
    if previous is None:
        return empty_candle_frame()
    return within(previous, start_ms, np.iinfo(np.int64).max if end_ms is None else end_ms, closed_before_ms=now_ms)
