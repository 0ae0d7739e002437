"""Fault 12: the newest export is corrupted by hand between two runs.

The corrupt file is quarantined (kept, byte for byte) and the next export
rebuilds the whole window from the exchange instead of continuing from it.
"""

from __future__ import annotations

import time

from crypto_data_export.store.layout import QUARANTINE_DIR_NAME
from tests.support import assert_folder_sound, closed_opens, expected_csv, manager_env, run_manager

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


def _truncate_mid_row(text: str) -> str:
    cut = text.index("\n", len(text) * 2 // 3) + 20  # 20 characters into a row
    return text[:cut]


def _swap_high_low(text: str) -> str:
    lines = text.splitlines(keepends=True)
    cells = lines[5].split(",")
    cells[2], cells[3] = cells[3], cells[2]  # high < low
    lines[5] = ",".join(cells)
    return "".join(lines)


def _non_numeric_price(text: str) -> str:
    lines = text.splitlines(keepends=True)
    cells = lines[-3].split(",")
    cells[4] = "12,5"  # a decimal comma: one field too many
    lines[-3] = ",".join(cells)
    return "".join(lines)


def _duplicated_row(text: str) -> str:
    lines = text.splitlines(keepends=True)
    return "".join(lines[:10] + [lines[9]] + lines[10:])


def _garbage_appended(text: str) -> str:
    return text + "\x00\x00\x00\xff garbage from a bad copy\n"


CORRUPTIONS = {
    "truncated_mid_row": _truncate_mid_row,
    "high_below_low": _swap_high_low,
    "decimal_comma": _non_numeric_price,
    "duplicated_row": _duplicated_row,
    "garbage_appended": _garbage_appended,
}


# One symbol per kind of damage, all in the same two runs.
VICTIMS = dict(zip(("BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "ADAUSDT"), CORRUPTIONS, strict=True))


def test_newest_file_corrupted_by_hand_between_runs(tmp_path, sandbox_factory):
    t1 = int(time.time() * 1000) // HOUR_MS * HOUR_MS - 2 * HOUR_MS + 1_800_000
    exchange = sandbox_factory(now_ms=t1)
    folder = tmp_path / "exports"
    env = manager_env(folder, exchange.base_url, ",".join(VICTIMS), EXPORT_WORKERS="2")
    assert run_manager(env, "--manual").returncode == 0
    damaged = {}
    for good in assert_folder_sound(folder):
        symbol = good.name.split("_")[0]
        damaged[good.name] = CORRUPTIONS[VICTIMS[symbol]](good.read_text()).encode("utf-8", "surrogateescape")
        good.write_bytes(damaged[good.name])
    assert len(damaged) == len(VICTIMS)

    t2 = t1 + HOUR_MS  # one candle later: an incremental run would fetch one candle only
    exchange.config.now_ms = t2
    exchange.reset_log()
    result = run_manager(env, "--manual")
    assert result.returncode == 0, result.stdout + result.stderr

    for name, data in damaged.items():
        assert (folder / QUARANTINE_DIR_NAME / name).read_bytes() == data, f"{name} was not quarantined as it was"
    rebuilt = {p.name.split("_")[0]: p for p in assert_folder_sound(folder)}
    assert sorted(rebuilt) == sorted(VICTIMS)
    for symbol, kind in VICTIMS.items():
        expected = expected_csv(symbol, "1h", closed_opens("1h", t2 - 2 * DAY_MS, t2))
        assert rebuilt[symbol].read_text() == expected, f"{symbol} ({kind}) was not rebuilt exactly"
        calls = exchange.klines_requests(symbol)
        assert len(calls) == 1 and calls[0]["startTime"] == t2 - 2 * DAY_MS, f"{symbol} ({kind}): window not rebuilt"
