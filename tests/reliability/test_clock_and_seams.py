"""Fault 11: the exchange clock 10 minutes ahead of or behind ours.

Only candles closed by the *exchange's* clock are written, and two incremental
runs join without a duplicate or a missing candle at the seam. The exchange
clock is pinned (``now_ms``) so that every expected candle is known exactly;
files are compared byte for byte with what the sandbox's candles must give.
"""

from __future__ import annotations

import time

import pytest

from tests.support import assert_folder_sound, closed_opens, expected_csv, manager_env, run_manager

MINUTE_MS = 60_000
DAY_MS = 86_400_000
LOOKBACK_DAYS = 0.05  # 72 one-minute candles


def _newest_file(folder):
    files = assert_folder_sound(folder)
    assert len(files) == 1, [p.name for p in files]
    return files[0]


@pytest.mark.parametrize("offset_min", [10, -10], ids=["exchange_10_min_ahead", "exchange_10_min_behind"])
def test_clock_skew_closed_candles_and_incremental_seam(offset_min, tmp_path, sandbox_factory):
    local_now = int(time.time() * 1000)
    # Half-way through a minute of the exchange's clock: that candle is open and must not be written.
    t1 = (local_now + offset_min * MINUTE_MS) // MINUTE_MS * MINUTE_MS + 30_000
    exchange = sandbox_factory(now_ms=t1)
    folder = tmp_path / "exports"
    env = manager_env(
        folder, exchange.base_url, "BTCUSDT", KLINE_INTERVAL="1m", EXPORT_LOOKBACK_DAYS=str(LOOKBACK_DAYS)
    )

    first = run_manager(env, "--manual")
    assert first.returncode == 0, first.stdout + first.stderr
    opens1 = closed_opens("1m", t1 - int(LOOKBACK_DAYS * DAY_MS), t1)
    assert opens1[-1] == t1 - 30_000 - MINUTE_MS  # the newest candle closed by the exchange's clock
    assert _newest_file(folder).read_text() == expected_csv("BTCUSDT", "1m", opens1)

    # Seven and a half minutes later by the exchange's clock (ours has barely moved).
    t2 = t1 + 7 * MINUTE_MS + 15_000
    exchange.config.now_ms = t2
    exchange.reset_log()
    second = run_manager(env, "--manual")
    assert second.returncode == 0, second.stdout + second.stderr
    opens2 = closed_opens("1m", t2 - int(LOOKBACK_DAYS * DAY_MS), t2)
    assert _newest_file(folder).read_text() == expected_csv("BTCUSDT", "1m", opens2)
    # Incremental: only the newest stored candle (checked) and the ones after it were asked for.
    calls = exchange.klines_requests("BTCUSDT")
    assert len(calls) == 1 and calls[0]["startTime"] == opens1[-1] and calls[0]["limit"] == 8


def test_longer_lookback_refetches_the_head_of_the_window(tmp_path, sandbox_factory):
    """EXPORT_LOOKBACK_DAYS raised between runs: the older candles are fetched, not silently missing."""
    t = int(time.time() * 1000) // MINUTE_MS * MINUTE_MS + 10_000
    exchange = sandbox_factory(now_ms=t)
    folder = tmp_path / "exports"
    env = manager_env(folder, exchange.base_url, "BTCUSDT", KLINE_INTERVAL="1m", EXPORT_LOOKBACK_DAYS="0.02")
    assert run_manager(env, "--manual").returncode == 0
    exchange.config.now_ms = t + 2 * MINUTE_MS
    env["EXPORT_LOOKBACK_DAYS"] = str(LOOKBACK_DAYS)
    result = run_manager(env, "--manual")
    assert result.returncode == 0, result.stdout + result.stderr
    opens = closed_opens("1m", t + 2 * MINUTE_MS - int(LOOKBACK_DAYS * DAY_MS), t + 2 * MINUTE_MS)
    assert _newest_file(folder).read_text() == expected_csv("BTCUSDT", "1m", opens)
