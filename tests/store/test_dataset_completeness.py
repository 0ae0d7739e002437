"""Completeness of the dataset from its footers: first/last candle, expected/present per period, gaps."""

from __future__ import annotations

from pathlib import Path

import crypto_data_export.store.dataset_completeness as dataset_completeness_module
from crypto_data_export.core.candles import SeriesId
from crypto_data_export.store.dataset import Dataset
from crypto_data_export.store.dataset_completeness import Footers, dataset_completeness, series_completeness
from tests.support import HOUR_MS as H
from tests.support import Y2025, Y2026, Y2027
from tests.support import write_dataset_period as write_period

HOST = "127.0.0.1:1"


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
    found = series_completeness(dataset, btc, Footers(dataset, None))
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
    assert found.not_counted == [f"2028.parquet: its metadata names {other}"]
    assert found.last_open_ms == Y2026 + 2 * H


def test_each_version_of_a_footer_is_read_once_and_a_foreign_cache_is_left_alone(tmp_path, monkeypatch):
    """A completed period is written once: the next status reads only the footers written since."""
    dataset, btc = holed_dataset(tmp_path / "dataset")
    cache, reads = tmp_path / ".dataset_footers.json", []
    real = dataset_completeness_module.read_period_info
    monkeypatch.setattr(
        dataset_completeness_module, "read_period_info", lambda p, s: reads.append(p.name) or real(p, s)
    )
    first = dataset_completeness(dataset, cache)
    assert sorted(reads) == ["2025.parquet", "2027.parquet"] and cache.is_file()
    reads.clear()
    assert dataset_completeness(dataset, cache) == first and reads == []
    write_period(dataset.root, btc, Y2027, Y2027 + 365 * 24 * H, [Y2027 + i * H for i in range(5)], expected=5)
    (again,) = dataset_completeness(dataset, cache)
    assert reads == ["2027.parquet"] and again.gaps == [(Y2026, Y2027 - H, 8760)]  # the hole of 2027 was filled
    cache.write_text('{"footers": {}}', encoding="utf-8")  # not ours: used for nothing, never replaced
    reads.clear()
    dataset_completeness(dataset, cache)
    assert len(reads) == 2 and cache.read_text(encoding="utf-8") == '{"footers": {}}'
