"""The candle table ("candle frame"): the one in-memory shape of klines.

Columns in the exchange's order, ``open_time``/``close_time`` as int64 epoch
milliseconds (as the exchange sends them), ``number_of_trades`` as int64 and
every price and volume as the exact decimal string the exchange sent, so no
float rounding ever reaches a file. The exchange layer produces it, every
file format writes and reads it.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

CANDLE_COLUMNS: tuple[str, ...] = (
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_asset_volume",
    "number_of_trades",
    "taker_buy_base_asset_volume",
    "taker_buy_quote_asset_volume",
)
TIME_COLUMNS: tuple[str, ...] = ("open_time", "close_time")
INTEGER_COLUMNS: tuple[str, ...] = (*TIME_COLUMNS, "number_of_trades")
DECIMAL_COLUMNS: tuple[str, ...] = tuple(c for c in CANDLE_COLUMNS if c not in INTEGER_COLUMNS)


# Prices and volumes: pandas' string dtype (NaN for missing, like its default ``str``) held as
# Python strings, not Arrow. Pages are small, and every Arrow conversion lets go of the GIL and
# takes it back several times: with 30 export threads that turned into a lock convoy which
# cost more CPU than the pages' own work.
TEXT_DTYPE = pd.StringDtype(storage="python", na_value=np.nan)


def candle_frame(columns: Mapping[str, Any]) -> pd.DataFrame:
    """A candle frame from one sequence of values per column: times and trades as int64,
    prices and volumes as text (``TEXT_DTYPE``); raises if a column is missing."""
    data: dict[str, Any] = {}
    for column in CANDLE_COLUMNS:
        values = columns[column]
        if column in INTEGER_COLUMNS:
            data[column] = np.asarray(values, dtype="int64")
        else:
            data[column] = pd.array(values, dtype=TEXT_DTYPE)
    return pd.DataFrame(data, copy=False)


def empty_candle_frame() -> pd.DataFrame:
    """A candle frame with no rows (a fresh copy: callers may add to it)."""
    return _empty_template().copy()


@functools.cache
def _empty_template() -> pd.DataFrame:
    # Built once: every symbol without a previous file asks for one, and building it
    # column by column costs a few ms of pandas work that threads cannot overlap.
    return candle_frame(dict.fromkeys(CANDLE_COLUMNS, ()))


def merge_candles(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate, dedupe on open_time (the newest answer wins), sort ascending."""
    present = [f for f in frames if len(f)]
    if not present:
        return empty_candle_frame()
    merged = pd.concat(present, ignore_index=True)
    merged = merged.drop_duplicates(subset="open_time", keep="last")
    return merged.sort_values("open_time", kind="stable").reset_index(drop=True)
