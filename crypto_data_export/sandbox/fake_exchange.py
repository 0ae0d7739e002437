"""A local, Binance-compatible spot REST exchange for demos, tests and benchmarks.

Why it exists: the exporter must be exercised end to end without touching the
internet, and the failures that matter in production (429 budgets, 418 bans,
5xx, truncated or HTML bodies, dropped or stalled connections, clock skew,
maintenance gaps, delisted symbols) cannot be provoked on demand against the
real exchange. This server speaks the real wire format of ``/api/v3/ping``,
``/api/v3/time``, ``/api/v3/exchangeInfo`` and ``/api/v3/klines`` (see
``shared/reference/binance-klines.md``) and can inject each fault with a knob.
The same four endpoints under ``/fapi/v1/`` are USD-M futures (klines weighed by
``limit``, up to 1500, from another price seed: ``generate_candle(..., market="usdm")``).
Under ``/data/...`` it also serves the bulk archive (``crypto_data_export.sandbox.fake_archive``: zips
and ``.CHECKSUM`` files of the same candles, knobs in ``SandboxConfig.archive``).

Candles are a pure function of ``(symbol, interval, open_ms)``, so every
request is reproducible and tests can compare files byte for byte.

Standard library only; of this project it imports only the symbol rule
(``crypto_data_export.settings.symbols``), so it accepts exactly the symbols the exporter may ask for.

    with SandboxExchange(SandboxConfig(latency_seconds=0.01)) as ex:
        requests.get(ex.base_url + "/api/v3/klines",
                     params={"symbol": "BTCUSDT", "interval": "1h"})

CLI: ``python -m crypto_data_export.sandbox --port 0`` prints one line
``sandbox exchange listening on http://127.0.0.1:PORT`` and serves until
SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import collections
import datetime as _dt
import functools
import hashlib
import json
import math
import re
import signal
import socket
import struct
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from crypto_data_export.sandbox.fake_archive import ARCHIVE_ROOT, ArchiveKnobs, SandboxArchive
from crypto_data_export.settings.symbols import SYMBOL_PATTERN

__all__ = [
    "DEFAULT_SYMBOLS",
    "INTERVALS",
    "RecordedRequest",
    "SandboxConfig",
    "SandboxExchange",
    "SandboxStats",
    "BAD_CANDLE_KINDS",
    "align_open_ms",
    "generate_candle",
    "interval_ms",
    "main",
    "next_open_ms",
]

# --------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------

DEFAULT_SYMBOLS: tuple[str, ...] = (
    "BTCUSDT",
    "ETHUSDT",
    "SOLUSDT",
    "UNIUSDT",
    "LINKUSDT",
    "DOTUSDT",
    "AVAXUSDT",
    "AAVEUSDT",
    "DOGEUSDT",
    "SHIBUSDT",
    "XRPUSDT",
    "BNBUSDT",
    "ADAUSDT",
)

_SECOND = 1000
_MINUTE = 60 * _SECOND
_HOUR = 60 * _MINUTE
_DAY = 24 * _HOUR
_WEEK = 7 * _DAY
# The epoch was a Thursday; Binance weeks open on Monday 00:00 UTC, 4 days later.
_WEEK_OFFSET = 4 * _DAY

_FIXED_INTERVALS: dict[str, int] = {
    "1s": _SECOND,
    "1m": _MINUTE,
    "3m": 3 * _MINUTE,
    "5m": 5 * _MINUTE,
    "15m": 15 * _MINUTE,
    "30m": 30 * _MINUTE,
    "1h": _HOUR,
    "2h": 2 * _HOUR,
    "4h": 4 * _HOUR,
    "6h": 6 * _HOUR,
    "8h": 8 * _HOUR,
    "12h": 12 * _HOUR,
    "1d": _DAY,
    "3d": 3 * _DAY,
    "1w": _WEEK,
}
INTERVALS: tuple[str, ...] = (*_FIXED_INTERVALS, "1M")

WEIGHTS: dict[str, int] = {
    "/api/v3/ping": 1,
    "/api/v3/time": 1,
    "/api/v3/exchangeInfo": 20,
    "/api/v3/klines": 2,
    "/api/v3/ticker/24hr": 80,  # all symbols; the sandbox serves no one-symbol ticker
}
_UNKNOWN_PATH_WEIGHT = 1
# USD-M futures: the same four endpoints under /fapi/v1, answered like the spot ones (candles
# from another price seed); klines weigh by limit and may be 1500 long.
FAPI_PATHS: dict[str, str] = {
    "/fapi/v1/ping": "/api/v3/ping",
    "/fapi/v1/time": "/api/v3/time",
    "/fapi/v1/exchangeInfo": "/api/v3/exchangeInfo",
    "/fapi/v1/klines": "/api/v3/klines",
    "/fapi/v1/ticker/24hr": "/api/v3/ticker/24hr",
}
KLINES_PATHS = frozenset({"/api/v3/klines", "/fapi/v1/klines"})
_FAPI_MAX_LIMIT = 1500


def request_weight(path: str, params: dict[str, str]) -> int:
    """What the exchange charges one request: spot by path; futures klines by ``limit``."""
    if path == "/fapi/v1/klines":
        raw = params.get("limit", "500")
        limit = int(raw) if _LEGAL_LONG.match(raw) else 500
        return 1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else 10
    if path == "/fapi/v1/ticker/24hr":
        return 40  # every symbol's futures ticker
    if path in FAPI_PATHS:
        return 1
    return WEIGHTS.get(path, _UNKNOWN_PATH_WEIGHT)


_KLINES_PARAMS = frozenset({"symbol", "interval", "startTime", "endTime", "limit", "timeZone"})
_LEGAL_SYMBOL = re.compile(r"^[A-Z0-9\-_.]{1,20}$")
_ANY_SYMBOL = SYMBOL_PATTERN  # the exporter's own rule: what it would ever ask for
_LEGAL_LONG = re.compile(r"^[0-9]{1,20}$")
_ZERO_TIMEZONE = re.compile(r"^[+-]?0{1,2}(:00)?$")
_QUOTE_ASSETS = ("FDUSD", "USDT", "USDC", "BUSD", "TUSD", "BTC", "ETH", "BNB", "EUR", "TRY")
_MICROS_THRESHOLD = 10**15  # Binance accepts µs timestamps; tell them apart by size.
_PRICE_SCALE = 10**8  # 8 decimals, as Binance spot prints them.

_JSON_TYPE = "application/json;charset=UTF-8"
_HTML_PAGE = (
    "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
    "<body><h1>502 Bad Gateway</h1><p>The upstream answered with an error page "
    "(sandbox html_every_n).</p></body></html>"
)


_MIB = 1 << 20
_SPACES_MIB = b" " * _MIB


class ApiError(Exception):
    """A Binance-style error answer: HTTP status plus the {code, msg} body."""

    def __init__(self, status: int, code: int, msg: str) -> None:
        super().__init__(msg)
        self.status, self.code, self.msg = status, code, msg


# --------------------------------------------------------------------------
# Configuration and observability records
# --------------------------------------------------------------------------


@dataclass
class SandboxConfig:
    """Behaviour knobs; the server re-reads ``exchange.config`` on every request."""

    latency_seconds: float = 0.0
    weight_limit: int = 6000
    clock_offset_ms: int = 0
    now_ms: int | None = None  # fixed server clock for deterministic tests
    info_has_server_time: bool = True  # False: exchangeInfo without serverTime (as some mirrors)
    fail_every_n: int = 0
    fail_status: int = 500
    truncate_every_n: int = 0
    truncate_json_every_n: int = 0
    html_every_n: int = 0
    drop_every_n: int = 0
    stall_every_n: int = 0
    rate_limit_first_n: int = 0
    retry_after_seconds: int = 1
    ban_seconds: int = 0
    ban_after_n: int = 0
    extra_symbols: tuple[str, ...] = ()
    accept_any_symbol: bool = False
    unknown_symbols: frozenset[str] = frozenset()
    delisted: dict[str, int] = field(default_factory=dict)
    gaps: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    listing_ms: int = 1483228800000  # 2017-01-01 00:00 UTC
    # Hostile answers (tests of the exporter's bounds):
    published_weight_limit: int | None = None  # exchangeInfo publishes this; weight_limit is still enforced
    retry_after_header: str | None = None  # sent verbatim as Retry-After on every 429 and 418
    redirect_to: str = ""  # every request answered 302 to this base URL (+ the same path and query)
    gzip_bomb_mb: int = 0  # klines: a small gzip body that inflates to this many MiB
    huge_body_mb: int = 0  # klines: a body of this many MiB, no Content-Length, streamed
    trickle_seconds: float = 0.0  # klines: the answer comes one byte every this many seconds (also ArchiveKnobs)
    row_step_ms: int = 0  # klines: rows this many ms apart (off the interval grid)
    hold_klines: tuple[int, int] | None = None  # klines with a startTime in [from, to): unanswered until cleared
    fail_msg: str | None = None  # the msg of fail_every_n answers
    extra_headers: dict[str, str] = field(default_factory=dict)  # added to (or replacing) every answer's headers
    # symbol -> a fault in the newest candle of every klines answer for it (see BAD_CANDLE_KINDS)
    bad_candles: dict[str, str] = field(default_factory=dict)
    # (symbol, interval, open_ms, field index) -> text: the exchange corrected a candle after serving it
    # (its klines and its archive serve the new value from then on)
    corrections: dict[tuple[str, str, int, int], str] = field(default_factory=dict)
    archive: ArchiveKnobs = field(default_factory=ArchiveKnobs)  # the bulk archive under /data/
    # How weight is counted: "fixed" (a calendar window of the server clock, as Binance documents)
    # or "sliding" (the weight that arrived in the last weight_window_seconds of real time, the
    # strictest reading). exchangeInfo publishes the window (MINUTE 1 for 60, else SECOND n).
    weight_window: str = "fixed"
    weight_window_seconds: int = 60
    weight_headers: bool = True  # False: no X-MBX-USED-WEIGHT headers (some exchanges send none)
    # A symbol universe (/api/v3/ticker/24hr and exchangeInfo's status):
    symbol_status: dict[str, str] = field(default_factory=dict)  # exchangeInfo status (HALT, BREAK); klines unchanged
    quote_volumes: dict[str, str] = field(default_factory=dict)  # 24 h quoteVolume text (default: from the hash)
    ticker_extra_rows: list[Any] = field(default_factory=list)  # appended verbatim to the 24 h ticker (malformed rows)


@dataclass(frozen=True)
class RecordedRequest:
    """One answered (or deliberately unanswered, status 0) request; times are at arrival."""

    path: str
    params: dict[str, str]
    status: int
    monotonic_ms: float
    wall_ms: int
    server_ms: int


@dataclass
class SandboxStats:
    """Counters since start or the last ``reset_log()``."""

    total: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    klines_calls: int = 0
    rate_limited_429: int = 0
    injected_429: int = 0
    banned_418: int = 0
    failed_5xx: int = 0
    truncated: int = 0
    truncated_json: int = 0
    html: int = 0
    dropped: int = 0
    stalled: int = 0
    connections: int = 0
    max_used_weight_seen: int = 0


# --------------------------------------------------------------------------
# Interval arithmetic
# --------------------------------------------------------------------------


def interval_ms(interval: str) -> int:
    """Length of a fixed-length interval in ms; ``1M`` has none and raises."""
    try:
        return _FIXED_INTERVALS[interval]
    except KeyError:
        raise ValueError(f"no fixed length for interval {interval!r}") from None


def _month_index(t_ms: int) -> int:
    day = _dt.date(1970, 1, 1) + _dt.timedelta(days=t_ms // _DAY)
    return (day.year - 1970) * 12 + day.month - 1


def _month_open(index: int) -> int:
    year, month = divmod(index, 12)
    return (_dt.date(1970 + year, month + 1, 1) - _dt.date(1970, 1, 1)).days * _DAY


def align_open_ms(interval: str, t_ms: int) -> int:
    """Open time of the candle containing ``t_ms`` (Binance UTC alignment)."""
    if interval == "1M":
        return _month_open(_month_index(t_ms))
    step = interval_ms(interval)
    offset = _WEEK_OFFSET if interval == "1w" else 0
    return (t_ms - offset) // step * step + offset


def next_open_ms(interval: str, open_ms: int) -> int:
    """Open time of the candle after the one opening at ``open_ms``."""
    if interval == "1M":
        return _month_open(_month_index(open_ms) + 1)
    return open_ms + interval_ms(interval)


def _prev_open_ms(interval: str, open_ms: int) -> int:
    return align_open_ms(interval, open_ms - 1)


def _align_up(interval: str, t_ms: int) -> int:
    start = align_open_ms(interval, t_ms)
    return start if start == t_ms else next_open_ms(interval, start)


# --------------------------------------------------------------------------
# Deterministic candles
# --------------------------------------------------------------------------


def _hash_units(*parts: object) -> tuple[float, float, float, float]:
    """Four uniform numbers in [0, 1) from a stable hash (not Python's salted hash)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=16).digest()
    return tuple(x / 2**32 for x in struct.unpack("<4I", digest))


_ANCHOR_PRICES = {"BTCUSDT": 60000.0, "ETHUSDT": 3000.0, "BNBUSDT": 550.0, "SOLUSDT": 150.0}
_SYMBOL_CACHE: dict[str, tuple[float, float, tuple[float, ...]]] = {}


def _symbol_profile(symbol: str) -> tuple[float, float, tuple[float, ...]]:
    """(base price, quote volume per minute, phases), derived from the symbol's hash."""
    profile = _SYMBOL_CACHE.get(symbol)
    if profile is None:
        u = _hash_units("profile", symbol)
        # log-uniform spread 0.00001 .. 5000 for anything without a realistic anchor
        base = _ANCHOR_PRICES.get(symbol) or 10 ** (-5 + u[0] * math.log10(5000 / 1e-5))
        per_minute = 10 ** (3.5 + 2.5 * u[1])
        if symbol == "BTCUSDT":
            per_minute = 1.5e6
        phases = tuple(2 * math.pi * x for x in _hash_units("phase", symbol)[:3])
        profile = (base, per_minute, phases)
        _SYMBOL_CACHE[symbol] = profile
    return profile


@functools.lru_cache(maxsize=1 << 16)  # each boundary is both a close and the next open
def _price_units(symbol: str, t_ms: int) -> int:
    """Price at instant ``t_ms`` in 1e-8 units: slow waves plus a little hash noise.

    A function of the instant alone, so a candle's close equals the next open
    and all intervals agree on the price at a shared boundary.
    """
    base, _, (p1, p2, p3) = _symbol_profile(symbol)
    wave = (
        0.25 * math.sin(2 * math.pi * t_ms / (180 * _DAY) + p1)
        + 0.06 * math.sin(2 * math.pi * t_ms / (9 * _DAY) + p2)
        + 0.015 * math.sin(2 * math.pi * t_ms / (7 * _HOUR) + p3)
    )
    noise = 0.003 * (2 * _hash_units("tick", symbol, t_ms)[0] - 1)
    return max(1, round(base * math.exp(wave + noise) * _PRICE_SCALE))


def sandbox_quote_volume(symbol: str) -> str:
    """A symbol's default 24 h quote volume: a day of its per-minute volume, 8 decimals."""
    _, per_minute, _ = _symbol_profile(symbol)
    return _fmt(round(per_minute * 1440 * _PRICE_SCALE))


def _fmt(units: int) -> str:
    """Exact 8-decimal string of a non-negative amount in 1e-8 units."""
    whole, frac = divmod(units, _PRICE_SCALE)
    return f"{whole}.{frac:08d}"


def _held(hold: tuple[int, int] | None, params: dict[str, str]) -> bool:
    start = params.get("startTime", "")
    return hold is not None and start.isdigit() and hold[0] <= int(start) < hold[1]


def generate_candle(symbol: str, interval: str, open_ms: int, market: str = "spot") -> list[Any]:
    """The 12-field Binance kline row for this candle; a pure function of its args.

    Integer arithmetic in 1e-8 units keeps every string exact and guarantees
    high >= max(open, close), low <= min(open, close), taker <= total.
    Another market than spot trades the symbol at other prices (its own seed).
    """
    if market != "spot":
        symbol = f"{symbol}@{market}"
    close_next = next_open_ms(interval, open_ms)
    length = close_next - open_ms
    open_u = _price_units(symbol, open_ms)
    close_u = _price_units(symbol, close_next)
    u = _hash_units("candle", symbol, interval, open_ms)
    wick = min(0.08, 0.001 * math.sqrt(length / _MINUTE))
    high_u = max(open_u, close_u) + math.ceil(max(open_u, close_u) * wick * u[0])
    low_u = max(0, min(open_u, close_u) - math.floor(min(open_u, close_u) * wick * u[1]))
    vwap_u = low_u + int((high_u - low_u) * (0.25 + 0.5 * u[2]))
    _, per_minute, _ = _symbol_profile(symbol)
    quote_target = per_minute * (length / _MINUTE) * (0.4 + 1.2 * u[3])
    volume_u = int(quote_target * _PRICE_SCALE * _PRICE_SCALE / max(vwap_u, 1))  # base units
    quote_u = volume_u * vwap_u // _PRICE_SCALE
    taker_share = 350 + int(300 * u[2] * u[3])  # 35..65 % of the volume, in per mille
    taker_base_u = volume_u * taker_share // 1000
    taker_quote_u = taker_base_u * vwap_u // _PRICE_SCALE
    trades = int(quote_target / (40 + 400 * u[1]))
    return [
        open_ms,
        _fmt(open_u),
        _fmt(high_u),
        _fmt(low_u),
        _fmt(close_u),
        _fmt(volume_u),
        close_next - 1,
        _fmt(quote_u),
        trades,
        _fmt(taker_base_u),
        _fmt(taker_quote_u),
        "0",
    ]


# --------------------------------------------------------------------------
# Candle selection (the klines query semantics)
# --------------------------------------------------------------------------


# How ``SandboxConfig.bad_candles`` spoils a candle: each breaks one rule of a valid export.
BAD_CANDLE_KINDS: tuple[str, ...] = ("high_below_low", "nan", "off_grid")


def spoil_candle(row: list[Any], kind: str) -> list[Any]:
    """A copy of a kline row with one fault of ``kind``."""
    row = list(row)
    if kind == "high_below_low":
        row[2], row[3] = row[3], row[2]
    elif kind == "nan":
        row[4] = "NaN"
    elif kind == "off_grid":  # a second early: before the grid, yet still inside any window asked for
        row[0], row[6] = row[0] - _SECOND, row[6] - _SECOND
    else:
        raise ValueError(f"unknown bad candle kind {kind!r}; one of {', '.join(BAD_CANDLE_KINDS)}")
    return row


def _gap_containing(gaps: list[tuple[int, int]], open_ms: int) -> tuple[int, int] | None:
    for start, end in gaps:
        if start <= open_ms < end:
            return start, end
    return None


def _ascending(interval: str, first: int, last: int, gaps: list[tuple[int, int]]) -> Iterator[int]:
    t = first
    while t <= last:
        gap = _gap_containing(gaps, t)
        if gap is None:
            yield t
            t = next_open_ms(interval, t)
        else:  # jump over the whole gap at once: gaps of 1s candles can be huge
            t = _align_up(interval, gap[1])


def _descending(interval: str, last: int, first: int, gaps: list[tuple[int, int]]) -> Iterator[int]:
    t = last
    while t >= first:
        gap = _gap_containing(gaps, t)
        if gap is None:
            yield t
            t = _prev_open_ms(interval, t)
        else:
            t = align_open_ms(interval, gap[0] - 1)


def select_open_times(
    interval: str,
    *,
    first_ms: int,
    last_ms: int,
    start: int | None,
    end: int | None,
    limit: int,
    gaps: list[tuple[int, int]],
) -> list[int]:
    """Open times Binance would return, ascending.

    ``first_ms``/``last_ms`` bound the candles that exist (listing .. current or
    delisting); startTime is inclusive and never snapped back, endTime is
    inclusive on open time; without startTime the newest ``limit`` are taken.
    """
    lo = first_ms if start is None else max(first_ms, _align_up(interval, start))
    hi = last_ms if end is None else min(last_ms, align_open_ms(interval, end))
    if lo > hi:
        return []
    if start is not None:
        walk = _ascending(interval, lo, hi, gaps)
        return [t for t, _ in zip(walk, range(limit), strict=False)]
    walk = _descending(interval, hi, lo, gaps)
    return [t for t, _ in zip(walk, range(limit), strict=False)][::-1]


# --------------------------------------------------------------------------
# The exchange: state, accounting and request handling
# --------------------------------------------------------------------------


@dataclass
class _Answer:
    """What the handler should put on the wire."""

    status: int
    body: bytes = b""
    content_type: str = _JSON_TYPE
    headers: dict[str, str] = field(default_factory=dict)
    mode: str = "normal"  # normal | truncate | drop | stall | huge | trickle
    huge_bytes: int = 0  # mode "huge": the body's size, streamed without Content-Length
    pace: float = 0.0  # mode "trickle": seconds between two bytes


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _error(status: int, code: int, msg: str, headers: dict[str, str] | None = None) -> _Answer:
    return _Answer(status, _json_bytes({"code": code, "msg": msg}), headers=headers or {})


def _too_much_weight(limit: int) -> str:
    return (
        f"Too much request weight used; current limit is {limit} request weight per "
        "1 MINUTE. Please use WebSocket Streams for live updates to avoid polling the API."
    )


def _ceil_seconds(ms: int) -> int:
    return max(1, -(-ms // 1000))


def _weight_rate_limit(seconds: int, limit: int) -> dict[str, Any]:
    """The REQUEST_WEIGHT entry of exchangeInfo for a window of ``seconds``."""
    interval, count = ("MINUTE", 1) if seconds == 60 else ("SECOND", seconds)
    return {"rateLimitType": "REQUEST_WEIGHT", "interval": interval, "intervalNum": count, "limit": limit}


def _retry_after(cfg: SandboxConfig, seconds: int) -> str:
    return str(seconds) if cfg.retry_after_header is None else cfg.retry_after_header


@functools.lru_cache(maxsize=4)
def _gzip_bomb(mebibytes: int) -> bytes:
    """A valid gzip stream of ``[``, ``mebibytes`` MiB of spaces and ``]``, about 1 KB per MiB.

    Built in well under a second: after a full flush the compressor's state is
    the same before every MiB of spaces, so one compressed MiB is repeated.
    """
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    head = packer.compress(b"[") + packer.flush(zlib.Z_FULL_FLUSH)
    block = packer.compress(_SPACES_MIB) + packer.flush(zlib.Z_FULL_FLUSH)
    tail = packer.compress(b"]") + packer.flush()
    crc = zlib.crc32(b"[")
    for _ in range(mebibytes):
        crc = zlib.crc32(_SPACES_MIB, crc)
    crc = zlib.crc32(b"]", crc)
    size = (mebibytes * _MIB + 2) & 0xFFFFFFFF
    # The compressor's own trailer counts what it saw; the body holds ``mebibytes`` blocks.
    return head + block * mebibytes + tail[:-8] + struct.pack("<II", crc, size)


def _split_symbol(symbol: str) -> tuple[str, str]:
    for quote in _QUOTE_ASSETS:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)], quote
    return symbol[:-4] or symbol, symbol[-4:]


class SandboxExchange:
    """A Binance-compatible spot REST server on a background thread."""

    def __init__(self, config: SandboxConfig | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config or SandboxConfig()
        self.host, self.port = host, port
        self.requests: list[RecordedRequest] = []
        self._log_since_ms = 0.0  # requests that arrived before are not recorded (reset_log)
        self.stats = SandboxStats()
        self.banned_until_ms: int | None = None
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._weight_window = -1
        self._weight_used = 0
        self._sliding: collections.deque[tuple[float, int]] = collections.deque()  # (monotonic s, weight)
        self._ban_key: tuple[int, int, int] | None = None
        self._server: _SandboxHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.archive = SandboxArchive(self._archive_rows)

    # ---- lifecycle -------------------------------------------------------

    def start(self) -> SandboxExchange:
        """Bind (port 0 = OS-chosen) and serve on a daemon thread."""
        if self._server is not None:
            return self
        self._stop_event.clear()
        self._server = _SandboxHTTPServer((self.host, self.port), _Handler, self)
        self.port = self._server.server_address[1]
        # A short poll interval so stop() does not wait half a second.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="sandbox-exchange", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, release stalled handlers, close every socket."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stop_event.set()  # wakes stalled and sleeping handlers first
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=1)

    def __enter__(self) -> SandboxExchange:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # ---- observability -----------------------------------------------------

    def reset_log(self) -> None:
        """Forget recorded requests and counters (fault 'every Nth' counts restart); a request that
        arrived before (a stopped client's, answered later) is not recorded after."""
        with self._lock:
            self.requests.clear()
            self.stats = SandboxStats()
            self._log_since_ms = time.monotonic() * 1000

    def reset_weight(self) -> None:
        """Empty the current weight window (e.g. between benchmark rounds)."""
        with self._lock:
            self._weight_used = 0
            self._sliding.clear()

    def clear_ban(self) -> None:
        """Lift a running ban; a ban knob still set re-arms only if changed."""
        with self._lock:
            self.banned_until_ms = None

    def klines_requests(self, symbol: str | None = None, *, path: str = "/api/v3/klines") -> list[dict[str, int | str]]:
        """Params of recorded klines requests (of ``path``: /fapi/v1/klines for futures),
        numbers as ints, optionally for one symbol."""
        with self._lock:
            records = [r for r in self.requests if r.path == path]
        parsed = [{k: int(v) if _LEGAL_LONG.match(v) else v for k, v in r.params.items()} for r in records]
        return [p for p in parsed if symbol is None or p.get("symbol") == symbol]

    def used_weight(self) -> int:
        """Weight used in the current minute window of the server clock."""
        with self._lock:
            if self.config.weight_window == "sliding":
                return self._slide(self.config)
            window = self.now_ms() // (self.config.weight_window_seconds * _SECOND)
            return self._weight_used if window == self._weight_window else 0

    def now_ms(self) -> int:
        """The server clock: the fixed override, or local time plus the offset."""
        cfg = self.config
        if cfg.now_ms is not None:
            return cfg.now_ms
        return int(time.time() * 1000) + cfg.clock_offset_ms

    # ---- symbols --------------------------------------------------------------

    def known_symbols(self) -> list[str]:
        """Symbols listed by exchangeInfo without parameters."""
        cfg = self.config
        names = dict.fromkeys((*DEFAULT_SYMBOLS, *cfg.extra_symbols, *cfg.delisted))
        return [s for s in names if s not in cfg.unknown_symbols]

    def is_known(self, symbol: str) -> bool:
        cfg = self.config
        if symbol in cfg.unknown_symbols:
            return False
        if symbol in DEFAULT_SYMBOLS or symbol in cfg.extra_symbols or symbol in cfg.delisted:
            return True
        return cfg.accept_any_symbol and bool(_ANY_SYMBOL.match(symbol))

    # ---- request pipeline -----------------------------------------------------

    def _count_status(self, status: int) -> None:
        self.stats.by_status[status] = self.stats.by_status.get(status, 0) + 1

    def _record(self, path: str, params: dict[str, str], status: int, arrival: tuple[float, int, int]) -> None:
        """Log one request with its arrival times (monotonic, wall, server clock)."""
        with self._lock:
            if arrival[0] < self._log_since_ms:
                return
            self.requests.append(RecordedRequest(path, params, status, *arrival))
            self._count_status(status)

    def _weight_headers(self) -> dict[str, str]:
        if not self.config.weight_headers:
            return {}
        used = str(self._weight_used)
        seconds = self.config.weight_window_seconds
        name = "X-MBX-USED-WEIGHT-1M" if seconds == 60 else f"X-MBX-USED-WEIGHT-{seconds}S"
        return {name: used, "X-MBX-USED-WEIGHT": used}

    def _slide(self, cfg: SandboxConfig) -> int:
        """Drop sends older than the sliding window; the weight left in it (under the lock)."""
        horizon = time.monotonic() - cfg.weight_window_seconds
        while self._sliding and self._sliding[0][0] <= horizon:
            self._sliding.popleft()
        self._weight_used = sum(w for _, w in self._sliding)
        return self._weight_used

    def _sliding_retry_after(self, cfg: SandboxConfig, weight: int) -> int:
        """Whole seconds until ``weight`` fits in the sliding window again."""
        excess, now = self._weight_used + weight - cfg.weight_limit, time.monotonic()
        for sent, w in self._sliding:
            excess -= w
            if excess <= 0:
                return max(1, math.ceil(sent + cfg.weight_window_seconds - now))
        return max(1, cfg.weight_window_seconds)

    def _maybe_start_ban(self, cfg: SandboxConfig, now: int, klines_n: int | None) -> None:
        """Start a ban once per knob setting (identity of config + values)."""
        if cfg.ban_seconds <= 0:
            self._ban_key = None
            return
        key = (id(cfg), cfg.ban_seconds, cfg.ban_after_n)
        if self._ban_key == key:
            return
        if cfg.ban_after_n > 0 and (klines_n is None or klines_n < cfg.ban_after_n):
            return
        self._ban_key = key
        self.banned_until_ms = now + cfg.ban_seconds * 1000

    def _admit(
        self, cfg: SandboxConfig, path: str, now: int, params: dict[str, str] | None = None
    ) -> tuple[_Answer | None, int | None]:
        """Gatekeeping under the lock: ban, injected 429, weight budget.

        Returns (refusal or None, klines sequence number or None).
        """
        with self._lock:
            self.stats.total += 1
            klines_n = None
            if path in KLINES_PATHS:
                self.stats.klines_calls += 1
                klines_n = self.stats.klines_calls
            span_ms = cfg.weight_window_seconds * _SECOND
            window = now // span_ms
            sliding = cfg.weight_window == "sliding"
            if sliding:
                self._slide(cfg)
            elif window != self._weight_window:  # fixed calendar-minute window
                self._weight_window, self._weight_used = window, 0
            self._maybe_start_ban(cfg, now, klines_n)
            if self.banned_until_ms is not None and now < self.banned_until_ms:
                self.stats.banned_418 += 1
                return self._ban_answer(now), klines_n
            if self.stats.injected_429 < cfg.rate_limit_first_n:
                self.stats.injected_429 += 1
                headers = {"Retry-After": _retry_after(cfg, int(cfg.retry_after_seconds)), **self._weight_headers()}
                return _error(429, -1003, _too_much_weight(cfg.weight_limit), headers), klines_n
            weight = request_weight(path, params or {})
            if self._weight_used + weight > cfg.weight_limit:
                self.stats.rate_limited_429 += 1
                retry = (
                    self._sliding_retry_after(cfg, weight) if sliding else _ceil_seconds((window + 1) * span_ms - now)
                )
                headers = {"Retry-After": _retry_after(cfg, retry), **self._weight_headers()}
                return _error(429, -1003, _too_much_weight(cfg.weight_limit), headers), klines_n
            self._weight_used += weight
            if sliding:
                self._sliding.append((time.monotonic(), weight))
            self.stats.max_used_weight_seen = max(self.stats.max_used_weight_seen, self._weight_used)
            return None, klines_n

    def _ban_answer(self, now: int) -> _Answer:
        until = self.banned_until_ms or now
        msg = (
            f"Way too much request weight used; IP banned until {until}. "
            "Please use WebSocket Streams for live updates to avoid bans."
        )
        retry = _retry_after(self.config, _ceil_seconds(until - now))
        headers = {"Retry-After": retry, **self._weight_headers()}
        return _error(418, -1003, msg, headers)

    def _weight_now(self) -> dict[str, str]:
        with self._lock:
            return self._weight_headers()

    def handle(self, path: str, query: str) -> tuple[_Answer, dict[str, str]]:
        """Full pipeline for one request, except the wire work (done by the handler)."""
        cfg = self.config
        now = self.now_ms()
        pairs = parse_qsl(query, keep_blank_values=True)
        params = dict(pairs)
        if path.startswith(ARCHIVE_ROOT):  # the bulk archive is a CDN: no weight, no klines faults
            return self._archive_answer(cfg, path, now), params
        refusal, klines_n = self._admit(cfg, path, now, params)
        if cfg.latency_seconds > 0:
            # Outside any lock, so concurrent clients overlap; stop() cuts it short.
            self._stop_event.wait(cfg.latency_seconds)
        while klines_n is not None and _held(self.config.hold_klines, params) and not self._stop_event.wait(0.01):
            pass  # a held page: answered once the test clears the knob (or the server stops)
        if refusal is not None:
            return refusal, params
        if cfg.redirect_to:
            location = cfg.redirect_to.rstrip("/") + path + (f"?{query}" if query else "")
            return _Answer(302, headers={"Location": location, **cfg.extra_headers}), params
        try:
            answer = self._route(cfg, path, pairs, params, now)
        except ApiError as exc:
            answer = _error(exc.status, exc.code, exc.msg)
        except Exception:  # a bug here must still produce an answer, not a hang
            answer = _error(500, -1000, "An unknown error occurred while processing the request.")
        if klines_n is not None:
            answer = self._inject_fault(cfg, klines_n, answer)
        answer.headers.update(self._weight_now())
        answer.headers.update(cfg.extra_headers)
        return answer, params

    def _route(
        self, cfg: SandboxConfig, path: str, pairs: list[tuple[str, str]], params: dict[str, str], now: int
    ) -> _Answer:
        market = "usdm" if path in FAPI_PATHS else "spot"
        if market != "spot":
            path = FAPI_PATHS[path]
            if path == "/api/v3/exchangeInfo":
                params = {}  # futures answer for every symbol, whatever is asked
        if path == "/api/v3/ping":
            return _Answer(200, b"{}")
        if path == "/api/v3/time":
            return _Answer(200, _json_bytes({"serverTime": now}))
        if path == "/api/v3/exchangeInfo":
            return _Answer(200, _json_bytes(self._exchange_info(cfg, params, now)))
        if path == "/api/v3/klines":
            return _Answer(200, _json_bytes(self._klines(cfg, pairs, params, now, market)))
        if path == "/api/v3/ticker/24hr":
            return _Answer(200, _json_bytes(self._ticker_24hr(cfg, params, now)))
        return _error(404, -1000, f"Unknown path {path}.")

    def _archive_answer(self, cfg: SandboxConfig, path: str, now: int) -> _Answer:
        if cfg.latency_seconds > 0:
            self._stop_event.wait(cfg.latency_seconds)
        generation = (id(cfg), frozenset(cfg.corrections.items()))  # a correction builds the zip anew
        status, body, content_type = self.archive.answer(path, cfg.archive, now, generation=generation)
        pace = cfg.archive.trickle_seconds if path.rsplit("/", 1)[-1] in cfg.archive.trickle else 0.0
        return _Answer(status, body, content_type, mode="trickle" if pace else "normal", pace=pace)

    def _archive_rows(
        self, symbol: str, interval: str, start_ms: int, end_ms: int, market: str = "spot"
    ) -> list[list[Any]] | None:
        """The candles opening in [start, end) that the market's klines would serve (listing, gaps, delisting)."""
        cfg = self.config
        if interval not in INTERVALS or not self.is_known(symbol):
            return None
        last_instant = end_ms - 1
        if symbol in cfg.delisted:
            last_instant = min(last_instant, cfg.delisted[symbol] - 1)
        first = max(_align_up(interval, start_ms), align_open_ms(interval, cfg.listing_ms))
        opens = _ascending(interval, first, align_open_ms(interval, last_instant), list(cfg.gaps.get(symbol, ())))
        return [_corrected(cfg, symbol, interval, generate_candle(symbol, interval, t, market)) for t in opens]

    def _inject_fault(self, cfg: SandboxConfig, n: int, answer: _Answer) -> _Answer:
        """Apply the 'every Nth klines request' faults, most disruptive first."""

        def hit(every: int) -> bool:
            return every > 0 and n % every == 0

        stat = None
        if hit(cfg.drop_every_n):
            answer, stat = _Answer(0, mode="drop"), "dropped"
        elif hit(cfg.stall_every_n):
            answer, stat = _Answer(0, mode="stall"), "stalled"
        elif hit(cfg.fail_every_n):
            msg = cfg.fail_msg or "Internal error; unable to process your request. Please try again."
            answer = _error(cfg.fail_status, -1001, msg)
            stat = "failed_5xx"
        elif hit(cfg.truncate_every_n):
            answer.status, answer.mode, stat = 200, "truncate", "truncated"
        elif hit(cfg.truncate_json_every_n):
            answer = _Answer(200, answer.body[: max(1, len(answer.body) // 2)])
            stat = "truncated_json"
        elif hit(cfg.html_every_n):
            answer = _Answer(200, _HTML_PAGE.encode(), "text/html")
            stat = "html"
        if stat is not None:
            with self._lock:
                setattr(self.stats, stat, getattr(self.stats, stat) + 1)
        if cfg.trickle_seconds > 0 and answer.mode == "normal":
            answer.mode, answer.pace = "trickle", cfg.trickle_seconds
        if cfg.gzip_bomb_mb > 0:
            answer = _Answer(200, _gzip_bomb(cfg.gzip_bomb_mb), headers={"Content-Encoding": "gzip"})
        elif cfg.huge_body_mb > 0:
            answer = _Answer(200, mode="huge", huge_bytes=cfg.huge_body_mb * _MIB)
        return answer

    # ---- endpoints ----------------------------------------------------------------

    def _symbol_info(self, cfg: SandboxConfig, symbol: str) -> dict[str, Any]:
        base, quote = _split_symbol(symbol)
        return {
            "symbol": symbol,
            "status": cfg.symbol_status.get(symbol) or ("BREAK" if symbol in cfg.delisted else "TRADING"),
            "baseAsset": base,
            "baseAssetPrecision": 8,
            "quoteAsset": quote,
            "quotePrecision": 8,
            "quoteAssetPrecision": 8,
            "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"],
            "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False,
            "filters": [
                {
                    "filterType": "PRICE_FILTER",
                    "minPrice": "0.00000001",
                    "maxPrice": "1000000.00000000",
                    "tickSize": "0.00000001",
                }
            ],
            "permissions": [],
            "permissionSets": [["SPOT"]],
        }

    def _exchange_info(self, cfg: SandboxConfig, params: dict[str, str], now: int) -> dict[str, Any]:
        if "symbol" in params:
            names = [params["symbol"]]
        elif "symbols" in params:
            try:
                names = [str(s) for s in json.loads(params["symbols"])]
            except (ValueError, TypeError):
                raise ApiError(400, -1100, "Illegal characters found in parameter 'symbols'.") from None
        else:
            names = self.known_symbols()
        for name in names:
            if not self.is_known(name):
                raise ApiError(400, -1121, "Invalid symbol.")
        symbols = [self._symbol_info(cfg, s) for s in names]
        published = cfg.weight_limit if cfg.published_weight_limit is None else cfg.published_weight_limit
        if params.get("symbolStatus"):
            symbols = [s for s in symbols if s["status"] == params["symbolStatus"]]
        info: dict[str, Any] = {
            "timezone": "UTC",
            "serverTime": now,
            "rateLimits": [
                _weight_rate_limit(cfg.weight_window_seconds, published),
                {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 300000},
            ],
            "exchangeFilters": [],
            "symbols": symbols,
        }
        if not cfg.info_has_server_time:
            del info["serverTime"]
        return info

    def _ticker_24hr(self, cfg: SandboxConfig, params: dict[str, str], now: int) -> list[Any]:
        """Every listed symbol's 24 h statistics (quoteVolume: the knob, else deterministic by symbol)."""
        if "symbol" in params or "symbols" in params:
            raise ApiError(400, -1101, "The sandbox serves the 24hr ticker of all symbols only.")
        rows: list[Any] = [
            {
                "symbol": symbol,
                "lastPrice": _fmt(_price_units(symbol, now)),
                "volume": "0.00000000",
                "quoteVolume": cfg.quote_volumes.get(symbol) or sandbox_quote_volume(symbol),
                "openTime": now - _DAY,
                "closeTime": now,
                "count": 0,
            }
            for symbol in self.known_symbols()
        ]
        return rows + list(cfg.ticker_extra_rows)

    def _klines(
        self, cfg: SandboxConfig, pairs: list[tuple[str, str]], params: dict[str, str], now: int, market: str = "spot"
    ) -> list[list[Any]]:
        max_limit = _FAPI_MAX_LIMIT if market != "spot" else 1000
        symbol, interval, start, end, limit = _parse_klines_params(pairs, params, max_limit)
        if not _LEGAL_SYMBOL.match(symbol):
            raise ApiError(
                400, -1100, "Illegal characters found in parameter 'symbol'; legal range is '^[A-Z0-9-_.]{1,20}$'."
            )
        if not self.is_known(symbol):
            raise ApiError(400, -1121, "Invalid symbol.")
        last_instant = now
        if symbol in cfg.delisted:  # no candle opens at or after the delisting
            last_instant = min(last_instant, cfg.delisted[symbol] - 1)
        opens = select_open_times(
            interval,
            first_ms=align_open_ms(interval, cfg.listing_ms),
            last_ms=align_open_ms(interval, last_instant),
            start=start,
            end=end,
            limit=limit,
            gaps=list(cfg.gaps.get(symbol, ())),
        )
        if cfg.row_step_ms > 0 and opens:  # a broken feed: rows from startTime on, packed closer than the interval
            first = opens[0] if start is None else start
            last = end if end is not None else opens[-1]
            opens = [t for t in range(first, first + limit * cfg.row_step_ms, cfg.row_step_ms) if t <= last]
        rows = [_corrected(cfg, symbol, interval, generate_candle(symbol, interval, t, market)) for t in opens]
        if rows and symbol in cfg.bad_candles:
            rows[-1] = spoil_candle(rows[-1], cfg.bad_candles[symbol])
        return rows


def _corrected(cfg: SandboxConfig, symbol: str, interval: str, row: list[Any]) -> list[Any]:
    for (s, i, open_ms, index), value in cfg.corrections.items() if cfg.corrections else ():
        row[index] = value if (s, i, open_ms) == (symbol, interval, row[0]) else row[index]
    return row


def _parse_long(params: dict[str, str], name: str) -> int | None:
    raw = params.get(name)
    if raw is None:
        return None
    if raw == "":
        raise ApiError(400, -1105, f"Parameter '{name}' was empty.")
    if not _LEGAL_LONG.match(raw):
        raise ApiError(400, -1100, f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'.")
    return int(raw)


def _to_ms(value: int | None) -> int | None:
    return value // 1000 if value is not None and value >= _MICROS_THRESHOLD else value


def _parse_klines_params(
    pairs: list[tuple[str, str]], params: dict[str, str], max_limit: int = 1000
) -> tuple[str, str, int | None, int | None, int]:
    """Validate like Binance: mandatory first, then formats, then values."""
    if len(pairs) != len(params):
        raise ApiError(400, -1101, "Duplicate values for a parameter detected.")
    unread = [k for k in params if k not in _KLINES_PARAMS]
    if unread:
        raise ApiError(
            400,
            -1104,
            "Not all sent parameters were read; read "
            f"'{len(params) - len(unread)}' parameter(s) but was sent '{len(params)}'.",
        )
    for name in ("symbol", "interval"):
        if not params.get(name):
            raise ApiError(400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")
    start = _to_ms(_parse_long(params, "startTime"))
    end = _to_ms(_parse_long(params, "endTime"))
    limit = _parse_long(params, "limit")
    if params["interval"] not in INTERVALS:
        raise ApiError(400, -1120, "Invalid interval.")
    if limit is None:
        limit = 500
    elif not 1 <= limit <= max_limit:
        raise ApiError(400, -1130, "Data sent for parameter 'limit' is not valid.")
    tz = params.get("timeZone")
    if tz is not None and not _ZERO_TIMEZONE.match(tz):
        # Only UTC boundaries are modelled; refuse rather than return wrong candles.
        raise ApiError(400, -1130, "Data sent for parameter 'timeZone' is not valid.")
    return params["symbol"], params["interval"], start, end, limit


# --------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------


class _SandboxHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256  # benchmarks open many connections at once

    def __init__(self, address: tuple[str, int], handler: type, exchange: SandboxExchange) -> None:
        self.exchange = exchange
        self._connections: set[socket.socket] = set()
        self._conn_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conn_lock:
            self._connections.add(request)
        with self.exchange._lock:
            self.exchange.stats.connections += 1
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conn_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Wake handler threads idling on keep-alive sockets so nothing outlives stop()."""
        with self._conn_lock:
            conns = list(self._connections)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet: clients that hang up mid-answer are part of the test plan."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so a requests.Session reuses connections
    server_version = "SandboxExchange/1.0"
    sys_version = ""
    disable_nagle_algorithm = True  # headers and body go out as separate writes
    timeout = 120  # idle keep-alive connections do not pin a thread forever
    server: _SandboxHTTPServer

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """No per-request lines on stderr."""

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        exchange = self.server.exchange
        arrival = (time.monotonic() * 1000, int(time.time() * 1000), exchange.now_ms())
        url = urlsplit(self.path)
        answer, params = exchange.handle(url.path, url.query)
        exchange._record(url.path, params, answer.status, arrival)
        try:
            self._send(answer, exchange)
        except OSError:  # the client went away; nothing left to tell it
            self.close_connection = True

    def _send(self, answer: _Answer, exchange: SandboxExchange) -> None:
        if answer.mode == "drop":
            self.close_connection = True
            return
        if answer.mode == "stall":
            exchange._stop_event.wait()  # released by stop(); never answers
            self.close_connection = True
            return
        self.send_response(answer.status)
        if "Content-Type" not in answer.headers:
            self.send_header("Content-Type", answer.content_type)
        if answer.mode != "huge":
            self.send_header("Content-Length", str(len(answer.body)))
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if answer.mode == "huge":  # no length: the body ends when the connection does
            self._send_huge(answer.huge_bytes)
            return
        if answer.mode == "trickle":  # the whole body, one byte at a time, until stop()
            for offset in range(len(answer.body)):
                self.wfile.write(answer.body[offset : offset + 1])
                self.wfile.flush()
                if exchange._stop_event.wait(answer.pace):
                    break
            return
        if answer.mode == "truncate":  # promise the full body, send half, hang up
            self.wfile.write(answer.body[: len(answer.body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(answer.body)

    def _send_huge(self, size: int) -> None:
        """``[`` + spaces + ``]``: valid JSON of ``size`` bytes, written in 1 MiB pieces."""
        self.close_connection = True
        self.wfile.write(b"[")
        left = size - 2
        while left > 0:
            piece = min(left, _MIB)
            self.wfile.write(_SPACES_MIB[:piece])
            left -= piece
        self.wfile.write(b"]")
        self.wfile.flush()


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------


SANDBOX_EPILOG = """examples:
  python -m crypto_data_export.sandbox --port 8080                        a well-behaved exchange on http://127.0.0.1:8080
  python -m crypto_data_export.sandbox --port 0 --latency 0.15            a far exchange on a free port
  python -m crypto_data_export.sandbox --port 8080 --fail-every 3         every 3rd answer is HTTP 500
  python -m crypto_data_export.sandbox --port 8080 --ban-after-n 5 --ban-seconds 120   a 418 ban after 5 requests

a first try, in two terminals:
  python -m crypto_data_export.sandbox --port 8080
  BINANCE_BASE_URL=http://127.0.0.1:8080 python scheduled_data_manager.py --manual

it serves /api/v3/ping, /time, /exchangeInfo and /klines (and the same under /fapi/v1 for
USD-M futures) with Binance's wire format; candles are
a pure function of (symbol, interval, open time); SIGINT/SIGTERM stop it."""


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m crypto_data_export.sandbox",
        description="Local Binance-compatible spot REST exchange, with fault knobs (no network needed).",
        epilog=SANDBOX_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port to listen on; 0 lets the OS choose (default 8080)")
    p.add_argument("--latency", type=float, default=0.0, help="seconds added to every answer (default 0)")
    p.add_argument("--weight-limit", type=int, default=6000, help="request weight per minute, as published (6000)")
    p.add_argument("--clock-offset-ms", type=int, default=0, help="the exchange clock minus the real one, in ms")
    p.add_argument("--fail-every", type=int, default=0, help="every Nth request answers --fail-status (0: never)")
    p.add_argument("--fail-status", type=int, default=500, help="the HTTP status of --fail-every (default 500)")
    p.add_argument("--truncate-every", type=int, default=0, help="every Nth answer is cut short mid-body")
    p.add_argument("--truncate-json-every", type=int, default=0, help="every Nth answer is 200 with broken JSON")
    p.add_argument("--html-every", type=int, default=0, help="every Nth answer is 200 with an HTML page")
    p.add_argument("--drop-every", type=int, default=0, help="every Nth connection is closed without an answer")
    p.add_argument("--stall-every", type=int, default=0, help="every Nth answer never comes (a read timeout)")
    p.add_argument("--trickle", type=float, default=0.0, help="klines answers come one byte every this many seconds")
    p.add_argument("--rate-limit-first", type=int, default=0, help="the first N requests get 429")
    p.add_argument("--weight-window", choices=("fixed", "sliding"), default="fixed", help="how weight is counted")
    p.add_argument("--weight-window-seconds", type=int, default=60, help="the weight window's span (default 60)")
    p.add_argument("--no-weight-headers", action="store_true", help="send no X-MBX-USED-WEIGHT headers")
    p.add_argument("--retry-after", type=int, default=1, help="the Retry-After seconds of those 429s (default 1)")
    p.add_argument("--ban-seconds", type=int, default=0, help="length of a 418 ban (with --ban-after-n)")
    p.add_argument("--ban-after-n", type=int, default=0, help="ban the client (418) after N requests (0: never)")
    p.add_argument(
        "--accept-any-symbol", action="store_true", help="serve any well-formed symbol, not only the listed ones"
    )
    return p.parse_args(argv)


def _config_from_args(args: argparse.Namespace) -> SandboxConfig:
    return SandboxConfig(
        latency_seconds=args.latency,
        weight_limit=args.weight_limit,
        clock_offset_ms=args.clock_offset_ms,
        fail_every_n=args.fail_every,
        fail_status=args.fail_status,
        truncate_every_n=args.truncate_every,
        truncate_json_every_n=args.truncate_json_every,
        html_every_n=args.html_every,
        drop_every_n=args.drop_every,
        stall_every_n=args.stall_every,
        trickle_seconds=args.trickle,
        rate_limit_first_n=args.rate_limit_first,
        weight_window=args.weight_window,
        weight_window_seconds=args.weight_window_seconds,
        weight_headers=not args.no_weight_headers,
        retry_after_seconds=args.retry_after,
        ban_seconds=args.ban_seconds,
        ban_after_n=args.ban_after_n,
        accept_any_symbol=args.accept_any_symbol,
    )


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGINT/SIGTERM; print the listening URL as the only stdout line."""
    args = _parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        exchange = SandboxExchange(_config_from_args(args), host=args.host, port=args.port).start()
    except OSError as exc:
        print(f"sandbox exchange: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    print(f"sandbox exchange listening on {exchange.base_url}", flush=True)
    try:
        while not stop.wait(0.5):  # a timed wait keeps signal handlers responsive
            pass
    finally:
        exchange.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
