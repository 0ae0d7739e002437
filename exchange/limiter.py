"""One request-weight budget shared by every thread that talks to the exchange.

Binance counts weight per IP in a one-minute window (6000 on binance.com, a
klines call weighs 2). Two mechanisms keep us under it:

* a token bucket refilled at ``limit / 60`` weight per second paces the
  threads smoothly, so a 400-symbol cycle runs at the budget's rate instead
  of bursting into the window and then stalling;
* the ``X-MBX-USED-WEIGHT-1M`` header of every answer tells what the whole
  IP has used in the current minute (other processes included). The header
  is trusted over our own count: when the window is nearly used up, every
  thread waits for the next minute instead of sending.

A 429 pauses the whole pool for ``Retry-After`` seconds, not one thread, and
a 418 ban makes every later ``acquire`` fail at once until the ban ends.

Every wait is interruptible: with a ``stop_event`` (set by SIGTERM/SIGINT),
a thread that would wait raises ``StopRequested`` at once, and one already
waiting wakes up and raises it, so no pause, however long, holds a stopping
process (or its run lock).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from common.errors import IPBannedError, StopRequested

DEFAULT_WEIGHT_LIMIT = 6000
WINDOW_SECONDS = 60.0
# The budget an exchange may publish, clamped: below the floor a run would crawl
# (a published 2 per minute is less than one klines call and froze the pool); above
# the ceiling pacing would be meaningless. Binance publishes 6000 (binance.us 1200).
MIN_WEIGHT_LIMIT = 60
MAX_WEIGHT_LIMIT = 60_000
# The longest pause a 429's Retry-After may impose on the pool (a restart would not wait at all).
MAX_PAUSE_SECONDS = 300.0


def clamp_weight_limit(published: int) -> int:
    """A published per-minute budget brought into [MIN_WEIGHT_LIMIT, MAX_WEIGHT_LIMIT]."""
    return max(MIN_WEIGHT_LIMIT, min(MAX_WEIGHT_LIMIT, published))


class WeightLimiter:
    """Thread-safe pacing for a per-minute weight budget."""

    def __init__(
        self,
        limit_per_minute: int = DEFAULT_WEIGHT_LIMIT,
        *,
        pace_fraction: float = 0.98,
        window_fraction: float = 0.9,
        burst_seconds: float = 0.1,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        stop_event: threading.Event | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._sleep = sleep
        # Set by the export job: SIGTERM/SIGINT end every wait here.
        self.stop_event = stop_event
        self._pace_fraction = pace_fraction
        self._window_fraction = window_fraction
        self._burst_seconds = burst_seconds
        self._server_offset_s = 0.0
        self._pause_until = 0.0
        self._banned_until: float | None = None
        self._window_id = -1
        self._window_sent = 0
        self._window_reported = 0
        self.sent_weight = 0
        self.waits = 0
        self.set_limit(limit_per_minute)
        self._tokens = self._capacity

    # -- configuration -------------------------------------------------------
    def set_limit(self, limit_per_minute: int) -> None:
        """Adopt the budget published in exchangeInfo."""
        with self._lock:
            self.limit = max(1, int(limit_per_minute))
            self._rate = self.limit * self._pace_fraction / WINDOW_SECONDS
            self._capacity = max(2.0, self._rate * self._burst_seconds)
            self._refilled_at = self._clock()
            self._tokens = min(getattr(self, "_tokens", self._capacity), self._capacity)

    def set_server_offset(self, offset_seconds: float) -> None:
        """Align our minute windows with the exchange's clock."""
        with self._lock:
            self._server_offset_s = offset_seconds

    # -- signals from answers --------------------------------------------------
    def observe_used_weight(self, used: int) -> None:
        """Record ``X-MBX-USED-WEIGHT-1M`` from an answer."""
        with self._lock:
            self._roll_window()
            self._window_reported = max(self._window_reported, used)

    def pause(self, seconds: float) -> None:
        """A 429: every thread waits ``seconds`` (at most MAX_PAUSE_SECONDS) before sending again."""
        seconds = min(max(0.0, seconds), MAX_PAUSE_SECONDS)  # NaN -> 0, inf -> the cap
        with self._lock:
            self._pause_until = max(self._pause_until, self._clock() + seconds)

    def ban(self, until: datetime) -> None:
        """A 418: nothing is sent before ``until``."""
        with self._lock:
            stamp = until.timestamp()
            self._banned_until = max(self._banned_until or 0.0, stamp)

    @property
    def banned_until(self) -> datetime | None:
        with self._lock:
            if self._banned_until is None or self._banned_until <= self._clock():
                return None
            return datetime.fromtimestamp(self._banned_until, tz=UTC)

    # -- the gate --------------------------------------------------------------
    def acquire(self, weight: int) -> None:
        """Block until ``weight`` may be sent; raise IPBannedError during a ban."""
        while True:
            with self._lock:
                delay = self._delay_for(weight)
                if delay <= 0:
                    self._spend(weight)
                    return
                self.waits += 1
            # At least 1 ms: a float-sized remainder must not turn into a busy loop.
            self.wait(min(max(delay, 0.001), 1.0))

    def wait(self, seconds: float) -> None:
        """Sleep ``seconds``, unless a stop is (or becomes) requested: then raise StopRequested."""
        stop = self.stop_event
        if stop is None:
            self._sleep(seconds)
            return
        if stop.is_set() or stop.wait(seconds):
            raise StopRequested("stop requested while waiting for the exchange; the symbol was not finished")

    def _delay_for(self, weight: int) -> float:
        now = self._clock()
        if self._banned_until is not None and self._banned_until > now:
            raise IPBannedError(datetime.fromtimestamp(self._banned_until, tz=UTC))
        if self._pause_until > now:
            return self._pause_until - now
        self._roll_window()
        used = max(self._window_sent, self._window_reported)
        if used + weight > self.limit * self._window_fraction:
            return self._seconds_to_next_window() + 0.05
        self._refill(now)
        # A request heavier than the bucket (exchangeInfo: 20) goes once the bucket
        # is full and leaves it in debt, so the average rate still holds.
        needed = min(weight, self._capacity)
        if self._tokens < needed:
            return (needed - self._tokens) / self._rate
        return 0.0

    def _spend(self, weight: int) -> None:
        self._tokens -= weight
        self._window_sent += weight
        self.sent_weight += weight

    def _refill(self, now: float) -> None:
        self._tokens = min(self._capacity, self._tokens + (now - self._refilled_at) * self._rate)
        self._refilled_at = now

    def _server_now(self) -> float:
        return self._clock() + self._server_offset_s

    def _roll_window(self) -> None:
        window_id = int(self._server_now() // WINDOW_SECONDS)
        if window_id != self._window_id:
            self._window_id = window_id
            self._window_sent = 0
            self._window_reported = 0

    def _seconds_to_next_window(self) -> float:
        return WINDOW_SECONDS - (self._server_now() % WINDOW_SECONDS)
