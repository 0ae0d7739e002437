"""Fault 6: a 429 storm with Retry-After, and a 418 ban that must survive a restart."""

from __future__ import annotations

import json
from datetime import datetime

from tests.support import (
    assert_folder_sound,
    export_files,
    finish,
    manager_env,
    run_manager,
    wait_until,
)

SYMBOLS = "BTCUSDT,ETHUSDT,SOLUSDT"


def test_429_storm_with_retry_after(tmp_path, sandbox_factory):
    """Each 429 pauses every request for Retry-After seconds; then the run completes."""
    exchange = sandbox_factory(rate_limit_first_n=1, retry_after_seconds=1)
    folder = tmp_path / "exports"
    result = run_manager(manager_env(folder, exchange.base_url, SYMBOLS), "--manual")
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(assert_folder_sound(folder)) == 3

    log = list(exchange.requests)
    refused = [r for r in log if r.status == 429]
    assert len(refused) == 1
    for r in refused:  # nothing at all was sent while the pause told by Retry-After ran
        early = [x for x in log if r.monotonic_ms < x.monotonic_ms < r.monotonic_ms + 1000 - 50]
        assert early == [], f"{len(early)} request(s) sent during the Retry-After pause"
    assert len(log) <= 1 + 2 + 3  # the refused one, time + exchangeInfo, one klines per symbol


def test_418_ban_is_persisted_and_a_loop_started_during_it_waits_it_out(tmp_path, sandbox_factory, start_manager):
    """A 418 stops the run and banned_until is saved (never before the exchange's own end of the ban); the
    service loop started during the ban sends nothing until it ends, then exports. (A restarted --manual run
    during a ban, and the status report, are tests/scheduler/test_scheduled_data_manager.py's
    test_ban_is_persisted_and_a_restart_sends_nothing_until_it_ends, under a ban that outlasts the test.)"""
    # Long enough for the loop's start-up to fall inside the ban even on a loaded machine.
    exchange = sandbox_factory(ban_seconds=3, ban_after_n=1)
    folder = tmp_path / "exports"
    env = manager_env(folder, exchange.base_url, SYMBOLS, EXPORT_WORKERS="1", EXPORT_PERIOD_HOURS="0.0002")
    first = run_manager(env, "--manual")
    assert first.returncode == 1, first.stdout + first.stderr
    assert "banned" in first.stderr
    assert exchange.stats.banned_418 == 1, "requests went on after the 418"
    state = json.loads((folder / "state.json").read_text())
    banned_until = datetime.fromisoformat(state["banned_until"]).timestamp()
    # Never earlier than the exchange's own end of the ban (a request then would extend it).
    assert banned_until * 1000 >= exchange.banned_until_ms
    sent = len(exchange.requests)

    # The service loop started during the ban (a cycle now, then every ~0.7 s) waits it out.
    loop = start_manager(env)
    wait_until(lambda: len(export_files(folder)) == 3, "the loop to export after the ban")
    loop.terminate()
    code, _out, err = finish(loop)
    assert code == 0, err
    log = (folder / "logs" / "scheduled_data_manager.log").read_text()
    assert "export skipped: the exchange banned this IP" in log, "the loop's first cycle did not see the saved ban"
    after = exchange.requests[sent:]
    assert after and min(r.wall_ms for r in after) >= banned_until * 1000, "a request was sent during the ban"
    assert all(r.status == 200 for r in after)
    assert len(assert_folder_sound(folder)) == 3
