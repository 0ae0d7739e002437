"""Identity and removals (issue 22): a file of another series never becomes the base of an
export, a backfill removes only what its new file covers, a change of format removes no file
of the other format. In process, against the sandbox exchange."""

from __future__ import annotations

from pathlib import Path

from crypto_data_export.sandbox.fake_exchange import SandboxExchange
from crypto_data_export.scheduler.manager import ScheduledDataManager
from crypto_data_export.settings.settings import Settings, load_settings
from tests.support import export_files


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
