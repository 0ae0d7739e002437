"""HTTP access to a Binance-compatible REST API, polite and bounded.

Transport failures are retried by urllib3's ``Retry``, unusable answers (5xx, HTML,
truncated, oversized) by our loop; a stop request cuts either backoff short. Bodies are
capped per endpoint (``bounded``), redirects refused, rate limits taken from the exchange
within bounds (``limiter``): 429 pauses the pool (capped), 418 raises ``IPBannedError``.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Self, TypeGuard
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

import crypto_data_export.exchange.bounded as bounded
from crypto_data_export.core.clock import ms_to_iso
from crypto_data_export.core.errors import (
    BadResponseError,
    ExchangeUnavailableError,
    IPBannedError,
    LocationRestrictedError,
    RateLimitedError,
    RedirectRefusedError,
    RequestRejectedError,
    UniverseError,
    UnknownSymbolError,
)
from crypto_data_export.core.text import printable
from crypto_data_export.exchange.klines import MAX_TIME_MS, check_kline_rows, exact_page, rows_text, rows_to_frame
from crypto_data_export.exchange.limiter import (
    MAX_PAUSE_SECONDS,
    MAX_WEIGHT_LIMIT,
    MIN_WEIGHT_LIMIT,
    RAW,
    WEIGHT,
    RateLimit,
    Ticket,
    WeightLimiter,
    clamp_limit,
    clamp_weight_limit,
)
from crypto_data_export.exchange.market_profiles import MARKETS, SPOT, MarketProfile

if TYPE_CHECKING:
    import pyarrow as pa

    from crypto_data_export.settings.settings import Settings

logger = logging.getLogger(__name__)
_Check = Callable[[Any], None] | None  # refuses a JSON answer
_Exact = Callable[[bytes], Any] | None  # the answer of a body in one exact layout, checked; None for any other

USER_AGENT = "crypto-data-exporter/1.0 (+scheduled klines export)"
MAX_RATE_LIMIT_WAITS = 10
# A skew beyond this is worth a warning: the exchange's clock decides what is closed.
CLOCK_SKEW_WARNING_SECONDS = 300.0
_USED_WEIGHT_RE = re.compile(r"[0-9]{1,12}")
_BAN_BODY_CAP = 64 * 1024


@dataclass
class ClientStats:
    """What one client did; benchmarks and the status report read it."""

    requests: int = 0
    klines_calls: int = 0
    rate_limited: int = 0
    retries: int = 0
    last_used_weight: int = 0
    # The request weight this client spent by the exchange's published costs, and 418 answers.
    weight: int = 0
    banned: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, path: str, weight: int = 0) -> None:
        with self._lock:
            self.requests += 1
            self.weight += weight
            if path.endswith("/klines"):
                self.klines_calls += 1


class _RetryAfter(Exception):
    """A 429: wait ``seconds`` (already clamped), then ask again."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"rate limited for {seconds:.1f} s")
        self.seconds = seconds


class _WatchedAdapter(HTTPAdapter):
    """Its connections put their socket under the request's ``bounded.Deadline`` (through a proxy too)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = bounded.WATCHED_POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):  # SOCKS has pools of its own
            manager.pool_classes_by_scheme = bounded.WATCHED_POOLS
        return manager


class _ServerFailure(ExchangeUnavailableError):
    """A 5xx answer: retried by our loop (its body is never read)."""

    def __init__(self, url: str, status: int) -> None:
        super().__init__(f"{url} answered HTTP {status}")
        self.url, self.status = url, status


class _StoppableRetry(Retry):
    """urllib3's transport retries, waiting through ``wait``: the limiter's, which a stop request
    cuts short (StopRequested), also before a new attempt."""

    wait: Callable[[float], None] = staticmethod(time.sleep)

    def new(self, **kw: Any) -> _StoppableRetry:
        retry = super().new(**kw)
        retry.wait = self.wait
        return retry

    def increment(self, *args: Any, **kwargs: Any) -> _StoppableRetry:
        bounded.cut_short()  # a request past its deadline, or stopped, is not tried again
        self.wait(0.0)
        return super().increment(*args, **kwargs)

    def sleep(self, response: Any = None) -> None:
        self.wait(self.get_backoff_time())


def usable_server_time(value: Any) -> int | None:
    """An answer's ``serverTime`` if it is a plausible epoch-ms integer (not a bool, not past 9999), else None."""
    return value if _is_int(value) and 0 < value <= MAX_TIME_MS else None


def build_session(
    retries: int, backoff: float, pool_size: int, wait: Callable[[float], None] | None = None, *, base_url: str
) -> requests.Session:
    """A session to ``base_url`` whose transport retries connection errors and read timeouts
    (5xx: see ``_get``).

    The proxy and CA-bundle variables are read once, for this host: with ``trust_env``
    requests walks the environment and looks for ``.netrc`` on every request, the largest
    CPU cost of a small request (a public market-data API takes no credentials).
    """
    retry = _StoppableRetry(
        total=retries,
        connect=retries,
        read=retries,
        status=0,
        redirect=0,
        other=0,
        backoff_factor=backoff,
        backoff_max=10,
        allowed_methods=frozenset({"GET"}),
        raise_on_status=False,
        raise_on_redirect=False,
        respect_retry_after_header=False,
    )
    if wait is not None:
        retry.wait = wait
    adapter = _WatchedAdapter(max_retries=retry, pool_connections=2, pool_maxsize=max(pool_size, 4))
    session = requests.Session()
    # Only encodings whose inflated size we bound ourselves (crypto_data_export.exchange.bounded).
    session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json", "Accept-Encoding": "gzip, deflate"})
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.proxies.update(requests.utils.get_environ_proxies(base_url))
    if bundle := os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE"):
        session.verify = bundle
    session.trust_env = False
    return session


class SessionClient:
    """Owns one ``build_session`` session: ``with`` closes it (the exchange's client and the archive's).
    A request (with its transport retries) ends at its ``deadline``, or when ``stop_event`` is set."""

    stop_event: threading.Event | None = None

    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 20.0,
        retries: int = 4,
        backoff: float = 0.5,
        pool_size: int = 16,
        wait: Callable[[float], None] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = (connect_timeout, read_timeout)
        self.deadline_seconds = connect_timeout + 3 * read_timeout  # for a whole answer
        self.retries, self.backoff = retries, backoff
        self._session = build_session(retries, backoff, pool_size, wait, base_url=self.base_url)

    @staticmethod
    def options(settings: Settings) -> dict[str, Any]:
        """The HTTP options every client takes from Settings."""
        return {
            "connect_timeout": settings.connect_timeout_seconds,
            "read_timeout": settings.http_timeout_seconds,
            "retries": settings.http_retries,
            "backoff": settings.http_backoff_seconds,
        }

    def deadline(self, url: str) -> bounded.Deadline:
        return bounded.Deadline(self.deadline_seconds, url, self.stop_event)

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ExchangeClient(SessionClient):
    """Typed, rate-limited calls to the few endpoints the exporter needs (``options``: SessionClient's)."""

    def __init__(
        self, base_url: str, *, limiter: WeightLimiter | None = None, market: MarketProfile = SPOT, **options: Any
    ) -> None:
        self.market = market
        self.limiter = limiter or WeightLimiter()
        self.stats = ClientStats()
        # Exchange clock minus ours, in seconds, as of the last sync_clock (None before).
        self.clock_skew_seconds: float | None = None
        super().__init__(base_url, wait=self.limiter.wait, **options)
        # The pages of long windows go out here (``HistoricalDataExporter.spans_of``): as many in flight
        # as the connection pool holds, at most twice that asked for and not yet used (bounded memory).
        size = options.get("pool_size", 16)
        self.page_pool = ThreadPoolExecutor(size, thread_name_prefix="pages")
        self.page_slots = threading.Semaphore(2 * size)

    def close(self) -> None:
        self.page_pool.shutdown(cancel_futures=True)
        super().close()

    @classmethod
    def from_settings(cls, settings: Settings) -> ExchangeClient:
        """The one client of a process, configured from Settings."""
        return cls(
            settings.base_url, market=MARKETS[settings.market], pool_size=settings.workers, **cls.options(settings)
        )

    def ping(self) -> None:
        self._get(self.market.ping_path, {}, expect=dict)

    def server_time_ms(self) -> int:
        raw = self._get(self.market.time_path, {}, expect=dict).get("serverTime")
        if (value := usable_server_time(raw)) is None:
            raise BadResponseError(
                f"{self.base_url}{self.market.time_path} answered without a usable serverTime "
                f"({printable(repr(raw), 40)})"
            )
        return value

    def exchange_info(self, symbol: str | None = None) -> dict[str, Any]:
        params = {"symbol": symbol} if symbol and self.market.exchange_info_by_symbol else {}
        return self._get(self.market.exchange_info_path, params, expect=dict)

    def _exchange_info_of(self, symbol: str | None) -> dict[str, Any]:
        """exchangeInfo for ``symbol`` (small), or the whole one if the exchange does not know it."""
        try:
            return self.exchange_info(symbol)
        except UnknownSymbolError:
            return self.exchange_info(None)

    def ticker_24hr(self) -> list[Any]:
        """The 24 h ticker of every symbol (weight 80 on spot); rows are checked by the caller."""
        if not self.market.ticker_24hr_path:
            raise UniverseError(f"the {self.market.name} market has no 24 h ticker: EXPORT_TOP_N cannot be served")
        return self._get(self.market.ticker_24hr_path, {}, expect=list)

    def load_rate_limits(self, symbol: str | None = None, *, info: Mapping[str, Any] | None = None) -> int:
        """Adopt every REQUEST_WEIGHT and RAW_REQUESTS limit the exchange publishes, clamped;
        returns the weight budget per minute. ``info``: an exchangeInfo answer at hand."""
        if info is None:
            info = self._exchange_info_of(symbol)
        published = weight_limit_from_exchange_info(info)
        if published is not None and clamp_weight_limit(published) != published:
            logger.warning(
                "%s publishes a request weight limit of %d per minute; using %d instead (limits outside %d..%d are "
                "not trusted)",
                *(self.base_url, published, clamp_weight_limit(published), MIN_WEIGHT_LIMIT, MAX_WEIGHT_LIMIT),
            )
        if rates := rate_limits_from_exchange_info(info):
            self.limiter.set_limits(rates)
        return self.limiter.limit

    def sync_clock(self) -> int:
        """Server time in ms; also aligns the limiter's minute windows with it and measures the skew."""
        before = time.time()
        server_ms = self.server_time_ms()
        return self._adopt_clock(server_ms, (before + time.time()) / 2)

    def sync_clock_and_limits(self, symbol: str | None = None) -> tuple[int, int]:
        """(server time in ms, weight budget per minute) from one exchangeInfo answer (a round
        trip less before a run's first candle); /time as well if it has no usable time."""
        before = time.time()
        info = self._exchange_info_of(symbol)
        midpoint = (before + time.time()) / 2
        limit = self.load_rate_limits(info=info)
        value = usable_server_time(info.get("serverTime"))
        return (self.sync_clock() if value is None else self._adopt_clock(value, midpoint)), limit

    def _adopt_clock(self, server_ms: int, midpoint: float) -> int:
        """The exchange said ``server_ms`` at about ``midpoint`` (our epoch seconds)."""
        skew = server_ms / 1000 - midpoint
        self.clock_skew_seconds = skew
        if abs(skew) > CLOCK_SKEW_WARNING_SECONDS:
            logger.warning(
                "the exchange's clock says %s but this machine's clock says %s (%+.0f s); only the "
                "exchange's clock decides which candles are closed: check this machine's clock (NTP) "
                "and BINANCE_BASE_URL",
                *(ms_to_iso(server_ms), ms_to_iso(int(midpoint * 1000)), skew),
            )
        return server_ms

    def klines(
        self,
        symbol: str,
        interval: str,
        *,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = 1000,
        exact: _Exact = None,
    ) -> Any:
        """The rows (or ``exact``'s answer of a body it takes: ``_attempt``)."""
        params = dict(symbol=symbol, interval=interval, limit=max(1, min(self.market.max_klines_limit, limit)))
        params.update({k: v for k, v in (("startTime", start_ms), ("endTime", end_ms)) if v is not None})
        return self._get(self.market.klines_path, params, expect=list, validate=check_kline_rows, exact=exact)

    def klines_page(self, symbol: str, interval: str, start_ms: int, end_ms: int, limit: int) -> tuple[pa.Table, bytes]:
        """``klines`` as (the candle table, the answer's JSON text: as received when in Binance's exact layout)."""
        got = self.klines(symbol, interval, start_ms=start_ms, end_ms=end_ms, limit=limit, exact=exact_page)
        return got if isinstance(got, tuple) else (rows_to_frame(got), rows_text(got))

    def _get(
        self, path: str, params: Mapping[str, Any], *, expect: type, validate: _Check = None, exact: _Exact = None
    ) -> Any:
        url = self.base_url + path
        weight, cap = self.market.weight(path, dict(params)), self.market.body_cap(path, dict(params))
        rate_limit_waits = attempt = 0
        while True:
            ticket = self.limiter.acquire(weight)
            self.stats.count(path, weight)
            try:
                with self.deadline(url):
                    return self._attempt(url, params, cap, expect, validate, exact, ticket)
            except _RetryAfter as told:
                rate_limit_waits += 1
                self.stats.rate_limited += 1
                if rate_limit_waits > MAX_RATE_LIMIT_WAITS:
                    raise RateLimitedError(
                        f"{url} kept answering 429 (rate limited) after {MAX_RATE_LIMIT_WAITS} waits; "
                        "another program on this IP may be using the budget"
                    ) from None
                logger.warning(
                    "rate limited by %s (HTTP 429); all requests wait %.1f s as told by Retry-After", url, told.seconds
                )
                self.limiter.pause(told.seconds)
                continue
            except (BadResponseError, _ServerFailure) as exc:
                error: BadResponseError | _ServerFailure = exc
            finally:
                # The answer (or the failure) is back: its weight now ages out of the windows.
                self.limiter.release(ticket)
            attempt += 1
            if attempt > self.retries and isinstance(error, _ServerFailure):
                raise ExchangeUnavailableError(
                    f"{error.url} kept failing with HTTP {error.status} after {_retries(self.retries)}; "
                    "the exchange may be in maintenance"
                ) from error
            if attempt > self.retries:
                raise error
            self.stats.retries += 1
            logger.warning("%s; retry %d of %d", error, attempt, self.retries)
            self.limiter.wait(min(10.0, self.backoff * (2 ** (attempt - 1))))

    def _attempt(
        self, url: str, params: Mapping[str, Any], cap: int, expect: type, validate: _Check, exact: _Exact, sent: Ticket
    ) -> Any:
        """One request; the body is streamed (capped) and the connection released either way. ``exact``:
        the answer of a 200 body in one exact layout, checked (None for any other: JSON and ``validate``).
        ``sent`` is released once the answer's head is here (the exchange counted the request before)."""
        try:
            response = self._session.get(url, params=params, timeout=self.timeout, stream=True, allow_redirects=False)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise ExchangeUnavailableError(_transport_message(url, exc, self.retries)) from exc
        except requests.RequestException as exc:
            raise BadResponseError(f"{url} sent a broken answer ({type(exc).__name__}: {printable(exc, 160)})") from exc
        self.limiter.release(sent)
        with response:
            self._observe_weight(response)
            status = response.status_code
            if 300 <= status < 400:
                raise _redirect_refused(url, status, response.headers.get("Location"))
            if status == 429:
                raise _RetryAfter(
                    bounded.pause_seconds(response.headers.get("Retry-After"), default=5.0, cap=MAX_PAUSE_SECONDS)
                )
            if status == 418:
                self.stats.banned += 1
                until = bounded.ban_end(response.headers.get("Retry-After"), _ban_message(response, url))
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
                raise _ServerFailure(url, status)
            raw = bounded.read_body(response, url, cap)
            if status == 200 and exact is not None and (answer := exact(raw)) is not None:
                return answer
            body = bounded.parse_json(raw, response, url)
            if status >= 400:
                raise _rejection(body, status, url, self.market.unknown_symbol_codes)
            if status != 200 or not isinstance(body, expect):
                raise BadResponseError(f"{url} answered HTTP {status} with an unexpected {type(body).__name__} body")
            if validate is not None:
                validate(body)
            return body

    def _observe_weight(self, response: requests.Response) -> None:
        """Feed every ``X-MBX-USED-WEIGHT-<n><unit>`` header (names are case-insensitive) to its window."""
        seen_minute = False
        for name, value in response.headers.items():
            seconds = used_weight_header_seconds(name)
            if seconds is None or not _USED_WEIGHT_RE.fullmatch(value.strip()):
                continue
            self.limiter.observe_used_weight(int(value), seconds)
            if seconds == 60:
                seen_minute = True
                self.stats.last_used_weight = int(value)
        legacy = response.headers.get("X-MBX-USED-WEIGHT")
        if not seen_minute and legacy and _USED_WEIGHT_RE.fullmatch(legacy.strip()):
            self.stats.last_used_weight = int(legacy)
            self.limiter.observe_used_weight(int(legacy))


_RATE_LIMIT_INTERVALS = {"SECOND": 1, "MINUTE": 60, "HOUR": 3600, "DAY": 86400}


def weight_limit_from_exchange_info(info: Mapping[str, Any]) -> int | None:
    """The first usable REQUEST_WEIGHT limit, normalised to one minute (None if none is usable)."""
    for entry in _usable_limits(info):
        if entry["rateLimitType"] == WEIGHT:
            # Capped before dividing: a 400-digit "limit" must not overflow a float.
            return max(1, round(min(entry["limit"], 10**12) * 60 / _window_seconds(entry)))
    return None


def rate_limits_from_exchange_info(info: Mapping[str, Any]) -> list[RateLimit]:
    """Every usable REQUEST_WEIGHT and RAW_REQUESTS limit, each over its own window, clamped (ORDERS ignored)."""
    found: dict[tuple[str, float], RateLimit] = {}
    for entry in _usable_limits(info):
        window = _window_seconds(entry)
        rate = RateLimit(entry["rateLimitType"], window, clamp_limit(entry["limit"], window))
        key = (rate.kind, rate.seconds)
        if key not in found or rate.limit < found[key].limit:  # two limits on one window: the stricter
            found[key] = rate
    return list(found.values())


def _usable_limits(info: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The weight and raw-request entries of ``rateLimits`` with a sane window and a positive limit."""
    limits = info.get("rateLimits")
    return [
        entry
        for entry in (limits if isinstance(limits, list) else [])
        if isinstance(entry, dict)
        and entry.get("rateLimitType") in (WEIGHT, RAW)
        and _window_seconds(entry)
        and _is_int(entry.get("limit"))
        and entry["limit"] > 0
    ]


_USED_WEIGHT_HEADER = re.compile(r"x-mbx-used-weight-([0-9]{1,7})([smhd])", re.IGNORECASE)
_HEADER_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def used_weight_header_seconds(name: str) -> float | None:
    """The window of an ``X-MBX-USED-WEIGHT-<n><unit>`` header (``-1M`` -> 60), None for other headers."""
    match = _USED_WEIGHT_HEADER.fullmatch(name)
    return float(int(match[1]) * _HEADER_UNITS[match[2].lower()]) or None if match else None


def _window_seconds(entry: Mapping[str, Any]) -> float:
    """The entry's window in seconds (0 when it has no usable one)."""
    interval, count = entry.get("interval"), entry.get("intervalNum", 1)
    unit = _RATE_LIMIT_INTERVALS.get(interval, 0) if isinstance(interval, str) else 0
    return float(unit * count) if _is_int(count) and 1 <= count <= 1_000_000 else 0.0


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _ban_message(response: requests.Response, url: str) -> str:
    """The 418 body (it may say "banned until <ms>"), best effort and small."""
    try:
        return bounded.read_body(response, url, _BAN_BODY_CAP).decode("utf-8", "replace")
    except (BadResponseError, ExchangeUnavailableError):
        return ""


def _redirect_refused(url: str, status: int, location: str | None) -> RedirectRefusedError:
    try:
        parts = urlsplit((location or "").strip())
    except ValueError:
        parts = urlsplit("")
    absolute = parts.scheme.lower() in ("http", "https") and parts.netloc
    where = printable(location, 200) if location else "another place (no Location header)"
    advice = (
        f"if you trust that host, set BINANCE_BASE_URL={printable(f'{parts.scheme.lower()}://{parts.netloc}', 120)}"
        if absolute
        else "check BINANCE_BASE_URL"
    )
    return RedirectRefusedError(
        f"{url} redirected the request (HTTP {status}) to {where}; redirects are never followed: {advice}"
    )


def _rejection(body: Any, status: int, url: str, unknown_symbol_codes: frozenset[int]) -> RequestRejectedError:
    raw_code = body.get("code") if isinstance(body, dict) else None
    code = raw_code if _is_int(raw_code) and abs(raw_code) < 10**9 else None
    msg = body.get("msg", "") if isinstance(body, dict) else body
    shown = printable(msg if isinstance(msg, str) else repr(msg), 200)
    if code in unknown_symbol_codes:
        return UnknownSymbolError(f"the exchange does not know this symbol (error {code} '{shown}')", status, code)
    return RequestRejectedError(f"{url} rejected the request: HTTP {status}, error {code} '{shown}'", status, code)


def _transport_message(url: str, exc: Exception, retries: int) -> str:
    if isinstance(exc, requests.Timeout) or "Read timed out" in str(exc):
        what = "did not answer in time (read timeout)"
    elif "Connection refused" in str(exc):
        what = "refused the connection"
    else:
        what = f"could not be reached ({printable(str(exc), 160)})"
    return f"{url.split('?')[0]} {what} after {_retries(retries)}; check BINANCE_BASE_URL and the network"


def _retries(count: int) -> str:
    return "1 retry" if count == 1 else f"{count} retries"
