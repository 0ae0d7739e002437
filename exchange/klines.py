"""Kline rows as the exchange sends them -> the candle frame (``common.candles``)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from common.candles import CANDLE_COLUMNS, DECIMAL_COLUMNS, INTEGER_COLUMNS, empty_candle_frame
from common.errors import BadResponseError

# Binance's row: 11 fields we keep, then an unused one ("ignore").
KLINE_FIELDS = len(CANDLE_COLUMNS)


def check_kline_rows(rows: list[Any]) -> None:
    """Refuse a klines answer whose rows are not the exchange's layout."""
    for row in rows:
        if not (
            isinstance(row, list) and len(row) >= KLINE_FIELDS and isinstance(row[0], int) and isinstance(row[6], int)
        ):
            raise BadResponseError(f"klines answer has a malformed row: {str(row)[:80]}")


def rows_to_frame(rows: list[list[Any]]) -> pd.DataFrame:
    """Exchange rows -> candle frame, decimal strings untouched, column 12 dropped."""
    if not rows:
        return empty_candle_frame()
    frame = pd.DataFrame([row[:KLINE_FIELDS] for row in rows], columns=list(CANDLE_COLUMNS))
    for column in INTEGER_COLUMNS:
        frame[column] = frame[column].astype("int64")
    for column in DECIMAL_COLUMNS:
        frame[column] = frame[column].astype(str)
    return frame
