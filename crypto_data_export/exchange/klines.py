"""Kline rows as the exchange sends them -> the candle table (``crypto_data_export.core.candles``)."""

from __future__ import annotations

import json
import re
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from crypto_data_export.core.candles import (
    CANDLE_COLUMNS,
    CANDLE_SCHEMA,
    DECIMAL_COLUMNS,
    TIME_COLUMNS,
    candle_frame,
    empty_candle_frame,
)
from crypto_data_export.core.errors import BadResponseError
from crypto_data_export.core.text import printable

# Binance's row: 11 fields we keep, then an unused one ("ignore").
KLINE_FIELDS = len(CANDLE_COLUMNS)
# Bounds on what a row may hold, so that whatever passes fits an int64 and a sane CSV cell.
MAX_TIME_MS = 253_402_300_799_999  # 9999-12-31, the last millisecond a datetime can hold
MAX_INTEGER = 2**63 - 1
MAX_DECIMAL_CHARS = 40
_DECIMAL_FIELDS = tuple(CANDLE_COLUMNS.index(c) for c in DECIMAL_COLUMNS)
_OPEN, _CLOSE, _TRADES = (CANDLE_COLUMNS.index(c) for c in ("open_time", "close_time", "number_of_trades"))


def check_kline_rows(rows: list[Any]) -> None:
    """Refuse a klines answer whose rows are not the exchange's layout (or hold absurd values)."""
    for row in rows:
        if not _row_fits(row):
            raise BadResponseError(f"klines answer has a malformed row: {printable(repr(row), 80)}")


def _row_fits(row: Any) -> bool:
    # Exact types (``type(x) is int``: JSON gives plain ints, and a bool is no count), tested
    # inline: this runs for every row of every page.
    if type(row) is not list or len(row) < KLINE_FIELDS:
        return False
    opened, closed, trades = row[_OPEN], row[_CLOSE], row[_TRADES]
    if type(opened) is not int or type(closed) is not int or type(trades) is not int:
        return False
    if not (0 <= opened <= MAX_TIME_MS and 0 <= closed <= MAX_TIME_MS and 0 <= trades <= MAX_INTEGER):
        return False
    # Prices and volumes are the exchange's exact decimal strings (checked as numbers by the store).
    for index in _DECIMAL_FIELDS:
        value = row[index]
        if type(value) is not str or not 0 < len(value) <= MAX_DECIMAL_CHARS:
            return False
    return True


def rows_to_frame(rows: list[list[Any]]) -> pa.Table:
    """Exchange rows -> candle table, decimal strings untouched, column 12 dropped."""
    if not rows:
        return empty_candle_frame()
    # Column by column (not row by row): each column gets its final dtype in one step.
    fields = zip(*(row[:KLINE_FIELDS] for row in rows), strict=True)
    return candle_frame(dict(zip(CANDLE_COLUMNS, fields, strict=True)))


def rows_text(rows: list[list[Any]]) -> bytes:
    """Checked rows as ASCII JSON text (what a resume journal keeps of an answer not in ``exact_page``'s layout)."""
    return json.dumps(rows, separators=(",", ":")).encode()


# An answer in Binance's exact layout (no spaces; times and counts plain digits, every price and
# volume digits and dots, "ignore" digits), which passes ``check_kline_rows`` by construction: it is
# read by pyarrow's CSV reader, with no Python object per value (a year of 1m: 1.5 s less CPU).
# Possessive (``++``, ``{}+``): nothing to backtrack, no state kept per row.
_INT, _DEC = rb"(?:0|[1-9][0-9]{0,18}+)", rb'"[0-9.]{1,%d}+"' % MAX_DECIMAL_CHARS
_ROW = rb'\[%s,(?:%s,){5}%s,%s,%s,%s,%s,"[0-9]{0,40}+"\]' % (_INT, _DEC, _INT, _DEC, _INT, _DEC, _DEC)
_EXACT_PAGE = re.compile(rb"\[%s(?:,%s)*+\]" % (_ROW, _ROW))
_READ = pacsv.ReadOptions(column_names=[*CANDLE_COLUMNS, "ignore"], use_threads=False)
_CONVERT = pacsv.ConvertOptions(
    column_types=CANDLE_SCHEMA, include_columns=list(CANDLE_COLUMNS), strings_can_be_null=False
)


def exact_page(body: bytes) -> tuple[pa.Table, bytes] | None:
    """A klines answer in Binance's exact layout -> (its candle table, the body as received); None for
    any other body (then ``json.loads`` and ``check_kline_rows`` judge it, row by row)."""
    if not _EXACT_PAGE.fullmatch(body):
        return None
    lines: Any = pa.BufferReader(body[2:-2].replace(b"],[", b"\n"))  # a NativeFile (the stubs know IO only)
    try:
        page = pacsv.read_csv(lines, read_options=_READ, convert_options=_CONVERT)
    except pa.ArrowInvalid:  # a count beyond int64
        return None
    if any(pc.max(page.column(column)).as_py() > MAX_TIME_MS for column in TIME_COLUMNS):
        return None
    return page, body
