"""One rate-limit budget shared by every thread that talks to the exchange (docs/performance.md).

A limit is a budget per window, not a rate: we burst while it has room and pace only beyond it.
A send is dropped from a window ``seconds`` after its answer came back (the exchange saw it no
later): safe for sliding and calendar windows alike. Every wait ends with ``StopRequested`` on a stop.
"""

from __future__ import annotations

import bisect
import itertools
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from crypto_data_export.core.clock import utc_now
from crypto_data_export.core.errors import IPBannedError, StopRequested

DEFAULT_WEIGHT_LIMIT = 6000
WINDOW_SECONDS = 60.0
# The budget an exchange may publish, clamped: below the floor a run would crawl
# (a published 2 per minute is less than one klines call and froze the pool); above
# the ceiling pacing would be meaningless. Binance publishes 6000 (binance.us 1200).
MIN_WEIGHT_LIMIT = 60
MAX_WEIGHT_LIMIT = 60_000
# The longest pause a 429's Retry-After may impose on the pool (a restart would not wait at all).
MAX_PAUSE_SECONDS = 300.0
# The share of a published limit we use: the rest is room for what no count has seen yet (another
# process on this IP starting between two answers; their X-MBX-USED-WEIGHT headers are adopted).
# 1 % of Binance's 6000 is 30 klines calls; 3 % cost 3 % of every backfill over budget.
DEFAULT_HEADROOM = 0.99
# A send never released (a caller that forgot) counts as answered this long after it left.
STALE_IN_FLIGHT_SECONDS = 120.0
# Added to every expiry: float rounding and timer granularity must not make us early.
EXPIRY_MARGIN_SECONDS = 0.02

WEIGHT = "REQUEST_WEIGHT"
RAW = "RAW_REQUESTS"


def clamp_weight_limit(published: int) -> int:
    """A published per-minute budget brought into [MIN_WEIGHT_LIMIT, MAX_WEIGHT_LIMIT]."""
    return max(MIN_WEIGHT_LIMIT, min(MAX_WEIGHT_LIMIT, published))


def clamp_limit(limit: int, seconds: float) -> int:
    """A limit over any window, clamped as its per-minute equivalent would be."""
    per_minute = min(limit, 10**12) * 60 / seconds
    clamped = clamp_weight_limit(max(1, round(per_minute)))
    return max(1, limit) if clamped == round(per_minute) else max(1, math.floor(clamped * seconds / 60))


@dataclass(frozen=True)
class RateLimit:
    """One published limit: ``limit`` units (weight, or requests for RAW_REQUESTS) per ``seconds``."""

    kind: str
    seconds: float
    limit: int


@dataclass
class Ticket:
    """A send that ``acquire`` let go; ``release`` stamps when its answer came back."""

    ticket_id: int
    weight: int
    sent_at: float


class _Window:
    """A sliding log of our sends for one limit, plus what the exchange reports beyond them."""

    def __init__(self, rate: RateLimit, headroom: float) -> None:
        self.rate = rate
        self.budget = max(1, math.floor(rate.limit * headroom))
        self._expiries: deque[tuple[float, int]] = deque()  # (expiry, cost) of answered sends, in order
        self._answered = 0  # the sum of the costs in the heap
        self._in_flight: dict[int, tuple[float, int]] = {}  # ticket -> (sent_at, cost)
        self._in_flight_total = 0
        self._others = 0  # weight the exchange counted that is not ours
        self._others_until = 0.0

    def adopt(self, old: _Window) -> None:
        """Take over the log of the window this one replaces, re-timed to this span: a budget
        read from exchangeInfo must not forget the sends made before it."""
        shift = self.rate.seconds - old.rate.seconds
        self._expiries = deque((expiry + shift, cost) for expiry, cost in old._expiries)
        self._answered = old._answered
        self._in_flight, self._in_flight_total = dict(old._in_flight), old._in_flight_total
        if shift == 0:  # what the exchange reported is only meaningful for the same window
            self._others, self._others_until = old._others, old._others_until

    def cost(self, weight: int) -> int:
        return 1 if self.rate.kind == RAW else weight

    def used(self, now: float) -> int:
        self._purge(now)
        others = self._others if now < self._others_until else 0
        return self._answered + self._in_flight_total + others

    def delay(self, weight: int, now: float, ahead: Iterable[int] = ()) -> float:
        """Seconds until ``weight`` fits in this window after the sends ``ahead`` of it (0: now; inf: only
        when a send in flight returns)."""
        cost = min(self.cost(weight), self.budget)  # a single heavier send goes once the window is empty
        excess = self.used(now) + cost + sum(self.cost(w) for w in ahead) - self.budget
        return 0.0 if excess <= 0 else self._time_to_free(excess, now) - now

    def reserve(self, ticket: Ticket) -> None:
        cost = self.cost(ticket.weight)
        self._in_flight[ticket.ticket_id] = (ticket.sent_at, cost)
        self._in_flight_total += cost

    def release(self, ticket: Ticket, now: float) -> None:
        if (entry := self._in_flight.pop(ticket.ticket_id, None)) is not None:
            self._in_flight_total -= entry[1]
            self._answered_at(now, entry[1])

    def observe(self, reported: int, now: float) -> None:
        """The exchange counted ``reported`` in this window; what exceeds our answered sends is others'."""
        self._purge(now)
        self._others = max(0, reported - self._answered)
        self._others_until = now + self.rate.seconds + EXPIRY_MARGIN_SECONDS

    def _answered_at(self, now: float, cost: int) -> None:
        bisect.insort(self._expiries, (now + self.rate.seconds + EXPIRY_MARGIN_SECONDS, cost))  # mostly at the end
        self._answered += cost

    def _purge(self, now: float) -> None:
        while self._expiries and self._expiries[0][0] <= now:
            self._answered -= self._expiries.popleft()[1]
        stale = [t for t, (sent_at, _) in self._in_flight.items() if now - sent_at > STALE_IN_FLIGHT_SECONDS]
        for ticket_id in stale:
            sent_at, cost = self._in_flight.pop(ticket_id)
            self._in_flight_total -= cost
            self._answered_at(sent_at + STALE_IN_FLIGHT_SECONDS, cost)

    def _time_to_free(self, excess: int, now: float) -> float:
        """The earliest moment ``excess`` has left the window (inf if answered sends alone cannot free it)."""
        others_gone = now >= self._others_until
        others = 0 if others_gone else self._others
        freed = 0
        for expiry, cost in self._expiries:  # in order: a wait reads only the sends it waits for
            if not others_gone and self._others_until <= expiry:
                freed, others_gone = freed + others, True
                if freed >= excess:
                    return self._others_until
            freed += cost
            if freed >= excess:
                return expiry
        if not others_gone and freed + others >= excess:
            return self._others_until
        return math.inf


class WeightLimiter:
    """Thread-safe sliding-window budgets for every limit the exchange publishes."""

    def __init__(
        self,
        limit_per_minute: int = DEFAULT_WEIGHT_LIMIT,
        *,
        headroom: float = DEFAULT_HEADROOM,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        stop_event: threading.Event | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._sleep = sleep
        # Set by the export job: SIGTERM/SIGINT end every wait of its client here (pacing, 429, backoff).
        self.stop_event = stop_event
        self._headroom = headroom
        self._tickets = itertools.count(1)
        self._queue: dict[int, int] = {}  # ticket id -> weight of each acquire waiting, in arrival order
        self._pause_until = 0.0
        self._banned_until: datetime | None = None
        self._windows: list[_Window] = []
        self.limit = DEFAULT_WEIGHT_LIMIT
        self.waits = 0
        self.set_limits([RateLimit(WEIGHT, WINDOW_SECONDS, max(1, int(limit_per_minute)))])

    def set_limits(self, limits: Iterable[RateLimit]) -> None:
        """Adopt every published limit (weight and raw requests, any window); sends in flight keep counting."""
        rates = list(limits)
        with self._lock:
            old = self._windows
            self._windows = [_Window(rate, self._headroom) for rate in rates]
            for window in self._windows:  # past sends: from the same kind and span, else that kind's longest
                same_kind = [w for w in old if w.rate.kind == window.rate.kind]
                exact = [w for w in same_kind if w.rate.seconds == window.rate.seconds]
                if same_kind:
                    window.adopt(exact[0] if exact else max(same_kind, key=lambda w: w.rate.seconds))
            weights = sorted((r for r in rates if r.kind == WEIGHT), key=lambda r: r.seconds != WINDOW_SECONDS)
            if weights:  # the minute's budget, or the first weight limit expressed per minute
                self.limit = max(1, round(weights[0].limit * WINDOW_SECONDS / weights[0].seconds))

    def observe_used_weight(self, used: int, seconds: float = WINDOW_SECONDS) -> None:
        """Record an ``X-MBX-USED-WEIGHT-<n><unit>`` header for the weight window of ``seconds``."""
        with self._lock:
            now = self._clock()
            for window in self._windows:
                if window.rate.kind == WEIGHT and window.rate.seconds == seconds:
                    window.observe(used, now)

    def pause(self, seconds: float) -> None:
        """A 429: every thread waits ``seconds`` (at most MAX_PAUSE_SECONDS) before sending again."""
        seconds = min(max(0.0, seconds), MAX_PAUSE_SECONDS)  # NaN -> 0, inf -> the cap
        with self._lock:
            self._pause_until = max(self._pause_until, self._clock() + seconds)

    def ban(self, until: datetime) -> None:
        """A 418: nothing is sent before ``until``."""
        with self._lock:
            self._banned_until = max(self._banned_until or until, until)

    @property
    def banned_until(self) -> datetime | None:
        with self._lock:
            until = self._banned_until
        return until if until is not None and until > utc_now() else None

    def acquire(self, weight: int) -> Ticket:
        """Block until ``weight`` may be sent and reserve it (IPBannedError during a ban); give the
        ticket to ``release`` when the answer (or the failure) came back. Waiters go in the order they
        came, each waking when the room for it and for those ahead of it is free (not all at each answer)."""
        with self._lock:
            ticket_id = next(self._tickets)
            self._queue[ticket_id] = weight
        try:
            while True:
                with self._lock:
                    now = self._clock()
                    if self._banned_until is not None and self._banned_until > utc_now():
                        raise IPBannedError(self._banned_until)
                    delay = self._pause_until - now
                    if delay <= 0:
                        ahead = [w for _, w in itertools.takewhile(lambda e: e[0] != ticket_id, self._queue.items())]
                        delay = max((w.delay(weight, now, ahead) for w in self._windows), default=0.0)
                    if delay <= 0:
                        ticket = Ticket(ticket_id, weight, now)
                        for window in self._windows:
                            window.reserve(ticket)
                        return ticket
                    self.waits += 1
                # At least 1 ms: a float-sized remainder must not turn into a busy loop. At most
                # 50 ms while only a send in flight can free room: its answer may come any moment.
                self.wait(min(max(delay, 0.001), 0.05 if math.isinf(delay) else 1.0))
        finally:
            with self._lock:
                del self._queue[ticket_id]

    def release(self, ticket: Ticket) -> None:
        """The answer to ``ticket`` came back: from now on its weight ages out of every window."""
        with self._lock:
            now = self._clock()
            for window in self._windows:
                window.release(ticket, now)

    def wait(self, seconds: float) -> None:
        """Sleep ``seconds``, unless a stop is (or becomes) requested: then raise StopRequested."""
        if (stop := self.stop_event) is None:
            self._sleep(seconds)
        elif stop.is_set() or stop.wait(seconds):
            raise StopRequested("stop requested while waiting for the exchange; the symbol was not finished")

    def used(self) -> dict[RateLimit, int]:
        """What each window counts now (ours, in flight included, and others' as reported)."""
        with self._lock:
            now = self._clock()
            return {w.rate: w.used(now) for w in self._windows}
