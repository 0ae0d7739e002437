"""HistoricalDataExporter against the sandbox: closed candles, exact strings, incremental, paginated."""

from __future__ import annotations

import pytest

from crypto_data_export.core.errors import NoDataError
from crypto_data_export.core.intervals import HOUR_MS, MINUTE_MS
from crypto_data_export.exchange.client import ExchangeClient
from crypto_data_export.exchange.history import HistoricalDataExporter
from crypto_data_export.sandbox.fake_exchange import generate_candle
from tests.support import export_window, with_value

# 2026-11-29 05:30:00 UTC: half-way through a 1h candle.
NOW_MS = 1795843800000


def exporter_for(url: str, interval: str = "1h", lookback_days: float = 2.0) -> HistoricalDataExporter:
    client = ExchangeClient(url, retries=2, backoff=0.0, read_timeout=2.0)
    return HistoricalDataExporter(client, interval, lookback_days)


def expected_opens(now_ms: int, interval_ms: int, lookback_days: float) -> list[int]:
    start = now_ms - int(lookback_days * 86_400_000)
    first = -(-start // interval_ms) * interval_ms
    return list(range(first, now_ms - interval_ms + 1, interval_ms))


def test_only_closed_candles_of_the_window_with_the_exchanges_exact_strings(sandbox_factory) -> None:
    exchange = sandbox_factory(now_ms=NOW_MS)
    result = export_window(exporter_for(exchange.base_url), "BTCUSDT")
    frame = result.frame
    assert frame["open_time"].to_pylist() == expected_opens(NOW_MS, HOUR_MS, 2.0)
    assert len(frame) == 47 and max(frame["close_time"].to_pylist()) < NOW_MS
    for row in frame.to_pylist():
        served = generate_candle("BTCUSDT", "1h", row["open_time"])
        assert [row[c] for c in ("open", "high", "low", "close", "volume")] == served[1:6]
        assert (row["close_time"], row["quote_asset_volume"], row["number_of_trades"]) == tuple(served[6:9])
    assert result.calls == 1
    assert exchange.klines_requests()[0]["limit"] == 47


def test_incremental_run_asks_for_the_newest_stored_candle_and_the_ones_after_it(sandbox_factory) -> None:
    exchange = sandbox_factory(now_ms=NOW_MS)
    first = export_window(exporter_for(exchange.base_url), "ETHUSDT")
    stored = first.frame.slice(0, len(first.frame) - 3)
    exchange.reset_log()
    second = export_window(exporter_for(exchange.base_url), "ETHUSDT", previous=stored)
    requests = exchange.klines_requests("ETHUSDT")
    assert len(requests) == 1
    assert requests[0]["startTime"] == stored["open_time"][-1].as_py()  # the overlap: is it the exchange's?
    assert requests[0]["limit"] == 4
    assert (second.reused_rows, second.fetched_rows) == (44, 3)
    assert second.frame.equals(first.frame)


def test_steady_state_is_one_small_call_and_nothing_downloaded_twice(sandbox_factory) -> None:
    exchange = sandbox_factory(now_ms=NOW_MS)
    first = export_window(exporter_for(exchange.base_url), "SOLUSDT")
    exchange.config.now_ms = NOW_MS + HOUR_MS
    exchange.reset_log()
    second = export_window(exporter_for(exchange.base_url), "SOLUSDT", previous=first.frame)
    assert second.calls == 1 and second.fetched_rows == 1
    assert exchange.klines_requests()[0]["limit"] == 2  # the new candle and the newest stored one
    assert second.frame["open_time"][-1].as_py() == first.frame["open_time"][-1].as_py() + HOUR_MS
    assert len(second.frame) == 47  # the oldest candle left the window as a new one closed


def test_nothing_new_means_one_request_for_the_newest_stored_candle(sandbox_factory) -> None:
    exchange = sandbox_factory(now_ms=NOW_MS)
    first = export_window(exporter_for(exchange.base_url), "SOLUSDT")
    exchange.reset_log()
    again = export_window(exporter_for(exchange.base_url), "SOLUSDT", previous=first.frame)
    assert [r["limit"] for r in exchange.klines_requests()] == [1] and again.calls == 1
    assert len(again.frame) == 47 and again.fetched_rows == 0 and again.mismatch is None


@pytest.mark.parametrize("edit", ["another symbol", "one price"])
def test_stored_candles_that_are_not_the_exchanges_are_not_reused(sandbox_factory, edit) -> None:
    """BTCUSDT's candles stored under ETHUSDT's name, or one edited price in the newest stored
    candle: the window is fetched again, and why is said."""
    exchange = sandbox_factory(now_ms=NOW_MS)
    eth = export_window(exporter_for(exchange.base_url), "ETHUSDT").frame
    stored = export_window(exporter_for(exchange.base_url), "BTCUSDT").frame.slice(0, 44)
    if edit == "one price":
        stored = with_value(eth.slice(0, 44), 43, "close", "1.00000000")
    exchange.reset_log()
    again = export_window(exporter_for(exchange.base_url), "ETHUSDT", previous=stored)
    assert again.frame.equals(eth) and again.reused_rows == 0 and again.fetched_rows == 47
    assert again.mismatch is not None and again.mismatch.startswith("the newest stored candle")
    assert [r["limit"] for r in exchange.klines_requests("ETHUSDT")] == [4, 47]


def test_a_newest_candle_stored_as_doubles_is_the_exchanges(sandbox_factory) -> None:
    """A float64 Parquet file reads back as the shortest double text (``1.2345678901212346e+11``):
    the overlap candle is compared as numbers, so it is reused, not fetched again."""
    exchange = sandbox_factory(now_ms=NOW_MS)
    eth = export_window(exporter_for(exchange.base_url), "ETHUSDT").frame
    as_doubles = with_value(
        eth.slice(0, 44), 43, "quote_asset_volume", format(float(eth["quote_asset_volume"][43].as_py()), ".16e")
    )
    assert as_doubles["quote_asset_volume"][43].as_py() != eth["quote_asset_volume"][43].as_py()
    again = export_window(exporter_for(exchange.base_url), "ETHUSDT", previous=as_doubles)
    assert again.mismatch is None and again.reused_rows == 44


def test_long_windows_are_paginated_at_1000_candles(sandbox_factory) -> None:
    exchange = sandbox_factory(now_ms=NOW_MS)
    result = export_window(exporter_for(exchange.base_url, "1m", 1.0), "BTCUSDT")
    assert result.frame["open_time"].to_pylist() == expected_opens(NOW_MS, MINUTE_MS, 1.0)
    limits = [r["limit"] for r in exchange.klines_requests()]
    assert limits == [1000, 440] and result.calls == 2


def test_exchange_clock_decides_what_is_closed(sandbox_factory) -> None:
    for offset in (10 * MINUTE_MS, -10 * MINUTE_MS):
        exchange = sandbox_factory(now_ms=NOW_MS + offset)
        frame = export_window(exporter_for(exchange.base_url), "BTCUSDT").frame
        assert max(frame["close_time"].to_pylist()) < NOW_MS + offset
        assert frame["open_time"].to_pylist() == expected_opens(NOW_MS + offset, HOUR_MS, 2.0)


def test_gaps_in_the_exchanges_data_are_kept_as_gaps(sandbox_factory) -> None:
    gap_start = (NOW_MS // HOUR_MS - 10) * HOUR_MS
    exchange = sandbox_factory(now_ms=NOW_MS, gaps={"BTCUSDT": [(gap_start, gap_start + 2 * HOUR_MS)]})
    frame = export_window(exporter_for(exchange.base_url), "BTCUSDT").frame
    assert len(frame) == 45
    assert gap_start not in set(frame["open_time"]) and gap_start + HOUR_MS not in set(frame["open_time"])


def test_delisted_symbol_without_candles_is_no_data(sandbox_factory) -> None:
    exchange = sandbox_factory(now_ms=NOW_MS, delisted={"DOTUSDT": NOW_MS - 10 * 86_400_000})
    with pytest.raises(NoDataError, match="delisted"):
        export_window(exporter_for(exchange.base_url), "DOTUSDT")
    assert len(exchange.klines_requests()) == 1  # asked once, not retried


@pytest.mark.parametrize("shuffled", [False, True])
def test_reused_candles_are_exactly_those_inside_the_window(shuffled: bool) -> None:
    """The stored candles kept for a window (a slice found by bisection for a valid, sorted
    file; a mask otherwise) are the ones opening in [start, end) and closed by ``now``."""
    import random

    from crypto_data_export.exchange.history import candles_in_window
    from crypto_data_export.exchange.klines import rows_to_frame

    first = 1_730_073_600_000
    frame = rows_to_frame([generate_candle("BTCUSDT", "1h", first + i * HOUR_MS) for i in range(48)])
    if shuffled:
        frame = frame.take(random.Random(7).sample(range(len(frame)), len(frame)))
    rng = random.Random(3)
    for _ in range(200):
        start = first + rng.randint(-3, 50) * HOUR_MS + rng.choice([0, 1, -1, HOUR_MS // 2])
        now = first + rng.randint(-3, 50) * HOUR_MS + rng.choice([0, 1, -1, HOUR_MS - 1])
        end = None if rng.random() < 0.5 else first + rng.randint(-3, 50) * HOUR_MS + rng.choice([0, 1, -1])
        expected = [
            row
            for row in frame.to_pylist()
            if row["open_time"] >= start and row["close_time"] < now and (end is None or row["open_time"] < end)
        ]
        assert candles_in_window(frame, start, now, end).to_pylist() == expected
