"""The candle model: one typed Arrow table (``CANDLE_SCHEMA``) from every source to every sink.

Columns in the exchange's order. The times are int64 epoch milliseconds: what the exchange sends, what the grid
arithmetic needs (plain numpy views, no time-zone conversion per page), what every sink formats from (Parquet's
``timestamp[ms, UTC]`` is a zero-copy cast). Every price and volume is the exact decimal text the exchange
sent: no float rounding ever reaches a file. The helpers below are the only way other packages make or
combine candles ("frame" in their names is this table).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from crypto_data_export.core.intervals import DAY_MS

# The system allocator, not jemalloc: jemalloc keeps the pages freed by up to 30 writer threads, and a backfill of 50
# symbols x 1 y x 1h peaked at 410 MB RSS, 203 MB with this (python -m benchmarks.bench_files).
pa.set_memory_pool(pa.system_memory_pool())

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
CANDLE_SCHEMA = pa.schema([(c, pa.int64() if c in INTEGER_COLUMNS else pa.string()) for c in CANDLE_COLUMNS])


@dataclass(frozen=True)
class SeriesId:
    """What a stored candle belongs to: nothing is reused or merged across two of these."""

    exchange_host: str
    market: str
    symbol: str
    interval: str


def exchange_host(base_url: str) -> str:
    """The exchange part of a series' identity: the host of its base URL, lower-case, with its port."""
    return urlsplit(base_url).netloc.lower()


def candle_frame(columns: Mapping[str, Any]) -> pa.Table:
    """A candle table from one sequence (list, tuple or numpy array) per column; raises (``KeyError``,
    ``pa.ArrowInvalid``/``TypeError``) if a column is missing or mistyped. Built straight from the Python values,
    never through pandas: small pages come from 30 export threads at once, and each pandas<->Arrow round trip releases
    and retakes the GIL several times (a lock convoy that once cost more CPU than the pages' work). The eight decimal
    columns are one text array, sliced: one conversion instead of eight."""
    rows = len(columns[CANDLE_COLUMNS[0]])
    if any(len(columns[c]) != rows for c in CANDLE_COLUMNS):
        raise pa.ArrowInvalid("candle columns of different lengths")
    text = pa.array(list(itertools.chain.from_iterable(columns[c] for c in DECIMAL_COLUMNS)), pa.string())
    decimals = {c: text.slice(i * rows, rows) for i, c in enumerate(DECIMAL_COLUMNS)}
    arrays = [decimals[f.name] if f.name in decimals else pa.array(columns[f.name], f.type) for f in CANDLE_SCHEMA]
    return pa.Table.from_arrays(arrays, schema=CANDLE_SCHEMA)


@functools.cache
def empty_candle_frame() -> pa.Table:
    """A candle table with no rows (tables are immutable: one is shared). Not ``Schema.empty_table`` nor
    ``pa.array([])``: they import pandas when it is installed (0.6 s, under the import lock 30 export threads
    wait on)."""
    return pa.Table.from_arrays([pa.nulls(0, field.type) for field in CANDLE_SCHEMA], schema=CANDLE_SCHEMA)


def open_times(candles: pa.Table) -> np.ndarray:
    """The open times as an int64 numpy array (a zero-copy view when the column has no nulls)."""
    return np.asarray(candles.column("open_time").to_numpy(), dtype=np.int64)


def first_open_ms(candles: pa.Table) -> int:
    return int(candles.column("open_time")[0].as_py())


def last_open_ms(candles: pa.Table) -> int:
    return int(candles.column("open_time")[-1].as_py())


def within(candles: pa.Table, start_ms: int, end_ms: int, *, closed_before_ms: int | None = None) -> pa.Table:
    """The candles that open in [start_ms, end_ms) (and close before ``closed_before_ms``, if given)."""
    opens = open_times(candles)
    keep = (opens >= start_ms) & (opens < end_ms)
    if closed_before_ms is not None:
        keep &= np.asarray(candles.column("close_time").to_numpy(), dtype=np.int64) < closed_before_ms
    kept = np.flatnonzero(keep)
    if len(kept) and kept[-1] - kept[0] + 1 == len(kept):  # one run of rows (a sorted file): zero-copy
        return candles.slice(int(kept[0]), len(kept))
    return candles.filter(pa.array(keep))


def differing_rows(mine: pa.Table, theirs: pa.Table) -> dict[str, np.ndarray]:
    """Each column's rows that differ between two candle tables of the same open times (row by row),
    only columns that do; numbers compared as numbers (float64 of the text: a Parquet file keeps
    doubles or 8 decimals, a futures answer fewer)."""
    found = {}
    for column in CANDLE_COLUMNS:
        kind = pa.int64() if column in INTEGER_COLUMNS else pa.float64()
        ours, other = (pc.cast(t.column(column), kind).to_numpy() for t in (mine, theirs))
        if len(rows := np.flatnonzero(ours != other)):
            found[column] = rows
    return found


def format_utc_ms(values: np.ndarray) -> np.ndarray:
    """Epoch ms -> ``2026-11-29 02:00:00+00:00`` (``.999`` kept when present): the CSV's time text. Up to
    ``_EDIT_IN_PYTHON`` values, numpy's ISO text is edited in Python: the Arrow kernels of ``utc_text`` cost ~30 us a
    call whatever the size, and a cycle formats two 48-row columns per symbol (0.2 -> 0.1 ms for a 48-row file's CSV
    text)."""
    values = np.asarray(values, dtype="int64")
    if len(values) > _EDIT_IN_PYTHON:
        return np.asarray(utc_text(values).to_numpy(zero_copy_only=False))
    iso = np.datetime_as_string(values.astype("datetime64[ms]"), unit="ms").tolist()
    return np.array([text.replace("T", " ").removesuffix(".000") + "+00:00" for text in iso], dtype=object)


_EDIT_IN_PYTHON = 256


def utc_text(values: np.ndarray) -> pa.Array:
    """``format_utc_ms`` as an Arrow string array. numpy formats, pyarrow edits the text: ``np.char`` took 0.54 s CPU
    for a year of 1m close times, this 0.27 s. Past ``_FORMAT_BY_PARTS`` values, each distinct day and each distinct
    time of day is formatted once and the texts are joined (0.35 -> 0.12 s for a year of 1m: a backfill's CPU is
    mostly writing its CSV); below it that costs more than it saves."""
    values = np.asarray(values, dtype="int64")
    join: Any = pc.binary_join_element_wise  # its stubs accept arrays only; scalars are broadcast
    if len(values) > _FORMAT_BY_PARTS:
        days, ms_of_day = np.divmod(values, DAY_MS)
        day_keys, day_at = np.unique(days, return_inverse=True)
        time_keys, time_at = np.unique(ms_of_day, return_inverse=True)
        day_text = np.datetime_as_string(day_keys.astype("datetime64[D]"), unit="D")
        clock = np.char.partition(np.datetime_as_string(time_keys.astype("datetime64[ms]"), unit="ms"), "T")[:, 2]
        time_text = np.char.add(np.char.add(" ", np.char.replace(clock, ".000", "")), "+00:00")
        return join(pa.array(day_text).take(day_at), pa.array(time_text).take(time_at), "")
    text = np.datetime_as_string(values.astype("datetime64[ms]"), unit="ms")
    # ".000" can only stand at the fraction, so dropping it keeps whole seconds plain.
    edited = pc.replace_substring(pc.replace_substring(pa.array(text, pa.string()), "T", " "), ".000", "")
    return join(edited, pa.scalar("+00:00"), pa.scalar(""))


_FORMAT_BY_PARTS = 4096
