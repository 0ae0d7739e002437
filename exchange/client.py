"""HTTP access to a Binance-compatible REST API, polite and bounded.

One ``requests.Session`` with explicit (connect, read) timeouts. Transport
failures (refused or dropped connections, read timeouts, 5xx) are retried by
urllib3's ``Retry`` with exponential backoff; answers that arrive but are not
the JSON we expect (HTML, a truncated body) are retried by our own bounded
loop, because they happen after urllib3 has handed the response over. Rate
limits are driven by the exchange (see ``rate_limiter``): 429 waits
``Retry-After`` for the whole pool, 418 raises ``IPBannedError`` carrying the
end of the ban, 451 explains which host to use instead.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from common.errors import (
    BadResponseError,
    ExchangeError,
    ExchangeUnavailableError,
    IPBannedError,
    LocationRestrictedError,
    RateLimitedError,
    RequestRejectedError,
    UnknownSymbolError,
)
from exchange.klines import check_kline_rows
from exchange.limiter import WeightLimiter
from exchange.markets import SPOT, MarketProfile

if TYPE_CHECKING:
    from config.settings import Settings

logger = logging.getLogger("export_historical_data")

USER_AGENT = "crypto-data-exporter/1.0 (+scheduled klines export)"
MAX_RATE_LIMIT_WAITS = 10
MAX_RETRY_AFTER_SECONDS = 300.0
_BANNED_UNTIL_RE = re.compile(r"banned until (\d{12,14})")


@dataclass
class ClientStats:
    """What one client did; benchmarks and the status report read it."""

    requests: int = 0
    klines_calls: int = 0
    rate_limited: int = 0
    retries: int = 0
    last_used_weight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, path: str) -> None:
        with self._lock:
            self.requests += 1
            if path.endswith("/klines"):
                self.klines_calls += 1


def build_session(retries: int, backoff: float, pool_size: int) -> requests.Session:
    """A session whose transport retries connection errors, read timeouts and 5xx."""
    retry = Retry(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        other=0,
        backoff_factor=backoff,
        backoff_max=10,
        status_forcelist=(500, 502, 503, 504),
        allowed_methods=frozenset({"GET"}),
        raise_on_status=False,
        respect_retry_after_header=False,
    )
    adapter = HTTPAdapter(max_retries=retry, pool_connections=2, pool_maxsize=max(pool_size, 4))
    session = requests.Session()
    session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


class ExchangeClient:
    """Typed, rate-limited calls to the few endpoints the exporter needs."""

    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 20.0,
        retries: int = 4,
        backoff: float = 0.5,
        pool_size: int = 16,
        limiter: WeightLimiter | None = None,
        market: MarketProfile = SPOT,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.market = market
        self.timeout = (connect_timeout, read_timeout)
        self.retries = retries
        self.backoff = backoff
        self.limiter = limiter or WeightLimiter()
        self.stats = ClientStats()
        self._sleep = sleep
        self._session = build_session(retries, backoff, pool_size)

    @classmethod
    def from_settings(cls, settings: Settings, limiter: WeightLimiter | None = None) -> ExchangeClient:
        """The one client of a process, configured from Settings."""
        return cls(
            settings.base_url,
            connect_timeout=settings.connect_timeout_seconds,
            read_timeout=settings.http_timeout_seconds,
            retries=settings.http_retries,
            backoff=settings.http_backoff_seconds,
            pool_size=settings.workers,
            limiter=limiter,
        )

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> ExchangeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- endpoints ------------------------------------------------------------
    def ping(self) -> None:
        self._get(self.market.ping_path, {}, expect=dict)

    def server_time_ms(self) -> int:
        body = self._get(self.market.time_path, {}, expect=dict)
        value = body.get("serverTime")
        if not isinstance(value, int):
            raise BadResponseError(f"{self.base_url}{self.market.time_path} answered without an integer serverTime")
        return value

    def exchange_info(self, symbol: str | None = None) -> dict[str, Any]:
        params = {"symbol": symbol} if symbol else {}
        return self._get(self.market.exchange_info_path, params, expect=dict)

    def load_rate_limits(self, symbol: str | None = None) -> int:
        """Adopt the REQUEST_WEIGHT per-minute limit the exchange publishes."""
        try:
            info = self.exchange_info(symbol)
        except UnknownSymbolError:
            info = self.exchange_info(None)
        limit = weight_limit_from_exchange_info(info)
        if limit:
            self.limiter.set_limit(limit)
        return self.limiter.limit

    def sync_clock(self) -> int:
        """Server time in ms; also aligns the limiter's minute windows with it."""
        before = time.time()
        server_ms = self.server_time_ms()
        midpoint = (before + time.time()) / 2
        self.limiter.set_server_offset(server_ms / 1000 - midpoint)
        return server_ms

    def klines(
        self,
        symbol: str,
        interval: str,
        *,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = 1000,
    ) -> list[list[Any]]:
        params: dict[str, Any] = {
            "symbol": symbol,
            "interval": interval,
            "limit": max(1, min(self.market.max_klines_limit, limit)),
        }
        if start_ms is not None:
            params["startTime"] = start_ms
        if end_ms is not None:
            params["endTime"] = end_ms
        rows: list[list[Any]] = self._get(self.market.klines_path, params, expect=list, validate=check_kline_rows)
        return rows

    # -- one request, with every failure mode handled -------------------------
    def _get(
        self,
        path: str,
        params: Mapping[str, Any],
        *,
        expect: type,
        validate: Callable[[Any], None] | None = None,
    ) -> Any:
        url = self.base_url + path
        weight = self.market.weight(path, dict(params))
        rate_limit_waits = 0
        attempt = 0
        while True:
            self.limiter.acquire(weight)
            self.stats.count(path)
            try:
                response = self._session.get(url, params=params, timeout=self.timeout)
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise ExchangeUnavailableError(_transport_message(url, exc, self.retries)) from exc
            except requests.RequestException as exc:
                error: ExchangeError = BadResponseError(
                    f"{url} sent a broken answer ({type(exc).__name__}: {_short(exc)})"
                )
            else:
                self._observe_weight(response)
                if response.status_code == 429:
                    rate_limit_waits += 1
                    self._wait_rate_limited(response, url, rate_limit_waits)
                    continue
                try:
                    return self._decode(response, url, expect, validate)
                except BadResponseError as exc:
                    error = exc
            attempt += 1
            if attempt > self.retries:
                raise error
            self.stats.retries += 1
            logger.warning("%s; retry %d of %d", error, attempt, self.retries)
            self._sleep(min(10.0, self.backoff * (2 ** (attempt - 1))))

    def _observe_weight(self, response: requests.Response) -> None:
        used = response.headers.get(self.market.used_weight_header) or response.headers.get("X-MBX-USED-WEIGHT")
        if used and used.strip().isdigit():
            self.stats.last_used_weight = int(used)
            self.limiter.observe_used_weight(int(used))

    def _wait_rate_limited(self, response: requests.Response, url: str, waits: int) -> None:
        self.stats.rate_limited += 1
        seconds = _retry_after_seconds(response, default=5.0)
        if waits > MAX_RATE_LIMIT_WAITS:
            raise RateLimitedError(
                f"{url} kept answering 429 (rate limited) after {MAX_RATE_LIMIT_WAITS} waits; "
                "another program on this IP may be using the budget"
            )
        logger.warning("rate limited by %s (HTTP 429); all requests wait %.1f s as told by Retry-After", url, seconds)
        self.limiter.pause(seconds)

    def _decode(
        self, response: requests.Response, url: str, expect: type, validate: Callable[[Any], None] | None
    ) -> Any:
        status = response.status_code
        if status == 418:
            until = _ban_end(response)
            self.limiter.ban(until)
            raise IPBannedError(until, detail=f"{url}")
        if status == 451:
            raise LocationRestrictedError(
                f"{self.base_url} refuses requests from this location (HTTP 451); set BINANCE_BASE_URL "
                "to a host that serves your region, e.g. https://api.binance.us or https://data-api.binance.vision"
            )
        if status == 403:
            raise RequestRejectedError(
                f"{url} refused the request (HTTP 403, web application firewall); wait before trying again", status
            )
        if status >= 500:
            raise ExchangeUnavailableError(
                f"{url} kept failing with HTTP {status} after {self.retries} retries; "
                "the exchange may be in maintenance"
            )
        body = _parse_json(response, url)
        if status >= 400:
            raise _rejection(body, status, url, self.market.unknown_symbol_codes)
        if status != 200 or not isinstance(body, expect):
            raise BadResponseError(f"{url} answered HTTP {status} with an unexpected {type(body).__name__} body")
        if validate is not None:
            validate(body)
        return body


# -- helpers -------------------------------------------------------------------
def weight_limit_from_exchange_info(info: Mapping[str, Any]) -> int | None:
    """The REQUEST_WEIGHT per-minute limit, normalised to one minute."""
    for limit in info.get("rateLimits", []) or []:
        if not isinstance(limit, dict) or limit.get("rateLimitType") != "REQUEST_WEIGHT":
            continue
        seconds = {"SECOND": 1, "MINUTE": 60, "DAY": 86400}.get(limit.get("interval", ""), 0)
        span = seconds * int(limit.get("intervalNum", 1) or 1)
        if span and isinstance(limit.get("limit"), int) and limit["limit"] > 0:
            return max(1, int(limit["limit"] * 60 / span))
    return None


def _parse_json(response: requests.Response, url: str) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        kind = response.headers.get("Content-Type", "unknown type")
        raise BadResponseError(
            f"{url} answered HTTP {response.status_code} with a body that is not valid JSON "
            f"({kind}, {len(response.content)} bytes)"
        ) from exc


def _rejection(body: Any, status: int, url: str, unknown_symbol_codes: frozenset[int]) -> RequestRejectedError:
    code = body.get("code") if isinstance(body, dict) else None
    msg = body.get("msg", "") if isinstance(body, dict) else str(body)[:200]
    if code in unknown_symbol_codes:
        return UnknownSymbolError(f"the exchange does not know this symbol (error {code} {msg!r})", status, code)
    return RequestRejectedError(f"{url} rejected the request: HTTP {status}, error {code} {msg!r}", status, code)


def _retry_after_seconds(response: requests.Response, default: float) -> float:
    raw = response.headers.get("Retry-After", "")
    try:
        return min(MAX_RETRY_AFTER_SECONDS, max(0.0, float(raw)))
    except ValueError:
        return default


def _ban_end(response: requests.Response) -> datetime:
    """When a 418 ban ends: Retry-After, or the epoch ms in the message.

    Rounded up to a whole second: the end is persisted with second precision
    (state.json), and a restart must never wake up a fraction of a second
    before the exchange lifts the ban (a request then extends it).
    """
    now = datetime.now(UTC)
    raw = response.headers.get("Retry-After", "")
    try:
        return _ceil_second(now + timedelta(seconds=max(1.0, float(raw))))
    except ValueError:
        pass
    match = _BANNED_UNTIL_RE.search(response.text or "")
    if match:
        return _ceil_second(datetime.fromtimestamp(int(match.group(1)) / 1000, tz=UTC))
    return _ceil_second(now + timedelta(minutes=2))  # Binance's shortest ban


def _ceil_second(moment: datetime) -> datetime:
    whole = moment.replace(microsecond=0)
    return whole if whole == moment else whole + timedelta(seconds=1)


def _transport_message(url: str, exc: Exception, retries: int) -> str:
    if isinstance(exc, requests.Timeout) or "Read timed out" in str(exc):
        what = "did not answer in time (read timeout)"
    elif "Connection refused" in str(exc):
        what = "refused the connection"
    else:
        what = f"could not be reached ({_short(exc)})"
    return f"{url.split('?')[0]} {what} after {retries} retries; check BINANCE_BASE_URL and the network"


def _short(exc: Exception) -> str:
    text = str(exc).replace("\n", " ")
    return text if len(text) <= 160 else text[:157] + "..."
