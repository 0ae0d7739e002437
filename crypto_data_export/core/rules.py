"""The one rule book: what a table of candles must obey, whatever it came from.

Every source and format goes through ``check_candles`` and wraps the ``Breach`` it returns in its own error
(``BadResponseError``, ``ArchiveUnusable``, an invalid file verdict); rules that need a format's text are that
format's thin layer on top. Vectorised over numpy views of the Arrow columns; a reason is worded only for the
first bad row. Gaps in the grid are a fact of the market (halts, delistings): counted (``gaps``), never a breach.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from crypto_data_export.core.candles import CANDLE_COLUMNS, DECIMAL_COLUMNS, format_utc_ms
from crypto_data_export.core.intervals import INTERVAL_MS, grid_anchor_ms

_MAX_SHOWN = 40


@dataclass(frozen=True)
class Breach:
    """The first rule a table breaks: its 1-based row, why, and the rule's name
    (``missing``, ``number``, ``negative``, ``order``, ``before``, ``after``, ``grid``,
    ``close``, ``bounds``) for callers that word their own message around it."""

    row: int
    reason: str
    rule: str = ""

    def __str__(self) -> str:
        return f"row {self.row}: {self.reason}"


def grid_steps(opens: np.ndarray, interval: str) -> np.ndarray:
    """Position of each open time on the grid (whole candles since the anchor, rounded down)."""
    length = INTERVAL_MS[interval]
    if length is None:
        return opens.astype("datetime64[ms]").astype("datetime64[M]").astype("int64")
    return (opens - grid_anchor_ms(interval)) // length


def grid_opens(steps: np.ndarray, interval: str) -> np.ndarray:
    """The open times of grid positions (``grid_steps`` inverted)."""
    length = INTERVAL_MS[interval]
    if length is None:
        return steps.astype("datetime64[M]").astype("datetime64[ms]").astype("int64")
    return steps * length + grid_anchor_ms(interval)


def gaps(opens: np.ndarray, interval: str, after_ms: int | None = None) -> list[tuple[int, int, int]]:
    """Runs of grid candles missing between consecutive open times (and after ``after_ms``):
    (first missing open, last missing open, count)."""
    if after_ms is not None:
        opens = np.concatenate([[after_ms], opens])
    steps = grid_steps(opens, interval)
    at = np.flatnonzero(np.diff(steps) > 1)
    first = grid_opens(steps[at] + 1, interval).tolist()
    last = grid_opens(steps[at + 1] - 1, interval).tolist()
    counts = (steps[at + 1] - steps[at] - 1).tolist()
    return list(zip(first, last, counts, strict=True))


def shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN] + "..."


def column_problem(kind: str, names: list[str]) -> str | None:
    """Name the first column that differs from ``CANDLE_COLUMNS``: more useful than two long lines."""
    for number, (have, want) in enumerate(zip(names, CANDLE_COLUMNS, strict=False), start=1):
        if have != want:
            return f"wrong {kind}: column {number} is {shown(have)}, expected {want!r}"
    if len(names) != len(CANDLE_COLUMNS):
        return f"wrong {kind}: {len(names)} columns, expected {len(CANDLE_COLUMNS)} ({','.join(CANDLE_COLUMNS)})"
    return None


def _time(ms: int) -> str:
    return str(format_utc_ms(np.array([ms]))[0])


def _ints(candles: pa.Table, column: str) -> np.ndarray:
    """An integer column as int64 (nulls as 0: the missing-value rule reports them)."""
    values = candles.column(column)
    return np.asarray((values.fill_null(pa.scalar(0, pa.int64())) if values.null_count else values).to_numpy())


def _numbers(candles: pa.Table) -> dict[str, np.ndarray]:
    """Each decimal column's text (or a Parquet file's float64 or decimal) -> float64 for comparisons
    only (NaN where a value is not a number). A small table's eight text columns are cast as one
    array (a cast per column was half the rule book on a 48-row page); a large one's column by
    column (as one array it would be copied whole: 92 against 60 ms for a year of 1m)."""
    text = all(pa.types.is_string(candles.schema.field(c).type) for c in DECIMAL_COLUMNS)
    if candles.num_rows > _CAST_TOGETHER_ROWS or not text:
        return {c: _floats(candles.column(c)) for c in DECIMAL_COLUMNS}
    texts = pa.chunked_array([chunk for c in DECIMAL_COLUMNS for chunk in candles.column(c).chunks], pa.string())
    return dict(zip(DECIMAL_COLUMNS, _floats(texts).reshape(len(DECIMAL_COLUMNS), -1), strict=True))


_CAST_TOGETHER_ROWS = 4096


def _floats(texts: pa.ChunkedArray) -> np.ndarray:
    """float64 of text (of a decimal by its text, as exact as before); a float64 column is used as it is."""
    if pa.types.is_decimal(texts.type):
        texts = pc.cast(texts, pa.string())
    try:
        floats = texts if texts.type == pa.float64() else pc.cast(texts, pa.float64())
        return np.asarray(floats.to_numpy(zero_copy_only=False), dtype=np.float64)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # error path only: which values
        return np.array([_float_or_nan(v) for v in texts.to_pylist()], dtype=np.float64)


def _float_or_nan(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (ValueError, TypeError):
        return float("nan")


def _missing(candles: pa.Table) -> np.ndarray:
    """Rows holding a null (Parquet can; CSV text and REST rows cannot)."""
    found = np.zeros(candles.num_rows, dtype=bool)
    for values in candles.columns:
        if values.null_count:
            found |= np.asarray(values.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    return found


def check_candles(
    candles: pa.Table,
    interval: str,
    window: tuple[int, int] | None = None,
    *,
    after_ms: int | None = None,
    first_row: int = 1,
) -> Breach | None:
    """The first row (and its first rule, in the order of ``rules`` below) that breaks the candle rules, or None.
    ``window``: open times must lie in [start, end) (a page asked for, an archive period, a backfill's range;
    end is the first open time not yet closed). ``after_ms``: the open time of the row just before this table
    (the previous block of the same stream), so order and duplicates hold across blocks; ``first_row``: the
    row number of the table's first row."""
    rows = candles.num_rows
    if rows == 0:
        return None
    opens, closes, trades = (_ints(candles, c) for c in ("open_time", "close_time", "number_of_trades"))
    numbers = _numbers(candles)
    steps = grid_steps(opens, interval)
    previous = np.empty_like(opens)
    previous[1:] = opens[:-1]
    previous[0] = opens[0] - 1 if after_ms is None else after_ms
    o, h, lo, c = (numbers[k] for k in ("open", "high", "low", "close"))

    def text(column: str, row: int) -> object:  # a number as its text, as read from a file
        return pc.cast(candles.column(column).slice(row, 1), pa.string())[0].as_py()

    def opened(row: int) -> str:
        return f"open_time {_time(int(opens[row]))}"

    def missing(row: int) -> str:
        return f"empty {next(c for c in CANDLE_COLUMNS if text(c, row) is None)}"

    def not_number(row: int) -> str:
        column = next(k for k in DECIMAL_COLUMNS if not np.isfinite(numbers[k][row]))
        value = text(column, row)
        return f"empty {column}" if value == "" else f"{column} {shown(value)} is not a finite number"

    def negative(row: int) -> str:
        column = next(k for k in DECIMAL_COLUMNS if numbers[k][row] < 0)
        return f"{column} {text(column, row)} is negative"

    def out_of_order(row: int) -> str:
        return f"{opened(row)} {'duplicates' if opens[row] == previous[row] else 'is before'} the previous row's"

    def bad_close(row: int) -> str:
        should = int(grid_opens(steps[row : row + 1] + 1, interval)[0]) - 1
        return f"close_time {_time(int(closes[row]))} should be {_time(should)} for {interval}"

    start, end = window or (np.iinfo(np.int64).min, np.iinfo(np.int64).max)
    # Each rule: a per-row mask and its reason, worded only for the row that is reported.
    rules: list[tuple[str, np.ndarray, Callable[[int], str]]] = [
        ("missing", _missing(candles), missing),
        ("number", np.logical_or.reduce([~np.isfinite(v) for v in numbers.values()]), not_number),
        ("negative", np.logical_or.reduce([v < 0 for v in numbers.values()]), negative),
        ("negative", trades < 0, lambda r: f"number_of_trades {int(trades[r])} is not an integer >= 0"),
        ("order", opens <= previous, out_of_order),
        ("before", opens < start, lambda r: f"{opened(r)} is before the window's start {_time(start)}"),
        ("after", opens >= end, lambda r: f"{opened(r)} is not before the window's end {_time(end)}"),
        ("grid", grid_opens(steps, interval) != opens, lambda r: f"{opened(r)} is not on the {interval} grid"),
        ("close", closes != grid_opens(steps + 1, interval) - 1, bad_close),
        ("bounds", h < lo, lambda r: f"high {text('high', r)} < low {text('low', r)}"),
        ("bounds", h < np.maximum(o, c), lambda r: f"high {text('high', r)} < max(open, close)"),
        ("bounds", lo > np.minimum(o, c), lambda r: f"low {text('low', r)} > min(open, close)"),
    ]
    masks = [np.asarray(mask, dtype=bool) for _, mask, _ in rules]
    broken = np.logical_or.reduce(masks)
    if not broken.any():
        return None
    row = int(np.argmax(broken))
    name, describe = next((name, describe) for mask, (name, _, describe) in zip(masks, rules, strict=True) if mask[row])
    return Breach(row + first_row, describe(row), name)
