"""Binance kline intervals and their time grid: every interval but ``1M`` has a fixed length;
``1w`` candles open on Monday 00:00 UTC, ``1M`` candles on the first of each month."""

from __future__ import annotations

from datetime import UTC, datetime

SECOND_MS = 1000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS

# Case matters: "1m" is a minute, "1M" a month.
INTERVAL_MS: dict[str, int | None] = {
    "1s": SECOND_MS,
    "1m": MINUTE_MS,
    "3m": 3 * MINUTE_MS,
    "5m": 5 * MINUTE_MS,
    "15m": 15 * MINUTE_MS,
    "30m": 30 * MINUTE_MS,
    "1h": HOUR_MS,
    "2h": 2 * HOUR_MS,
    "4h": 4 * HOUR_MS,
    "6h": 6 * HOUR_MS,
    "8h": 8 * HOUR_MS,
    "12h": 12 * HOUR_MS,
    "1d": DAY_MS,
    "3d": 3 * DAY_MS,
    "1w": 7 * DAY_MS,
    "1M": None,
}
VALID_INTERVALS: tuple[str, ...] = tuple(INTERVAL_MS)

# The Unix epoch was a Thursday; Binance's weeks start on Monday.
_WEEK_ANCHOR_MS = 4 * DAY_MS


def is_valid_interval(interval: str) -> bool:
    return interval in INTERVAL_MS


def fixed_length_ms(interval: str) -> int | None:
    """Length of one candle in ms, or None for the calendar month."""
    return INTERVAL_MS[interval]


def grid_anchor_ms(interval: str) -> int:
    """Offset of the interval's grid from the epoch (only 1w is shifted)."""
    return _WEEK_ANCHOR_MS if interval == "1w" else 0


def _month_start(ms: int, months_ahead: int = 0) -> int:
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    index = moment.year * 12 + (moment.month - 1) + months_ahead
    start = datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)
    return int(start.timestamp() * 1000)


def floor_open_ms(ms: int, interval: str) -> int:
    """Open time of the candle that contains ``ms``."""
    if (length := INTERVAL_MS[interval]) is None:
        return _month_start(ms)
    anchor = grid_anchor_ms(interval)
    return (ms - anchor) // length * length + anchor


def next_open_ms(open_ms: int, interval: str, count: int = 1) -> int:
    """Open time of the candle ``count`` candles after the one opening at ``open_ms``."""
    length = INTERVAL_MS[interval]
    return _month_start(open_ms, months_ahead=count) if length is None else open_ms + count * length


def first_open_from_ms(ms: int, interval: str) -> int:
    """The first open time on the interval's grid at or after ``ms``."""
    first = floor_open_ms(ms, interval)
    return first if first >= ms else next_open_ms(first, interval)
