"""EXPORT_FORMAT=parquet: exact candles, documented types, reuse, quarantine, format switch.

Real data (tests/data, official Binance archives) proves the decimal choice is
exact; the end-to-end tests run the real manager against the sandbox.
"""

from __future__ import annotations

import decimal
import functools
import io
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from crypto_data_export.core.errors import InvalidDataError
from crypto_data_export.exchange.klines import rows_to_frame
from crypto_data_export.sandbox.fake_exchange import generate_candle
from crypto_data_export.settings.settings import EXPORT_FORMATS, SettingsError, load_settings
from crypto_data_export.store import scan
from crypto_data_export.store.files import FileManager
from crypto_data_export.store.formats import CSV, FORMATS, PARQUET, parquet_format
from crypto_data_export.store.formats.csv_format import CSV_HEADER, csv_lines
from crypto_data_export.store.layout import QUARANTINE_DIR_NAME
from crypto_data_export.store.scan import validate_file
from tests.support import (
    DATA,
    REPO,
    assert_folder_sound,
    check_bytes,
    closed_opens,
    export_files,
    manager_env,
    one_line,
    run_cli,
    run_manager,
    with_value,
)

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
REAL_FILES = {
    "BTCUSDT_1h_20241029_000000.csv": "1h",
    "ADABTC_1m_20211128_000000.csv": "1m",
}
EXACT = parquet_format.ParquetFormat("decimal")


def _documented(price: pa.DataType, volume: pa.DataType, labels: bool = False) -> pa.Schema:
    time, label = pa.timestamp("ms", tz="UTC"), pa.dictionary(pa.int32(), pa.string())
    fields = [("open_time", time), *((c, price) for c in ("open", "high", "low", "close")), ("volume", volume)]
    fields += [("close_time", time), ("quote_asset_volume", volume), ("number_of_trades", pa.int64())]
    fields += [("taker_buy_base_asset_volume", volume), ("taker_buy_quote_asset_volume", volume)]
    return pa.schema(fields + ([(c, label) for c in ("symbol", "interval", "market")] if labels else []))


DOCUMENTED = _documented(pa.float64(), pa.float64())
LABELLED = _documented(pa.float64(), pa.float64(), labels=True)  # what the export job writes (it names the series)
DOCUMENTED_DECIMAL = _documented(pa.decimal128(18, 8), pa.decimal128(28, 8))


def _as_text(frame: pa.Table) -> list[list[str]]:
    return [[str(v) for v in row.values()] for row in frame.to_pylist()]


def _numeric(frame: pa.Table) -> list[list[float]]:
    """The candles as numbers: what a float64 file must hold (the exchange's text as a double)."""
    return [[float(v) for v in row.values()] for row in frame.to_pylist()]


def _sandbox(symbol: str, opens: list[int]) -> list[list[float]]:
    return _numeric(rows_to_frame([generate_candle(symbol, "1h", t) for t in opens]))


def _csv_text(frame: pa.Table) -> str:
    return CSV_HEADER + "\n" + csv_lines(frame)


def test_registry_and_settings_name_the_same_formats():
    assert tuple(FORMATS) == EXPORT_FORMATS
    assert PARQUET.suffix == ".parquet"


@pytest.mark.parametrize("name", sorted(REAL_FILES))
def test_real_binance_klines_round_trip_exactly(tmp_path, name):
    """Every price and volume of real exchange data comes back as the same double (the default) or,
    with decimals, as the same decimal and the same text."""
    interval = REAL_FILES[name]
    exchange = CSV.read(DATA / name)
    target = tmp_path / name.replace(".csv", ".parquet")
    assert PARQUET.write(target, exchange, interval).valid
    assert pq.read_schema(target).equals(DOCUMENTED)
    assert _numeric(PARQUET.read(target)) == _numeric(exchange)
    assert EXACT.write(target, exchange, interval).valid
    table = pq.read_table(target)
    assert table.schema.equals(DOCUMENTED_DECIMAL)
    for column in DOCUMENTED.names:
        stored = table.column(column).to_pylist()
        if column in ("open_time", "close_time"):
            assert [int(t.timestamp() * 1000) for t in stored] == exchange[column].to_pylist()
        elif column == "number_of_trades":
            assert stored == exchange[column].to_pylist()
        else:
            assert stored == [decimal.Decimal(v) for v in exchange[column].to_pylist()], column
    assert _as_text(EXACT.read(target)) == _as_text(exchange)  # byte for byte the exchange's strings
    assert _csv_text(EXACT.read(target)) == (DATA / name).read_text()


def test_a_value_float64_would_round_is_kept_exactly(tmp_path):
    """20 significant digits: float64 cannot hold it, decimal128(28, 8) does (DATASET_NUMBERS=decimal)."""
    frame = CSV.read(DATA / "BTCUSDT_1h_20241029_000000.csv")
    huge = "123456789012.12345678"
    assert repr(float(huge)) != huge
    frame = with_value(frame, 0, "quote_asset_volume", huge)
    target = tmp_path / "BTCUSDT_1h_20241029_000000.parquet"
    EXACT.write(target, frame, "1h")
    assert str(pq.read_table(target).column("quote_asset_volume")[0].as_py()) == huge
    assert EXACT.read(target)["quote_asset_volume"][0].as_py() == huge


def test_a_value_with_more_than_8_decimals_is_refused_not_rounded(tmp_path):
    frame = CSV.read(DATA / "BTCUSDT_1h_20241029_000000.csv")
    frame = with_value(frame, 2, "volume", "1.123456789")
    target = tmp_path / "BTCUSDT_1h_20241029_000000.parquet"
    with pytest.raises(InvalidDataError, match=r"volume '1.123456789' of the candle opening 2024-10-28T02:00"):
        EXACT.write(target, frame, "1h")
    assert os.listdir(tmp_path) == []


def test_bad_candles_are_never_published(tmp_path):
    frame = CSV.read(DATA / "BTCUSDT_1h_20241029_000000.csv")
    frame = with_value(frame, 4, "high", "1.00000000")
    target = tmp_path / "BTCUSDT_1h_20241029_000000.parquet"
    with pytest.raises(InvalidDataError, match=r"opening 2024-10-28T04:00:00\+00:00 \(row 5: high 1.00000000 < low"):
        EXACT.write(target, frame, "1h")
    with pytest.raises(InvalidDataError, match=r"opening 2024-10-28T04:00:00\+00:00 \(row 5: high 1 < low"):
        PARQUET.write(target, frame, "1h")
    assert os.listdir(tmp_path) == []


@functools.cache
def _good() -> bytes:
    """Our Parquet of the real BTCUSDT hours, as bytes."""
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / "BTCUSDT_1h_20241029_000000.parquet"
        PARQUET.write(target, CSV.read(DATA / "BTCUSDT_1h_20241029_000000.csv"), "1h")
        return target.read_bytes()


def _wrong_schema() -> bytes:
    """Our file with prices as text: what a naive CSV-to-Parquet converter would make."""
    table = pq.read_table(io.BytesIO(_good()))
    table = table.set_column(1, "open", table.column("open").cast(pa.string()))
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def _bad_candle() -> bytes:
    table = pq.read_table(io.BytesIO(_good()))
    high = table.column("high").to_pylist()
    high[3] = 1.0
    table = table.set_column(2, "high", pa.array(high, pa.float64()))
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("truncated", "not a readable Parquet file"),
        ("random", "not a readable Parquet file"),
        ("wrong_schema", "wrong schema: open is string, expected double"),
        ("bad_candle", "row 4: high 1 < low"),
        ("empty", "not a readable Parquet file"),
    ],
)
def test_bad_parquet_bytes_get_a_reason(tmp_path, kind, expected):
    data = {
        "truncated": _good()[: len(_good()) // 2],
        "random": os.urandom(5000),
        "wrong_schema": _wrong_schema(),
        "bad_candle": _bad_candle(),
        "empty": b"",
    }[kind]
    verdict = check_bytes(PARQUET, data, "1h", tmp_path / "x.parquet")[0]
    assert not verdict.valid and expected in (verdict.reason or "")
    stream = PARQUET.stream_checker("1h", tmp_path / "x.parquet")
    for start in range(0, len(data), 1000):
        stream.feed(data[start : start + 1000])
    assert stream.finish()[0].reason == verdict.reason


def test_oversized_row_groups_are_refused_before_reading(tmp_path, monkeypatch):
    good = _good()  # written before the cap is lowered (the writer checks its own bytes with it)
    monkeypatch.setattr(parquet_format, "MAX_GROUP_ROWS", 10)
    verdict = check_bytes(PARQUET, good, "1h", tmp_path / "x.parquet")[0]
    assert not verdict.valid and "row group 1 holds 24 rows" in (verdict.reason or "")


def test_one_large_row_group_is_judged_drawn_and_reused_batch_by_batch(tmp_path, monkeypatch):
    """A valid file may hold one group of MAX_GROUP_ROWS rows: it is read in batches of at most
    READ_BATCH_ROWS (bounded memory whatever the groups), for the verdict, a sparkline and reuse."""
    monkeypatch.setattr(parquet_format, "READ_BATCH_ROWS", 5)
    target = tmp_path / "BTCUSDT_1h_20241029_000000.parquet"
    frame = CSV.read(DATA / "BTCUSDT_1h_20241029_000000.csv")
    pq.write_table(parquet_format.parquet_table(frame), target, row_group_size=len(frame))
    seen: list[int] = []
    real_add = parquet_format.CandleBlocks.add
    monkeypatch.setattr(parquet_format.CandleBlocks, "add", lambda self, c: seen.append(len(c)) or real_add(self, c))
    verdict = validate_file(target, "1h")
    assert verdict.valid and verdict.rows == len(frame) and sum(seen) == len(frame) and max(seen) == 5
    assert PARQUET.read_closes(target) == [float(v) for v in frame.column("close").to_pylist()]
    # What an export reuses: only the candles of its look-back, never the whole file.
    opens = frame.column("open_time").to_pylist()
    kept = scan.check_regular_file(target, "1h", candles_from=opens[12]).candles
    assert kept is not None and kept.column("open_time").to_pylist() == opens[12:]


# --- end to end: the real manager against the sandbox ----------------------------------------

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "ADAUSDT")


def _first_time() -> int:
    return int(time.time() * 1000) // HOUR_MS * HOUR_MS - 2 * HOUR_MS + 1_800_000


def test_parquet_cycle_holds_the_exchange_candles_and_the_second_reuses_them(tmp_path, sandbox_factory):
    t1 = _first_time()
    exchange = sandbox_factory(now_ms=t1)
    folder = tmp_path / "exports"
    env = manager_env(folder, exchange.base_url, ",".join(SYMBOLS[:3]), EXPORT_FORMAT="parquet")
    first = run_manager(env, "--manual")
    assert first.returncode == 0, first.stdout + first.stderr
    files = assert_folder_sound(folder)
    assert sorted(p.suffix for p in files) == [".parquet"] * 3
    for path in files:
        symbol = path.name.split("_")[0]
        assert pq.read_schema(path).equals(LABELLED)
        expected = _sandbox(symbol, closed_opens("1h", t1 - 2 * DAY_MS, t1))
        assert _numeric(PARQUET.read(path)) == expected, f"{path.name} differs from the exchange's candles"

    t2 = t1 + HOUR_MS
    exchange.config.now_ms = t2
    exchange.reset_log()
    second = run_manager(env, "--manual")
    assert second.returncode == 0, second.stdout + second.stderr
    for symbol in SYMBOLS[:3]:
        calls = exchange.klines_requests(symbol)
        assert len(calls) <= 1 and all(c["startTime"] > t2 - 2 * DAY_MS for c in calls), calls
        (newest,) = [p for p in assert_folder_sound(folder) if p.name.startswith(symbol)]
        expected = _sandbox(symbol, closed_opens("1h", t2 - 2 * DAY_MS, t2))
        assert _numeric(PARQUET.read(newest)) == expected

    status = run_manager(env, "--status", "--json")
    assert status.returncode == 0, status.stderr
    assert ".parquet" in status.stdout


CORRUPTIONS = {
    "BTCUSDT": lambda data: data[: len(data) * 2 // 3],
    "ETHUSDT": lambda data: os.urandom(len(data)),
    "SOLUSDT": lambda data: _wrong_schema(),
    "XRPUSDT": lambda data: _bad_candle(),
}


def test_corrupt_parquet_files_are_quarantined_and_rebuilt(tmp_path, sandbox_factory):
    t1 = _first_time()
    exchange = sandbox_factory(now_ms=t1)
    folder = tmp_path / "exports"
    env = manager_env(folder, exchange.base_url, ",".join(CORRUPTIONS), EXPORT_FORMAT="parquet", EXPORT_WORKERS="2")
    assert run_manager(env, "--manual").returncode == 0
    damaged = {}
    for good in assert_folder_sound(folder):
        damaged[good.name] = CORRUPTIONS[good.name.split("_")[0]](good.read_bytes())
        good.write_bytes(damaged[good.name])

    t2 = t1 + HOUR_MS
    exchange.config.now_ms = t2
    exchange.reset_log()
    result = run_manager(env, "--manual")
    assert result.returncode == 0, result.stdout + result.stderr
    for name, data in damaged.items():
        assert (folder / QUARANTINE_DIR_NAME / name).read_bytes() == data, f"{name} was not quarantined"
    rebuilt = {p.name.split("_")[0]: p for p in assert_folder_sound(folder)}
    assert sorted(rebuilt) == sorted(CORRUPTIONS)
    for symbol, path in rebuilt.items():
        assert _numeric(PARQUET.read(path)) == _sandbox(symbol, closed_opens("1h", t2 - 2 * DAY_MS, t2))
        calls = exchange.klines_requests(symbol)
        assert len(calls) == 1 and calls[0]["startTime"] == t2 - 2 * DAY_MS, f"{symbol}: window not rebuilt"


def test_switching_csv_to_parquet_keeps_the_csv_and_reuses_its_candles(tmp_path, sandbox_factory):
    t1 = _first_time()
    exchange = sandbox_factory(now_ms=t1)
    folder = tmp_path / "exports"
    env = manager_env(folder, exchange.base_url, "BTCUSDT,ETHUSDT", MAX_FILES_PER_SYMBOL="3")
    assert run_manager(env, "--manual").returncode == 0
    csvs = {p.name: p.read_bytes() for p in export_files(folder)}
    assert len(csvs) == 2 and all(name.endswith(".csv") for name in csvs)

    t2 = t1 + HOUR_MS
    exchange.config.now_ms = t2
    exchange.reset_log()
    switched = run_manager({**env, "EXPORT_FORMAT": "parquet"}, "--manual")
    assert switched.returncode == 0, switched.stdout + switched.stderr
    after = assert_folder_sound(folder)
    assert {p.name: p.read_bytes() for p in after if p.suffix == ".csv"} == csvs  # nothing lost
    parquets = [p for p in after if p.suffix == ".parquet"]
    assert len(parquets) == 2
    for path in parquets:
        symbol = path.name.split("_")[0]
        calls = exchange.klines_requests(symbol)
        assert len(calls) <= 1 and all(c["startTime"] > t2 - 2 * DAY_MS for c in calls), "the CSV was not reused"
        assert _numeric(PARQUET.read(path)) == _sandbox(symbol, closed_opens("1h", t2 - 2 * DAY_MS, t2))


def test_unknown_format_exits_2_with_one_line(tmp_path, sandbox):
    env = manager_env(tmp_path / "exports", sandbox.base_url, EXPORT_FORMAT="xlsx")
    result = run_manager(env, "--manual")
    assert result.returncode == 2
    assert one_line(result.stderr), result.stderr
    assert "EXPORT_FORMAT='xlsx'" in result.stderr and "csv, parquet" in result.stderr
    assert not (tmp_path / "exports").exists() or export_files(tmp_path / "exports") == []


# --- the backfill: EXPORT_FORMAT and --format ---------------------------------------------------


@pytest.mark.parametrize("source", ["rest", "auto"])
def test_backfill_writes_parquet_with_the_exchange_candles(tmp_path, sandbox_factory, source):
    """``--format parquet`` (REST only, and archive + REST): one Parquet file holding exactly the candles."""
    now = int(datetime(2024, 11, 10, 12, 30, tzinfo=UTC).timestamp() * 1000)
    exchange = sandbox_factory(now_ms=now)
    env = manager_env(tmp_path / "scheduler", exchange.base_url, "BTCUSDT", BINANCE_ARCHIVE_URL=exchange.base_url)
    out = tmp_path / "backfill"
    args = ("--days", "40", "--output", str(out), "--source", source, "--format", "parquet")
    result = run_cli("export_historical_data.py", *args, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    (written,) = export_files(out)
    assert written.suffix == ".parquet" and pq.read_schema(written).equals(LABELLED)
    opens = closed_opens("1h", now - 40 * DAY_MS, now)
    assert _numeric(PARQUET.read(written)) == _sandbox("BTCUSDT", opens)


def test_backfill_honours_export_format_and_refuses_an_unknown_flag_value(tmp_path, sandbox):
    env = manager_env(tmp_path / "scheduler", sandbox.base_url, "BTCUSDT", EXPORT_FORMAT="parquet")
    out = tmp_path / "backfill"
    ok = run_cli(
        "export_historical_data.py", "--days", "3", "--output", str(out), "--source", "rest", env=env, cwd=tmp_path
    )
    assert ok.returncode == 0, ok.stderr
    assert [p.suffix for p in export_files(out)] == [".parquet"]
    bad = run_cli("export_historical_data.py", "--format", "xlsx", "--output", str(out), env=env, cwd=tmp_path)
    assert bad.returncode == 2 and one_line(bad.stderr) and "--format='xlsx'" in bad.stderr, bad.stderr


# --- the store layer: duplicates, retention, validation of a mixed folder ----------------------


def _manager(folder: Path, **kwargs) -> FileManager:
    now = datetime(2024, 10, 29, 1, tzinfo=UTC)
    return FileManager(folder, "1h", ["BTCUSDT"], file_format=PARQUET, now=lambda: now, **kwargs)


def test_identical_parquet_files_are_duplicates_a_csv_of_the_same_candles_is_not(tmp_path):
    frame = CSV.read(DATA / "BTCUSDT_1h_20241029_000000.csv")
    files = _manager(tmp_path, max_files_per_symbol=5, data_retention_days=36500)
    a = tmp_path / "BTCUSDT_1h_20241029_000000.parquet"
    b = tmp_path / "BTCUSDT_1h_20241029_010000.parquet"
    c = tmp_path / "BTCUSDT_1h_20241029_020000.csv"
    PARQUET.write(a, frame, "1h")
    PARQUET.write(b, frame, "1h")
    CSV.write(c, frame, "1h")
    assert a.read_bytes() == b.read_bytes()  # the writer is deterministic: same candles, same bytes
    assert files.find_duplicates().groups == [[b, a]]  # newest name first; the CSV is another product
    assert [v.valid for v in files.validate_all()] == [True, True, True]
    result = files.cleanup()
    assert result.removed == [a] and b.exists() and c.exists()


def test_retention_counts_each_format_apart(tmp_path):
    """After a switch to Parquet the CSV stays, even at MAX_FILES_PER_SYMBOL=1 and though the
    Parquet holds newer candles: each format keeps its own newest files."""
    frame = CSV.read(DATA / "BTCUSDT_1h_20241029_000000.csv")
    old_csv = tmp_path / "BTCUSDT_1h_20241029_000000.csv"
    CSV.write(old_csv, frame, "1h")
    extra = with_value(frame.slice(len(frame) - 1), 0, "open_time", frame["open_time"][-1].as_py() + 3_600_000)
    extra = with_value(extra, 0, "close_time", frame["close_time"][-1].as_py() + 3_600_000)
    newer = tmp_path / "BTCUSDT_1h_20241029_010000.parquet"
    PARQUET.write(newer, pa.concat_tables([frame, extra]), "1h")  # one candle more
    _manager(tmp_path, max_files_per_symbol=1, data_retention_days=36500).cleanup()
    assert sorted(p.name for p in export_files(tmp_path)) == [old_csv.name, newer.name]
    assert _numeric(PARQUET.read(newer).slice(0, len(frame))) == _numeric(frame)


def test_export_format_setting_defaults_to_csv_and_picks_the_registry_format(tmp_path):
    assert load_settings({}, env_file=None).export_format == "csv"
    settings = load_settings({"EXPORT_FORMAT": " Parquet ", "EXPORT_DIR": str(tmp_path / "x")}, env_file=None)
    assert settings.export_format == "parquet"
    assert FileManager.from_settings(settings).file_format is PARQUET
    with pytest.raises(SettingsError, match=r"^EXPORT_FORMAT='feather' is not valid: expected one of csv, parquet$"):
        load_settings({"EXPORT_FORMAT": "feather"}, env_file=None)


# The documented lines, verbatim (docs/data-products.md, "Reading the whole export folder"): after the
# imports and ``folder``, one line per library.
README_SETUP = (
    'import glob\n\nimport duckdb\nimport pandas as pd\nimport polars as pl\n\nfolder = "historical_exports"\n'
)
README_LINES = {
    "pandas": 'df = pd.concat(pd.read_parquet(f, dtype_backend="pyarrow").assign(file=f)'
    ' for f in glob.glob(f"{folder}/*.parquet"))',
    "polars": 'df = pl.read_parquet(f"{folder}/*.parquet", include_file_paths="file")',
    "duckdb": "df = duckdb.sql(f\"SELECT * FROM read_parquet('{folder}/*.parquet', filename = true)\").df()",
}


def test_the_documented_block_is_in_the_docs_verbatim():
    page = (REPO / "docs" / "data-products.md").read_text()
    assert README_SETUP in page and all(line in page for line in README_LINES.values())


@pytest.mark.parametrize("library", sorted(README_LINES))
def test_the_readme_lines_read_the_whole_folder(tmp_path, library):
    """Beside CSVs, the status report and a quarantined file, each line reads exactly the Parquet candles."""
    folder = tmp_path / "historical_exports"
    (folder / QUARANTINE_DIR_NAME).mkdir(parents=True)
    for name, interval in REAL_FILES.items():
        PARQUET.write(folder / name.replace(".csv", ".parquet"), CSV.read(DATA / name), interval)
    CSV.write(folder / "BTCUSDT_1h_20241029_000000.csv", CSV.read(DATA / "BTCUSDT_1h_20241029_000000.csv"), "1h")
    (folder / "status_report.json").write_text("{}")
    (folder / QUARANTINE_DIR_NAME / "ETHUSDT_1h_20241029_000000.parquet").write_bytes(b"junk")
    check = "\nprint(len(df))"
    result = subprocess.run(
        [sys.executable, "-c", README_SETUP + README_LINES[library] + check],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "34"  # 24 hours of BTCUSDT + 10 minutes of ADABTC


def test_a_forged_huge_footer_is_refused_before_it_is_read(tmp_path):
    data = _good()[:-8] + (1 << 30).to_bytes(4, "little") + b"PAR1"
    verdict = check_bytes(PARQUET, data, "1h", tmp_path / "x.parquet")[0]
    assert not verdict.valid and "1073741824-byte footer" in (verdict.reason or "")


def test_a_parquet_too_large_to_hold_is_judged_as_it_streams(tmp_path, monkeypatch):
    """Past the scan's hold-whole size the file goes through the spooling checker: same verdict."""
    path = tmp_path / "BTCUSDT_1h_20241029_000000.parquet"
    path.write_bytes(_good())
    whole = validate_file(path, "1h")
    monkeypatch.setattr(parquet_format, "SPOOL_MEMORY_BYTES", 1000)  # spilled to a temporary file too
    checked = scan.check_regular_file(path, "1h", candles_from=0)
    assert checked.validation == whole and whole.valid and whole.rows == 24
    assert checked.candles is not None
    assert _numeric(checked.candles) == _numeric(CSV.read(DATA / "BTCUSDT_1h_20241029_000000.csv"))


def test_a_decimal_file_of_an_earlier_version_stays_valid_and_readable(tmp_path):
    """decimal128(38, 8), no symbol/interval/market columns: what versions before issue 23 wrote."""
    frame = CSV.read(DATA / "BTCUSDT_1h_20241029_000000.csv")
    old = _documented(pa.decimal128(38, 8), pa.decimal128(38, 8))
    path = tmp_path / "BTCUSDT_1h_20241029_000000.parquet"
    pq.write_table(parquet_format.parquet_table(frame, numbers="decimal").cast(old), path)
    assert pq.read_schema(path).equals(old) and validate_file(path, "1h").valid
    assert _as_text(PARQUET.read(path)) == _as_text(frame)  # its exact text, as before
