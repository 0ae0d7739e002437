"""Identity and removals (issue 22): a file of another series never becomes the base of an
export, a backfill removes only what its new file covers, a change of format removes no file
of the other format. In process, against the sandbox exchange."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyarrow.parquet as pq
import pytest

from crypto_data_export.commands import backfill_cmd
from crypto_data_export.core.intervals import HOUR_MS
from crypto_data_export.pipeline.run_summary import SymbolOutcome
from crypto_data_export.sandbox.fake_exchange import SandboxExchange
from crypto_data_export.scheduler.manager import ScheduledDataManager
from crypto_data_export.settings.settings import SETTING_VARIABLES, Settings, load_settings
from tests.support import export_files, manager_env


def _fixed_now() -> int:
    """A server time in the middle of an hour, a few hours back (candles are closed by it)."""
    return int(time.time() * 1000) // HOUR_MS * HOUR_MS - 3 * HOUR_MS + 1_800_000


def _settings(folder: Path, base_url: str, **extra: str) -> Settings:
    env = {
        "BINANCE_BASE_URL": base_url,
        "EXPORT_DIR": str(folder),
        "EXPORT_SYMBOLS": "BTCUSDT",
        "KLINE_INTERVAL": "1h",
        "EXPORT_LOOKBACK_DAYS": "1",
        "LOG_LEVEL": "WARNING",
        **extra,
    }
    return load_settings(env, env_file=None)


def test_switching_to_parquet_keeps_the_csv_files(tmp_path: Path, sandbox: SandboxExchange) -> None:
    folder = tmp_path / "exports"
    assert ScheduledDataManager(_settings(folder, sandbox.base_url)).run_cycle().export.ok
    [csv] = export_files(folder)
    cycle = ScheduledDataManager(_settings(folder, sandbox.base_url, EXPORT_FORMAT="parquet")).run_cycle()
    assert cycle.export is not None and cycle.export.ok
    assert csv.exists()  # MAX_FILES_PER_SYMBOL=1 counts per format
    assert sorted(p.suffix for p in export_files(folder)) == [".csv", ".parquet"]


def test_a_backfill_removes_only_the_files_its_new_file_covers(
    tmp_path: Path, sandbox_factory: Callable[..., SandboxExchange], monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    exchange = sandbox_factory(now_ms=_fixed_now())
    monkeypatch.chdir(tmp_path)
    for variable in SETTING_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    for variable, value in manager_env(tmp_path / "exports", exchange.base_url, "BTCUSDT").items():
        if variable in SETTING_VARIABLES:
            monkeypatch.setenv(variable, value)
    monkeypatch.setenv("MAX_FILES_PER_SYMBOL", "1")
    folder = tmp_path / "exports" / "backfill"

    def backfill(*args: str) -> str:
        assert backfill_cmd.main([*args, "--interval", "1h", "--source", "rest"]) == 0
        return str(capsys.readouterr().out)

    backfill("--start", "2024-01-01", "--end", "2024-01-03")
    [ranged] = export_files(folder)
    assert "removed" not in backfill("--days", "1")
    assert ranged.exists()  # not covered: kept, whatever MAX_FILES_PER_SYMBOL says
    [first_days] = [p for p in export_files(folder) if p != ranged]
    out = backfill("--days", "1")  # the same window (a fixed server clock): the new file holds every candle
    assert not first_days.exists() and ranged.exists() and len(export_files(folder)) == 2
    assert f"BTCUSDT: removed {first_days.name}: every candle is in " in out


def _cycle(folder: Path, exchange: SandboxExchange, **extra: str) -> SymbolOutcome:
    settings = _settings(folder, exchange.base_url, **{"EXPORT_SYMBOLS": "ETHUSDT", **extra})
    cycle = ScheduledDataManager(settings).run_cycle()
    assert cycle.export is not None and cycle.export.ok
    [outcome] = cycle.export.outcomes.values()
    return outcome


def test_another_symbols_file_is_never_the_base_of_an_export(
    tmp_path: Path, sandbox_factory: Callable[..., SandboxExchange]
) -> None:
    """BTCUSDT's file copied in under ETHUSDT's name: the overlap candle is not the exchange's,
    so the window is fetched again (two requests) and the file holds ETHUSDT's candles only."""
    exchange = sandbox_factory(now_ms=_fixed_now())
    own, folder = tmp_path / "own", tmp_path / "exports"
    first = _cycle(own, exchange)
    eth, rows = Path(first.path or ""), first.rows
    btc = Path(_cycle(tmp_path / "btc", exchange, EXPORT_SYMBOLS="BTCUSDT").path or "")
    folder.mkdir()
    shutil.copy(btc, folder / btc.name.replace("BTCUSDT", "ETHUSDT"))
    exchange.reset_log()
    outcome = _cycle(folder, exchange)
    assert outcome.warning is not None and "was not reused, the window was fetched again" in outcome.warning
    assert [r["limit"] for r in exchange.klines_requests("ETHUSDT")] == [1, rows]
    assert Path(outcome.path or "").read_bytes() == eth.read_bytes()
    assert (outcome.reused_rows, outcome.fetched_rows) == (0, rows)
    exchange.reset_log()
    again = _cycle(folder, exchange)  # the steady cycle: one request, the stored candle confirmed
    assert again.warning is None and again.reused_rows == rows and len(exchange.klines_requests()) == 1


def test_a_parquet_file_of_another_series_is_not_reused(tmp_path: Path, sandbox: SandboxExchange) -> None:
    folder = tmp_path / "exports"
    written = Path(_cycle(folder, sandbox, EXPORT_FORMAT="parquet").path or "")
    host = urlsplit(sandbox.base_url).netloc
    assert pq.read_schema(written).metadata == {
        b"exchange_host": host.encode(),
        b"market": b"spot",
        b"symbol": b"ETHUSDT",
        b"interval": b"1h",
        b"cdx_schema_version": b"2",
        b"cdx_numbers": b"float",
    }
    table = pq.read_table(written)
    pq.write_table(table.replace_schema_metadata({**table.schema.metadata, b"market": b"usdm"}), written)
    sandbox.reset_log()
    outcome = _cycle(folder, sandbox, EXPORT_FORMAT="parquet")
    assert outcome.reused_rows == 0  # the same candles, but the file says they are another market's
    assert pq.read_schema(Path(outcome.path or "")).metadata[b"market"] == b"spot"
