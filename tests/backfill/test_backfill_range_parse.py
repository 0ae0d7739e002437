"""crypto_data_export.backfill.backfill_range.resolve_range: the parsing and the rules, without an exchange (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from crypto_data_export.backfill.backfill_range import FIRST_CANDLE, resolve_range
from crypto_data_export.settings.settings import SettingsError

NOW = datetime(2024, 11, 10, 12, 30, tzinfo=UTC)


def ms(*parts: int) -> int:
    return int(datetime(*parts, tzinfo=UTC).timestamp() * 1000)  # type: ignore[misc]


@pytest.mark.parametrize(
    "text",
    ["2024-01-01T12:00", "2024-01-01T12:00:00Z", "2024-01-01T12:00:00+00:00", "2024-01-01T14:00+02:00"],
)
def test_iso_times_and_offsets_are_utc(text: str) -> None:
    window = resolve_range(text, "2024-01-02", None, 2.0, NOW)
    assert window is not None and (window.start_ms, window.end_ms) == (ms(2024, 1, 1, 12), ms(2024, 1, 2))


def test_no_flags_means_no_window_and_end_defaults_to_now() -> None:
    assert resolve_range(None, None, "3", 3.0, NOW) is None
    window = resolve_range("2024-11-01", None, None, 2.0, NOW)
    assert window is not None and window.end_ms == int(NOW.timestamp() * 1000) and not window.clamped


def test_end_alone_counts_the_days_back_and_a_future_end_is_clamped() -> None:
    window = resolve_range(None, "2024-11-01", None, 2.0, NOW)
    assert window is not None and (window.start_ms, window.end_ms) == (ms(2024, 10, 30), ms(2024, 11, 1))
    clamped = resolve_range("2024-11-01", "2030-01-01", None, 2.0, NOW)
    assert clamped is not None and clamped.clamped and clamped.end_ms == int(NOW.timestamp() * 1000)


def test_the_first_candle_is_accepted_and_the_day_before_is_not() -> None:
    assert resolve_range(f"{FIRST_CANDLE:%Y-%m-%d}", "2017-08-01", None, 2.0, NOW) is not None
    with pytest.raises(SettingsError, match="--start .* before 2017-07-14"):
        resolve_range("2017-07-13", "2017-08-01", None, 2.0, NOW)
