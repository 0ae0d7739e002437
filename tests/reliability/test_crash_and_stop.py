"""Faults 1 and 2: the process dies (kill -9) or is told to stop (SIGTERM) mid-work."""

from __future__ import annotations

import json
import os
import signal

from crypto_data_export.sandbox.fake_exchange import SandboxConfig
from crypto_data_export.store.layout import QUARANTINE_DIR_NAME, parse_export_name
from tests.support import (
    HANG_GUARD,
    assert_folder_sound,
    export_files,
    finish,
    manager_env,
    run_manager,
    temp_files,
    wait_until,
)


def test_kill_9_in_the_middle_of_writing(tmp_path, sandbox_factory, start_manager):
    """A run killed while its CSV is half written leaves no partial CSV; the next run completes."""
    # 10 days of 1m candles = 15 pages of 1000: the pages after the 9th are held, the first 9000 rows written.
    exchange = sandbox_factory(latency_seconds=0.05)
    exchange.config.hold_klines = (exchange.now_ms() - 10 * 86_400_000 + 9000 * 60_000, 2**62)
    folder = tmp_path / "exports"
    env = manager_env(folder, exchange.base_url, "BTCUSDT", KLINE_INTERVAL="1m", EXPORT_LOOKBACK_DAYS="10")
    proc = start_manager(env, "--manual")
    temp = wait_until(
        lambda: [n for n in temp_files(folder) if os.path.getsize(folder / n) > 0],
        "the export's temp file to receive data",
    )[0]
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=HANG_GUARD)
    assert proc.returncode == -signal.SIGKILL
    # Nothing named like an export appeared: the half-written data only exists under the temp name.
    assert export_files(folder) == [], "a partial CSV was published under an export name"
    assert (folder / temp).exists()

    exchange.config = SandboxConfig()  # fast again
    result = run_manager(env, "--manual")
    assert result.returncode == 0, result.stderr
    files = assert_folder_sound(folder)  # includes: the dead writer's temp file is gone
    assert [parse_export_name(p.name)[0] for p in files] == ["BTCUSDT"]
    lines = files[0].read_text().splitlines()
    assert len(lines) - 1 >= 10 * 24 * 60 - 2  # the whole window, not the killed run's part


def test_sigterm_to_the_loop_mid_cycle(tmp_path, sandbox_factory, start_manager):
    """SIGTERM while a cycle is exporting: the current symbol finishes, exit 0, status 'stopped'."""
    exchange = sandbox_factory(latency_seconds=0.15)
    folder = tmp_path / "exports"
    symbols = "BTCUSDT,ETHUSDT,SOLUSDT,XRPUSDT,DOGEUSDT,ADAUSDT"
    env = manager_env(folder, exchange.base_url, symbols, EXPORT_WORKERS="1", EXPORT_PERIOD_HOURS="1")
    proc = start_manager(env)
    wait_until(lambda: len(exchange.klines_requests()) >= 1, "the loop's first klines request")
    proc.send_signal(signal.SIGTERM)
    code, _out, err = finish(proc)
    assert code == 0, err  # the loop's normal end
    assert " stopped in " in err and "ERROR" not in err  # "export: 1 ok, 0 failed, 5 stopped in 0.3 s"

    assert_folder_sound(folder)
    written = export_files(folder)
    assert 1 <= len(written) < 6, "the cycle should have stopped after the symbol in progress"
    assert not (folder / QUARANTINE_DIR_NAME).exists()
    state = json.loads((folder / "state.json").read_text())
    assert state["service_status"] == "stopped"
    assert state["service_pid"] is None
    report = json.loads((folder / "status_report.json").read_text())
    assert report["system_status"]["service_status"] == "stopped"
    # What the operator sees afterwards.
    status = run_manager(env, "--status", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["system_status"]["service_status"] == "stopped"
