"""The dataset store: periods, names, verified writes, identity, merge, lock, retention (in process, small data)."""

from __future__ import annotations

import os
import re
import shutil
import struct
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from crypto_data_export.core.errors import InvalidDataError, StorageError
from crypto_data_export.exchange.klines import rows_to_frame
from crypto_data_export.sandbox.fake_exchange import generate_candle
from crypto_data_export.store import dataset as dataset_module
from crypto_data_export.store.dataset import (
    DATASET_FOLDER,
    Dataset,
    period_bounds,
    period_name,
    periods_between,
    read_period_info,
)
from crypto_data_export.store.dataset_completeness import dataset_completeness
from tests.support import with_value

HOUR_MS = 3_600_000
NEW_YEAR = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp() * 1000)
SOURCE = {"kind": "rest", "from_ms": 1, "until_ms": 2}


def _ms(*parts: int) -> int:
    return int(datetime(*parts, tzinfo=UTC).timestamp() * 1000)  # type: ignore[misc]


def _hours(symbol: str, first_ms: int, count: int, skip: tuple[int, ...] = ()) -> pa.Table:
    return rows_to_frame([generate_candle(symbol, "1h", first_ms + i * HOUR_MS) for i in range(count) if i not in skip])


def _dataset(tmp_path: Path, numbers: str = "float") -> Dataset:
    return Dataset(tmp_path / DATASET_FOLDER, "127.0.0.1:1", "spot", numbers)


@pytest.mark.parametrize(
    ("interval", "moment", "name", "end"),
    [
        ("1s", _ms(2026, 11, 7, 13, 5), "2026-11-07", _ms(2026, 11, 8)),
        ("1m", _ms(2026, 12, 31, 23, 59), "2026-12", _ms(2027, 1, 1)),
        ("30m", _ms(2026, 2, 3), "2026-02", _ms(2026, 3, 1)),
        ("1h", _ms(2026, 6, 1), "2026", _ms(2027, 1, 1)),
        ("1w", _ms(2024, 12, 30), "2024", _ms(2025, 1, 1)),  # a week opening in 2024 belongs to 2024
        ("1M", _ms(2024, 12, 1), "2024", _ms(2025, 1, 1)),
    ],
)
def test_periods_are_a_day_below_1m_a_month_below_1h_a_year_from_1h(interval, moment, name, end):
    start, stop = period_bounds(interval, moment)
    assert (period_name(interval, start), stop) == (name, end)
    assert start <= moment < stop
    assert periods_between(interval, start - 1, stop + 1)[1] == (start, stop)


def test_a_merge_splits_by_period_and_the_file_says_what_it_holds(tmp_path):
    dataset = _dataset(tmp_path)
    series = dataset.series_of("BTCUSDT", "1h")
    candles = _hours("BTCUSDT", NEW_YEAR - 3 * HOUR_MS, 8, skip=(5,))
    old_year, new_year = dataset.merge(series, candles, SOURCE, now_ms=NEW_YEAR + 8 * HOUR_MS)
    folder = tmp_path / "dataset" / "market=spot" / "interval=1h" / "symbol=BTCUSDT"
    assert [old_year.path, new_year.path] == [folder / "2023.parquet", folder / "2024.parquet"]
    assert (old_year.present, new_year.present) == (3, 4)
    assert new_year.expected == 8 and new_year.gaps == [
        (NEW_YEAR + 2 * HOUR_MS,) * 2 + (1,),
        (NEW_YEAR + 5 * HOUR_MS, NEW_YEAR + 7 * HOUR_MS, 3),
    ]
    assert not new_year.complete and old_year.gaps[0][2] == 8760 - 3  # the year before the first candle: missing
    assert read_period_info(new_year.path) == new_year
    table = pq.read_table(new_year.path)
    assert table.schema.field("close").type == pa.float64()
    assert table.schema.field("symbol").type == pa.dictionary(pa.int32(), pa.string())
    assert set(table.column("interval").to_pylist()) == {"1h"}
    metadata = pq.ParquetFile(new_year.path).metadata
    assert metadata.row_group(0).sorting_columns[0].column_index == 0
    assert metadata.schema.to_arrow_schema().metadata[b"cdx_schema_version"] == b"2"
    assert [float(v) for v in dataset.read_period(series, NEW_YEAR)["close"].to_pylist()] == [
        float(v) for v in candles["close"].to_pylist()[3:]
    ]


def test_the_new_candle_wins_and_a_complete_unchanged_period_is_not_written_again(tmp_path, caplog):
    dataset = _dataset(tmp_path)
    series = dataset.series_of("BTCUSDT", "1h")
    candles = _hours("BTCUSDT", NEW_YEAR - 2 * HOUR_MS, 2)
    (first,) = dataset.merge(series, candles, SOURCE, confirmed_empty=lambda a, b: True, now_ms=NEW_YEAR + 1)
    assert first.complete  # the year has closed and every hole was confirmed empty
    again = dataset.merge(series, candles, {"kind": "rest", "from_ms": 5, "until_ms": 6}, now_ms=NEW_YEAR + 1)
    assert again == [first]
    changed = with_value(candles, 1, "close", str(float(candles["close"][1].as_py()) + 1))
    (fixed,) = dataset.merge(series, changed, {"kind": "audit-repair"}, now_ms=NEW_YEAR + 1)
    assert "1 stored candle(s) differ" in caplog.text
    assert fixed.sources == [SOURCE, {"kind": "audit-repair"}] and fixed.present == 2
    assert float(dataset.read_period(series, first.start_ms)["close"][1].as_py()) == float(changed["close"][1].as_py())


def test_a_period_copied_under_another_symbol_is_quarantined_not_merged(tmp_path):
    dataset = _dataset(tmp_path)
    btc, eth = dataset.series_of("BTCUSDT", "1h"), dataset.series_of("ETHUSDT", "1h")
    (written,) = dataset.merge(btc, _hours("BTCUSDT", NEW_YEAR, 3), SOURCE, now_ms=NEW_YEAR + 4 * HOUR_MS)
    dataset.series_folder(eth).mkdir(parents=True)
    shutil.copy(written.path, dataset.period_path(eth, NEW_YEAR))
    assert dataset.periods(eth) == []
    moved = tmp_path / "quarantine" / "dataset" / "market=spot" / "interval=1h" / "symbol=ETHUSDT" / "2024.parquet"
    assert moved.exists() and not dataset.period_path(eth, NEW_YEAR).exists()
    shutil.copy(written.path, dataset.period_path(eth, NEW_YEAR))
    (eth_info,) = dataset.merge(eth, _hours("ETHUSDT", NEW_YEAR + 3 * HOUR_MS, 1), SOURCE)
    assert eth_info.present == 1 and moved.with_name("2024.1.parquet").exists()  # nothing of BTC merged
    assert dataset.all_series() == [btc, eth]


def test_a_footer_is_read_once_per_version_of_its_file(tmp_path, monkeypatch):
    """What write_period keeps is what a fresh read of the footer says; a period overwritten in place (the
    same inode) by another symbol's is read again: identity still holds, nothing of it is merged."""
    dataset = _dataset(tmp_path)
    btc, eth = dataset.series_of("BTCUSDT", "1h"), dataset.series_of("ETHUSDT", "1h")
    now = NEW_YEAR + 6 * HOUR_MS
    (btc_info,) = dataset.merge(btc, _hours("BTCUSDT", NEW_YEAR, 5), SOURCE, now_ms=now)
    (eth_info,) = dataset.merge(eth, _hours("ETHUSDT", NEW_YEAR, 3), SOURCE, now_ms=now)
    with monkeypatch.context() as fresh:
        fresh.setattr(dataset_module, "_KNOWN", {})
        assert read_period_info(eth_info.path) == eth_info
    shutil.copyfile(btc_info.path, eth_info.path)
    (merged,) = dataset.merge(eth, _hours("ETHUSDT", NEW_YEAR + 5 * HOUR_MS, 1), SOURCE, now_ms=now)
    assert merged.series == eth and merged.present == 1


def test_a_period_changed_since_it_was_written_and_judged_is_judged_again(tmp_path):
    """A period this process wrote (or read and judged) is decoded without the rule book while it is unchanged;
    one changed in place, its size and mtime set back, is judged again: its broken candle is quarantined."""
    dataset = _dataset(tmp_path)
    series = dataset.series_of("BTCUSDT", "1h")
    (info,) = dataset.merge(series, _hours("BTCUSDT", NEW_YEAR, 3), SOURCE, now_ms=NEW_YEAR + 4 * HOUR_MS)
    assert len(dataset.read_period(series, NEW_YEAR)) == 3
    before, high = info.path.stat(), struct.pack("<d", float(_hours("BTCUSDT", NEW_YEAR, 3)["high"][1].as_py()))
    data = info.path.read_bytes()
    assert data.count(high) == 1  # the current period is not compressed: the double is there as it is
    with open(info.path, "r+b") as patched:
        patched.seek(data.index(high))
        patched.write(struct.pack("<d", 0.001))  # high below low
    os.utime(info.path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert dataset.read_period(series, NEW_YEAR) is None and not info.path.exists()
    assert (tmp_path / "quarantine" / info.path.relative_to(tmp_path)).exists()


def test_the_current_period_as_written_is_kept_in_memory_within_a_budget(tmp_path, monkeypatch):
    """The scheduler loop's dataset takes the current period's candles from memory for the next append while its
    file is unchanged (no file read); a table past the budget is not kept; a changed file is read again."""
    dataset, reads = _dataset(tmp_path), []
    dataset.keeps_current = True  # (run_forever's)
    series = dataset.series_of("BTCUSDT", "1h")
    judge = dataset_module.judge_parquet
    monkeypatch.setattr(dataset_module, "judge_parquet", lambda *a, **k: reads.append(a[2]) or judge(*a, **k))
    monkeypatch.setattr(dataset_module, "_KNOWN", {})
    monkeypatch.setattr(dataset_module, "_HELD", [0])
    now = _ms(2026, 1, 1, 5)
    dataset.merge(series, _hours("BTCUSDT", _ms(2026, 1, 1), 2), SOURCE, now_ms=now)  # (text candles: not kept)
    for hour in (2, 3):
        (info,) = dataset.merge(series, _hours("BTCUSDT", _ms(2026, 1, 1, hour), 1), SOURCE, now_ms=now)
    assert len(reads) == 1 and info.present == 4  # the second append read nothing
    assert len(dataset.read_period(series, info.start_ms)) == 4  # as text: from memory too, and still kept
    assert dataset.read_period(series, info.start_ms, numeric=True) is not None and len(reads) == 1
    assert dataset_module.recent_closes(dataset, series, _ms(2026, 1, 1, 3), _ms(2026, 1, 1, 2)) == [
        float(v) for v in pq.read_table(info.path)["close"].to_pylist()[2:]
    ]
    info.path.touch()  # changed: read again
    assert len(dataset.read_period(series, info.start_ms)) == 4 and len(reads) == 2
    monkeypatch.setattr(dataset_module, "_TABLE_BYTES", 0)
    dataset.merge(series, _hours("BTCUSDT", _ms(2026, 1, 1, 4), 1), SOURCE, now_ms=now)
    dataset.merge(series, _hours("BTCUSDT", _ms(2026, 1, 1, 5), 1), SOURCE, now_ms=now + HOUR_MS)
    assert len(reads) == 4 and dataset_module._HELD == [0]
    monkeypatch.setattr(dataset_module, "_TABLE_BYTES", 1 << 30)
    other = _dataset(tmp_path)  # a backfill's or a tool's: keeps none
    other.merge(series, _hours("BTCUSDT", _ms(2026, 1, 1, 6), 1), SOURCE, now_ms=now + 2 * HOUR_MS)
    assert other.read_period(series, info.start_ms, numeric=True) is not None and dataset_module._HELD == [0]


def test_a_period_of_another_exchange_host_is_never_moved_nor_merged_nor_removed(tmp_path):
    """The folders name no host: another host's history is a misconfigured run (BINANCE_BASE_URL), not a
    foreign file. Writers fail for that series with one line and write nothing; readers report and skip."""
    theirs = Dataset(tmp_path / DATASET_FOLDER, "127.0.0.1:2", "spot")
    (written,) = theirs.merge(theirs.series_of("BTCUSDT", "1h"), _hours("BTCUSDT", NEW_YEAR, 3), SOURCE)
    before, dataset = written.path.read_bytes(), _dataset(tmp_path)
    series = dataset.series_of("BTCUSDT", "1h")
    line = f"{written.path} was written from 127.0.0.1:2; this run's exchange is 127.0.0.1:1 (BINANCE_BASE_URL): "
    for write in (
        lambda: dataset.periods(series),
        lambda: dataset.read_period(series, NEW_YEAR),
        lambda: dataset.merge(series, _hours("BTCUSDT", NEW_YEAR + 3 * HOUR_MS, 1), SOURCE),
    ):
        with pytest.raises(StorageError, match="^" + re.escape(line) + "use another EXPORT_DIR or the same exchange$"):
            write()
    (shown,) = dataset_completeness(dataset, keep=False)  # the status: reported, not counted, not moved
    assert shown.first_open_ms is None and "127.0.0.1:2" in shown.not_counted[0]
    assert dataset.remove_older_than(NEW_YEAR + 400 * 24 * HOUR_MS) == []
    assert written.path.read_bytes() == before and not (tmp_path / "quarantine").exists()


def test_bad_candles_write_nothing(tmp_path):
    dataset = _dataset(tmp_path)
    series = dataset.series_of("BTCUSDT", "1h")
    bad = with_value(_hours("BTCUSDT", NEW_YEAR, 3), 1, "high", "0.1")
    with pytest.raises(InvalidDataError, match="high"):
        dataset.write_period(series, NEW_YEAR, bad, [SOURCE])
    with pytest.raises(InvalidDataError, match="not all in it"):
        dataset.write_period(series, NEW_YEAR, _hours("BTCUSDT", NEW_YEAR - HOUR_MS, 2), [SOURCE])
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


def test_decimal_numbers_are_exact_and_divide(tmp_path):
    dataset = _dataset(tmp_path, "decimal")
    series = dataset.series_of("BTCUSDT", "1h")
    (info,) = dataset.merge(series, _hours("BTCUSDT", NEW_YEAR, 3), SOURCE)
    table = pq.read_table(info.path)
    assert table.schema.field("open").type == pa.decimal128(18, 8)
    assert table.schema.field("volume").type == pa.decimal128(28, 8)
    assert len(pc.divide(table.column("close"), table.column("open"))) == 3
    too_wide = with_value(_hours("BTCUSDT", NEW_YEAR + 3 * HOUR_MS, 1), 0, "volume", "123456789012345678901.5")
    with pytest.raises(InvalidDataError, match="does not fit"):
        dataset.merge(series, too_wide, SOURCE)


def test_the_lock_is_one_writer_per_series(tmp_path):
    dataset = _dataset(tmp_path)
    series = dataset.series_of("BTCUSDT", "1h")
    with dataset.lock(series, wait=False) as held:
        with (
            dataset.lock(series, wait=False) as second,
            dataset.lock(dataset.series_of("ETHUSDT", "1h"), wait=False) as other,
        ):
            assert (held, second, other) == (True, False, True)
    with dataset.lock(series, wait=True) as again:
        assert again


def test_retention_removes_whole_periods_that_ended_before_the_cutoff(tmp_path):
    dataset = _dataset(tmp_path)
    series = dataset.series_of("BTCUSDT", "1h")
    old, new = dataset.merge(series, _hours("BTCUSDT", NEW_YEAR - HOUR_MS, 2), SOURCE)
    assert dataset.remove_older_than(NEW_YEAR + HOUR_MS) == [old.path]
    assert [p.path for p in dataset.periods(series)] == [new.path]
