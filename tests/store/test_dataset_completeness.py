"""Completeness of the dataset from its footers: first/last candle, expected/present per period, gaps."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from crypto_data_export.core.candles import SeriesId
from crypto_data_export.store.dataset import Dataset
from crypto_data_export.store.dataset_completeness import dataset_completeness, series_completeness

H = 3_600_000
Y2025, Y2026, Y2027 = 1_735_689_600_000, 1_767_225_600_000, 1_798_761_600_000  # Jan 1st, UTC
HOST = "127.0.0.1:1"
PRICES = ("open", "high", "low", "close", "volume", "quote_asset_volume")


def write_period(
    root: Path, series: SeriesId, start: int, end: int, opens: list[int], *, expected: int,
    complete: bool = False, gaps: list[list[int]] | None = None, name: str | None = None,
    under: SeriesId | None = None,
) -> Path:  # fmt: skip
    """A period file as the contract lays it out (columns, Hive folders, key/value metadata)."""
    n, ms = len(opens), pa.timestamp("ms", tz="UTC")
    columns: dict[str, pa.Array] = {"open_time": pa.array(opens, pa.int64()).cast(ms)}
    columns.update({c: pa.array([1.0] * n) for c in PRICES[:5]})
    columns["close_time"] = pa.array([o + H - 1 for o in opens], pa.int64()).cast(ms)
    columns["quote_asset_volume"] = pa.array([1.0] * n)
    columns["number_of_trades"] = pa.array([1] * n, pa.int64())
    columns["taker_buy_base_asset_volume"] = columns["taker_buy_quote_asset_volume"] = pa.array([1.0] * n)
    for key in ("symbol", "interval", "market"):
        columns[key] = pa.array([getattr(series, key)] * n).dictionary_encode()
    meta = {
        "exchange_host": series.exchange_host, "market": series.market, "symbol": series.symbol,
        "interval": series.interval, "cdx_schema_version": "2", "cdx_numbers": "float",
        "cdx_period_start": str(start), "cdx_period_end": str(end), "cdx_expected": str(expected),
        "cdx_present": str(n), "cdx_gaps": json.dumps(gaps or []), "cdx_sources": "[]",
        "cdx_complete": "true" if complete else "false", "cdx_written_at": "2026-12-07T00:00:00+00:00",
    }  # fmt: skip
    table = pa.table(columns).replace_schema_metadata(meta)
    place = under or series
    folder = root / f"market={place.market}" / f"interval={place.interval}" / f"symbol={place.symbol}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name or str(1970 + round(start / (365.2425 * 24 * H)))}.parquet"
    pq.write_table(table, path, compression="zstd")
    return path


def holed_dataset(root: Path) -> tuple[Dataset, SeriesId]:
    """BTCUSDT 1h: 2025 complete from Dec 31st 20:00, 2026 absent, 2027 with 3 candles of 5, a hole of 2."""
    dataset = Dataset(root, HOST, "spot")
    btc = dataset.series_of("BTCUSDT", "1h")
    # A backfill that started on Dec 31st 20:00: the footer counts the 8,756 candles before as a hole.
    head = Y2026 - 4 * H
    write_period(root, btc, Y2025, Y2026, [head + i * H for i in range(4)], expected=8760, complete=True,
                 gaps=[[Y2025, head - H, 8756]])  # fmt: skip
    write_period(root, btc, Y2027, Y2027 + 365 * 24 * H, [Y2027, Y2027 + 3 * H, Y2027 + 4 * H], expected=5,
                 gaps=[[Y2027 + H, Y2027 + 2 * H, 2]])  # fmt: skip
    return dataset, btc


def test_a_series_counts_from_its_first_candle_and_an_absent_period_is_one_gap_with_its_neighbours(tmp_path):
    dataset, btc = holed_dataset(tmp_path / "dataset")
    found = series_completeness(dataset, btc)
    entry = found.to_dict(listed=1)
    assert (entry["first_candle"], entry["last_candle"]) == ("2025-12-31T20:00:00+00:00", "2027-01-01T04:00:00+00:00")
    assert (entry["periods"], entry["complete_periods"], entry["periods_missing_candles"]) == (3, 1, 2)
    assert entry["short_periods"] == {"2026": {"expected": 8760, "present": 0, "complete": False}}  # capped at 1
    assert [(p.name, p.expected, p.present) for p in found.periods] == [
        ("2025", 4, 4),  # counted from the first candle
        ("2026", 8760, 0),
        ("2027", 5, 3),
    ]
    assert found.gaps == [(Y2026, Y2027 - H, 8760), (Y2027 + H, Y2027 + 2 * H, 2)]
    assert (entry["expected"], entry["present"], entry["missing"]) == (8769, 7, 8762)
    assert (entry["unconfirmed_missing"], entry["complete"]) == (8762, False)
    assert entry["gap_ranges"] == 2 and len(entry["gaps"]) == 1  # capped, counted
    verdict = found.verdict()
    assert (
        verdict.valid and verdict.rows == 7 and verdict.missing_candles == 8762 and verdict.path.name == "2027.parquet"
    )


def test_adjacent_holes_of_two_periods_merge_and_a_foreign_file_is_named_not_counted(tmp_path):
    root = tmp_path / "dataset"
    dataset = Dataset(root, HOST, "spot")
    eth = dataset.series_of("ETHUSDT", "1h")
    end_2025 = Y2026 - H
    write_period(root, eth, Y2025, Y2026, [Y2025, end_2025 - H], expected=8760, complete=True,
                 gaps=[[Y2025 + H, end_2025 - 2 * H, 8757], [end_2025, end_2025, 1]])  # fmt: skip
    write_period(root, eth, Y2026, Y2027, [Y2026 + 2 * H], expected=3, gaps=[[Y2026, Y2026 + H, 2]])
    other = SeriesId(HOST, "spot", "BTCUSDT", "1h")
    write_period(root, other, Y2026, Y2027, [Y2026], expected=1, name="2028", under=eth)  # copied in under ETHUSDT
    (found,) = dataset_completeness(dataset)
    assert found.gaps[-1] == (end_2025, Y2026 + H, 3)  # Dec 31st 23:00 + Jan 1st 00:00 and 01:00
    assert found.unconfirmed == 2  # 2025 is complete: its holes were confirmed empty by the exchange
    assert found.not_counted == ["2028.parquet: its metadata names " + str(other)]
    assert found.last_open_ms == Y2026 + 2 * H
