"""What the exchange sends, read within bounds: bodies, JSON, Retry-After and ban lengths.

Bodies are capped per endpoint (counted inflated), told waits clamped. A read timeout bounds one
``recv`` only, so every request also has a total deadline (``Deadline``): a watchdog shuts the socket
of an answer that trickles past it, or of a read under way when SIGTERM comes.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import math
import re
import socket
import threading
import time
from datetime import datetime, timedelta
from http.client import HTTPException
from typing import Any

import requests
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import HTTPError as TransportError
from urllib3.exceptions import ReadTimeoutError

from crypto_data_export.core.clock import as_utc, utc_now
from crypto_data_export.core.errors import BadResponseError, ExchangeUnavailableError, StopRequested
from crypto_data_export.core.text import printable

READ_CHUNK = 64 * 1024
# Binance bans last from 2 minutes (a first offence) to 3 days (repeat offenders).
DEFAULT_BAN_SECONDS = 120.0
MAX_BAN_SECONDS = 3 * 86_400.0
_BANNED_UNTIL_RE = re.compile(r"banned until (\d{12,14})")
# Only the encodings we ask for. urllib3 (>= 2.6) inflates at most ``amt`` bytes per read,
# so a gzip bomb is refused after one chunk past the cap, never inflated whole.
_ENCODINGS = frozenset({"", "identity", "gzip", "x-gzip", "deflate"})
MIN_BYTES_PER_SECOND = 16 * 1024  # a download still coming at this rate on average outlives its deadline
_current = threading.local()  # the Deadline of this thread's request
_watch = threading.Condition()  # guards _deadlines; the watchdog waits on it
_deadlines: set[Deadline] = set()
_watchdog: list[threading.Thread] = []


class Deadline:
    """One request's total deadline and the run's stop request: past the one, or on the other, a
    watchdog thread shuts the request's socket so that a blocked read returns, and ``check``
    raises ExchangeUnavailableError or StopRequested. ``with``: this thread's request."""

    def __init__(self, seconds: float, url: str, stop: threading.Event | None) -> None:
        self.seconds, self.url, self.stop = seconds, url, stop
        self.ends = time.monotonic() + seconds
        self.fired = ""  # "deadline" or "stop": the watchdog cut the request short
        self.sockets: list[socket.socket] = []

    def received(self, count: int) -> None:
        self.ends += count / MIN_BYTES_PER_SECOND

    def check(self) -> None:
        if self.fired == "stop":
            raise StopRequested("stop requested while the exchange was answering; the symbol was not finished")
        if self.fired:
            raise ExchangeUnavailableError(
                f"{self.url} did not send its whole answer within {self.seconds:g} s (a stalled or trickling "
                "connection); check BINANCE_BASE_URL and the network"
            )

    def __enter__(self) -> Deadline:
        _current.deadline = self
        with _watch:
            _deadlines.add(self)
            if not any(thread.is_alive() for thread in _watchdog):  # the first, or in a forked child
                _watchdog[:] = [threading.Thread(target=_watch_deadlines, name="request-deadlines", daemon=True)]
                _watchdog[0].start()
            if len(_deadlines) == 1:  # the watchdog sleeps while none is set; else it looks every 0.2 s anyway
                _watch.notify()
        return self

    def __exit__(self, *exc: object) -> None:
        _current.deadline = None
        with _watch:
            _deadlines.discard(self)


def cut_short() -> None:
    """Raise what cut this thread's request short (its deadline, a stop), if anything did."""
    deadline: Deadline | None = getattr(_current, "deadline", None)
    if deadline is not None:
        deadline.check()


def _watch_deadlines() -> None:
    with _watch:
        while True:
            for deadline in _deadlines:
                stopping = deadline.stop is not None and deadline.stop.is_set()
                if not deadline.fired and (stopping or time.monotonic() >= deadline.ends):
                    deadline.fired = "stop" if stopping else "deadline"
                    _shut(deadline.sockets)
            _watch.wait(0.2 if _deadlines else None)  # a stop request is seen within 0.2 s


def _shut(sockets: list[socket.socket]) -> None:
    for sock in sockets:  # the plain socket's shutdown, also under TLS: the reading thread's recv returns at once
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _watched(connection: type[HTTPConnection]) -> type[HTTPConnection]:
    """``connection``, its socket put under the request's Deadline while the answer comes."""

    class Watched(connection):  # type: ignore[valid-type,misc]
        def getresponse(self, *args: Any, **kwargs: Any) -> Any:
            deadline: Deadline | None = getattr(_current, "deadline", None)
            if deadline is not None and self.sock is not None:
                deadline.sockets.append(self.sock)  # then fired is read: the watchdog sets it, then shuts
                _shut([self.sock] if deadline.fired else [])
            return super().getresponse(*args, **kwargs)

    return Watched


# A PoolManager's pool classes, whose connections are ``_watched``.
WATCHED_POOLS = {
    "http": type("WatchedHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": _watched(HTTPConnection)}),
    "https": type("WatchedHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": _watched(HTTPSConnection)}),
}


def read_body(response: requests.Response, url: str, cap: int) -> bytes:
    """The decoded body, read in chunks and refused beyond ``cap`` bytes (announced or inflated)."""
    declared = response.headers.get("Content-Length", "").strip()
    if declared.isascii() and declared.isdigit() and int(declared[:20]) > cap:
        raise too_big(url, cap)
    encoding = response.headers.get("Content-Encoding", "")
    if encoding.strip().lower() not in _ENCODINGS:
        raise BadResponseError(f"{url} sent a body in an encoding we did not ask for ({printable(encoding, 40)})")
    chunks, size = [], 0
    while chunk := _read_chunk(response, url):
        chunks.append(chunk)
        size += len(chunk)
        if size > cap:
            raise too_big(url, cap)
    cut_short()  # a shut socket may look like the body's end
    return b"".join(chunks)  # one copy (a growing bytearray: one per growth, then one more)


def too_big(url: str, cap: int) -> BadResponseError:
    return BadResponseError(f"{url} sent a body larger than the {cap} bytes allowed for it; answer refused")


def _read_chunk(response: requests.Response, url: str) -> bytes:
    """At most READ_CHUNK decoded bytes; transport and decoding errors translated."""
    try:
        chunk: bytes = response.raw.read(READ_CHUNK, decode_content=True)
    except ReadTimeoutError as exc:
        cut_short()
        raise ExchangeUnavailableError(
            f"{url} stopped sending its answer (read timeout); check BINANCE_BASE_URL and the network"
        ) from exc
    except (TransportError, HTTPException, OSError) as exc:
        cut_short()
        raise BadResponseError(f"{url} sent a broken answer ({type(exc).__name__}: {printable(exc, 160)})") from exc
    return chunk


def parse_json(body: bytes, response: requests.Response, url: str) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:  # RecursionError: "[[[[..." nested too deep
        kind = printable(response.headers.get("Content-Type", "unknown type"), 80)
        raise BadResponseError(
            f"{url} answered HTTP {response.status_code} with a body that is not valid JSON ({kind}, {len(body)} bytes)"
        ) from exc


def told_seconds(raw: str | None, now: datetime) -> float | None:
    """Seconds a Retry-After header tells (a number or an HTTP date; maybe negative or infinite:
    the caller clamps it); None when it tells nothing."""
    text = (raw or "").strip()
    if not text or len(text) > 64:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            seconds = (as_utc(email.utils.parsedate_to_datetime(text)) - now).total_seconds()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    return None if math.isnan(seconds) else seconds


def pause_seconds(raw: str | None, *, default: float, cap: float) -> float:
    """How long a 429 makes the pool wait: the header's value within [0, cap], else ``default``."""
    seconds = told_seconds(raw, utc_now())
    return default if seconds is None else min(cap, max(0.0, seconds))


def ban_end(retry_after: str | None, body: str, now: datetime | None = None) -> datetime:
    """When a 418 ban ends: Retry-After, else the epoch ms in the message, else 2 minutes; between
    1 second and 3 days (a "ban" of ten years must not silence the exporter for good), rounded up to
    a whole second as state.json keeps it (a restart must never wake up before the ban ends)."""
    now = now or utc_now()
    match = _BANNED_UNTIL_RE.search(body)
    in_body = int(match[1]) / 1000 - now.timestamp() if match else None
    seconds = next(
        (t for t in (told_seconds(retry_after, now), in_body) if t is not None and t > 0), DEFAULT_BAN_SECONDS
    )
    end = now + timedelta(seconds=min(MAX_BAN_SECONDS, max(1.0, seconds)))  # inf -> 3 days
    return end.replace(microsecond=0) + timedelta(seconds=1 if end.microsecond else 0)
