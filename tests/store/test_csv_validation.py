"""csv_validation on real Binance data and on every way a file can be broken."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from crypto_data_export.core.candles import candle_frame, format_utc_ms
from crypto_data_export.core.errors import InvalidDataError
from crypto_data_export.store.formats import CSV
from crypto_data_export.store.formats.csv_format import (
    CSV_HEADER,
    CsvCheck,
    csv_lines,
    read_block,
    read_with_pyarrow,
    split_canonical,
    write_candles,
)
from crypto_data_export.store.scan import validate_file
from tests import support
from tests.support import DATA as DATA_DIR
from tests.support import assert_same_candles, with_value


def check_bytes(data: bytes, interval: str, path: Path | str, *, candles_from: int | None = None):
    return support.check_bytes(CSV, data, interval, path, candles_from=candles_from)


def validate_bytes(data: bytes, interval: str, path: Path | str):
    return check_bytes(data, interval, path)[0]


DATA = DATA_DIR
BTC_FILE = DATA / "BTCUSDT_1h_20241029_000000.csv"
ADA_FILE = DATA / "ADABTC_1m_20211128_000000.csv"
HOUR_MS = 3_600_000
BTC_FIRST_OPEN = 1730073600000  # 2024-10-28 00:00 UTC


def btc_lines() -> list[str]:
    return BTC_FILE.read_text(encoding="utf-8").splitlines()


def join(lines: list[str]) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def with_cell(row: int, column: int, value: str) -> bytes:
    """The real file with one cell of 1-based data row ``row`` replaced."""
    lines = btc_lines()
    cells = lines[row].split(",")
    cells[column] = value
    lines[row] = ",".join(cells)
    return join(lines)


def test_real_btcusdt_day_validates() -> None:
    result = validate_file(BTC_FILE, "1h")
    assert result.valid, result.reason
    assert result.rows == 24
    assert result.gaps == [] and result.missing_candles == 0
    assert result.first_open_ms == BTC_FIRST_OPEN
    assert result.last_open_ms == BTC_FIRST_OPEN + 23 * HOUR_MS


def test_real_adabtc_minutes_validate() -> None:
    result = validate_file(ADA_FILE, "1m")
    assert result.valid, result.reason
    assert result.rows == 10


def test_one_middle_row_cut_is_a_gap_of_one_candle(tmp_path: Path) -> None:
    lines = btc_lines()
    del lines[11]  # data row 11: 2024-10-28 10:00
    path = tmp_path / "BTCUSDT_1h_20241029_000000.csv"
    path.write_bytes(join(lines))
    result = validate_file(path, "1h")
    assert result.valid, result.reason
    assert result.rows == 23
    missing = BTC_FIRST_OPEN + 10 * HOUR_MS
    assert result.gaps == [(missing, missing, 1)]
    assert result.missing_candles == 1
    assert result.to_dict()["gaps"] == [
        {"first_missing": "2024-10-28T10:00:00+00:00", "last_missing": "2024-10-28T10:00:00+00:00", "missing": 1}
    ]


def _swap_rows(a: int, b: int) -> bytes:
    lines = btc_lines()
    lines[a], lines[b] = lines[b], lines[a]
    return join(lines)


def _duplicate_row(row: int) -> bytes:
    lines = btc_lines()
    lines.insert(row + 1, lines[row])
    return join(lines)


BROKEN = {
    "high below low": (with_cell(7, 2, "1.0"), "row 7: high 1.0 < low"),
    "high below close": (with_cell(5, 2, "60000.00000000"), "row 5: high"),
    "low above open": (with_cell(5, 3, "67730.00000000"), "row 5: low 67730.00000000 > min(open, close)"),
    "text price": (with_cell(3, 4, "abc"), "row 3: close 'abc'"),
    "empty cell": (with_cell(3, 1, ""), "row 3: empty open"),
    "nan price": (with_cell(4, 1, "NaN"), "row 4: open"),
    "negative volume": (with_cell(9, 5, "-1.0"), "row 9: volume"),
    "text trades": (with_cell(2, 8, "many"), "row 2: number_of_trades"),
    "fractional trades": (with_cell(2, 8, "1.5"), "row 2: number_of_trades"),
    "negative trades": (with_cell(2, 8, "-3"), "row 2: number_of_trades"),
    "unsorted": (_swap_rows(6, 7), "row 7: open_time"),
    "duplicated row": (_duplicate_row(12), "row 13: open_time"),
    "off grid": (with_cell(4, 0, "2024-10-28 03:30:00+00:00"), "row 4: open_time"),
    "close off by one": (with_cell(8, 6, "2024-10-28 07:59:59.998+00:00"), "row 8: close_time"),
    "naive time": (with_cell(4, 0, "2024-10-28 03:00:00"), "row 4: open_time"),
    "not a time": (with_cell(4, 6, "yesterday"), "row 4: close_time"),
    "extra field": (with_cell(4, 10, "1,2"), "row 4: expected 11 fields"),
    "wrong header": (BTC_FILE.read_bytes().replace(b",high,", b",hi,", 1), "wrong header"),
    "header order": (BTC_FILE.read_bytes().replace(b"open,high", b"high,open", 1), "wrong header: column 2"),
    "header only": ((CSV_HEADER + "\n").encode(), "no candles"),
    "empty file": (b"", "no candles"),
    "binary garbage": (bytes(range(256)) * 40, "not UTF-8"),
    "nul bytes": (BTC_FILE.read_bytes()[:300] + b"\x00\x00", "NUL"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_files_are_invalid_with_a_reason(case: str, tmp_path: Path) -> None:
    data, expected = BROKEN[case]
    path = tmp_path / "BTCUSDT_1h_20241029_000000.csv"
    path.write_bytes(data)
    result = validate_file(path, "1h")
    assert not result.valid
    assert result.reason is not None and expected in result.reason, result.reason
    json.dumps(result.to_dict())


def test_unreadable_path_is_invalid_not_an_exception(tmp_path: Path) -> None:
    result = validate_file(tmp_path / "missing.csv", "1h")
    assert not result.valid and "cannot read" in (result.reason or "")


def test_candles_from_validation_equal_read_candles() -> None:
    result, candles = check_bytes(BTC_FILE.read_bytes(), "1h", BTC_FILE, candles_from=0)
    assert result.valid and candles is not None
    assert_same_candles(candles, CSV.read(BTC_FILE))
    assert candles["open_time"].type == pa.int64() and candles["number_of_trades"].type == pa.int64()
    assert candles["open"][0].as_py() == "68021.69000000"


def _frame(opens: list[int], closes: list[int]) -> pa.Table:
    n = len(opens)
    return candle_frame(
        {
            "open_time": np.array(opens, dtype="int64"),
            "open": ["1.0"] * n,
            "high": ["2.0"] * n,
            "low": ["0.5"] * n,
            "close": ["1.5"] * n,
            "volume": ["10"] * n,
            "close_time": np.array(closes, dtype="int64"),
            "quote_asset_volume": ["15"] * n,
            "number_of_trades": np.arange(n, dtype="int64"),
            "taker_buy_base_asset_volume": ["5"] * n,
            "taker_buy_quote_asset_volume": ["7.5"] * n,
        }
    )


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def test_calendar_months_and_a_missing_month(tmp_path: Path) -> None:
    opens = [_ms("2024-01-01"), _ms("2024-02-01"), _ms("2024-04-01")]
    closes = [_ms("2024-02-01") - 1, _ms("2024-03-01") - 1, _ms("2024-05-01") - 1]
    path = tmp_path / "BTCUSDT_1M_20240601_000000.csv"
    written = write_candles(path, _frame(opens, closes), "1M")
    result = validate_file(path, "1M")
    assert result.valid, result.reason
    assert written == result
    assert result.gaps == [(_ms("2024-03-01"), _ms("2024-03-01"), 1)]
    before = path.read_bytes()
    with pytest.raises(InvalidDataError, match="opening 2024-01-01 00:00:00[+]00:00 [(]row 1: close_time"):
        write_candles(path, _frame(opens, [c + 1 for c in closes]), "1M")
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_weeks_open_on_monday(tmp_path: Path) -> None:
    monday = _ms("2024-10-28")
    week = 7 * 24 * HOUR_MS
    path = tmp_path / "BTCUSDT_1w_20241201_000000.csv"
    write_candles(path, _frame([monday, monday + week], [monday + week - 1, monday + 2 * week - 1]), "1w")
    assert validate_file(path, "1w").valid
    sunday = monday - 24 * HOUR_MS
    with pytest.raises(InvalidDataError, match="not on the 1w grid"):
        write_candles(path, _frame([sunday], [sunday + week - 1]), "1w")
    assert validate_file(path, "1w").valid


def test_large_file_is_read_whole(tmp_path: Path) -> None:
    n = 100_000
    opens = (BTC_FIRST_OPEN + np.arange(n, dtype="int64") * 60_000).tolist()
    path = tmp_path / "BTCUSDT_1m_20241201_000000.csv"
    write_candles(path, _frame(opens, [o + 59_999 for o in opens]), "1m")
    result = validate_bytes(path.read_bytes(), "1m", path)
    assert result.valid and result.rows == n and result.last_open_ms == opens[-1]


def test_crlf_line_ends_read_like_lf() -> None:
    """Each file gets its own verdict; CRLF line ends read like LF."""
    lines = btc_lines()
    gap = join(lines[:11] + lines[12:])
    items = [(BTC_FILE.read_bytes(), "1h", Path("good-0")), (gap, "1h", Path("gap"))]
    items += [(data, "1h", Path(name)) for name, (data, _) in BROKEN.items()]
    items += [(ADA_FILE.read_bytes(), "1m", Path("ada")), (BTC_FILE.read_bytes(), "1h", Path("good-1"))]
    items += [(BTC_FILE.read_bytes().replace(b"\n", b"\r\n"), "1h", Path("crlf"))]
    verdicts = [validate_bytes(*item) for item in items]
    assert [v.path for v in verdicts] == [path for _, _, path in items]
    assert sum(v.valid for v in verdicts) == 5


# --- large files: validated chunk by chunk as they stream ------------------------------


def _pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def _boundary_file(fault: str | None) -> bytes:
    """60 1m candles with a gap at row 11 and, optionally, one fault at a row that
    starts or ends a block when blocks hold about 10 rows (``chunk_bytes`` below)."""
    opens = [BTC_FIRST_OPEN + i * 60_000 for i in range(61) if i != 10]
    lines = (CSV_HEADER + "\n" + csv_lines(_frame(opens, [o + 59_999 for o in opens]))).splitlines()
    if fault == "unsorted":
        lines[20], lines[21] = lines[21], lines[20]  # data rows 20 and 21
    elif fault == "bad value":
        cells = lines[30].split(",")
        cells[4] = "abc"
        lines[30] = ",".join(cells)
    elif fault == "duplicate":
        lines[40] = lines[39]
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.parametrize("fault", [None, "unsorted", "bad value", "duplicate"])
def test_chunked_validation_equals_whole_file_validation(fault: str | None) -> None:
    """Tiny blocks put the gap, the unsorted pair, the bad value and the duplicate at
    block boundaries; verdict, reason (row number), gaps and candles stay the same."""
    # pyarrow reads every block; the stream checker's blocks are whole lines of at least block_bytes.
    data = _boundary_file(fault)
    whole, whole_candles = check_bytes(data, "1m", "f", candles_from=0)
    row_bytes = len(data.splitlines()[1]) + 1
    decided = 0
    for chunk_bytes in (1, row_bytes, row_bytes * 3 - 1, row_bytes * 10, row_bytes * 10 + 5, 1 << 20):
        for piece in (1, 97, 4096, len(data)):
            verdict = check_stream(_pieces(data, piece), "1m", "f", candles_from=0, block_bytes=chunk_bytes)
            decided += 1
            assert verdict[0] == whole, (chunk_bytes, piece)
            if whole_candles is None:
                assert verdict[1] is None
            else:
                assert_same_candles(verdict[1], whole_candles)
    assert decided == 24
    if fault is None:
        missing = BTC_FIRST_OPEN + 10 * 60_000
        assert whole.valid and whole.gaps == [(missing, missing, 1)] and whole.rows == 60
    else:
        assert not whole.valid


@pytest.mark.parametrize("case", list(BROKEN))
def test_chunked_verdicts_on_every_broken_file(case: str) -> None:
    """Every broken layout: the streamed verdict, whatever the pieces and blocks, is the whole file's."""
    data = BROKEN[case][0]
    whole = check_bytes(data, "1h", "f")[0]
    for chunk_bytes, piece in ((1, 1), (300, 7), (1 << 20, 1 << 20)):
        assert check_stream(_pieces(data, piece), "1h", "f", block_bytes=chunk_bytes)[0] == whole, (chunk_bytes, piece)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda good: good.replace(b"\n", b"\r\n"), None),  # CRLF: read like LF
        (lambda good: good + b"\n\n", "row 25: empty open_time"),  # blank lines are no candles
        (lambda good: good.replace(b"68021.69", b'"68021.69"', 1), "row 1: open '\"68021.69\"000000' is not a finite"),
        (lambda good: good.replace(b"\n", b"\n\n", 3), "row 1: empty open_time"),
    ],
    ids=["crlf", "trailing_blank_lines", "quoted_value", "blank_line_inside"],
)
def test_layouts_we_never_write_get_a_definite_verdict(change, expected: str | None) -> None:
    """What the old engine left undecided (CR, blank lines, quotes): one verdict, streamed or whole."""
    data = change(BTC_FILE.read_bytes())
    whole = validate_bytes(data, "1h", "f")
    assert whole.valid if expected is None else expected in (whole.reason or ""), whole.reason
    assert check_stream(_pieces(data, 50), "1h", "f", block_bytes=100)[0] == whole


def test_large_file_is_streamed_with_the_same_verdict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import crypto_data_export.store.formats.csv_format as csv_format
    import crypto_data_export.store.scan as folder_scan

    path = tmp_path / "BTCUSDT_1m_20241201_000000.csv"
    path.write_bytes(_boundary_file("unsorted"))
    expected = validate_bytes(path.read_bytes(), "1m", path)
    monkeypatch.setattr(csv_format, "BLOCK_BYTES", 500)
    checked = folder_scan.check_regular_file(path, "1m", want_hash=True)
    assert checked.validation == expected and checked.validation.reason.startswith("row 21:")
    assert checked.digest == __import__("hashlib").sha256(path.read_bytes()).hexdigest()
    assert validate_file(path, "1m") == expected


def test_written_text_is_the_files_own_bytes_and_to_csv_s() -> None:
    """The writer reproduces a real file byte for byte from its candle table."""
    frame = CSV.read(BTC_FILE)
    body = BTC_FILE.read_text(encoding="utf-8").split("\n", 1)[1]
    assert csv_lines(frame) == body
    assert csv_lines(frame.slice(0, 0)) == ""


@pytest.mark.parametrize("value", ["1,5", '1"5', "1\n5", "1\r5"])
def test_a_value_that_breaks_the_layout_is_never_published(value: str, tmp_path: Path) -> None:
    frame = with_value(CSV.read(BTC_FILE), 3, "close", value)
    target = tmp_path / "BTCUSDT_1h_20241029_000000.csv"
    with pytest.raises(InvalidDataError):
        write_candles(target, frame, "1h")
    assert list(tmp_path.iterdir()) == []


def test_closes_read_from_the_text_equal_the_frames() -> None:
    expected = [float(v) for v in CSV.read(BTC_FILE)["close"].to_pylist()]
    assert CSV.read_closes(BTC_FILE) == expected
    assert len(expected) == 24


# --- the CSV's time text ------------------------------------------------------------------

ODD_TIMES = {
    "2026-02-30 00:00:00+00:00": None,  # no such day
    "2026-01-01 24:00:00+00:00": None,  # no such hour
    "2016-12-31 23:59:60+00:00": None,  # a leap second
    "2026-11-29 02:00:00.5+00:00": 1795917600500,  # not three fraction digits, still whole ms
    "2026-11-29 02:00:00.0001+00:00": None,  # finer than a millisecond
    "2026-11-29T02:00:00+00:00": 1795917600000,  # ISO's T: not our form, still a UTC time
    "2026-11-29 02:00:00Z": 1795917600000,
    "2026-11-29 02:00:00+01:00": None,  # not UTC
    "٢٠٢٦-11-29 02:00:00+00:00": None,  # Arabic-Indic digits
    "9999-12-31 23:59:59.999+00:00": 253402300799999,
    "2026-11-29 02:00:00": None,  # naive
    "": None,
}


@pytest.mark.parametrize("odd", list(ODD_TIMES))
def test_time_text_is_utc_in_whole_milliseconds_or_refused_naming_the_row(odd: str) -> None:
    good = format_utc_ms(np.array([BTC_FIRST_OPEN]))[0]
    lines = [f"{t},1,2,0.5,1.5,10,{t},15,3,5,7.5" for t in (good, good, odd)]
    block = ("\n".join(lines) + "\n").encode()
    expected = ODD_TIMES[odd]
    if expected is None:
        with pytest.raises(Exception, match="row 3: (empty open_time|open_time .* is not a UTC time)"):
            read_block(block)
    else:
        assert read_block(block)["open_time"].to_pylist() == [BTC_FIRST_OPEN, BTC_FIRST_OPEN, expected]


def check_stream(pieces: Iterable[bytes], interval: str, path: str, **options: Any) -> Any:
    """The CSV checker fed piece by piece, as a scan feeds it."""
    check = CsvCheck(interval, Path(path), **options)
    for piece in pieces:
        check.feed(piece)
    return check.finish()


def _pyarrow_verdict(block: bytes) -> object:
    """What pyarrow's reader makes of a block: the candle table, or the breach it refuses with."""
    try:
        return read_with_pyarrow(block)
    except Exception as exc:  # _Refused (private): compared by its text
        return str(exc)


def test_the_hand_split_reads_exactly_what_pyarrow_reads_or_declines() -> None:
    """Small blocks of canonical text are split by hand (speed); whatever that path accepts,
    pyarrow must read to the same table. Mutating real lines one character at a time covers
    times (offsets, separators, month 13, 24:00), trades (signs, blanks, > int64) and fields."""
    lines = btc_lines()[1:]
    canonical = join(lines)
    assert split_canonical(canonical) is not None, "the file as written takes the fast path"
    alphabet = '0123456789 -:.+TZ,\r"e_a'
    rng = np.random.default_rng(21)
    accepted = 0
    for _ in range(1500):
        row = int(rng.integers(len(lines)))
        line = lines[row]
        at = int(rng.integers(len(line)))
        new = str(rng.choice(list(alphabet)))
        mutated = line[:at] + (new if rng.random() < 0.7 else "") + line[at + 1 :]
        block = join([*lines[:row], mutated, *lines[row + 1 :]])
        fast = split_canonical(block)
        if fast is None:
            continue
        accepted += 1
        slow = _pyarrow_verdict(block)
        assert isinstance(slow, pa.Table) and fast.equals(slow), (mutated, slow)
    assert accepted > 300  # digits changed in place are read both ways and compared
    big_trades = with_cell(3, 8, "99999999999999999999")
    assert split_canonical(big_trades.split(b"\n", 1)[1]) is None  # beyond int64: declined
    assert validate_bytes(big_trades, "1h", "x.csv").valid is False
