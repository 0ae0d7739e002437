"""``file_manager.py export-freqtrade``: freqtrade's names, columns and types, read back with pyarrow
(freqtrade itself is never a dependency: ``benchmarks/freqtrade_loader_check.py`` runs its loader)."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.feather as feather
import pytest

from crypto_data_export.commands import files_cmd
from crypto_data_export.exchange.klines import rows_to_frame
from crypto_data_export.sandbox.fake_exchange import generate_candle
from crypto_data_export.settings.settings import SETTING_VARIABLES, SettingsError
from crypto_data_export.store.dataset import DATASET_FOLDER, Dataset, period_bounds
from crypto_data_export.store.freqtrade_export import freqtrade_path
from tests.support import CORRUPT, clean_environ, put, run_cli, valid_bytes

FREQTRADE_COLUMNS = ["date", "open", "high", "low", "close", "volume"]
FREQTRADE_TYPES = [pa.timestamp("ms", tz="UTC"), *[pa.float64()] * 5]


def expected_rows(data: bytes) -> list[tuple[float, ...]]:
    """freqtrade's rows of a CSV export: open time in ms and the float of each exchange text."""
    rows = csv.DictReader(io.StringIO(data.decode()))
    return [
        (int(datetime.fromisoformat(r["open_time"]).timestamp() * 1000), *(float(r[c]) for c in FREQTRADE_COLUMNS[1:]))
        for r in rows
    ]


def read_back(path: Path, file_format: str = "feather") -> list[tuple[float, ...]]:
    table = feather.read_table(path) if file_format == "feather" else pa.parquet.read_table(path)
    assert table.column_names == FREQTRADE_COLUMNS and table.schema.types == FREQTRADE_TYPES
    table = table.set_column(0, "date", table.column("date").cast(pa.int64()))
    return list(zip(*(table.column(c).to_pylist() for c in FREQTRADE_COLUMNS), strict=True))


def test_freqtrade_names_the_files_as_its_own_data_handler_does(tmp_path: Path) -> None:
    assert freqtrade_path(tmp_path, "BTCUSDT", "1h", "spot", "feather") == tmp_path / "BTC_USDT-1h.feather"
    assert freqtrade_path(tmp_path, "ETHBTC", "1M", "spot", "parquet") == tmp_path / "ETH_BTC-1Mo.parquet"
    assert freqtrade_path(tmp_path, "BTCFDUSD", "5m", "spot", "feather").name == "BTC_FDUSD-5m.feather"
    futures = freqtrade_path(tmp_path, "BTCUSDC", "1h", "usdm", "feather")
    assert futures == tmp_path / "futures" / "BTC_USDC_USDC-1h-futures.feather"
    for unsplittable in ("USDT", "ABCXYZ"):
        with pytest.raises(SettingsError, match=f"cannot name {unsplittable} for freqtrade"):
            freqtrade_path(tmp_path, unsplittable, "1h", "spot", "feather")


def test_export_freqtrade_from_the_files_layout_as_a_real_run(tmp_path: Path) -> None:
    exports = tmp_path / "exports"
    put(exports, "BTCUSDT", 2, valid_bytes(12))
    put(exports, "BTCUSDT", 1, valid_bytes(24))  # the newest candles: this file is exported
    corrupt = put(exports, "BTCUSDT", 0, CORRUPT)  # newest name but invalid: skipped, left where it is
    put(exports, "ETHBTC", 1, valid_bytes(6))
    datadir = tmp_path / "user_data" / "data" / "binance"  # missing: created, as freqtrade does
    env = {**clean_environ(), "EXPORT_DIR": str(exports)}
    done = run_cli("file_manager.py", "export-freqtrade", "--datadir", str(datadir), env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "files layout" in done.stdout and "BTCUSDT 1h: wrote" in done.stdout
    assert sorted(p.name for p in datadir.iterdir()) == ["BTC_USDT-1h.feather", "ETH_BTC-1h.feather"]
    assert read_back(datadir / "BTC_USDT-1h.feather") == expected_rows(valid_bytes(24))
    assert read_back(datadir / "ETH_BTC-1h.feather") == expected_rows(valid_bytes(6))
    assert corrupt.read_bytes() == CORRUPT


def test_export_freqtrade_from_the_dataset_every_period_in_order_as_a_real_run(tmp_path: Path) -> None:
    exports, hour = tmp_path / "exports", 3_600_000
    dataset = Dataset(exports / DATASET_FOLDER, "127.0.0.1:1", "usdm")
    new_year = int(datetime.fromisoformat("2024-01-01T00:00:00+00:00").timestamp() * 1000)
    candles = rows_to_frame([generate_candle("BTCUSDT", "1h", new_year + i * hour) for i in range(-3, 4)])
    btc = dataset.series_of("BTCUSDT", "1h")
    for start in (new_year - hour, new_year):  # two periods: 2023.parquet and 2024.parquet
        bounds = period_bounds("1h", start)
        part = candles.filter(pa.compute.is_in(candles["open_time"], pa.array(range(*bounds, hour))))
        dataset.write_period(btc, bounds[0], part, [{"kind": "rest", "from_ms": 1, "until_ms": 2}])
    foreign = dataset.series_folder(dataset.series_of("ETHUSDT", "1h"))  # BTC's period under ETH: not exported
    foreign.mkdir(parents=True)
    (foreign / "2024.parquet").write_bytes(dataset.period_path(btc, new_year).read_bytes())
    datadir = tmp_path / "binance"
    env = {**clean_environ(), "EXPORT_DIR": str(exports), "EXPORT_LAYOUT": "dataset", "BINANCE_MARKET": "usdm"}
    env["BINANCE_BASE_URL"] = "http://127.0.0.1:1"
    done = run_cli("file_manager.py", "export-freqtrade", "--datadir", str(datadir), env=env, cwd=tmp_path)
    assert done.returncode == 1, done.stderr  # a series with nothing to export fails the run, the others go on
    assert "dataset layout" in done.stdout and "ETHUSDT 1h: no valid candles, nothing written" in done.stdout
    assert "not exported" in done.stderr and (foreign / "2024.parquet").exists()  # reported, left where it is
    assert [p.relative_to(datadir).as_posix() for p in datadir.rglob("*")] == [
        "futures",
        "futures/BTC_USDT_USDT-1h-futures.feather",
    ]
    want = [
        (t, *(float(v) for v in row))
        for t, *row in zip(*(candles[c].to_pylist() for c in ["open_time", *FREQTRADE_COLUMNS[1:]]), strict=True)
    ]
    assert read_back(datadir / "futures" / "BTC_USDT_USDT-1h-futures.feather") == want


def test_export_freqtrade_replaces_only_its_pair_files_and_refuses_bad_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in SETTING_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    exports, datadir = tmp_path / "exports", tmp_path / "binance"
    exports.mkdir()
    assert files_cmd.main(["export-freqtrade", "--dir", str(exports), "--datadir", str(datadir)]) == 1
    assert "no series of the spot market: nothing written" in capsys.readouterr().out and not datadir.exists()
    put(exports, "BTCUSDT", 1, valid_bytes(3))
    datadir.mkdir()
    (datadir / "BTC_USDT-1h.parquet").write_bytes(b"freqtrade's old file")
    (datadir / "SOL_USDT-5m.parquet").write_bytes(b"another pair")
    args = ["export-freqtrade", "--dir", str(exports), "--datadir", str(datadir), "--format", "parquet"]
    assert files_cmd.main(args) == 0
    assert "replaced" in capsys.readouterr().out
    assert read_back(datadir / "BTC_USDT-1h.parquet", "parquet") == expected_rows(valid_bytes(3))
    assert (datadir / "SOL_USDT-5m.parquet").read_bytes() == b"another pair"
    assert sorted(p.name for p in datadir.iterdir()) == ["BTC_USDT-1h.parquet", "SOL_USDT-5m.parquet"]
    # A symbol with no known quote asset: one line, exit 2, nothing written (not even the other pairs).
    put(exports, "ABCXYZ", 1, valid_bytes(3))
    before = (datadir / "BTC_USDT-1h.parquet").read_bytes()
    assert files_cmd.main([*args[:-2]]) == 2
    out, err = capsys.readouterr()
    assert err.startswith("error: cannot name ABCXYZ for freqtrade") and err.count("\n") == 1
    assert (datadir / "BTC_USDT-1h.parquet").read_bytes() == before and not (datadir / "BTC_USDT-1h.feather").exists()
    a_file = str(datadir / "SOL_USDT-5m.parquet")
    assert files_cmd.main(["export-freqtrade", "--dir", str(exports), "--datadir", a_file]) == 2
    assert "is not a folder" in capsys.readouterr().err
    json_too = ["export-freqtrade", "--json", "--datadir", "x"]
    for wrong in (["export-freqtrade"], ["validate", "--datadir", "x"], json_too):
        with pytest.raises(SystemExit, match="2"):
            files_cmd.main([*wrong, "--dir", str(exports)])
