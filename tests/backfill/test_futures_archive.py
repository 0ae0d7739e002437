"""The USD-M futures archive (``data/futures/um/...``, CSV files with a header line) in a backfill
with BINANCE_MARKET=usdm: in-process ``archive_backfill`` against the sandbox's exchange and archive.
Verified futures zips give the REST backfill's file with no klines call for archived periods; a zip
whose .CHECKSUM does not match is never used (auto: REST, archive: the symbol fails naming it)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest

from crypto_data_export.backfill.archive_backfill import ArchiveBackfillResult, archive_backfill
from crypto_data_export.sandbox.fake_archive import ArchiveKnobs
from crypto_data_export.sandbox.fake_exchange import SandboxConfig
from crypto_data_export.settings.settings import load_settings
from tests.support import cli_env, closed_opens, expected_csv, export_files

SYMBOL = "FUTAUSDT"  # a symbol nothing else asks for: only our requests are counted
DAY_MS = 86_400_000
DAYS = 45  # Sep 26 12:30 .. Nov 10 12:30: Sep 26-30 daily, October monthly, Nov 1-9 daily, today REST


def ms(*parts: int) -> int:
    return int(datetime(*parts, tzinfo=UTC).timestamp() * 1000)  # type: ignore[misc]


NOW = ms(2024, 11, 10, 12, 30)
OCTOBER = f"{SYMBOL}-1h-2024-10.zip"


def backfill(exchange, out: Path, source: str) -> ArchiveBackfillResult:
    env = cli_env(exchange.base_url, out, EXPORT_SYMBOLS=SYMBOL, KLINE_INTERVAL="1h", EXPORT_LOOKBACK_DAYS=str(DAYS))
    env |= {"BINANCE_MARKET": "usdm", "BINANCE_ARCHIVE_URL": exchange.base_url}
    return archive_backfill(load_settings(env, env_file=None), source)


def klines_starts(exchange) -> list[int]:
    return sorted(int(r["startTime"]) for r in exchange.klines_requests(SYMBOL, path="/fapi/v1/klines"))


def zips(exchange) -> list[str]:
    return [r.path for r in exchange.requests if r.path.endswith(".zip") and r.status == 200]


def futures_file(out: Path) -> str:
    (path,) = export_files(out, SYMBOL)
    return path.read_text()


def truth() -> str:
    return expected_csv(SYMBOL, "1h", closed_opens("1h", NOW - DAYS * DAY_MS, NOW), market="usdm")


def test_a_usdm_backfill_takes_verified_futures_zips_and_asks_klines_only_for_today(
    sandbox_factory, tmp_path: Path
) -> None:
    exchange = sandbox_factory(SandboxConfig(now_ms=NOW, extra_symbols=(SYMBOL,)))
    result = backfill(exchange, tmp_path / "out", "auto")
    assert result.report.failed == [] and futures_file(tmp_path / "out") == truth()
    assert klines_starts(exchange) == [ms(2024, 11, 10)]  # today only: nothing archived was asked of REST
    paths = zips(exchange)
    assert len(paths) == 15 == result.tallies[SYMBOL].archive_files
    assert (
        all(p.startswith("/data/futures/um/") for p in paths)
        and f"/data/futures/um/monthly/klines/{SYMBOL}/1h/{OCTOBER}" in paths
    )
    assert exchange.klines_requests(SYMBOL) == []  # nothing of the spot market either


def test_a_futures_zip_with_a_bad_checksum_or_a_hole_is_never_used(
    sandbox_factory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    short = f"{SYMBOL}-1h-2024-11-05.zip"  # its 03:00 candle left out, its .CHECKSUM matching
    knobs = ArchiveKnobs(bad_checksum=frozenset({OCTOBER}), drop_rows=((short, 3, 4),))
    exchange = sandbox_factory(SandboxConfig(now_ms=NOW, extra_symbols=(SYMBOL,), archive=knobs))
    with caplog.at_level(logging.WARNING):
        auto = backfill(exchange, tmp_path / "auto", "auto")
    assert auto.report.failed == [] and futures_file(tmp_path / "auto") == truth()
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "REST" in r.getMessage()]
    assert len(warned) == 2 and f"{OCTOBER}: checksum mismatch" in warned[0]
    assert f"{short}: holds 23 candles, 1 missing from 2024-11-05T03:00:00" in warned[1]
    # October and Nov 5 by REST (after one probe of the hole, on the futures API), and today
    assert klines_starts(exchange) == [ms(2024, 10, 1), ms(2024, 11, 5), ms(2024, 11, 5, 3), ms(2024, 11, 10)]

    strict = backfill(exchange, tmp_path / "strict", "archive").report
    (failed,) = strict.failed
    assert OCTOBER in (failed.error or "") and "checksum mismatch" in (failed.error or "")
    assert export_files(tmp_path / "strict", SYMBOL) == []
