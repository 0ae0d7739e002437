"""``file_manager.py audit [--sample N] [--repair]``: a candle the exchange corrected after it was
stored is reported (REST and the archive) and replaced by ``--repair``, the old file kept in
quarantine; an untouched store audits clean. In process, against the sandbox's exchange and archive."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from crypto_data_export.commands import files_cmd
from crypto_data_export.core.candles import CANDLE_COLUMNS
from crypto_data_export.core.clock import ms_to_iso
from crypto_data_export.exchange.klines import rows_to_frame
from crypto_data_export.sandbox.fake_exchange import generate_candle
from crypto_data_export.settings.settings import SETTING_VARIABLES, load_settings
from crypto_data_export.store.dataset import Dataset, period_bounds, read_period_info
from tests.support import cli_env, closed_opens, export_files, seed_export

HOUR_MS = 3_600_000
NOW = int(datetime(2024, 11, 10, 12, 30, tzinfo=UTC).timestamp() * 1000)
VOLUME = CANDLE_COLUMNS.index("volume")


def file_manager(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], env: dict[str, str], *args: str):
    for name in SETTING_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code = files_cmd.main(list(args))
    return code, capsys.readouterr().out


def test_files_layout_audit_reports_a_corrected_candle_and_repair_replaces_the_file(
    sandbox_factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    exchange = sandbox_factory(now_ms=NOW)
    folder = tmp_path / "exports"
    opens = closed_opens("1h", NOW - 2 * 86_400_000, NOW)
    old = seed_export(folder, "BTCUSDT", "1h", opens, "BTCUSDT_1h_20241110_120000.csv")
    env = cli_env(exchange.base_url, folder, BINANCE_ARCHIVE_URL=exchange.base_url, EXPORT_SYMBOLS="BTCUSDT")
    monkeypatch.chdir(tmp_path)

    code, out = file_manager(monkeypatch, capsys, env, "audit")
    assert (code, out.splitlines()[-1]) == (0, "audit: 1 of 1 stored files; 0 differ, 0 repaired, 0 failed"), out

    changed = opens[5]  # on 2024-11-08, a closed day: the archive's daily file holds it too
    exchange.config.corrections[("BTCUSDT", "1h", changed, VOLUME)] = "999.00000000"
    stored_volume = generate_candle("BTCUSDT", "1h", changed)[VOLUME]
    code, out = file_manager(monkeypatch, capsys, env, "audit")
    assert code == 1, out
    line = (
        f"{ms_to_iso(changed)} volume: stored {stored_volume}, exchange 999.00000000 (rest, BTCUSDT-1h-2024-11-08.zip)"
    )
    assert line in out, out  # both sources, the archive's zip verified by its checksum
    assert out.splitlines()[-1] == "audit: 1 of 1 stored files; 1 differ (1 changed), 0 repaired, 0 failed", out
    assert old.exists(), "an audit without --repair changes nothing"

    code, out = file_manager(monkeypatch, capsys, env, "audit", "--repair")
    assert code == 0, out
    assert not old.exists() and (folder / "quarantine" / old.name).exists(), out
    [new] = export_files(folder, "BTCUSDT")
    assert ",999.00000000," in new.read_text() and f"{stored_volume}" in (folder / "quarantine" / old.name).read_text()
    code, out = file_manager(monkeypatch, capsys, env, "audit", "--sample", "1", "--seed", "7")
    assert (code, out.splitlines()[-1]) == (
        0,
        "audit: 1 of 1 stored files (a sample: repeat it with --sample 1 --seed 7); 0 differ, 0 repaired, 0 failed",
    ), out


def test_dataset_audit_reports_a_corrected_candle_and_repair_keeps_the_old_period_in_quarantine(
    sandbox_factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    listed = int(datetime(2024, 11, 7, tzinfo=UTC).timestamp() * 1000)  # a short year: few candles, few zips
    exchange = sandbox_factory(now_ms=NOW, listing_ms=listed)
    folder = tmp_path / "exports"
    env = cli_env(exchange.base_url, folder, BINANCE_ARCHIVE_URL=exchange.base_url, EXPORT_LAYOUT="dataset")
    dataset = Dataset.from_settings(load_settings(env, env_file=None))
    series = dataset.series_of("BTCUSDT", "1h")
    opens = closed_opens("1h", listed, NOW)
    start = period_bounds("1h", listed)[0]
    candles = rows_to_frame([generate_candle("BTCUSDT", "1h", t) for t in opens])
    path = dataset.write_period(series, start, candles, [{"kind": "rest", "from_ms": start, "until_ms": NOW}]).path
    monkeypatch.chdir(tmp_path)

    code, out = file_manager(monkeypatch, capsys, env, "audit")
    assert (code, out.splitlines()[-1]) == (0, "audit: 1 of 1 stored periods; 0 differ, 0 repaired, 0 failed"), out

    changed = opens[30]  # on 2024-11-08, a closed day: the archive's daily file holds it too
    exchange.config.corrections[("BTCUSDT", "1h", changed, VOLUME)] = "999.00000000"
    stored_volume = generate_candle("BTCUSDT", "1h", changed)[VOLUME]
    code, out = file_manager(monkeypatch, capsys, env, "audit")
    line = (
        f"{ms_to_iso(changed)} volume: stored {stored_volume}, exchange 999.00000000 (rest, BTCUSDT-1h-2024-11-08.zip)"
    )
    assert code == 1 and line in out, out
    assert out.splitlines()[0] == "dataset/market=spot/interval=1h/symbol=BTCUSDT/2024.parquet: 1 changed", out

    with dataset.lock(series, wait=False):  # a cycle or a backfill writing the series: not waited for
        code, out = file_manager(monkeypatch, capsys, env, "audit", "--repair")
    assert code == 1 and "holds the series" in out and not (folder / "quarantine").exists(), out
    code, out = file_manager(monkeypatch, capsys, env, "audit", "--repair")
    assert code == 0, out
    [old] = (folder / "quarantine" / "dataset").rglob("*.parquet")
    assert pq.read_table(old).column("volume")[30].as_py() == float(stored_volume)  # the old version, kept
    repaired = dataset.read_period(series, start)
    assert repaired is not None and float(repaired.column("volume")[30].as_py()) == 999.0
    assert [s["kind"] for s in read_period_info(path).sources] == ["rest", "audit-repair"]
    code, out = file_manager(monkeypatch, capsys, env, "audit")
    assert (code, out.splitlines()[-1]) == (0, "audit: 1 of 1 stored periods; 0 differ, 0 repaired, 0 failed"), out


def test_audit_flags_are_checked(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for args in (
        ["audit", "--sample", "0"],
        ["validate", "--repair"],
        ["cleanup", "--sample", "3"],
        ["audit", "--seed", "3"],
    ):
        with pytest.raises(SystemExit) as stop:
            files_cmd.parse_args(args)
        assert stop.value.code == 2, args
