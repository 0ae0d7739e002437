"""A hostile exchange, trusted only within bounds: bodies, pages, limits, waits, redirects, text, clock.

Each test runs the real scheduler (``--manual``) against the sandbox exchange
with one hostile knob and checks what an operator sees (one line per symbol,
the exit code), that every earlier valid file is untouched, that memory stays
bounded, and that SIGTERM ends any wait (the run stops early, not after the wait).
"""

from __future__ import annotations

import json
import re
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.support import (
    assert_folder_sound,
    closed_opens,
    exchange_not_usable,
    expected_csv,
    export_files,
    finish,
    last_server_time,
    manager_env,
    run_cli,
    run_manager,
    run_manager_measured,
    seed_export,
    temp_files,
    wait_until,
)

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
YEAR_MS = 365 * DAY_MS
SYMBOLS = ("BTCUSDT", "ETHUSDT")
# A manager run takes ~80 MB (Python, pandas); a body read whole would take hundreds more.
RSS_BOUND = 250 * 2**20


def _seed(folder: Path, now_ms: int, interval: str = "1h", symbols: tuple[str, ...] = SYMBOLS) -> dict[str, bytes]:
    """Earlier valid exports (outside the window, so nothing is reused), which no fault may touch."""
    kept = {}
    for symbol in symbols:
        opens = closed_opens(interval, now_ms - 30 * DAY_MS, now_ms - 29 * DAY_MS)
        path = seed_export(folder, symbol, interval, opens, f"{symbol}_{interval}_20000101_000000.csv")
        kept[path.name] = path.read_bytes()
    return kept


def _assert_intact(folder: Path, kept: dict[str, bytes]) -> None:
    assert {p.name: p.read_bytes() for p in export_files(folder)} == kept
    assert_folder_sound(folder)  # includes: no temp file left


def _symbol_errors(stderr: str, symbols: tuple[str, ...] = SYMBOLS) -> dict[str, str]:
    """Each symbol's error line; a failure of the exchange itself is one line for all of them."""
    found = dict.fromkeys(symbols, host_error) if (host_error := exchange_not_usable(stderr)) else {}
    for line in stderr.splitlines():
        for symbol in symbols:
            if line.startswith(f"error: {symbol}: "):
                found[symbol] = line
    assert set(found) == set(symbols), stderr
    for line in found.values():
        assert "Traceback" not in line and len(line) < 500, line
    return found


def _logs(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in folder.rglob("*.log"))


def _state(folder: Path) -> dict:
    return json.loads((folder / "state.json").read_text())


# -- 1. bodies: a gzip bomb or a huge body is refused past the endpoint's cap -------------
@pytest.mark.parametrize(
    "knobs", [dict(gzip_bomb_mb=1024), dict(huge_body_mb=150)], ids=["gzip_bomb_1GiB", "body_150MiB"]
)
def test_oversized_bodies_are_refused_with_bounded_memory(knobs, tmp_path, sandbox_factory):
    exchange = sandbox_factory(**knobs)
    folder = tmp_path / "exports"
    kept = _seed(folder, exchange.now_ms())
    # A generous read timeout: building the 1 GiB bomb's checksum takes the sandbox a moment on a busy machine.
    env = manager_env(folder, exchange.base_url, ",".join(SYMBOLS), HTTP_TIMEOUT_SECONDS="15")
    result, peak_rss = run_manager_measured(env, "--manual")

    assert result.returncode == 1, result.stdout + result.stderr
    for line in _symbol_errors(result.stderr).values():
        assert "/api/v3/klines sent a body larger than the" in line and "bytes allowed" in line, line
    for symbol in SYMBOLS:  # a bad answer: retried within HTTP_RETRIES=2, then the symbol fails
        assert len(exchange.klines_requests(symbol)) == 3
    assert peak_rss < RSS_BOUND, f"peak RSS {peak_rss / 2**20:.0f} MB"
    _assert_intact(folder, kept)


# -- 2. pages: rows off the grid fail the symbol at once, naming the row -----------------------
def test_rows_one_millisecond_apart_fail_the_symbol_at_the_first_page(tmp_path, sandbox_factory):
    exchange = sandbox_factory(row_step_ms=1)
    folder = tmp_path / "exports"
    kept = _seed(folder, exchange.now_ms())
    result, peak_rss = run_manager_measured(manager_env(folder, exchange.base_url, ",".join(SYMBOLS)), "--manual")

    assert result.returncode == 1, result.stdout + result.stderr
    for line in _symbol_errors(result.stderr).values():  # row 1 unless the window happened to start on the hour
        assert re.search(r"bad page: row [12] \(open_time \d+, [-0-9T:.+]+\) is not on the 1h grid", line), line
    for symbol in SYMBOLS:  # one page, refused: no endless pagination, no retry of a wrong answer
        assert len(exchange.klines_requests(symbol)) == 1
    assert peak_rss < RSS_BOUND
    _assert_intact(folder, kept)


def test_sigterm_during_pagination_stops_at_the_next_page(tmp_path, sandbox_factory, start_manager):
    """A 10-day 1m window is 15 pages; SIGTERM while the first is used and two more (two workers) are
    under way and never answered: no other page is asked for, no new file, exit 130, status stopped."""
    exchange = sandbox_factory()
    exchange.config.hold_klines = (exchange.now_ms() - 10 * DAY_MS + 500 * 60_000, 2**62)  # all but the first page
    folder = tmp_path / "exports"
    kept = _seed(folder, exchange.now_ms(), "1m", ("BTCUSDT",))
    env = manager_env(
        folder, exchange.base_url, "BTCUSDT", KLINE_INTERVAL="1m", EXPORT_LOOKBACK_DAYS="10", EXPORT_WORKERS="2"
    )
    proc = start_manager(env, "--manual")
    wait_until(lambda: exchange.stats.klines_calls == 3, "the first page, then two more under way")
    proc.send_signal(signal.SIGTERM)
    code, out, err = finish(proc)

    assert code == 130, out + err  # interrupted
    assert "stopped on request" in out
    assert exchange.stats.klines_calls == 3, "pages went on being asked for after SIGTERM"
    assert _state(folder)["last_cycle_result"] == "stopped"
    assert temp_files(folder) == []
    _assert_intact(folder, kept)


# -- 3. limits: a tiny published budget is clamped, and the limiter's wait ends on SIGTERM -------
def test_tiny_published_weight_limit_is_clamped_and_sigterm_ends_the_wait(tmp_path, sandbox_factory, start_manager):
    exchange = sandbox_factory(published_weight_limit=2, accept_any_symbol=True)
    folder = tmp_path / "exports"
    kept = _seed(folder, exchange.now_ms())
    # At 60 weight per minute, exchangeInfo's 20 and 40 symbols' klines calls (weight 2 each) are
    # over the budget: the run waits in the limiter for the window to slide, about a minute.
    symbols = ",".join((*SYMBOLS, *(f"T{chr(65 + i // 26)}{chr(65 + i % 26)}USDT" for i in range(38))))
    env = manager_env(folder, exchange.base_url, symbols)
    proc = start_manager(env, "--manual")
    log = folder / "export_log.log"
    wait_until(lambda: log.exists() and b"limit of 2 per minute; using 60" in log.read_bytes(), "the clamp")
    proc.send_signal(signal.SIGTERM)
    code, out, err = finish(proc)  # a run that ignored SIGTERM would wait out the limiter, then export all

    assert code == 130, out + err  # interrupted
    assert "stopped on request" in out
    state = _state(folder)
    assert state["last_cycle_result"] == "stopped" and state["last_cycle_failed_symbols"] == []
    # The calls the budget allowed before the wait may have published whole files (how many
    # depends on how fast the run got there before SIGTERM); a seeded file is untouched unless
    # its symbol got a newer file, whose prune retires the 30-day-old seed (7-day retention).
    # Nothing half-written is left.
    now_there = {p.name: p.read_bytes() for p in export_files(folder)}
    for name, data in kept.items():
        newer = [n for n in now_there if n != name and n.startswith(name.split("_", 1)[0] + "_")]
        assert now_there.get(name) == data or (name not in now_there and newer), name
    assert len(now_there) < len(kept) + 40, "every symbol was exported: the run never waited"
    assert_folder_sound(folder)
    # The run lock went with the process: the next run takes it (75 would mean it is still held).
    assert run_manager(env, "--cleanup-only").returncode == 0


# -- 4. waits: Retry-After and ban lengths are parsed defensively and capped ---------------------
@pytest.mark.parametrize(
    "retry_after, longest",
    [
        ("315360000", 3 * DAY_MS),  # ten years: capped at Binance's longest ban
        ("inf", 3 * DAY_MS),
        ("nan", 60_000),  # meaningless: the "banned until" of the message (6 s) is used
    ],
)  # more values (negative, garbage, HTTP dates) in tests/exchange/test_bounds.py
def test_418_ban_length_is_capped_and_never_crashes(retry_after, longest, tmp_path, sandbox_factory):
    exchange = sandbox_factory(ban_seconds=6, ban_after_n=1, retry_after_header=retry_after)
    folder = tmp_path / "exports"
    kept = _seed(folder, exchange.now_ms())
    env = manager_env(folder, exchange.base_url, ",".join(SYMBOLS), EXPORT_WORKERS="1")
    before_ms = int(time.time() * 1000)
    result = run_manager(env, "--manual")

    assert result.returncode == 1, result.stdout + result.stderr
    assert "banned" in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert exchange.stats.banned_418 == 1
    banned_until_ms = datetime.fromisoformat(_state(folder)["banned_until"]).timestamp() * 1000
    assert before_ms < banned_until_ms <= int(time.time() * 1000) + longest + 2000
    status = run_manager(env, "--status", "--json")  # reads the saved ban back without a crash
    assert status.returncode == 0, status.stderr
    if longest == 3 * DAY_MS:  # (a 6-second ban may be over by now on a busy machine)
        assert json.loads(status.stdout)["banned_until"] == _state(folder)["banned_until"]
    _assert_intact(folder, kept)


@pytest.mark.parametrize("retry_after", ["315360000", "inf"])
def test_429_pause_is_capped_and_ends_on_sigterm(retry_after, tmp_path, sandbox_factory, start_manager):
    exchange = sandbox_factory(rate_limit_first_n=1, retry_after_header=retry_after)
    folder = tmp_path / "exports"
    kept = _seed(folder, exchange.now_ms())
    proc = start_manager(manager_env(folder, exchange.base_url, ",".join(SYMBOLS)), "--manual")
    log = folder / "export_log.log"
    wait_until(lambda: log.exists() and b"wait 300.0 s as told by Retry-After" in log.read_bytes(), "the pause")
    proc.send_signal(signal.SIGTERM)
    code, out, err = finish(proc)  # a run that ignored SIGTERM would pause 300 s: past the hang guard

    assert code == 130, out + err  # interrupted
    assert "stopped on request" in out, "the 429 pause ignored SIGTERM"
    assert [r.status for r in exchange.requests].count(429) == 1
    assert all(r.status != 200 for r in exchange.requests if r.path == "/api/v3/klines")
    _assert_intact(folder, kept)


# -- 5. redirects are refused, never followed -----------------------------------------------------
def test_redirect_to_another_host_is_refused_and_named(tmp_path, sandbox_factory):
    other = sandbox_factory()
    other_url = other.base_url.replace("127.0.0.1", "localhost")
    exchange = sandbox_factory(redirect_to=other_url)
    folder = tmp_path / "exports"
    kept = _seed(folder, exchange.now_ms())
    result = run_manager(manager_env(folder, exchange.base_url, ",".join(SYMBOLS)), "--manual")

    assert result.returncode == 1, result.stdout + result.stderr
    for line in _symbol_errors(result.stderr).values():
        assert f"redirected the request (HTTP 302) to {other_url}/api/v3/exchangeInfo" in line, line
        assert f"set BINANCE_BASE_URL={other_url}" in line, line
    assert other.requests == [], "the other host was contacted"
    assert len(exchange.requests) == 1, "a redirect is not retried"
    _assert_intact(folder, kept)


# -- 6. the exchange's text is escaped before it reaches the terminal or a log ------------------
FORGED = "\x1b[2J\x1b[31mOOPS\r\nerror: ETHUSDT: forged line\x1b]0;title\x07\u202e"
# A header carries bytes: the same text as UTF-8, without the line break (it would end the header).
FORGED_HEADER = FORGED.replace("\r\n", " ").encode().decode("latin-1")
HOSTILE_TEXT = {
    "error_msg": dict(fail_every_n=1, fail_status=400, fail_msg=FORGED),
    "content_type_header": dict(html_every_n=1, extra_headers={"Content-Type": "text/html" + FORGED_HEADER}),
    "location_header": dict(redirect_to="http://evil.example/" + FORGED_HEADER),
}


@pytest.mark.parametrize("case", list(HOSTILE_TEXT))
def test_control_characters_from_the_exchange_are_escaped(case, tmp_path, sandbox_factory):
    exchange = sandbox_factory(**HOSTILE_TEXT[case])
    folder = tmp_path / "exports"
    kept = _seed(folder, exchange.now_ms())
    result = run_manager(manager_env(folder, exchange.base_url, ",".join(SYMBOLS)), "--manual")

    assert result.returncode == 1, result.stdout + result.stderr
    shown = result.stdout + result.stderr
    for raw in ("\x1b", "\r", "\x07", "\u202e"):
        assert raw not in shown, f"{raw!r} reached the terminal"
        assert raw.encode() not in _logs(folder), f"{raw!r} reached a log file"
    assert not any(line.startswith("error: ETHUSDT: forged") for line in shown.splitlines())
    assert all("\\x1b[2J" in line for line in _symbol_errors(result.stderr).values())
    _assert_intact(folder, kept)


# -- 7. the exchange's clock: years ahead of ours writes nothing; far behind still backfills -------
def test_exchange_clock_years_ahead_writes_nothing(tmp_path, sandbox_factory):
    local_ms = int(time.time() * 1000)
    exchange = sandbox_factory(clock_offset_ms=10 * YEAR_MS)
    folder = tmp_path / "exports"
    kept = _seed(folder, local_ms)
    result = run_manager(manager_env(folder, exchange.base_url, ",".join(SYMBOLS)), "--manual")

    assert result.returncode == 1, result.stdout + result.stderr
    exchange_year = datetime.fromtimestamp(exchange.now_ms() / 1000, UTC).year
    local_year = datetime.fromtimestamp(local_ms / 1000, UTC).year
    for line in _symbol_errors(result.stderr).values():
        assert f"the exchange's clock gives a time of {exchange_year}-" in line, line
        assert f"this machine's clock says {local_year}-" in line, line
    assert exchange.klines_requests() == [], "candles were asked for from the future"
    assert b"the exchange's clock says" in _logs(folder)  # the skew warning of sync_clock
    _assert_intact(folder, kept)


def test_backfill_works_with_the_exchange_clock_years_behind(tmp_path, sandbox_factory):
    exchange = sandbox_factory(clock_offset_ms=-2 * YEAR_MS)
    folder = tmp_path / "exports"
    env = manager_env(folder, exchange.base_url, "BTCUSDT")
    result = run_cli("export_historical_data.py", "--days", "1", "--interval", "1h", env=env, cwd=tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    (written,) = assert_folder_sound(folder / "backfill")  # the default, out of the scheduler's retention
    server_ms = last_server_time(exchange)
    opens = closed_opens("1h", server_ms - DAY_MS, server_ms)
    assert written.read_text() == expected_csv("BTCUSDT", "1h", opens)  # the past, by the exchange's clock
