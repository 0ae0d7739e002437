"""The sandbox exchange behaves like Binance spot REST (reference sections 2-5, 10).

Every test talks HTTP to a real server on 127.0.0.1 with an OS-chosen port.
Most pin the server clock (``now_ms``) so candle selection is exact.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests

from crypto_data_export.sandbox.fake_exchange import (
    INTERVALS,
    SandboxConfig,
    SandboxExchange,
    align_open_ms,
    generate_candle,
    interval_ms,
    next_open_ms,
)
from tests.support import HANG_GUARD, REPO

HOUR = 3_600_000
MINUTE = 60_000
DAY = 24 * HOUR
MIDNIGHT = 1730073600000  # 2024-10-28 00:00 UTC, a Monday
NOW = MIDNIGHT + 10 * HOUR + 15 * MINUTE + 30_500  # 10:15:30.5
LISTING = 1483228800000  # 2017-01-01 00:00 UTC

Factory = Callable[..., SandboxExchange]


def klines(ex: SandboxExchange, timeout: float = 5, **params: Any) -> requests.Response:
    params.setdefault("symbol", "BTCUSDT")
    params.setdefault("interval", "1h")
    return requests.get(f"{ex.base_url}/api/v3/klines", params=params, timeout=timeout)


def get(ex: SandboxExchange, path: str, **params: Any) -> requests.Response:
    return requests.get(f"{ex.base_url}/api/v3/{path}", params=params, timeout=5)


@pytest.fixture
def pinned(sandbox_factory: Factory) -> SandboxExchange:
    """An exchange whose clock is frozen at NOW."""
    return sandbox_factory(now_ms=NOW)


def opens(resp: requests.Response) -> list[int]:
    assert resp.status_code == 200, resp.text
    return [row[0] for row in resp.json()]


# ---- layout -----------------------------------------------------------------


def test_row_layout_and_types(pinned: SandboxExchange) -> None:
    resp = klines(pinned, startTime=MIDNIGHT, limit=3)
    assert resp.headers["Content-Type"] == "application/json;charset=UTF-8"
    assert int(resp.headers["Content-Length"]) == len(resp.content)
    rows = resp.json()
    assert [r[0] for r in rows] == [MIDNIGHT, MIDNIGHT + HOUR, MIDNIGHT + 2 * HOUR]
    for row in rows:
        assert len(row) == 12
        assert all(isinstance(row[i], int) for i in (0, 6, 8))
        assert all(isinstance(row[i], str) for i in (1, 2, 3, 4, 5, 7, 9, 10, 11))
        assert row[6] == row[0] + HOUR - 1
        assert row[11] == "0"
        assert all(len(row[i].split(".")[1]) == 8 for i in (1, 2, 3, 4, 5, 7, 9, 10))
    assert 20000 < float(rows[0][1]) < 200000  # BTCUSDT sits around 60000


def test_candle_invariants_and_continuity() -> None:
    for symbol in ("BTCUSDT", "SHIBUSDT", "SYM0042USDT", "AAVEUSDT"):
        for interval in ("1s", "1m", "1h", "1d", "1w", "1M"):
            t = align_open_ms(interval, NOW - 50 * interval_ms("1w"))
            prev_close = None
            for _ in range(40):
                row = generate_candle(symbol, interval, t)
                o, h, low, c = (float(row[i]) for i in (1, 2, 3, 4))
                assert h >= max(o, c) and low <= min(o, c) and low > 0
                assert float(row[5]) >= 0 and int(row[8]) >= 0
                assert float(row[9]) <= float(row[5]) and float(row[10]) <= float(row[7])
                assert row[6] == next_open_ms(interval, t) - 1
                if prev_close is not None:
                    assert row[1] == prev_close  # close of one candle = open of the next
                prev_close = row[4]
                t = next_open_ms(interval, t)


def test_determinism_across_servers(sandbox_factory: Factory) -> None:
    a, b = sandbox_factory(SandboxConfig(now_ms=NOW)), sandbox_factory(now_ms=NOW + DAY)
    params = {"symbol": "ETHUSDT", "interval": "15m", "startTime": MIDNIGHT, "limit": 20}
    first = klines(a, **params).content
    assert first == klines(a, **params).content == klines(b, **params).content
    assert json.loads(first)[5] == generate_candle("ETHUSDT", "15m", MIDNIGHT + 5 * 15 * MINUTE)


# ---- selection ----------------------------------------------------------------


def test_start_time_is_inclusive_and_not_snapped(pinned: SandboxExchange) -> None:
    assert opens(klines(pinned, startTime=MIDNIGHT, limit=2)) == [MIDNIGHT, MIDNIGHT + HOUR]
    # the documented example: a startTime inside a candle skips that candle
    assert opens(klines(pinned, startTime=MIDNIGHT + 28 * MINUTE, limit=1)) == [MIDNIGHT + HOUR]


def test_end_time_is_inclusive_on_open_time(pinned: SandboxExchange) -> None:
    got = opens(klines(pinned, startTime=MIDNIGHT, endTime=MIDNIGHT + 3 * HOUR))
    assert got == [MIDNIGHT + i * HOUR for i in range(4)]
    assert opens(klines(pinned, startTime=MIDNIGHT, endTime=MIDNIGHT)) == [MIDNIGHT]
    assert opens(klines(pinned, startTime=MIDNIGHT + HOUR, endTime=MIDNIGHT)) == []


def test_end_time_only_returns_newest_before_it(pinned: SandboxExchange) -> None:
    got = opens(klines(pinned, endTime=MIDNIGHT + 30 * MINUTE, limit=3))
    assert got == [MIDNIGHT - 2 * HOUR, MIDNIGHT - HOUR, MIDNIGHT]


def test_default_limit_500_and_max_1000(pinned: SandboxExchange) -> None:
    assert len(opens(klines(pinned, startTime=LISTING))) == 500
    assert len(opens(klines(pinned, startTime=LISTING, limit=1000))) == 1000
    resp = klines(pinned, limit=1001)
    assert resp.status_code == 400 and resp.json()["code"] == -1130


def test_latest_includes_the_open_candle(pinned: SandboxExchange) -> None:
    rows = klines(pinned, limit=5).json()
    current = MIDNIGHT + 10 * HOUR
    assert [r[0] for r in rows] == [current - i * HOUR for i in range(4, -1, -1)]
    assert rows[-1][6] >= NOW  # still open: close time in the future
    assert all(r[6] < NOW for r in rows[:-1])  # the others are closed
    assert len(klines(pinned).json()) == 500


def test_no_candle_after_now_and_empty_future(pinned: SandboxExchange) -> None:
    assert opens(klines(pinned, startTime=MIDNIGHT + 9 * HOUR))[-1] == MIDNIGHT + 10 * HOUR
    assert klines(pinned, startTime=NOW + HOUR).json() == []


def test_start_before_listing_begins_at_first_candle(sandbox_factory: Factory) -> None:
    ex = sandbox_factory(now_ms=NOW, listing_ms=MIDNIGHT - 5 * HOUR)
    assert opens(klines(ex, startTime=0, limit=2)) == [MIDNIGHT - 5 * HOUR, MIDNIGHT - 4 * HOUR]
    assert opens(klines(ex, endTime=MIDNIGHT - 3 * HOUR, limit=10))[0] == MIDNIGHT - 5 * HOUR


def test_microsecond_start_time(pinned: SandboxExchange) -> None:
    assert opens(klines(pinned, startTime=MIDNIGHT * 1000, limit=1)) == [MIDNIGHT]


def test_interval_alignment(pinned: SandboxExchange) -> None:
    week = opens(klines(pinned, interval="1w", limit=3))
    assert all(dt.datetime.fromtimestamp(t / 1000, dt.UTC).weekday() == 0 for t in week)
    assert week[-1] == MIDNIGHT  # 2024-10-28 is a Monday
    months = klines(pinned, interval="1M", limit=3).json()
    days = [dt.datetime.fromtimestamp(r[0] / 1000, dt.UTC) for r in months]
    assert [(d.month, d.day, d.hour) for d in days] == [(8, 1, 0), (9, 1, 0), (10, 1, 0)]
    assert months[0][6] + 1 == months[1][0]  # August has 31 days: variable length
    assert all(t % (3 * DAY) == 0 for t in opens(klines(pinned, interval="3d", limit=3)))
    assert opens(klines(pinned, interval="1s", limit=1)) == [NOW - 500]


# ---- validation errors ---------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"symbol": "NOPEUSDT"}, -1121),
        ({"interval": "1H"}, -1120),
        ({"interval": "2m"}, -1120),
        ({"symbol": ""}, -1102),
        ({"interval": ""}, -1102),
        ({"limit": "abc"}, -1100),
        ({"startTime": "yesterday"}, -1100),
        ({"star_time": "1"}, -1104),
    ],
)
def test_parameter_errors(pinned: SandboxExchange, params: dict[str, str], code: int) -> None:
    resp = klines(pinned, **params)
    assert resp.status_code == 400
    assert resp.json()["code"] == code
    assert "X-MBX-USED-WEIGHT-1M" in resp.headers


def test_error_messages_match_binance(pinned: SandboxExchange) -> None:
    assert klines(pinned, symbol="NOPEUSDT").json() == {"code": -1121, "msg": "Invalid symbol."}
    assert klines(pinned, interval="1H").json() == {"code": -1120, "msg": "Invalid interval."}
    missing = requests.get(f"{pinned.base_url}/api/v3/klines", params={"interval": "1h"}, timeout=5)
    assert missing.json()["code"] == -1102 and "'symbol'" in missing.json()["msg"]


def test_every_interval_is_accepted(pinned: SandboxExchange) -> None:
    assert len(INTERVALS) == 16
    for interval in INTERVALS:
        assert len(opens(klines(pinned, interval=interval, limit=2))) == 2


# ---- other endpoints -------------------------------------------------------------


def test_ping_time_and_exchange_info(sandbox_factory: Factory) -> None:
    ex = sandbox_factory(now_ms=NOW, weight_limit=1234, delisted={"LUNAUSDT": MIDNIGHT})
    assert get(ex, "ping").json() == {}
    assert get(ex, "time").json() == {"serverTime": NOW}
    info = get(ex, "exchangeInfo").json()
    assert info["timezone"] == "UTC" and info["serverTime"] == NOW and info["exchangeFilters"] == []
    assert info["rateLimits"][0] == {
        "rateLimitType": "REQUEST_WEIGHT",
        "interval": "MINUTE",
        "intervalNum": 1,
        "limit": 1234,
    }
    assert info["rateLimits"][1]["limit"] == 300000 and info["rateLimits"][1]["intervalNum"] == 5
    by_name = {s["symbol"]: s for s in info["symbols"]}
    assert {"BTCUSDT", "ADAUSDT", "SHIBUSDT", "LUNAUSDT"} <= set(by_name)
    assert by_name["BTCUSDT"]["status"] == "TRADING"
    assert (by_name["BTCUSDT"]["baseAsset"], by_name["BTCUSDT"]["quoteAsset"]) == ("BTC", "USDT")
    assert by_name["LUNAUSDT"]["status"] == "BREAK"
    one = get(ex, "exchangeInfo", symbol="ETHUSDT").json()["symbols"]
    assert [s["symbol"] for s in one] == ["ETHUSDT"]
    bad = get(ex, "exchangeInfo", symbol="NOPEUSDT")
    assert bad.status_code == 400 and bad.json()["code"] == -1121


def test_symbol_sets(sandbox_factory: Factory) -> None:
    ex = sandbox_factory(now_ms=NOW, extra_symbols=("PEPEUSDT",))
    assert klines(ex, symbol="PEPEUSDT").status_code == 200
    assert klines(ex, symbol="SYM0001USDT").json()["code"] == -1121
    anyx = sandbox_factory(now_ms=NOW, accept_any_symbol=True, unknown_symbols=frozenset({"SYM0002USDT", "ETHUSDT"}))
    assert klines(anyx, symbol="SYM0001USDT").status_code == 200
    assert klines(anyx, symbol="SYM0002USDT").json()["code"] == -1121
    assert klines(anyx, symbol="ETHUSDT").json()["code"] == -1121
    assert get(anyx, "exchangeInfo", symbol="SYM0400USDT").json()["symbols"][0]["baseAsset"] == "SYM0400"


# ---- weight and rate limits ------------------------------------------------------


def test_weight_headers_count_per_endpoint(pinned: SandboxExchange) -> None:
    def used(resp: requests.Response) -> int:
        assert resp.headers["X-MBX-USED-WEIGHT"] == resp.headers["X-MBX-USED-WEIGHT-1M"]
        return int(resp.headers["X-MBX-USED-WEIGHT-1M"])

    assert used(get(pinned, "ping")) == 1
    assert used(klines(pinned)) == 3
    assert used(klines(pinned)) == 5
    assert used(get(pinned, "exchangeInfo")) == 25
    assert used(get(pinned, "time")) == 26
    assert used(klines(pinned, symbol="NOPEUSDT")) == 28  # errors cost weight too
    pinned.config.now_ms = NOW + MINUTE  # next calendar minute: a fresh window
    assert used(klines(pinned)) == 2
    assert pinned.stats.max_used_weight_seen == 28


def test_429_when_weight_budget_is_exceeded(sandbox_factory: Factory) -> None:
    ex = sandbox_factory(now_ms=NOW, weight_limit=5)
    assert klines(ex).status_code == 200
    assert klines(ex).status_code == 200
    resp = klines(ex)
    assert resp.status_code == 429
    assert resp.headers["Retry-After"] == "30"  # 29.5 s to 10:16:00, rounded up
    assert resp.headers["X-MBX-USED-WEIGHT-1M"] == "4"
    body = resp.json()
    assert body["code"] == -1003 and "current limit is 5 request weight per 1 MINUTE" in body["msg"]
    assert get(ex, "ping").status_code == 200  # weight 1 still fits
    assert ex.stats.rate_limited_429 == 1 and ex.stats.injected_429 == 0
    assert ex.stats.by_status[429] == 1


def test_injected_429_first_n(sandbox_factory: Factory) -> None:
    ex = sandbox_factory(now_ms=NOW, rate_limit_first_n=2, retry_after_seconds=3)
    first, second = get(ex, "ping"), klines(ex)
    for resp in (first, second):
        assert resp.status_code == 429 and resp.headers["Retry-After"] == "3"
        assert resp.json()["code"] == -1003
    assert klines(ex).status_code == 200
    assert ex.stats.injected_429 == 2 and ex.stats.rate_limited_429 == 0


def test_418_ban_with_retry_after(sandbox_factory: Factory) -> None:
    ex = sandbox_factory(now_ms=NOW)
    assert get(ex, "ping").status_code == 200
    ex.config.ban_seconds = 120
    resp = klines(ex)
    assert resp.status_code == 418
    assert ex.banned_until_ms == NOW + 120_000
    assert resp.headers["Retry-After"] == "120"
    assert resp.json() == {
        "code": -1003,
        "msg": f"Way too much request weight used; IP banned "
        f"until {NOW + 120_000}. Please use WebSocket Streams for live "
        "updates to avoid bans.",
    }
    ex.config.now_ms = NOW + 119_500
    late = get(ex, "ping")
    assert late.status_code == 418 and late.headers["Retry-After"] == "1"
    ex.config.now_ms = NOW + 120_000
    assert klines(ex).status_code == 200  # ban over, and the same knob does not re-ban
    assert ex.stats.by_status[418] == 2


def test_ban_after_n_klines(sandbox_factory: Factory) -> None:
    ex = sandbox_factory(now_ms=NOW, ban_seconds=60, ban_after_n=3)
    assert [klines(ex).status_code for _ in range(2)] == [200, 200]
    assert get(ex, "ping").status_code == 200
    assert klines(ex).status_code == 418
    assert get(ex, "ping").status_code == 418
    assert ex.banned_until_ms == NOW + 60_000


# ---- fault knobs ---------------------------------------------------------------------


def test_fail_every_n(sandbox_factory: Factory) -> None:
    ex = sandbox_factory(now_ms=NOW, fail_every_n=2)
    statuses = [klines(ex).status_code for _ in range(4)]
    assert statuses == [200, 500, 200, 500]
    assert klines(ex).status_code == 200
    ex.config.fail_status = 503
    resp = klines(ex)
    assert resp.status_code == 503
    assert resp.json() == {"code": -1001, "msg": "Internal error; unable to process your request. Please try again."}


def test_truncated_body_is_detected_by_requests(sandbox_factory: Factory) -> None:
    ex = sandbox_factory(now_ms=NOW, truncate_every_n=1)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        klines(ex)
    assert ex.stats.truncated == 1
    ex.config.truncate_every_n = 0
    assert klines(ex).status_code == 200


def test_truncated_json_has_matching_length(sandbox_factory: Factory) -> None:
    ex = sandbox_factory(now_ms=NOW, truncate_json_every_n=1)
    resp = klines(ex, limit=10)
    assert resp.status_code == 200
    assert int(resp.headers["Content-Length"]) == len(resp.content)
    with pytest.raises(ValueError):
        resp.json()


def test_html_every_n(sandbox_factory: Factory) -> None:
    ex = sandbox_factory(now_ms=NOW, html_every_n=2)
    assert klines(ex).headers["Content-Type"].startswith("application/json")
    resp = klines(ex)
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "text/html"
    assert resp.text.startswith("<!DOCTYPE html>")
    with pytest.raises(ValueError):
        resp.json()


def test_drop_every_n_raises_connection_error(sandbox_factory: Factory) -> None:
    ex = sandbox_factory(now_ms=NOW, drop_every_n=2)
    session = requests.Session()
    url = f"{ex.base_url}/api/v3/klines"
    params = {"symbol": "BTCUSDT", "interval": "1h"}
    assert session.get(url, params=params, timeout=5).status_code == 200
    with pytest.raises(requests.exceptions.ConnectionError):
        session.get(url, params=params, timeout=5)
    assert session.get(url, params=params, timeout=5).status_code == 200
    assert ex.stats.dropped == 1 and ex.requests[1].status == 0


def test_stall_times_out_and_stop_releases_the_stalled_handler(sandbox_factory: Factory) -> None:
    before = set(threading.enumerate())
    ex = sandbox_factory(now_ms=NOW, stall_every_n=1)
    with pytest.raises(requests.exceptions.ReadTimeout):
        klines(ex, timeout=0.3)
    handlers = [t for t in set(threading.enumerate()) - before if t.name.endswith("(process_request_thread)")]
    assert len(handlers) == 1 and handlers[0].is_alive(), "the stalled answer holds its handler thread"
    ex.stop()
    handlers[0].join(timeout=HANG_GUARD)
    assert not handlers[0].is_alive(), "stop() left the stalled handler waiting"
    assert ex.stats.stalled == 1


def test_latency_overlaps_between_clients(sandbox_factory: Factory) -> None:
    ex = sandbox_factory(now_ms=NOW, latency_seconds=0.5)
    answered: list[float] = []  # when each client got its answer, on the sandbox's monotonic clock (ms)

    def fetch() -> None:
        assert klines(ex).status_code == 200
        answered.append(time.monotonic() * 1000)

    threads = [threading.Thread(target=fetch) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    arrivals = sorted(r.monotonic_ms for r in ex.requests)
    assert len(answered) == len(arrivals) == 6
    # Each answer comes a latency after its request: served one by one, the last request would
    # arrive after the first answer; overlapping, all six arrive before any answer is sent.
    assert min(answered) - arrivals[0] >= 500
    assert arrivals[-1] < min(answered), "the sandbox served the clients one at a time"


def test_session_reuses_one_connection(pinned: SandboxExchange) -> None:
    session = requests.Session()
    for _ in range(5):
        assert session.get(f"{pinned.base_url}/api/v3/ping", timeout=5).status_code == 200
    assert pinned.stats.connections == 1


def test_context_manager_and_default_fixture(sandbox: SandboxExchange) -> None:
    assert sandbox.base_url.startswith("http://127.0.0.1:") and sandbox.port > 0
    assert get(sandbox, "ping").status_code == 200
    with SandboxExchange(SandboxConfig(latency_seconds=0.01), port=0) as ex:
        url = ex.base_url
        assert get(ex, "time").status_code == 200
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(url + "/api/v3/ping", timeout=1)


# ---- clock, gaps, delisting ------------------------------------------------------------


def test_clock_offset(sandbox_factory: Factory) -> None:
    offset = -3 * DAY - 17 * MINUTE
    ex = sandbox_factory(clock_offset_ms=offset)
    local = int(time.time() * 1000)
    server = get(ex, "time").json()["serverTime"]
    assert abs(server - (local + offset)) < 2000
    last = klines(ex, interval="1m", limit=1).json()[0]
    assert last[0] == align_open_ms("1m", ex.now_ms()) or last[0] == align_open_ms("1m", server)
    assert last[0] <= ex.now_ms() <= last[6] + MINUTE


def test_gaps_are_skipped(sandbox_factory: Factory) -> None:
    gap = (MIDNIGHT + 2 * HOUR, MIDNIGHT + 5 * HOUR)  # opens 02:00, 03:00, 04:00 missing
    ex = sandbox_factory(now_ms=NOW, gaps={"BTCUSDT": [gap]})
    got = opens(klines(ex, startTime=MIDNIGHT, limit=4))
    assert got == [MIDNIGHT, MIDNIGHT + HOUR, MIDNIGHT + 5 * HOUR, MIDNIGHT + 6 * HOUR]
    back = opens(klines(ex, endTime=MIDNIGHT + 5 * HOUR, limit=3))
    assert back == [MIDNIGHT, MIDNIGHT + HOUR, MIDNIGHT + 5 * HOUR]
    assert klines(ex, startTime=gap[0], endTime=gap[1] - 1).json() == []
    assert len(opens(klines(ex, symbol="ETHUSDT", startTime=MIDNIGHT, limit=4))) == 4


def test_delisted_symbol_has_no_candles_after_delisting(sandbox_factory: Factory) -> None:
    delist = MIDNIGHT + 3 * HOUR + 10 * MINUTE
    ex = sandbox_factory(now_ms=NOW, delisted={"UNIUSDT": delist})
    rows = klines(ex, symbol="UNIUSDT", limit=3).json()
    assert [r[0] for r in rows] == [MIDNIGHT + HOUR, MIDNIGHT + 2 * HOUR, MIDNIGHT + 3 * HOUR]
    assert klines(ex, symbol="UNIUSDT", startTime=MIDNIGHT + 4 * HOUR).json() == []
    status = get(ex, "exchangeInfo", symbol="UNIUSDT").json()["symbols"][0]["status"]
    assert status == "BREAK"


# ---- observability and CLI ---------------------------------------------------------------


def test_request_log_and_reset(pinned: SandboxExchange) -> None:
    klines(pinned, symbol="ETHUSDT", startTime=MIDNIGHT, limit=7)
    klines(pinned, symbol="BTCUSDT")
    get(pinned, "ping")
    assert pinned.klines_requests("ETHUSDT") == [
        {"symbol": "ETHUSDT", "interval": "1h", "startTime": MIDNIGHT, "limit": 7}
    ]
    assert len(pinned.klines_requests()) == 2
    record = pinned.requests[-1]
    assert (record.path, record.status, record.params) == ("/api/v3/ping", 200, {})
    assert record.wall_ms > 0 and record.monotonic_ms > 0
    stats = pinned.stats
    assert (stats.total, stats.klines_calls, stats.by_status) == (3, 2, {200: 3})
    pinned.reset_log()
    assert pinned.requests == [] and pinned.stats.total == 0


def test_cli_prints_url_serves_quietly_and_exits_on_sigterm() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "crypto_data_export.sandbox", "--port", "0", "--latency", "0"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        prefix = "sandbox exchange listening on http://127.0.0.1:"
        assert line.startswith(prefix) and line[len(prefix) :].isdigit()
        url = line.split()[-1]
        assert requests.get(url + "/api/v3/ping", timeout=5).json() == {}
        assert (
            requests.get(url + "/api/v3/klines", params={"symbol": "NOPE", "interval": "1h"}, timeout=5).status_code
            == 400
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=HANG_GUARD) == 0
        assert proc.stderr is not None and proc.stderr.read() == ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
