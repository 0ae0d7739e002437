"""Health judges the newest closed candle, not the file (the loop: tests/cycle/test_loop.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from crypto_data_export.report.status_report import build_status_report
from crypto_data_export.settings.settings import Settings
from crypto_data_export.store.exports import latest_per_series
from crypto_data_export.store.layout import export_file_name
from crypto_data_export.store.run_state import RunState
from crypto_data_export.store.validation import FileValidation

NOW = datetime(2026, 3, 10, 12, 30, tzinfo=UTC)
HOUR = timedelta(hours=1)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _file(folder: Path, symbol: str, written: datetime, last_open: datetime, valid: bool = True) -> FileValidation:
    path = folder / export_file_name(symbol, "1h", written)
    return FileValidation(path, valid, None if valid else "bad row", 48, _ms(last_open - 47 * HOUR), _ms(last_open))


def _report(tmp_path: Path, files: list[FileValidation], period: float = 2.0) -> dict:
    settings = Settings(export_dir=tmp_path, symbols=("BTCUSDT",), export_period_hours=period)
    (tmp_path / "logs").mkdir(exist_ok=True)
    state = RunState(last_successful_cycle=NOW.isoformat(), last_exchange_contact=NOW.isoformat())
    return build_status_report(settings, state, files, {}, "stopped", now=NOW)


@pytest.mark.parametrize(
    ("last_open", "fresh"),
    [
        (NOW.replace(minute=0) - HOUR, True),  # the newest closed candle: 12:00 is still open
        (NOW.replace(minute=0) - 3 * HOUR, True),  # closed 1.5 h ago: within 1 h + 2 h (+ grace)
        (NOW.replace(minute=0) - 4 * HOUR, False),  # closed 3.5 h ago
        (NOW - timedelta(days=1), False),
    ],
)
def test_a_just_written_file_with_old_candles_is_stale(tmp_path: Path, last_open: datetime, fresh: bool) -> None:
    report = _report(tmp_path, [_file(tmp_path, "BTCUSDT", NOW - timedelta(minutes=1), last_open)])
    entry = report["symbols"]["BTCUSDT"]
    assert entry["fresh"] is fresh and entry["age_hours"] < 0.1
    assert report["health"]["checks"]["symbols_fresh"]["passed"] is fresh
    assert report["health"]["status"] == ("healthy" if fresh else "degraded")


def test_the_newest_file_is_the_one_with_the_newest_candle(tmp_path: Path) -> None:
    fresh = _file(tmp_path, "BTCUSDT", NOW - 5 * HOUR, NOW.replace(minute=0) - HOUR)
    newer_name_older_data = _file(tmp_path, "BTCUSDT", NOW - HOUR, NOW - timedelta(days=1))
    corrupt = _file(tmp_path, "BTCUSDT", NOW, NOW, valid=False)
    series = ("spot", "BTCUSDT", "1h")
    assert latest_per_series([fresh, newer_name_older_data, corrupt])[series] is fresh
    assert latest_per_series([corrupt])[series] is corrupt


def test_the_report_carries_our_marker_after_the_guide_keys(tmp_path: Path) -> None:
    report = _report(tmp_path, [])
    keys = list(report)
    assert keys[:4] == ["timestamp", "system_status", "configuration", "file_statistics"]
    assert report["writer"] == "crypto-data-export" and report["format_version"] == 1
