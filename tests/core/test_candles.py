"""The candle model's helpers: its time text and its table builder."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from crypto_data_export.core.candles import CANDLE_COLUMNS, DECIMAL_COLUMNS, candle_frame, format_utc_ms, utc_text


def test_the_time_text_is_the_same_from_python_and_from_arrow() -> None:
    """A few values are formatted in Python, many by Arrow kernels: one text either way."""
    rng = np.random.default_rng(21)
    values = np.concatenate(
        [rng.integers(-(10**12), 4 * 10**12, 200), rng.integers(0, 10**9, 50) * 1000, [0, -1, 253_402_300_799_999]]
    )
    small = [format_utc_ms(values[i : i + 1])[0] for i in range(len(values))]
    assert small == utc_text(values).to_pylist()
    assert small[-3:] == ["1970-01-01 00:00:00+00:00", "1969-12-31 23:59:59.999+00:00", "9999-12-31 23:59:59.999+00:00"]


def test_candle_frame_keeps_each_decimal_column_apart() -> None:
    columns = {c: [f"{c}-{row}" for row in range(3)] for c in DECIMAL_COLUMNS}
    columns.update(open_time=[0, 60_000, 120_000], close_time=[59_999, 119_999, 179_999], number_of_trades=[1, 2, 3])
    table = candle_frame(columns)
    assert table.column_names == list(CANDLE_COLUMNS)
    assert all(table.column(c).to_pylist() == columns[c] for c in CANDLE_COLUMNS)
    with pytest.raises(pa.ArrowInvalid):
        candle_frame({**columns, "close": ["1", "2"]})
