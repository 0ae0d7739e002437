"""Kline rows as the exchange sends them -> the candle frame (``common.candles``)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from common.candles import CANDLE_COLUMNS, DECIMAL_COLUMNS, INTEGER_COLUMNS, empty_candle_frame
from common.errors import BadResponseError
from common.text import printable

# Binance's row: 11 fields we keep, then an unused one ("ignore").
KLINE_FIELDS = len(CANDLE_COLUMNS)
# Bounds on what a row may hold, so that whatever passes fits an int64 and a sane CSV cell.
MAX_TIME_MS = 253_402_300_799_999  # 9999-12-31, the last millisecond a datetime can hold
MAX_INTEGER = 2**63 - 1
MAX_DECIMAL_CHARS = 40
_INTEGER_FIELDS = tuple(CANDLE_COLUMNS.index(c) for c in INTEGER_COLUMNS)
_DECIMAL_FIELDS = tuple(CANDLE_COLUMNS.index(c) for c in DECIMAL_COLUMNS)
_TIME_FIELDS = (CANDLE_COLUMNS.index("open_time"), CANDLE_COLUMNS.index("close_time"))


def check_kline_rows(rows: list[Any]) -> None:
    """Refuse a klines answer whose rows are not the exchange's layout (or hold absurd values)."""
    for row in rows:
        if not _row_fits(row):
            raise BadResponseError(f"klines answer has a malformed row: {printable(repr(row), 80)}")


def _row_fits(row: Any) -> bool:
    if not isinstance(row, list) or len(row) < KLINE_FIELDS:
        return False
    for index in _INTEGER_FIELDS:
        value = row[index]
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_INTEGER:
            return False
    if any(row[index] > MAX_TIME_MS for index in _TIME_FIELDS):
        return False
    # Prices and volumes are the exchange's exact decimal strings (checked as numbers by the store).
    return all(isinstance(row[i], str) and 0 < len(row[i]) <= MAX_DECIMAL_CHARS for i in _DECIMAL_FIELDS)


def rows_to_frame(rows: list[list[Any]]) -> pd.DataFrame:
    """Exchange rows -> candle frame, decimal strings untouched, column 12 dropped."""
    if not rows:
        return empty_candle_frame()
    # Column by column (not row by row): pandas infers nothing, which is most of a
    # row-wise build's cost, and each column gets its final dtype in one step.
    fields = list(zip(*(row[:KLINE_FIELDS] for row in rows), strict=True))
    data: dict[str, Any] = {}
    for index, column in enumerate(CANDLE_COLUMNS):
        dtype = "int64" if column in INTEGER_COLUMNS else str
        data[column] = pd.Series(fields[index], dtype=dtype)
    return pd.DataFrame(data, copy=False)
