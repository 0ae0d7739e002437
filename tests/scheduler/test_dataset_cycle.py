"""EXPORT_LAYOUT=dataset (issue 23): real cycles against the sandbox append to the dataset, which
the README's reader lines read as one table. In process, small data."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from crypto_data_export.core.clock import from_ms
from crypto_data_export.core.intervals import DAY_MS, HOUR_MS
from crypto_data_export.exchange.klines import rows_to_frame
from crypto_data_export.sandbox.fake_exchange import SandboxConfig, SandboxExchange, generate_candle
from crypto_data_export.scheduler.manager import ScheduledDataManager
from crypto_data_export.settings.settings import load_settings
from crypto_data_export.store.dataset import Dataset, period_bounds
from tests.support import closed_opens, export_files

SYMBOLS = ("BTCUSDT", "ETHUSDT")
# The README's reader lines (section "The dataset"), read from the README itself: its imports and
# `folder = ...` are the setup, then each `df =`/`table =` line is one library's.
_README_BLOCK = (Path(__file__).resolve().parents[2] / "README.md").read_text().split("### The dataset\n", 1)[1]
_README_CODE = _README_BLOCK.split("```python\n", 1)[1].split("```", 1)[0].splitlines()
README_SETUP = "\n".join(line for line in _README_CODE if line.startswith(("import ", "folder = "))) + "\n"
_LIBRARIES = {"duckdb": "duckdb", "pl": "polars", "ds": "pyarrow", "pd": "pandas"}
README_LINES = {
    _LIBRARIES[line.split("= ", 1)[1].split(".", 1)[0]]: line
    for line in _README_CODE
    if line.startswith(("df = ", "table = "))
}
README_ARITHMETIC = next(line for line in _README_CODE if line.startswith('df["close"]'))


def _now() -> int:
    """A fixed server time in the middle of an hour, a few hours back (every candle before it is closed)."""
    return int(time.time() * 1000) // HOUR_MS * HOUR_MS - 4 * HOUR_MS + HOUR_MS // 2


def _cycle(folder: Path, exchange: SandboxExchange, ok: bool = True, **extra: str) -> Any:
    env = {
        "BINANCE_BASE_URL": exchange.base_url,
        "EXPORT_DIR": str(folder),
        "EXPORT_SYMBOLS": ",".join(SYMBOLS),
        "EXPORT_LOOKBACK_DAYS": "1",
        "LOG_LEVEL": "WARNING",
        "EXPORT_LAYOUT": "dataset",
        **extra,
    }
    report = ScheduledDataManager(load_settings(env, env_file=None)).run_cycle()
    assert (report.exit_code == 0) == ok, report.export and [o.error for o in report.export.outcomes.values()]
    return report


def _exchange_rows(symbol: str, opens: list[int]) -> list[tuple[Any, ...]]:
    frame = rows_to_frame([generate_candle(symbol, "1h", t) for t in opens]).to_pylist()
    return [(symbol, "1h", c["open_time"], *(float(c[k]) for k in ("open", "high", "low", "close"))) for c in frame]


@pytest.fixture(scope="module")
def three_cycles(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int]]:
    """One dataset written by three hourly cycles, shared by the readers (read only)."""
    start = _now()
    folder = tmp_path_factory.mktemp("three") / "historical_exports"
    with SandboxExchange(SandboxConfig(now_ms=start)) as exchange:
        for hour in range(3):
            exchange.config.now_ms = start + hour * HOUR_MS
            outcome = _cycle(folder, exchange).export.outcomes["BTCUSDT"]
            period = period_bounds("1h", start + hour * HOUR_MS - HOUR_MS)[0]  # the path is the period written
            assert outcome.path == str(
                folder / "dataset" / "market=spot" / "interval=1h" / "symbol=BTCUSDT" / f"{from_ms(period):%Y}.parquet"
            )
    yield folder, start


def _closed(start: int) -> list[int]:
    return closed_opens("1h", start - DAY_MS, start + 2 * HOUR_MS)  # the first window and every hour since


def test_three_cycles_hold_every_closed_candle_once_and_nothing_is_cut(three_cycles):
    import duckdb

    folder, start = three_cycles
    query = (
        "SELECT symbol, interval, epoch_ms(open_time), open, high, low, close FROM read_parquet("
        f"'{folder}/dataset/**/*.parquet', hive_partitioning = true) ORDER BY symbol, open_time"
    )
    opens = _closed(start)
    assert duckdb.sql(query).fetchall() == [row for symbol in SYMBOLS for row in _exchange_rows(symbol, opens)]
    counts = f"SELECT count(*), count(DISTINCT (symbol, open_time)) FROM read_parquet('{folder}/dataset/**/*.parquet')"
    assert duckdb.sql(counts).fetchall() == [(2 * len(opens), 2 * len(opens))]
    status = json.loads((folder / "status_report.json").read_text())  # the status reads the dataset's footers
    entry = status["symbols"]["BTCUSDT"]
    assert (entry["valid"], entry["rows"], entry["missing_candles"], entry["fresh"]) == (True, len(opens), 0, True)


@pytest.mark.parametrize("library", sorted(README_LINES))
def test_the_readme_lines_read_the_dataset_as_one_table(three_cycles, library, monkeypatch):
    folder, start = three_cycles
    monkeypatch.chdir(folder.parent)
    (folder / "quarantine" / "dataset").mkdir(parents=True, exist_ok=True)  # outside the root: never read
    (folder / "quarantine" / "dataset" / "junk.parquet").write_bytes(b"junk")
    found: dict[str, Any] = {}
    exec(README_SETUP + README_LINES[library], found)
    if library == "pandas":
        exec(README_ARITHMETIC, found)
    df = found["table"].to_pandas() if library == "pyarrow" else found["df"]
    df = df.to_pandas() if library == "polars" else df
    assert sorted(df.groupby(["symbol", "interval"], observed=True).size().items()) == [
        (("BTCUSDT", "1h"), len(_closed(start))),
        (("ETHUSDT", "1h"), len(_closed(start))),
    ]
    assert ((df["close"] / df["open"]) > 0).all() and str(df["open_time"].dtype).startswith(("datetime64", "timestamp"))


def test_pandas_divides_prices_of_either_layout(three_cycles, tmp_path, sandbox):
    """The README's pandas line, with the default and the pyarrow backend, on the dataset and on a files-layout file."""
    import pandas as pd

    _cycle(tmp_path, sandbox, EXPORT_LAYOUT="files", EXPORT_FORMAT="parquet")
    (file,) = [p for p in export_files(tmp_path) if p.name.startswith("BTCUSDT")]
    for source in (three_cycles[0] / "dataset", file):
        for options in ({}, {"dtype_backend": "pyarrow"}):
            df = pd.read_parquet(source, **options)
            ratio = df["close"] / df["open"]
            assert len(ratio) >= 23 and ratio.notna().all() and df["close"].pct_change().iloc[1:].notna().all()
            assert set(df["symbol"].astype(str)) >= {"BTCUSDT"} and set(df["interval"].astype(str)) == {"1h"}


def test_a_period_copied_under_another_symbol_is_quarantined_and_fetched_again(tmp_path, sandbox_factory):
    exchange = sandbox_factory(now_ms=_now())
    folder = tmp_path / "exports"
    report = _cycle(folder, exchange, EXPORT_SYMBOLS="BTCUSDT")
    btc = Path(report.export.outcomes["BTCUSDT"].path)
    eth = Path(str(btc).replace("symbol=BTCUSDT", "symbol=ETHUSDT"))
    eth.parent.mkdir(parents=True)
    shutil.copy(btc, eth)
    _cycle(folder, exchange, EXPORT_SYMBOLS="ETHUSDT")
    assert set(pq.read_table(eth).column("symbol").to_pylist()) == {"ETHUSDT"}
    assert (folder / "quarantine" / eth.relative_to(folder)).read_bytes() == btc.read_bytes()


def test_a_cycle_against_another_exchange_host_moves_and_writes_nothing(tmp_path, sandbox_factory):
    folder, now = tmp_path / "exports", _now()
    first = sandbox_factory(now_ms=now)
    path = Path(_cycle(folder, first, EXPORT_SYMBOLS="BTCUSDT").export.outcomes["BTCUSDT"].path)
    before, other = path.read_bytes(), sandbox_factory(now_ms=now + HOUR_MS)  # a new candle to write
    report = _cycle(folder, other, ok=False, EXPORT_SYMBOLS="BTCUSDT")
    hosts = [s.base_url.split("//")[1] for s in (first, other)]
    line = f"{path} was written from {hosts[0]}; this run's exchange is {hosts[1]} (BINANCE_BASE_URL): use another"
    assert line in (report.export.outcomes["BTCUSDT"].error or "")
    assert path.read_bytes() == before and not (folder / "quarantine").exists()
    assert sorted(p.name for p in path.parent.iterdir()) == [".lock", path.name]


def test_a_hole_in_the_stored_window_is_fetched_again_and_completed(tmp_path, sandbox_factory):
    now = _now()
    exchange = sandbox_factory(now_ms=now)
    folder = tmp_path / "exports"
    path = Path(_cycle(folder, exchange, EXPORT_SYMBOLS="BTCUSDT").export.outcomes["BTCUSDT"].path)
    dataset = Dataset(folder / "dataset", pq.read_metadata(path).metadata[b"exchange_host"].decode(), "spot")
    series = dataset.series_of("BTCUSDT", "1h")
    stored = dataset.read_period(series, now - HOUR_MS)
    dataset.write_period(series, now - HOUR_MS, stored.filter([i != 5 for i in range(len(stored))]), [])
    assert pq.read_metadata(path).num_rows == len(stored) - 1
    exchange.reset_log()
    _cycle(folder, exchange, EXPORT_SYMBOLS="BTCUSDT")
    assert pq.read_metadata(path).num_rows == len(stored)
    assert exchange.klines_requests("BTCUSDT")[0]["startTime"] == now - DAY_MS  # the window, again


def test_a_series_held_by_a_backfill_is_skipped_with_a_note(tmp_path, sandbox):
    folder = tmp_path / "exports"
    dataset = Dataset(folder / "dataset", "", "spot")
    with dataset.lock(dataset.series_of("BTCUSDT", "1h"), wait=False) as held:
        assert held
        report = _cycle(folder, sandbox)
    btc, eth = report.export.outcomes["BTCUSDT"], report.export.outcomes["ETHUSDT"]
    assert btc.ok and btc.path is None and "another writer" in (btc.warning or "")
    assert eth.ok and eth.path is not None and report.result == "ok"


def test_switching_layouts_deletes_nothing_and_only_dataset_retention_removes_periods(tmp_path, sandbox_factory):
    now = _now()
    exchange = sandbox_factory(now_ms=now)
    folder = tmp_path / "exports"
    _cycle(folder, exchange, EXPORT_LAYOUT="files")
    csvs = export_files(folder)
    report = _cycle(folder, exchange, DATA_RETENTION_DAYS="0.0001")
    periods = {Path(o.path) for o in report.export.outcomes.values()}
    host = pq.read_metadata(next(iter(periods))).metadata[b"exchange_host"].decode()
    dataset = Dataset(folder / "dataset", host, "spot")
    old = rows_to_frame([generate_candle("BTCUSDT", "1h", (now - 800 * DAY_MS) // HOUR_MS * HOUR_MS)])
    (ancient,) = dataset.merge(dataset.series_of("BTCUSDT", "1h"), old, {"kind": "rest"})
    _cycle(folder, exchange, EXPORT_LAYOUT="files", EXPORT_FORMAT="parquet", DATA_RETENTION_DAYS="0.0001")
    _cycle(folder, exchange, DATA_RETENTION_DAYS="0.0001")
    assert all(p.exists() for p in [*csvs, *periods, ancient.path])  # neither layout nor format removed the other's
    report = _cycle(folder, exchange, DATASET_RETENTION_DAYS="400")
    assert not ancient.path.exists() and all(p.exists() for p in [*csvs, *periods])
    assert report.cleanup.reasons[ancient.path] == "dataset period older than DATASET_RETENTION_DAYS"
