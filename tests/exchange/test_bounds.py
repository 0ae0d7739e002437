"""The exchange layer's bounds: body caps, redirects, Retry-After and ban parsing, clamped limits,
interruptible waits, the clock skew, absurd rows."""

from __future__ import annotations

import gzip
import io
import json
import logging
import socket
import threading
import zlib
from datetime import UTC, datetime, timedelta

import pytest
import requests
from urllib3 import HTTPResponse

from crypto_data_export.core.errors import (
    BadResponseError,
    ExchangeUnavailableError,
    RedirectRefusedError,
    StopRequested,
)
from crypto_data_export.exchange.bounded import DEFAULT_BAN_SECONDS, MAX_BAN_SECONDS, ban_end, pause_seconds, read_body
from crypto_data_export.exchange.client import ExchangeClient, weight_limit_from_exchange_info
from crypto_data_export.exchange.klines import check_kline_rows, exact_page, rows_text, rows_to_frame
from crypto_data_export.exchange.limiter import MAX_WEIGHT_LIMIT, MIN_WEIGHT_LIMIT, WeightLimiter, clamp_weight_limit
from crypto_data_export.exchange.market_profiles import SPOT
from crypto_data_export.sandbox.fake_exchange import generate_candle
from tests.support import wait_until

NOW = datetime(2026, 11, 29, 5, 30, tzinfo=UTC)
URL = "http://exchange.test/api/v3/klines"


def make_client(url: str, **kwargs: object) -> ExchangeClient:
    options: dict[str, object] = {"retries": 2, "backoff": 0.0, "read_timeout": 2.0, "connect_timeout": 1.0}
    options.update(kwargs)
    return ExchangeClient(url, **options)  # type: ignore[arg-type]


def response(body: bytes, **headers: str) -> requests.Response:
    """A real Response over a real urllib3 body stream, as the session hands it over with stream=True."""
    answer = requests.Response()
    answer.status_code = 200
    answer.headers.update({k.replace("_", "-"): v for k, v in headers.items()})
    answer.raw = HTTPResponse(body=io.BytesIO(body), headers=answer.headers, preload_content=False)
    return answer


# -- bodies ---------------------------------------------------------------------------
def test_plain_and_compressed_bodies_are_decoded_under_the_cap() -> None:
    text = b'[[1,"2"]]' * 1000
    raw_deflate = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    encodings = {
        "identity": text,
        "gzip": gzip.compress(text),
        "deflate": zlib.compress(text),
        "x-gzip": gzip.compress(text),
    }
    for encoding, body in encodings.items():
        assert read_body(response(body, Content_Encoding=encoding), URL, len(text)) == text, encoding
    body = raw_deflate.compress(text) + raw_deflate.flush()  # "deflate" without its zlib header
    assert read_body(response(body, Content_Encoding="deflate"), URL, len(text)) == text


@pytest.mark.parametrize("encoding", ["identity", "gzip"])
def test_a_body_one_byte_over_the_cap_is_refused(encoding: str) -> None:
    text = b" " * 10_001
    body = gzip.compress(text) if encoding == "gzip" else text
    with pytest.raises(BadResponseError, match="larger than the 10000 bytes allowed"):
        read_body(response(body, Content_Encoding=encoding), URL, 10_000)


def test_a_gzip_bomb_is_never_inflated_beyond_the_cap() -> None:
    bomb = gzip.compress(b"\0" * (64 << 20), compresslevel=1)  # 64 MiB in ~300 KB
    answer, wire = response(b"", Content_Encoding="gzip"), io.BytesIO(bomb)
    answer.raw = HTTPResponse(body=wire, headers=answer.headers, preload_content=False)
    with pytest.raises(BadResponseError, match="larger than the 65536 bytes"):
        read_body(answer, URL, 65_536)
    # It stopped reading at the cap: inflating it all would have taken every byte off the wire.
    assert wire.tell() < len(bomb) // 2, f"read {wire.tell()} of the bomb's {len(bomb)} bytes"


def test_an_announced_length_over_the_cap_is_refused_before_reading() -> None:
    answer = response(b"[]", Content_Length="999999999999")
    with pytest.raises(BadResponseError, match="larger than"):
        read_body(answer, URL, 1000)
    assert answer.raw.tell() == 0


@pytest.mark.parametrize("encoding, body", [("gzip", b"not gzip at all"), ("br", b"x"), ("gzip, gzip", b"x")])
def test_bodies_we_cannot_decode_are_bad_answers(encoding: str, body: bytes) -> None:
    with pytest.raises(BadResponseError) as caught:
        read_body(response(body, Content_Encoding=encoding), URL, 1000)
    assert URL in str(caught.value)


def test_caps_follow_the_endpoint_and_the_page_size() -> None:
    assert SPOT.body_cap(SPOT.klines_path, {"limit": 1}) < 20_000
    assert 200_000 < SPOT.body_cap(SPOT.klines_path, {"limit": 1000}) < 2_000_000
    assert SPOT.body_cap(SPOT.exchange_info_path, {}) >= 8 << 20
    assert SPOT.body_cap(SPOT.time_path, {}) <= 64 << 10


def test_the_session_keeps_its_connection_and_asks_only_for_encodings_we_bound(sandbox) -> None:
    client = make_client(sandbox.base_url)
    for _ in range(5):
        client.klines("BTCUSDT", "1m", limit=1000)
    assert sandbox.stats.connections == 1  # bodies are read to the end: keep-alive still works
    assert client._session.headers["Accept-Encoding"] == "gzip, deflate"


def test_a_truncated_body_is_a_broken_answer_retried(sandbox_factory) -> None:
    exchange = sandbox_factory(truncate_every_n=1)
    with pytest.raises(BadResponseError, match="broken answer"):
        make_client(exchange.base_url).klines("BTCUSDT", "1h")
    assert exchange.stats.klines_calls == 3


def test_json_nested_too_deep_is_a_bad_answer_not_a_crash() -> None:
    from crypto_data_export.exchange.bounded import parse_json

    with pytest.raises(BadResponseError, match="not valid JSON"):
        parse_json(b"[" * 100_000, response(b""), URL)


# -- redirects ------------------------------------------------------------------------
def test_a_redirect_is_refused_not_followed_and_not_retried(sandbox_factory) -> None:
    other = sandbox_factory()
    exchange = sandbox_factory(redirect_to=other.base_url)
    with pytest.raises(RedirectRefusedError) as caught:
        make_client(exchange.base_url).klines("BTCUSDT", "1h")
    assert f"set BINANCE_BASE_URL={other.base_url}" in str(caught.value)
    assert len(exchange.requests) == 1 and other.requests == []


# -- waits told by the exchange ----------------------------------------------------------
@pytest.mark.parametrize(
    "header, seconds",
    [
        ("7", 7.0),
        (" 2.5 ", 2.5),
        ("0", 0.0),
        ("315360000", 300.0),
        ("inf", 300.0),
        ("1e999", 300.0),
        ("nan", 5.0),
        ("-5", 0.0),
        ("soon", 5.0),
        ("", 5.0),
        (None, 5.0),
        ("9" * 5000, 5.0),  # longer than any real header: ignored
        ("Fri, 31 Dec 9999 23:59:59 GMT", 300.0),
        ("Thu, 01 Jan 1970 00:00:00 GMT", 0.0),
    ],
)
def test_429_retry_after_is_parsed_defensively_and_capped(header: str | None, seconds: float) -> None:
    assert pause_seconds(header, default=5.0, cap=300.0) == seconds


def test_429_retry_after_as_an_http_date() -> None:
    soon = datetime.now(UTC) + timedelta(seconds=30)
    told = pause_seconds(soon.strftime("%a, %d %b %Y %H:%M:%S GMT"), default=5.0, cap=300.0)
    assert 25 <= told <= 31


BAN_MS = int((NOW + timedelta(minutes=10)).timestamp() * 1000)


@pytest.mark.parametrize(
    "header, body, seconds",
    [
        ("600", "", 600),
        ("315360000", "", MAX_BAN_SECONDS),  # ten years: Binance bans last 3 days at most
        ("inf", "", MAX_BAN_SECONDS),
        ("Fri, 31 Dec 9999 23:59:59 GMT", "", MAX_BAN_SECONDS),
        ("nan", f"IP banned until {BAN_MS}.", 600),  # meaningless header: the message says when
        ("-5", f"IP banned until {BAN_MS}.", 600),
        ("soon", "", DEFAULT_BAN_SECONDS),
        (None, "IP banned until 99999999999999.", MAX_BAN_SECONDS),  # year 5138
        (None, "IP banned until 100000000000.", DEFAULT_BAN_SECONDS),  # in the past
        ("0.2", "", 1),  # whole seconds, never less than one
    ],
)
def test_418_ban_length_is_parsed_defensively_and_capped(header: str | None, body: str, seconds: float) -> None:
    assert ban_end(header, body, NOW) == NOW + timedelta(seconds=seconds)


# -- limits ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "entry, per_minute",
    [
        ({"interval": "MINUTE", "intervalNum": 1, "limit": 6000}, 6000),
        ({"interval": "SECOND", "intervalNum": 10, "limit": 100}, 600),
        ({"interval": "MINUTE", "intervalNum": 1, "limit": 10**400}, 10**12),  # no float overflow
        ({"interval": "MINUTE", "intervalNum": "1", "limit": 6000}, None),
        ({"interval": "MINUTE", "intervalNum": -1, "limit": 6000}, None),
        ({"interval": "MINUTE", "intervalNum": 1, "limit": True}, None),
        ({"interval": ["MINUTE"], "intervalNum": 1, "limit": 6000}, None),
        ({"interval": "FORTNIGHT", "intervalNum": 1, "limit": 6000}, None),
    ],
)
def test_published_limits_are_read_defensively(entry: dict, per_minute: int | None) -> None:
    info = {"rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", **entry}]}
    assert weight_limit_from_exchange_info(info) == per_minute


@pytest.mark.parametrize("limits", [5, "x", None, [1, "a", None], {"a": 1}])
def test_garbage_rate_limits_are_ignored(limits: object) -> None:
    assert weight_limit_from_exchange_info({"rateLimits": limits}) is None


def test_a_published_limit_is_clamped_and_the_clamp_logged(sandbox_factory, caplog) -> None:
    assert clamp_weight_limit(2) == MIN_WEIGHT_LIMIT and clamp_weight_limit(10**9) == MAX_WEIGHT_LIMIT
    assert clamp_weight_limit(1200) == 1200
    exchange = sandbox_factory(published_weight_limit=2)
    client = make_client(exchange.base_url)
    with caplog.at_level(logging.WARNING, logger="crypto_data_export.exchange.client"):
        assert client.load_rate_limits("BTCUSDT") == MIN_WEIGHT_LIMIT
    assert "weight limit of 2 per minute; using 60" in caplog.text


# -- every wait ends on a stop ---------------------------------------------------------------
class StopDuringWait(threading.Event):
    """A stop flag that is set the moment a wait on it begins: a stop request arriving in the
    middle of a wait, ordered by the wait itself rather than by a timer. ``waits`` lists them."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        if timeout is None or timeout > 0:
            if self.is_set():  # fail now rather than spin through a wait that ignores the stop
                pytest.fail(f"a wait of {timeout} s began after the stop was requested")
            self.waits.append(timeout)
            self.set()
        return super().wait(timeout)


def test_a_limiter_wait_ends_at_once_when_a_stop_is_requested() -> None:
    stop = StopDuringWait()
    limiter = WeightLimiter(60, stop_event=stop)
    limiter.pause(300)  # a 429 told the pool to wait 5 minutes
    with pytest.raises(StopRequested):
        limiter.acquire(2)
    assert len(stop.waits) == 1, "the wait went on after the stop"
    with pytest.raises(StopRequested):  # once stopped, no wait even begins
        limiter.acquire(2)
    assert len(stop.waits) == 1


def test_a_limiter_that_need_not_wait_lets_the_request_go_even_when_stopping() -> None:
    stop = threading.Event()
    stop.set()
    WeightLimiter(6000, stop_event=stop).acquire(2)  # the answer in flight may still finish its symbol


def test_a_429_pause_ends_when_a_stop_is_requested(sandbox_factory) -> None:
    exchange = sandbox_factory(rate_limit_first_n=1, retry_after_header="315360000")
    stop = StopDuringWait()
    client = make_client(exchange.base_url)
    client.limiter.stop_event = stop
    with pytest.raises(StopRequested):
        client.klines("BTCUSDT", "1h")
    assert len(stop.waits) == 1, "the pause went on after the stop"
    assert [r.status for r in exchange.requests] == [429]


def test_the_retry_backoff_ends_when_a_stop_is_requested(sandbox_factory) -> None:
    exchange = sandbox_factory(fail_every_n=1, fail_status=503)
    stop = StopDuringWait()
    client = make_client(exchange.base_url, backoff=60.0)
    client.limiter.stop_event = stop  # as the export job sets it
    with pytest.raises(StopRequested):
        client.klines("BTCUSDT", "1h")
    assert stop.waits == [10.0]  # the backoff (60 s, capped at 10 s) began, and the stop ended it
    assert exchange.stats.klines_calls == 1, "a retry was sent after the stop"


def test_5xx_bodies_are_not_read_and_are_retried_by_our_loop(sandbox_factory) -> None:
    exchange = sandbox_factory(fail_every_n=2, fail_status=502)
    client = make_client(exchange.base_url)
    assert [len(client.klines("BTCUSDT", "1h", limit=3)) for _ in range(2)] == [3, 3]
    assert (exchange.stats.klines_calls, exchange.stats.failed_5xx, client.stats.retries) == (3, 1, 1)


# -- the exchange's clock -------------------------------------------------------------------
def test_sync_clock_measures_the_skew_and_warns_beyond_minutes(sandbox_factory, caplog) -> None:
    exchange = sandbox_factory(clock_offset_ms=3_600_000)
    client = make_client(exchange.base_url)
    assert client.clock_skew_seconds is None
    with caplog.at_level(logging.WARNING, logger="crypto_data_export.exchange.client"):
        client.sync_clock()
    assert client.clock_skew_seconds is not None and 3590 < client.clock_skew_seconds < 3610
    assert "the exchange's clock says" in caplog.text and "this machine's clock says" in caplog.text
    caplog.clear()
    near = sandbox_factory(clock_offset_ms=10_000)
    make_client(near.base_url).sync_clock()
    assert "clock" not in caplog.text  # ten seconds is not worth a warning


# -- absurd rows ---------------------------------------------------------------------------
GOOD_ROW = generate_candle("BTCUSDT", "1h", 1795842000000)
GOOD_PAGE, ONE_ROW = rows_text([GOOD_ROW, GOOD_ROW]).decode(), rows_text([GOOD_ROW]).decode()


@pytest.mark.parametrize(
    "index, value",
    [
        (0, 10**30),  # not an int64
        (0, -1),
        (0, True),
        (6, 300_000_000_000_000),  # after year 9999
        (8, 2**64),
        (1, 68000.5),  # a float, not the exchange's exact string
        (1, ""),
        (4, "9" * 41),
    ],
)
def test_rows_with_absurd_values_are_refused(index: int, value: object) -> None:
    check_kline_rows([GOOD_ROW])
    row = list(GOOD_ROW)
    row[index] = value
    with pytest.raises(BadResponseError, match="malformed row"):
        check_kline_rows([row])
    assert exact_page(rows_text([GOOD_ROW, row])) is None  # nor read by the exact layout's reader


@pytest.mark.parametrize(
    "body",
    [
        GOOD_PAGE,
        "[]",
        ONE_ROW.replace(",", ", "),  # spaces: valid JSON, not the exact layout
        ONE_ROW[:-2] + ',"0"]]',  # a 13th field
        ONE_ROW.replace('"0"]', "0]"),  # "ignore" a number
        ONE_ROW.replace('"', '"\\u0031', 1),  # an escape
        ONE_ROW.replace("[", "[01", 2),  # a leading zero: not JSON
        ONE_ROW.replace(str(GOOD_ROW[6]), "253402300800000"),  # after year 9999
        ONE_ROW.replace(f",{GOOD_ROW[8]},", f",{2**63},"),  # beyond int64
        ONE_ROW + " ",
    ],
)
def test_the_exact_layout_reads_what_json_and_the_row_checks_read(body: str) -> None:
    """``exact_page`` (pyarrow's CSV reader, no Python object per value) gives the table the JSON reading
    and ``check_kline_rows`` give, the text as received, or leaves the body to them (None)."""
    exact = exact_page(body.encode())
    assert (exact is not None) == (body == GOOD_PAGE)
    if exact is not None:
        assert exact[0].equals(rows_to_frame(json.loads(body))) and exact[1] == body.encode()


def test_transport_retries_end_when_a_stop_is_requested() -> None:
    """A host that refuses connections: urllib3's backoff (here 10 s) ends on the stop, and no new attempt starts."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    stop = StopDuringWait()
    client = make_client(f"http://127.0.0.1:{port}", retries=4, backoff=30.0)
    client.limiter.stop_event = stop
    with pytest.raises(StopRequested):
        client.ping()
    assert len(stop.waits) == 1, "the backoff went on after the stop"


# -- a total deadline, and a stop that ends a read under way -------------------------------------
def test_an_answer_trickling_within_each_read_timeout_ends_at_its_total_deadline(sandbox_factory) -> None:
    """A byte every 20 ms never trips a 100 ms read timeout; the whole answer has 0.4 s (connect + 3 reads)."""
    exchange = sandbox_factory(trickle_seconds=0.02)
    client = make_client(exchange.base_url, read_timeout=0.1, connect_timeout=0.1)
    with pytest.raises(ExchangeUnavailableError, match="did not send its whole answer within 0.4 s"):
        client.klines("BTCUSDT", "1h", limit=5)
    assert exchange.stats.klines_calls == 1  # cut short, not retried


def test_a_stop_ends_a_read_under_way(sandbox_factory) -> None:
    exchange = sandbox_factory(trickle_seconds=0.02)
    client = make_client(exchange.base_url, read_timeout=60.0)
    client.stop_event = client.limiter.stop_event = stop = threading.Event()  # as the export job sets them
    threading.Thread(
        target=lambda: wait_until(lambda: exchange.stats.klines_calls, "the request") and stop.set()
    ).start()
    with pytest.raises(StopRequested):
        client.klines("BTCUSDT", "1h", limit=5)
