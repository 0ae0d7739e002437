"""Historical klines -> candle frames: closed candles only, incremental, paginated.

``HistoricalDataExporter`` turns exchange answers into the candle frame of
``export_files`` (exact decimal strings, int64 ms times). It only ever keeps
candles whose close time is before the *exchange's* clock, so a skewed local
clock cannot let an unfinished candle into a file, and it asks only for what
is missing after the candles it is given from the previous file.

Run standalone it is a backfill tool::

    python export_historical_data.py --symbols BTCUSDT,ETHUSDT --days 365 --interval 1h
"""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pandas as pd

from config.intervals import DAY_MS, fixed_length_ms, floor_open_ms, next_open_ms
from config.settings import Settings, SettingsError, load_settings
from errors import ExportError, NoDataError, RunLockedError
from exchange_client import ExchangeClient
from export_files import CSV_COLUMNS, DECIMAL_COLUMNS, empty_candle_frame
from rate_limiter import WeightLimiter

logger = logging.getLogger("export_historical_data")

PAGE_LIMIT = 1000


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


def rows_to_frame(rows: list[list]) -> pd.DataFrame:
    """Exchange rows -> candle frame, decimal strings untouched, column 12 dropped."""
    if not rows:
        return empty_candle_frame()
    frame = pd.DataFrame([row[:11] for row in rows], columns=list(CSV_COLUMNS))
    frame["open_time"] = frame["open_time"].astype("int64")
    frame["close_time"] = frame["close_time"].astype("int64")
    frame["number_of_trades"] = frame["number_of_trades"].astype("int64")
    for column in DECIMAL_COLUMNS:
        frame[column] = frame[column].astype(str)
    return frame


def merge_candles(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate, dedupe on open_time (the newest answer wins), sort ascending."""
    frames = [f for f in frames if len(f)]
    if not frames:
        return empty_candle_frame()
    merged = pd.concat(frames, ignore_index=True)
    merged = merged.drop_duplicates(subset="open_time", keep="last")
    return merged.sort_values("open_time", kind="stable").reset_index(drop=True)


class HistoricalDataExporter:
    """Fetch the closed candles of a symbol over a look-back window."""

    def __init__(
        self,
        client: ExchangeClient,
        interval: str = "1h",
        lookback_days: float = 2.0,
        *,
        page_limit: int = PAGE_LIMIT,
    ) -> None:
        self.client = client
        self.interval = interval
        self.lookback_days = lookback_days
        self.page_limit = page_limit

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
        return SymbolExport(symbol, kept, start_ms, now_ms, reused_rows=len(kept),
                            requested_from_ms=start_ms if head_until is not None else int(kept["open_time"].iloc[-1]) + 1,
                            head_until_ms=head_until)

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
            for page in self.iter_closed_pages(export.symbol, export.window_start_ms, export.server_time_ms, export,
                                               until_ms=export.head_until_ms):
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
                f"{pd.Timestamp(export.window_start_ms, unit='ms', tz='UTC')}; the symbol may be delisted or halted"
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
        self, symbol: str, start_ms: int, server_time_ms: int, tally: SymbolExport | None = None,
        *, until_ms: int | None = None,
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
            page = page[(page["close_time"] < server_time_ms) & (page["open_time"] >= cursor)
                        & (page["open_time"] <= last_closed)]
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
    return previous.loc[mask, list(CSV_COLUMNS)].reset_index(drop=True)


def build_client(settings: Settings, limiter: WeightLimiter | None = None) -> ExchangeClient:
    """The one client of a process, configured from Settings."""
    return ExchangeClient(
        settings.base_url,
        connect_timeout=settings.connect_timeout_seconds,
        read_timeout=settings.http_timeout_seconds,
        retries=settings.http_retries,
        backoff=settings.http_backoff_seconds,
        pool_size=settings.workers,
        limiter=limiter,
    )


# -- standalone backfill ---------------------------------------------------------
def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="export_historical_data.py",
        description="Backfill closed klines into one CSV per symbol (atomic writes, resumable).",
        epilog="example: python export_historical_data.py --symbols BTCUSDT,ETHUSDT --days 365 --interval 1h",
    )
    parser.add_argument("--symbols", help="comma list of symbols (default: the configured list)")
    parser.add_argument("--days", type=float, help="look-back in days (default: EXPORT_LOOKBACK_DAYS)")
    parser.add_argument("--interval", help="kline interval, e.g. 1m, 1h, 1d (default: KLINE_INTERVAL)")
    parser.add_argument("--output", help="folder for the CSVs (default: EXPORT_DIR)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, run the backfill, report; exit 0 ok, 1 a symbol failed, 2 bad input, 75 locked."""
    # The job that writes files sits above this module (it uses FileManager); import it late.
    from export_job import backfill
    from tqdm import tqdm

    args = _parse_args(argv)
    overrides = {"KLINE_INTERVAL": args.interval, "EXPORT_DIR": args.output,
                 "EXPORT_LOOKBACK_DAYS": None if args.days is None else str(args.days)}
    try:
        settings = load_settings(_with_overrides(overrides), symbols_override=args.symbols)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # Retries and waits are normal; the console only shows what went wrong for good.
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s: %(message)s")
    bar = tqdm(total=len(settings.symbols), unit="symbol", disable=not sys.stderr.isatty())
    try:
        report = backfill(settings, on_symbol_done=lambda _outcome: bar.update(1))
    except RunLockedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 75
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        bar.close()
    for outcome in report.outcomes.values():
        line = f"{outcome.symbol}: {outcome.rows} rows -> {outcome.path}" if outcome.ok else f"{outcome.symbol}: FAILED: {outcome.error}"
        print(line, file=sys.stdout if outcome.ok else sys.stderr)
    return 0 if report.ok else 1


def _with_overrides(overrides: dict[str, str | None]) -> dict[str, str]:
    import os

    values = dict(os.environ)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return values


if __name__ == "__main__":
    sys.exit(main())
