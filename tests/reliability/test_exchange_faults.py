"""Fault 5: the exchange is down, stalls, answers HTML or truncated JSON with 200, or bursts 5xx.

Every case: bounded retries (HTTP_RETRIES=2 -> at most 3 attempts per call),
then a clear per-symbol failure and exit 1; the previous files stay as they were.
"""

from __future__ import annotations

import time

import pytest

from tests.support import (
    assert_folder_sound,
    closed_opens,
    exchange_not_usable,
    export_files,
    free_port,
    manager_env,
    run_manager,
    seed_export,
)

HOUR_MS = 3_600_000
SYMBOLS = ("BTCUSDT", "ETHUSDT")


def _seed_previous(folder, now_ms: int) -> dict[str, bytes]:
    """Yesterday's good exports, which no fault may damage or remove."""
    kept = {}
    for symbol in SYMBOLS:
        path = seed_export(
            folder,
            symbol,
            "1h",
            closed_opens("1h", now_ms - 2 * 24 * HOUR_MS, now_ms - 5 * HOUR_MS),
            f"{symbol}_1h_20000101_000000.csv",
        )
        kept[path.name] = path.read_bytes()
    return kept


def _assert_previous_intact(folder, kept: dict[str, bytes]) -> None:
    assert {p.name: p.read_bytes() for p in export_files(folder)} == kept
    assert_folder_sound(folder)


def _symbol_errors(stderr: str) -> dict[str, str]:
    """Each symbol's error line; a failure of the exchange itself is one line for all of them."""
    found = dict.fromkeys(SYMBOLS, host_error) if (host_error := exchange_not_usable(stderr)) else {}
    for line in stderr.splitlines():
        for symbol in SYMBOLS:
            if line.startswith(f"error: {symbol}: "):
                found[symbol] = line
    return found


def test_exchange_down_connection_refused(tmp_path):
    folder = tmp_path / "exports"
    kept = _seed_previous(folder, int(time.time() * 1000))
    env = manager_env(folder, f"http://127.0.0.1:{free_port()}", ",".join(SYMBOLS))
    result = run_manager(env, "--manual")
    assert result.returncode == 1, result.stdout + result.stderr
    errors = _symbol_errors(result.stderr)
    assert set(errors) == set(SYMBOLS), result.stderr
    assert all("refused the connection" in line and "BINANCE_BASE_URL" in line for line in errors.values())
    _assert_previous_intact(folder, kept)


# (sandbox knob, what the per-symbol error must say)
FAULTS = {
    "stall": (dict(stall_every_n=1), "read timeout"),
    "html_200": (dict(html_every_n=1), "not valid JSON (text/html"),
    "truncated_json_200": (dict(truncate_json_every_n=1), "not valid JSON"),
    "truncated_body": (dict(truncate_every_n=1), "broken answer"),
    "dropped_connection": (dict(drop_every_n=1), "could not be reached"),
    "5xx_storm": (dict(fail_every_n=1, fail_status=503), "HTTP 503"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_exchange_answers_garbage_every_time(fault, tmp_path, sandbox_factory):
    """Every klines answer is broken: 3 attempts per symbol, a clear error, exit 1, old files kept."""
    knobs, message = FAULTS[fault]
    exchange = sandbox_factory(**knobs)
    folder = tmp_path / "exports"
    kept = _seed_previous(folder, exchange.now_ms())
    # A short read timeout only where the fault is silence; elsewhere a slow CI must not fake a fault.
    env = manager_env(
        folder, exchange.base_url, ",".join(SYMBOLS), HTTP_TIMEOUT_SECONDS="0.5" if fault == "stall" else "5"
    )
    result = run_manager(env, "--manual")

    assert result.returncode == 1, result.stdout + result.stderr
    errors = _symbol_errors(result.stderr)
    assert set(errors) == set(SYMBOLS), result.stderr
    for line in errors.values():
        assert message in line, line
        assert "Traceback" not in line and len(line) < 400
    for symbol in SYMBOLS:  # bounded: the first attempt plus HTTP_RETRIES=2, never more
        assert len(exchange.klines_requests(symbol)) == 3, (symbol, exchange.klines_requests(symbol))
    _assert_previous_intact(folder, kept)


@pytest.mark.parametrize(
    "knobs", [dict(fail_every_n=2, fail_status=502), dict(html_every_n=2)], ids=["5xx_burst", "html_burst"]
)
def test_intermittent_faults_are_retried_to_success(knobs, tmp_path, sandbox_factory):
    """Every second answer is broken: the retries absorb it and every symbol is exported exactly."""
    exchange = sandbox_factory(**knobs)
    folder = tmp_path / "exports"
    env = manager_env(folder, exchange.base_url, ",".join(SYMBOLS), EXPORT_WORKERS="1")
    result = run_manager(env, "--manual")
    assert result.returncode == 0, result.stdout + result.stderr
    files = assert_folder_sound(folder)
    assert sorted(p.name.split("_")[0] for p in files) == sorted(SYMBOLS)
    assert len(exchange.klines_requests()) <= 2 * len(SYMBOLS)
