"""Fault 10: unknown and delisted symbols among good ones; gaps in the exchange's own data."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

from tests.support import (
    assert_folder_sound,
    closed_opens,
    export_files,
    last_server_time,
    manager_env,
    run_manager,
)

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


def test_unknown_and_delisted_symbols_among_good_ones_and_gaps(tmp_path, sandbox_factory):
    t = int(time.time() * 1000)
    gap_start = (t // HOUR_MS - 10) * HOUR_MS  # three hourly candles missing, 10 h ago
    exchange = sandbox_factory(
        unknown_symbols=frozenset({"NOPEUSDT"}),
        delisted={"DOGEUSDT": t - 5 * DAY_MS, "SOLUSDT": (t // HOUR_MS - 20) * HOUR_MS},
        gaps={"BTCUSDT": [(gap_start, gap_start + 3 * HOUR_MS)]},
    )
    folder = tmp_path / "exports"
    # The unknown symbol first: it is also the one the weight budget would be looked up with.
    env = manager_env(folder, exchange.base_url, "NOPEUSDT,BTCUSDT,DOGEUSDT,SOLUSDT,ETHUSDT")
    result = run_manager(env, "--manual")

    assert result.returncode == 1, result.stdout + result.stderr
    errors = {line.split(":")[1].strip(): line for line in result.stderr.splitlines() if line.startswith("error: ")}
    assert set(errors) == {"NOPEUSDT", "DOGEUSDT"}, result.stderr
    assert "does not know this symbol" in errors["NOPEUSDT"]
    assert "delisted" in errors["DOGEUSDT"]
    # No endless retry: one klines call each, not retried.
    assert len(exchange.klines_requests("NOPEUSDT")) == 1
    assert len(exchange.klines_requests("DOGEUSDT")) == 1

    files = {p.name.split("_")[0]: p for p in assert_folder_sound(folder)}
    assert sorted(files) == ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
    server_now = last_server_time(exchange)
    expected_btc = [
        o
        for o in closed_opens("1h", server_now - 2 * DAY_MS, server_now)
        if not gap_start <= o < gap_start + 3 * HOUR_MS
    ]
    assert len(files["BTCUSDT"].read_text().splitlines()) - 1 == len(expected_btc)
    sol_delisted = (t // HOUR_MS - 20) * HOUR_MS
    expected_sol = [o for o in closed_opens("1h", server_now - 2 * DAY_MS, server_now) if o < sol_delisted]
    assert len(files["SOLUSDT"].read_text().splitlines()) - 1 == len(expected_sol)  # candles until the delisting

    status = run_manager(env, "--status", "--json")
    report = json.loads(status.stdout)
    btc = report["symbols"]["BTCUSDT"]
    assert btc["valid"] is True and btc["missing_candles"] == 3
    assert len(btc["gaps"]) == 1 and btc["gaps"][0]["missing"] == 3
    assert btc["gaps"][0]["first_missing"] == datetime.fromtimestamp(gap_start / 1000, UTC).isoformat()
    assert report["symbols"]["ETHUSDT"]["missing_candles"] == 0 and report["symbols"]["ETHUSDT"]["gaps"] == []
    assert report["symbols"]["NOPEUSDT"]["last_error"] and report["symbols"]["NOPEUSDT"]["latest_file"] is None
    assert "delisted" in report["symbols"]["DOGEUSDT"]["last_error"]
    assert set(report["last_cycle"]["failed_symbols"]) == {"NOPEUSDT", "DOGEUSDT"}

    # The next run does not hammer the bad symbols either, and keeps the good files good.
    exchange.reset_log()
    again = run_manager(env, "--manual")
    assert again.returncode == 1
    assert len(exchange.klines_requests("NOPEUSDT")) == 1 and len(exchange.klines_requests("DOGEUSDT")) == 1
    assert len(export_files(folder)) == 3
    assert_folder_sound(folder)
