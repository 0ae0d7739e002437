"""exchange.archive: the layout, checksums, zip -> candle frame (a real archive zip), and the HTTP client
against the sandbox's archive."""

from __future__ import annotations

import io
import threading
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from crypto_data_export.exchange.archive import (
    ArchiveClient,
    ArchiveNotPublished,
    ArchivePeriod,
    ArchiveUnavailable,
    ArchiveUnusable,
    DownloadStopped,
    check_digest,
    check_zip,
    daily_period,
    days_of,
    month_bounds,
    parse_checksum,
    read_period_frame,
    sha256_of,
)
from crypto_data_export.exchange.klines import rows_to_frame
from crypto_data_export.exchange.market_profiles import USDM
from crypto_data_export.sandbox.fake_archive import ArchiveKnobs
from crypto_data_export.sandbox.fake_exchange import SandboxConfig, generate_candle
from crypto_data_export.store.formats import CSV
from crypto_data_export.store.formats.csv_format import write_candles
from tests.support import BTC_FILE, DATA, assert_same_candles, wait_until

REAL_ZIP = DATA / "BTCUSDT-1h-2024-10-28.zip"
# sha256sum of the real archive file; its first 16 digits are in shared/data/real-klines/SOURCES.md.
REAL_SHA256 = "744d4a991858208ead11e682457c452cd56067d113888d7323ba849ce221bc09"
# The USD-M futures archive file of the same day, byte for byte (its archive rows have a header line).
REAL_FUTURES_ZIP = DATA / "futures-um-klines-BTCUSDT-1h-2024-10-28.zip"
DAY_MS = 86_400_000
HOUR_MS = 3_600_000


def ms(*parts: int) -> int:
    return int(datetime(*parts, tzinfo=UTC).timestamp() * 1000)  # type: ignore[misc]


def monthly_period(symbol: str, interval: str, at_ms: int) -> ArchivePeriod:
    return ArchivePeriod(symbol, interval, "monthly", *month_bounds(at_ms))


REAL_DAY = daily_period("BTCUSDT", "1h", ms(2024, 10, 28))


# -- layout ---------------------------------------------------------------------------
def test_period_names_and_paths_follow_the_archive_layout() -> None:
    month = monthly_period("BTCUSDT", "1m", ms(2024, 12, 31, 23, 59))
    assert (month.start_ms, month.end_ms) == (ms(2024, 12, 1), ms(2025, 1, 1))
    assert month.url_path() == "data/spot/monthly/klines/BTCUSDT/1m/BTCUSDT-1m-2024-12.zip"
    assert REAL_DAY.url_path() == "data/spot/daily/klines/BTCUSDT/1h/BTCUSDT-1h-2024-10-28.zip"
    assert REAL_DAY.csv_name == "BTCUSDT-1h-2024-10-28.csv"
    futures = REAL_DAY.url_path(USDM.archive_prefix)
    assert futures == "data/futures/um/daily/klines/BTCUSDT/1h/BTCUSDT-1h-2024-10-28.zip"
    assert monthly_period("ETHUSDT", "1M", ms(2024, 2, 3)).zip_name == "ETHUSDT-1mo-2024-02.zip"
    assert len(days_of(monthly_period("BTCUSDT", "1h", ms(2024, 2, 10)))) == 29  # a leap year


# -- the real archive zip ---------------------------------------------------------------
def test_the_real_zip_gives_exactly_the_candles_of_the_reference_csv(tmp_path: Path) -> None:
    """tests/data/BTCUSDT_1h_20241029_000000.csv was converted from the same archive day (24 rows)."""
    with open(REAL_ZIP, "rb") as handle:
        check_zip(handle, REAL_DAY)
        frame = read_period_frame(handle, REAL_DAY)
    reference = CSV.read(BTC_FILE)
    assert len(frame) == len(reference) == 24
    assert_same_candles(frame, reference)
    assert frame["open"][0].as_py() == "68021.69000000"  # the exchange's string, not a float
    out = tmp_path / "BTCUSDT_1h_20241029_000000.csv"
    write_candles(out, frame, "1h")
    assert out.read_bytes() == BTC_FILE.read_bytes()


def test_sha256_of_the_real_zip_verifies_against_its_checksum_line() -> None:
    with open(REAL_ZIP, "rb") as handle:
        actual = sha256_of(handle)
    assert actual == REAL_SHA256 and actual.startswith("744d4a991858208e")
    expected = parse_checksum(f"{REAL_SHA256}  BTCUSDT-1h-2024-10-28.zip\n".encode(), REAL_DAY.zip_name)
    check_digest(REAL_DAY, expected, actual)
    tampered = bytearray(REAL_ZIP.read_bytes())
    tampered[100] ^= 0xFF
    with pytest.raises(ArchiveUnusable, match="checksum mismatch"):
        check_digest(REAL_DAY, expected, sha256_of(io.BytesIO(bytes(tampered))))


def test_a_futures_file_with_a_header_line_is_read_too() -> None:
    # The file SOURCES.md records (first 16 digits of its sha256), not a look-alike.
    assert sha256_of(io.BytesIO(REAL_FUTURES_ZIP.read_bytes())).startswith("8310448cfc4978c8")
    with open(REAL_FUTURES_ZIP, "rb") as handle:
        names = zipfile.ZipFile(handle).namelist()
        assert names == ["BTCUSDT-1h-2024-10-28.csv"]
        frame = read_period_frame(handle, REAL_DAY)
    assert len(frame) == 24 and frame["open_time"][0].as_py() == ms(2024, 10, 28)
    assert frame["open"][0].as_py() == "67992.70"  # futures decimals, as the exchange wrote them


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b",count,", b",trades,"),  # a renamed column
        (b",ignore\n", b"\n"),  # 11 names
        (b"open_time,open,high,low,close,", b"open_time,open,low,high,close,"),  # columns swapped
        (b"open_time,", b"# open_time,"),
    ],
)
def test_a_header_line_that_is_not_the_archives_is_refused(old: bytes, new: bytes) -> None:
    """The real futures file with its header changed: the rows are read by position, so a header
    naming other columns (or an order of its own) is a layout we do not know, refused, not guessed."""
    text = zipfile.ZipFile(REAL_FUTURES_ZIP).read(REAL_DAY.csv_name)
    assert text.count(old) == 1
    with pytest.raises(ArchiveUnusable, match=r"BTCUSDT-1h-2024-10-28.zip: its first line .* not the archive's header"):
        read_period_frame(zip_of(REAL_DAY, text.replace(old, new).decode().splitlines()), REAL_DAY)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (f"{REAL_SHA256}  BTCUSDT-1h-2024-10-29.zip", "names"),
        (f"{REAL_SHA256[:-1]}  BTCUSDT-1h-2024-10-28.zip", "not one"),
        ("", "not one"),
        (f"{REAL_SHA256}  BTCUSDT-1h-2024-10-28.zip\n{REAL_SHA256}  other.zip", "not one"),
    ],
)
def test_a_checksum_line_for_another_file_or_malformed_is_refused(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_checksum(text.encode(), REAL_DAY.zip_name)


def test_a_checksum_in_binary_mode_notation_is_accepted() -> None:
    assert parse_checksum(f"{REAL_SHA256.upper()} *BTCUSDT-1h-2024-10-28.zip".encode(), REAL_DAY.zip_name) == (
        REAL_SHA256
    )


# -- rows: microseconds, grid, period ------------------------------------------------------
def zip_of(period: ArchivePeriod, lines: list[str], member: str | None = None) -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(member or period.csv_name, "\n".join(lines) + "\n")
    buffer.seek(0)
    return buffer


def candle_lines(symbol: str, interval: str, opens: list[int], *, micros: bool = False) -> list[str]:
    lines = []
    for t in opens:
        row = generate_candle(symbol, interval, t)
        if micros:
            row[0], row[6] = row[0] * 1000, row[6] * 1000 + 999
        lines.append(",".join(str(v) for v in row))
    return lines


def test_microsecond_times_become_exact_milliseconds() -> None:
    day = daily_period("BTCUSDT", "1h", ms(2025, 1, 1))
    opens = [day.start_ms + i * HOUR_MS for i in range(24)]
    frame = read_period_frame(zip_of(day, candle_lines("BTCUSDT", "1h", opens, micros=True)), day)
    assert frame["open_time"].to_pylist() == opens
    assert frame["close_time"][0].as_py() == 1735693199999  # 1735693199999999 // 1000
    assert_same_candles(frame, rows_to_frame([generate_candle("BTCUSDT", "1h", t) for t in opens]))


@pytest.mark.parametrize(("field", "plus", "column"), [(0, 500, "open_time"), (6, -499, "close_time")])
def test_microsecond_times_with_sub_millisecond_digits_are_refused_not_cut(field: int, plus: int, column: str) -> None:
    day = daily_period("BTCUSDT", "1h", ms(2025, 1, 1))
    rows = [
        line.split(",") for line in candle_lines("BTCUSDT", "1h", [day.start_ms, day.start_ms + HOUR_MS], micros=True)
    ]
    rows[1][field] = str(int(rows[1][field]) + plus)  # cut to ms, it would pass every rule
    with pytest.raises(ArchiveUnusable, match=f"row 2: {column} .* is not a whole millisecond"):
        read_period_frame(zip_of(day, [",".join(row) for row in rows]), day)


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (lambda rows: [rows[1].replace(str(rows[1].split(",")[0]), str(int(rows[1].split(",")[0]) + 1), 1)], "grid"),
        (lambda rows: rows[:2] + [rows[1]], "not after"),
        (lambda rows: rows + candle_lines("BTCUSDT", "1h", [ms(2024, 10, 29)]), "outside"),
        (lambda rows: [rows[0].replace("0.", "1e-", 1)], "plain decimal"),
        (lambda rows: [rows[0] + ",x", rows[1]], "row 1: 13 fields"),
        (lambda rows: [rows[0], rows[1][:40]], "row 2: 3 fields"),
        (lambda rows: [rows[0].replace("0", "\u00e9", 1)], "cannot read"),
    ],
)
def test_rows_off_the_grid_outside_the_period_or_malformed_are_refused(mutate, problem: str) -> None:
    rows = candle_lines("BTCUSDT", "1h", [ms(2024, 10, 28, h) for h in range(3)])
    with pytest.raises(ArchiveUnusable, match=problem):
        read_period_frame(zip_of(REAL_DAY, mutate(rows)), REAL_DAY)


def test_a_zip_with_another_member_or_broken_bytes_is_refused() -> None:
    good = zip_of(REAL_DAY, candle_lines("BTCUSDT", "1h", [ms(2024, 10, 28)]), member="ETHUSDT-1h-2024-10-28.csv")
    with pytest.raises(ArchiveUnusable, match="expected"):
        check_zip(good, REAL_DAY)
    with pytest.raises(ArchiveUnusable, match="not a readable zip"):
        check_zip(io.BytesIO(REAL_ZIP.read_bytes()[:700]), REAL_DAY)


def test_a_zip_inflating_past_what_its_period_holds_is_refused_while_streaming() -> None:
    """A day of 1h is 24 rows: a zip whose CSV inflates to megabytes (a bomb, or rows of garbage)
    is refused after the period's cap, never inflated whole (its CRC is right)."""
    row = candle_lines("BTCUSDT", "1h", [ms(2024, 10, 28)])[0]
    assert REAL_DAY.max_csv_bytes < 64 * 1024
    bomb = zip_of(REAL_DAY, [row] * 200_000)  # 30 MB inflated, 100 KB zipped
    for reader in (check_zip, read_period_frame):
        with pytest.raises(ArchiveUnusable, match="inflates past"):
            reader(bomb, REAL_DAY)
    full_day = candle_lines("BTCUSDT", "1h", [ms(2024, 10, 28, h) for h in range(24)])
    assert len(read_period_frame(zip_of(REAL_DAY, full_day), REAL_DAY)) == 24


# -- the client against the sandbox's archive ----------------------------------------------
def fetch(client: ArchiveClient, period: ArchivePeriod) -> pa.Table:
    sink = io.BytesIO()
    expected = client.checksum(period)
    assert expected is not None
    check_digest(period, expected, client.download(period, sink))
    check_zip(sink, period)
    return read_period_frame(sink, period)


def test_the_client_downloads_verifies_and_parses_what_the_sandbox_serves(sandbox_factory) -> None:
    knobs = ArchiveKnobs(header=True, no_checksum=frozenset({"ETHUSDT-1h-2024-10-02.zip"}))
    exchange = sandbox_factory(SandboxConfig(now_ms=ms(2025, 3, 5, 12), archive=knobs))
    with ArchiveClient(exchange.base_url, retries=0) as client:
        october = fetch(client, monthly_period("ETHUSDT", "1h", ms(2024, 10, 1)))
        opens = list(range(ms(2024, 10, 1), ms(2024, 11, 1), HOUR_MS))
        assert_same_candles(october, rows_to_frame([generate_candle("ETHUSDT", "1h", t) for t in opens]))
        february = fetch(client, monthly_period("ETHUSDT", "1h", ms(2025, 2, 1)))  # served in µs
        assert february["open_time"][0].as_py() == ms(2025, 2, 1) and len(february) == 28 * 24
        with pytest.raises(ArchiveNotPublished):
            client.download(monthly_period("ETHUSDT", "1h", ms(2025, 3, 1)), io.BytesIO())  # not over yet
        no_checksum = daily_period("ETHUSDT", "1h", ms(2024, 10, 2))
        assert client.checksum(no_checksum) is None and client.download(no_checksum, io.BytesIO())
    assert exchange.klines_requests("ETHUSDT") == []  # everything came from the archive


def test_a_trickling_zip_ends_at_its_deadline_and_a_stop_ends_its_download(sandbox_factory) -> None:
    day = daily_period("ETHUSDT", "1h", ms(2024, 10, 2))
    knobs = ArchiveKnobs(trickle=frozenset({day.zip_name}), trickle_seconds=0.02)
    exchange = sandbox_factory(SandboxConfig(now_ms=ms(2025, 3, 5, 12), archive=knobs))
    with ArchiveClient(exchange.base_url, retries=0, read_timeout=0.1, connect_timeout=0.1) as client:
        with pytest.raises(ArchiveUnavailable, match="whole answer within 0.4 s.*BINANCE_ARCHIVE_URL"):
            client.download(day, io.BytesIO())
    with ArchiveClient(exchange.base_url, retries=0, read_timeout=60.0) as client:
        client.stop_event = stop = threading.Event()
        asked = len(exchange.requests)
        threading.Thread(
            target=lambda: wait_until(lambda: len(exchange.requests) > asked, "the request") and stop.set()
        ).start()
        with pytest.raises(DownloadStopped):
            client.download(day, io.BytesIO())
