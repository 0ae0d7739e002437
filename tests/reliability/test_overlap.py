"""Fault 7: cron's --manual and the service (or two cron runs) overlapping on one folder."""

from __future__ import annotations

import json
import os

from tests.support import (
    assert_folder_sound,
    export_files,
    finish,
    manager_env,
    run_manager,
    wait_until,
)

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")


def _lock_holder(folder) -> int | None:
    try:
        text = (folder / ".run.lock").read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _one_run_result(folder, exchange) -> None:
    """The folder as exactly one run leaves it: one file per symbol, each symbol fetched once."""
    files = assert_folder_sound(folder)
    assert sorted(p.name.split("_")[0] for p in files) == sorted(SYMBOLS)
    for symbol in SYMBOLS:
        assert len(exchange.klines_requests(symbol)) == 1, f"{symbol} was exported twice"
    state = json.loads((folder / "state.json").read_text())
    assert state["export_count"] == 1


def test_two_manual_runs_overlap(tmp_path, sandbox_factory, start_manager):
    """cron fires while another --manual is mid-cycle: the second exits 75 and changes nothing."""
    exchange = sandbox_factory(latency_seconds=0.5)  # the first run stays busy until we speed it up
    folder = tmp_path / "exports"
    env = manager_env(folder, exchange.base_url, ",".join(SYMBOLS), EXPORT_WORKERS="1")
    first = start_manager(env, "--manual")
    wait_until(lambda: _lock_holder(folder) == first.pid, "the first run to hold the run lock")

    second = run_manager(env, "--manual")
    assert second.returncode == 75, second.stdout + second.stderr
    assert second.stderr.startswith("busy:") and str(folder / ".run.lock") in second.stderr
    assert first.poll() is None, "the first run should still be working"
    exchange.config.latency_seconds = 0.0

    code, _out, err = finish(first)
    assert code == 0, err
    _one_run_result(folder, exchange)


def test_cron_overlaps_the_service_loop(tmp_path, sandbox_factory, start_manager):
    """The service loop is mid-cycle when cron's --manual starts: cron exits 75; the loop goes on."""
    exchange = sandbox_factory(latency_seconds=0.5)
    folder = tmp_path / "exports"
    env = manager_env(folder, exchange.base_url, ",".join(SYMBOLS), EXPORT_WORKERS="1", EXPORT_PERIOD_HOURS="1")
    loop = start_manager(env)
    wait_until(lambda: _lock_holder(folder) == loop.pid, "the loop to hold the run lock")

    cron = run_manager(env, "--manual")
    assert cron.returncode == 75, cron.stdout + cron.stderr
    assert "another export run" in cron.stderr
    assert loop.poll() is None
    exchange.config.latency_seconds = 0.0

    wait_until(
        lambda: (
            len(export_files(folder)) == len(SYMBOLS)
            and (folder / "status_report.json").exists()
            and json.loads((folder / "state.json").read_text()).get("export_count") == 1
        ),
        "the loop to finish its cycle",
    )
    loop.terminate()
    code, _out, err = finish(loop)
    assert code == 0, err
    _one_run_result(folder, exchange)
    assert not os.path.exists(folder / "data_export_service.pid")
