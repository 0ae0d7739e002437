"""ExchangeClient against the sandbox exchange: every failure mode ends in a clear, bounded outcome."""

from __future__ import annotations

import socket
import threading
from datetime import UTC, datetime

import pytest

from crypto_data_export.core.errors import (
    BadResponseError,
    ExchangeUnavailableError,
    IPBannedError,
    LocationRestrictedError,
    UnknownSymbolError,
)
from crypto_data_export.exchange.client import ExchangeClient, weight_limit_from_exchange_info
from crypto_data_export.exchange.klines import rows_text, rows_to_frame
from crypto_data_export.exchange.limiter import WeightLimiter
from tests.support import wait_until


def make_client(url: str, **kwargs: object) -> ExchangeClient:
    options: dict[str, object] = {"retries": 3, "backoff": 0.0, "read_timeout": 2.0, "connect_timeout": 1.0}
    options.update(kwargs)
    return ExchangeClient(url, **options)  # type: ignore[arg-type]


def test_klines_rows_and_used_weight_header(sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    client = make_client(sandbox.base_url)
    rows = client.klines("BTCUSDT", "1h", limit=5)
    assert len(rows) == 5 and all(len(r) == 12 for r in rows)
    assert isinstance(rows[0][0], int) and isinstance(rows[0][1], str)
    assert client.stats.last_used_weight == sandbox.used_weight() == 2
    expected = rows_to_frame(rows)
    monkeypatch.setattr("crypto_data_export.exchange.client.rows_to_frame", None)  # read by the exact layout's reader
    page, text = client.klines_page("BTCUSDT", "1h", rows[0][0], rows[-1][0], 5)
    assert page.equals(expected) and text == rows_text(rows)


def test_a_request_ages_out_of_the_window_from_its_answers_head_not_from_its_parsed_body(sandbox) -> None:
    """The exchange counted the request before it answered: reading and checking a big body must not
    push the request's expiry (and so every later window) further out."""
    clock = [1000.0]
    client = make_client(sandbox.base_url, limiter=WeightLimiter(clock=lambda: clock[0]))

    def slow_reader(body: bytes) -> None:
        clock[0] += 30.0  # the body read and checked long after its head came
        return None  # then read as JSON

    client.klines("BTCUSDT", "1h", limit=5, exact=slow_reader)
    clock[0] = 1000.0 + 60.5  # a window after the head, half a window after the body
    assert sum(client.limiter.used().values()) == 0


def test_rate_limits_are_read_from_exchange_info(sandbox_factory) -> None:
    exchange = sandbox_factory(weight_limit=1200)
    client = make_client(exchange.base_url)
    assert client.load_rate_limits("BTCUSDT") == 1200
    assert client.limiter.limit == 1200
    assert (
        weight_limit_from_exchange_info(
            {"rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "SECOND", "intervalNum": 10, "limit": 100}]}
        )
        == 600
    )


def test_unknown_symbol_is_reported_not_retried(sandbox) -> None:
    client = make_client(sandbox.base_url)
    with pytest.raises(UnknownSymbolError, match="-1121"):
        client.klines("NOPEUSDT", "1h")
    assert len(sandbox.klines_requests()) == 1


@pytest.mark.parametrize(
    "knob", ["fail_every_n", "truncate_every_n", "truncate_json_every_n", "html_every_n", "drop_every_n"]
)
def test_sporadic_faults_are_retried_until_a_good_answer(sandbox_factory, knob: str) -> None:
    exchange = sandbox_factory(**{knob: 2})
    client = make_client(exchange.base_url)
    answers = [client.klines("ETHUSDT", "1h", limit=10) for _ in range(4)]
    assert all(len(rows) == 10 for rows in answers)
    assert exchange.stats.klines_calls > 4  # some answers were bad and asked again


@pytest.mark.parametrize("knob", ["truncate_json_every_n", "html_every_n"])
def test_a_body_that_is_never_json_fails_clearly_after_bounded_retries(sandbox_factory, knob: str) -> None:
    exchange = sandbox_factory(**{knob: 1})
    client = make_client(exchange.base_url, retries=2)
    with pytest.raises(BadResponseError, match="not valid JSON"):
        client.klines("ETHUSDT", "1h")
    assert exchange.stats.klines_calls == 3


def test_persistent_5xx_fails_after_bounded_retries(sandbox_factory) -> None:
    exchange = sandbox_factory(fail_every_n=1, fail_status=503)
    client = make_client(exchange.base_url, retries=2)
    with pytest.raises(ExchangeUnavailableError, match="HTTP 503"):
        client.klines("BTCUSDT", "1h")
    assert exchange.stats.klines_calls == 3


def test_stalling_exchange_hits_the_read_timeout(sandbox_factory) -> None:
    exchange = sandbox_factory(stall_every_n=1)
    client = make_client(exchange.base_url, retries=1, read_timeout=0.3)
    with pytest.raises(ExchangeUnavailableError, match="read timeout"):
        client.klines("BTCUSDT", "1h")
    assert exchange.stats.stalled == 2  # the first try and one retry: then it gives up


def test_refused_connection_is_a_clear_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = make_client(f"http://127.0.0.1:{port}", retries=1)
    with pytest.raises(ExchangeUnavailableError, match="refused the connection"):
        client.ping()


def test_451_names_the_setting_and_the_alternative_hosts(sandbox_factory) -> None:
    exchange = sandbox_factory(fail_every_n=1, fail_status=451)
    client = make_client(exchange.base_url)
    with pytest.raises(LocationRestrictedError) as caught:
        client.klines("BTCUSDT", "1h")
    message = str(caught.value)
    assert "BINANCE_BASE_URL" in message and "api.binance.us" in message and "data-api.binance.vision" in message


def test_429_pauses_every_thread_for_retry_after(sandbox_factory) -> None:
    exchange = sandbox_factory(rate_limit_first_n=1, retry_after_seconds=1)
    client = make_client(exchange.base_url)
    results: list[int] = []

    def fetch() -> None:
        results.append(len(client.klines("BTCUSDT", "1h", limit=3)))

    first = threading.Thread(target=fetch)
    first.start()
    # The first thread got its 429 and is waiting out the pause: these threads must now wait too.
    wait_until(lambda: client.limiter.waits, "the first thread to wait out the 429")
    others = [threading.Thread(target=fetch) for _ in range(3)]
    for thread in others:
        thread.start()
    for thread in [first, *others]:
        thread.join()
    assert results == [3, 3, 3, 3]
    assert client.stats.rate_limited == 1
    refused = exchange.requests[0]
    assert refused.status == 429
    assert all(r.monotonic_ms - refused.monotonic_ms >= 900 for r in exchange.requests[1:])


def test_418_raises_the_ban_end_and_blocks_every_later_request(sandbox_factory) -> None:
    exchange = sandbox_factory(ban_seconds=120)
    client = make_client(exchange.base_url)
    with pytest.raises(IPBannedError) as caught:
        client.klines("BTCUSDT", "1h")
    until = caught.value.banned_until
    assert 100 < (until - datetime.now(UTC)).total_seconds() <= 121
    sent = exchange.stats.total
    with pytest.raises(IPBannedError):
        client.server_time_ms()
    assert exchange.stats.total == sent


def test_client_keeps_within_the_budget_the_exchange_publishes(sandbox_factory) -> None:
    exchange = sandbox_factory(weight_limit=1200)
    client = make_client(exchange.base_url)
    client.load_rate_limits("BTCUSDT")
    for _ in range(15):
        client.klines("BTCUSDT", "1h", limit=1)
    assert client.limiter.waits == 0  # 50 weight of 1200: a burst, no pacing
    assert exchange.stats.rate_limited_429 == 0
    assert exchange.stats.max_used_weight_seen <= 1200


def test_limiter_waits_for_the_next_minute_when_the_header_says_the_budget_is_used() -> None:
    now = [120.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    limiter = WeightLimiter(6000, clock=lambda: now[0], sleep=sleep)
    limiter.observe_used_weight(5939)  # another process on this IP used the budget (the limit less 1 % headroom)
    limiter.acquire(2)
    assert now[0] >= 180.0  # waited for the next minute window
    assert sum(slept) >= 59.0


@pytest.mark.parametrize("bypass", [False, True])
def test_proxy_variables_are_honoured(sandbox, monkeypatch: pytest.MonkeyPatch, bypass: bool) -> None:
    """HTTP_PROXY routes every call through the proxy (here the sandbox itself, which serves the
    absolute URL a proxy receives), and NO_PROXY sends the host direct: the variables are read
    once, when the client is made, not looked up again on every request."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here: only the proxy can answer
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1" if bypass else "")
    monkeypatch.setenv("http_proxy", sandbox.base_url)
    client = make_client(f"http://127.0.0.1:{port}", retries=0)
    monkeypatch.delenv("http_proxy")  # already read
    if bypass:
        with pytest.raises(ExchangeUnavailableError, match="refused the connection"):
            client.ping()
    else:
        client.ping()
        assert sandbox.stats.total == 1


@pytest.mark.parametrize("info_has_time", [True, False])
def test_first_clock_and_limits_come_from_one_exchange_info(sandbox_factory, info_has_time: bool) -> None:
    """A run starts with one round trip: exchangeInfo carries the budget and the server time
    (the skew is measured from it as from /time); without a usable time /time is asked too."""
    exchange = sandbox_factory(weight_limit=1200, clock_offset_ms=3_600_000, info_has_server_time=info_has_time)
    client = make_client(exchange.base_url)
    server_ms, limit = client.sync_clock_and_limits("BTCUSDT")
    assert limit == 1200 == client.limiter.limit
    paths = [r.path for r in exchange.requests]
    assert paths == (["/api/v3/exchangeInfo"] if info_has_time else ["/api/v3/exchangeInfo", "/api/v3/time"])
    assert abs(server_ms - exchange.requests[-1].server_ms) < 50
    assert client.clock_skew_seconds is not None and abs(client.clock_skew_seconds - 3600) < 5


def test_only_a_plausible_integer_is_a_server_time() -> None:
    from crypto_data_export.exchange.client import usable_server_time
    from crypto_data_export.exchange.klines import MAX_TIME_MS

    assert usable_server_time(1_764_547_200_000) == 1_764_547_200_000
    for bad in (True, "1764547200000", 1.7e12, 0, -5, MAX_TIME_MS + 1, None):
        assert usable_server_time(bad) is None, bad
