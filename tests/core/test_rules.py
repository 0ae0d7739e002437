"""The one rule book (core.rules.check_candles), and every source and format refusing with its reason."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from crypto_data_export.core.candles import CANDLE_COLUMNS, candle_frame, empty_candle_frame, within
from crypto_data_export.core.errors import BadResponseError
from crypto_data_export.core.intervals import HOUR_MS
from crypto_data_export.core.rules import Breach, check_candles, gaps
from crypto_data_export.exchange.archive import ArchiveUnusable, daily_period, read_period_frame
from crypto_data_export.exchange.client import ExchangeClient
from crypto_data_export.exchange.history import HistoricalDataExporter, SymbolExport
from crypto_data_export.exchange.klines import rows_to_frame
from crypto_data_export.sandbox.fake_exchange import generate_candle
from crypto_data_export.store.formats.csv_format import CSV_HEADER, csv_lines
from crypto_data_export.store.formats.parquet_format import parquet_table
from crypto_data_export.store.scan import validate_file

DAY = 1_730_073_600_000  # 2024-10-28 00:00 UTC


def rows(n: int = 5, start: int = DAY) -> list[list[Any]]:
    return [generate_candle("BTCUSDT", "1h", start + i * HOUR_MS) for i in range(n)]


def table(n: int = 5, **changes: tuple[int, Any]) -> pa.Table:
    """n good 1h candles, then ``column=(row, value)`` changes (0-based row)."""
    data = {c: [r[k] for r in rows(n)] for k, c in enumerate(CANDLE_COLUMNS)}
    for column, (row, value) in changes.items():
        data[column][row] = value
    return candle_frame(data)


def test_good_candles_break_no_rule() -> None:
    assert check_candles(table(), "1h") is None
    assert check_candles(table(0), "1h") is None
    assert check_candles(table(), "1h", (DAY, DAY + 5 * HOUR_MS)) is None


@pytest.mark.parametrize(
    ("changes", "row", "rule", "reason"),
    [
        ({"high": (1, "1.0")}, 2, "bounds", "high 1.0 < low"),
        ({"open": (2, "abc")}, 3, "number", "open 'abc' is not a finite number"),
        ({"open": (2, "")}, 3, "number", "empty open"),
        ({"volume": (3, "-1.5")}, 4, "negative", "volume -1.5 is negative"),
        ({"number_of_trades": (0, -3)}, 1, "negative", "number_of_trades -3 is not an integer >= 0"),
        ({"open_time": (2, DAY + HOUR_MS)}, 3, "order", "duplicates the previous row's"),
        ({"open_time": (2, DAY)}, 3, "order", "is before the previous row's"),
        ({"open_time": (1, DAY + HOUR_MS + 1)}, 2, "grid", "is not on the 1h grid"),
        ({"close_time": (4, DAY + 5 * HOUR_MS)}, 5, "close", "should be 2024-10-28 04:59:59.999+00:00 for 1h"),
        ({"open": (1, None)}, 2, "missing", "empty open"),
        ({"close_time": (1, None)}, 2, "missing", "empty close_time"),
    ],
)
def test_each_rule_names_the_first_bad_row(
    changes: dict[str, tuple[int, Any]], row: int, rule: str, reason: str
) -> None:
    breach = check_candles(table(**changes), "1h")
    assert breach is not None and (breach.row, breach.rule) == (row, rule) and reason in breach.reason, breach


def test_the_first_bad_row_wins_whatever_rule_it_breaks() -> None:
    breach = check_candles(table(high=(3, "1.0"), open_time=(4, DAY)), "1h")
    assert breach is not None and breach.row == 4 and breach.rule == "bounds"


def test_window_and_continuation() -> None:
    breach = check_candles(table(), "1h", (DAY + HOUR_MS, DAY + 10 * HOUR_MS))
    assert breach == Breach(
        1, "open_time 2024-10-28 00:00:00+00:00 is before the window's start 2024-10-28 01:00:00+00:00", "before"
    )
    breach = check_candles(table(), "1h", (DAY, DAY + 4 * HOUR_MS))
    assert breach is not None and (breach.row, breach.rule) == (5, "after")
    # after_ms: the previous block's last open time; first_row: where this block starts in the file
    breach = check_candles(table(), "1h", after_ms=DAY, first_row=101)
    assert breach is not None and (breach.row, breach.rule) == (101, "order") and str(breach).startswith("row 101: ")
    assert check_candles(table(), "1h", after_ms=DAY - HOUR_MS) is None


def test_calendar_grids() -> None:
    monday = 1_729_468_800_000  # 2024-10-21
    week = 7 * 24 * HOUR_MS
    data = table(2).to_pydict()
    data["open_time"], data["close_time"] = [monday, monday + week], [monday + week - 1, monday + 2 * week - 1]
    assert check_candles(candle_frame(data), "1w") is None
    data["open_time"], data["close_time"] = (
        [1_704_067_200_000, 1_706_745_600_000],
        [1_706_745_599_999, 1_709_251_199_999],
    )
    assert check_candles(candle_frame(data), "1M") is None  # January and February 2024
    data["close_time"][1] += 1
    breach = check_candles(candle_frame(data), "1M")
    assert breach is not None and breach.rule == "close"


def test_gaps_are_counted_not_refused() -> None:
    opens = table(5)["open_time"].to_numpy()
    holes = opens[[0, 3, 4]]
    assert gaps(holes, "1h") == [(DAY + HOUR_MS, DAY + 2 * HOUR_MS, 2)]
    assert gaps(holes, "1h", after_ms=DAY - 3 * HOUR_MS)[0] == (DAY - 2 * HOUR_MS, DAY - HOUR_MS, 2)


def test_the_window_helper_keeps_the_schema() -> None:
    merged = table(5)
    assert within(merged, DAY + HOUR_MS, DAY + 3 * HOUR_MS)["open_time"].to_pylist() == [
        DAY + HOUR_MS,
        DAY + 2 * HOUR_MS,
    ]


# --- one rule book behind every source and format ------------------------------------------

BAD_ROW = 2  # 1-based: the second candle's high is below its low
BAD = [[*r[:2], "1.00000000", *r[3:]] if i == BAD_ROW - 1 else r for i, r in enumerate(rows(4))]


class _OnePage(ExchangeClient):
    def __init__(self, answer: list[list[Any]]) -> None:
        super().__init__("http://exchange.invalid", retries=0, backoff=0.0)
        self.answer = answer

    def klines(self, symbol: str, interval: str, **_: Any) -> list[list[Any]]:
        return self.answer


def _rest_page(tmp_path: Path) -> str:
    exporter = HistoricalDataExporter(_OnePage(BAD), "1h", local_clock=lambda: DAY / 1000)
    with pytest.raises(BadResponseError) as caught:
        list(exporter.pages_of(SymbolExport("BTCUSDT", empty_candle_frame(), DAY, DAY + 10 * HOUR_MS), DAY, None))
    return str(caught.value)


def _archive_zip(tmp_path: Path) -> str:
    period = daily_period("BTCUSDT", "1h", DAY)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(period.csv_name, "".join(",".join(map(str, r)) + "\n" for r in BAD))
    with pytest.raises(ArchiveUnusable) as caught:
        read_period_frame(buffer, period)
    return str(caught.value)


def _csv_file(tmp_path: Path) -> str:
    path = tmp_path / "BTCUSDT_1h_20241029_000000.csv"
    path.write_text(CSV_HEADER + "\n" + csv_lines(rows_to_frame(BAD)))
    return validate_file(path, "1h").reason or ""


def _parquet_file(tmp_path: Path) -> str:
    path = tmp_path / "BTCUSDT_1h_20241029_000000.parquet"
    pq.write_table(parquet_table(rows_to_frame(BAD), numbers="decimal"), path)  # not through the checked writer
    return validate_file(path, "1h").reason or ""


@pytest.mark.parametrize("source", [_rest_page, _archive_zip, _csv_file, _parquet_file])
def test_high_below_low_is_refused_with_the_same_reason_everywhere(source: Any, tmp_path: Path) -> None:
    expected = check_candles(rows_to_frame(BAD), "1h")
    assert expected is not None and expected.row == BAD_ROW and expected.reason.startswith("high 1.00000000 < low")
    message = source(tmp_path)
    assert f"row {BAD_ROW}" in message and expected.reason in message, message
