"""The sliding-window WeightLimiter on a fake clock: burst, pacing, in flight, headers, several limits."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from crypto_data_export.core.errors import StopRequested
from crypto_data_export.exchange.client import (
    ExchangeClient,
    rate_limits_from_exchange_info,
    used_weight_header_seconds,
)
from crypto_data_export.exchange.limiter import RAW, WEIGHT, RateLimit, WeightLimiter
from tests.support import wait_until


class FakeClock:
    """Time that moves only when the limiter sleeps (or the test advances it)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def make(limit: int = 1200, headroom: float = 1.0, clock: FakeClock | None = None) -> tuple[WeightLimiter, FakeClock]:
    clock = clock or FakeClock()
    return WeightLimiter(limit, headroom=headroom, clock=clock, sleep=clock.sleep), clock


def send(limiter: WeightLimiter, clock: FakeClock, weight: int, latency: float = 0.0) -> float:
    """One request: acquire, answer after ``latency``, release; returns when it was sent."""
    ticket = limiter.acquire(weight)
    sent = clock.now
    clock.now += latency
    limiter.release(ticket)
    return sent


def max_in_any_window(sends: list[tuple[float, int]], span: float) -> int:
    return max(sum(w for t, w in sends if start <= t < start + span) for start, _ in sends)


def test_a_cycle_within_the_budget_bursts_without_any_wait() -> None:
    limiter, clock = make(6000)
    for _ in range(400):
        send(limiter, clock, 2)
    assert clock.slept == [] and limiter.waits == 0


def test_an_over_budget_cycle_paces_to_the_sliding_window_and_never_exceeds_it() -> None:
    limiter, clock = make(1200)
    sends = [(send(limiter, clock, 2, latency=0.01), 2) for _ in range(700)]
    assert max_in_any_window(sends, 60.0) <= 1200
    # The first 1200 went at once; the rest once the first answers were a minute old.
    first_late = sends[600][0] - sends[0][0]
    assert 60.0 <= first_late <= 60.2
    assert sends[-1][0] - sends[0][0] <= 61.5


def test_waiters_go_in_the_order_they_came_each_asleep_until_its_own_turn() -> None:
    """A full window: a second waiter sleeps until the room for the first one and for itself is free
    (not until the first answer ages out, to find the first waiter took it: every waiter woke at each answer)."""
    limiter, clock = make(60)
    for _ in range(30):
        send(limiter, clock, 2, latency=1.0)  # answers a second apart: the window frees 2 weight a second
    gate, slept = threading.Event(), {}

    def sleep(seconds: float) -> None:
        slept.setdefault(threading.current_thread().name, []).append(seconds)
        if threading.current_thread().name == "first":
            gate.wait()  # the first waiter stays asleep, in the queue
        else:
            clock.now += seconds

    limiter._sleep = sleep
    first = threading.Thread(target=limiter.acquire, args=(2,), name="first")
    first.start()
    wait_until(lambda: "first" in slept, "the first waiter asleep")
    limiter.acquire(2)
    assert 1062.0 <= clock.now <= 1062.1  # the second answer (at 1002) aged out, not only the first (at 1001)
    gate.set()
    first.join(5)
    assert not first.is_alive()


def test_headroom_keeps_a_share_of_the_limit_free() -> None:
    limiter, clock = make(1000, headroom=0.97)
    for _ in range(485):
        send(limiter, clock, 2)
    assert clock.slept == []
    send(limiter, clock, 2)  # 972 > 970: must wait for the window
    assert clock.now >= 1060.0


def test_requests_in_flight_count_and_age_only_from_their_answer() -> None:
    limiter, clock = make(100)
    tickets = [limiter.acquire(2) for _ in range(50)]  # 100 weight in flight, nothing answered
    assert limiter.used()[RateLimit(WEIGHT, 60.0, 100)] == 100
    clock.now += 70  # long answers: the exchange may have seen them only now
    done = threading.Event()

    def late_answers() -> None:
        for t in tickets:
            limiter.release(t)
        done.set()

    # The next acquire must wait for those answers plus a whole window, not 60 s after sending.
    clock_before = clock.now
    late_answers()
    send(limiter, clock, 2)
    assert done.is_set() and clock.now >= clock_before + 60.0


def test_the_exchange_header_counts_when_it_says_more_than_our_own_log() -> None:
    limiter, clock = make(6000)
    limiter.observe_used_weight(5999)  # another process on this IP used the budget
    send(limiter, clock, 2)
    assert clock.now >= 1060.0  # its weight is treated as staying a whole window


def test_a_header_below_our_own_count_does_not_lower_it() -> None:
    limiter, clock = make(100)
    for _ in range(50):
        send(limiter, clock, 2)
    limiter.observe_used_weight(0)  # a fixed-window exchange that just rolled over its minute
    send(limiter, clock, 2)
    assert clock.now >= 1060.0


def test_every_published_limit_is_enforced_and_raw_requests_count_one_per_request() -> None:
    clock = FakeClock()
    limiter = WeightLimiter(6000, headroom=1.0, clock=clock, sleep=clock.sleep)
    limiter.set_limits([RateLimit(WEIGHT, 60.0, 6000), RateLimit(WEIGHT, 1.0, 20), RateLimit(RAW, 300.0, 30)])
    sends = [(send(limiter, clock, 2), 2) for _ in range(30)]
    assert max_in_any_window(sends, 1.0) <= 20  # 10 klines per second
    assert sends[-1][0] - sends[0][0] >= 2.0
    send(limiter, clock, 2)  # the 31st request breaks 30 raw requests per 300 s
    assert clock.now - sends[0][0] >= 300.0
    assert limiter.limit == 6000


def test_a_pause_from_429_still_stops_the_pool_and_a_stop_ends_it() -> None:
    limiter, clock = make(6000)
    limiter.pause(30)
    send(limiter, clock, 2)
    assert clock.now >= 1030.0
    stop = threading.Event()
    stop.set()
    stopped = WeightLimiter(6000, stop_event=stop)
    stopped.pause(300)
    with pytest.raises(StopRequested):
        stopped.acquire(2)


def test_threads_share_the_budget() -> None:
    limiter = WeightLimiter(600, headroom=1.0)
    with ThreadPoolExecutor(8) as pool:
        tickets = list(pool.map(lambda _: limiter.acquire(2), range(300)))
    assert len(tickets) == 300
    assert limiter.used()[RateLimit(WEIGHT, 60.0, 600)] == 600


def test_every_weight_and_raw_limit_of_exchange_info_is_read_and_clamped() -> None:
    info = {
        "rateLimits": [
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "SECOND", "intervalNum": 10, "limit": 300},
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "DAY", "intervalNum": 1, "limit": 10**400},
            {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 5000},
            {"rateLimitType": "RAW_REQUESTS", "interval": "HOUR", "intervalNum": 1, "limit": 2},
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 50},
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "WEEK", "intervalNum": 1, "limit": 9},
        ]
    }
    assert rate_limits_from_exchange_info(info) == [
        RateLimit(WEIGHT, 60.0, 1200),
        RateLimit(WEIGHT, 10.0, 300),
        RateLimit(WEIGHT, 86400.0, 60_000 * 1440),  # absurd: clamped as 60 000 per minute
        RateLimit(RAW, 300.0, 5000),
        RateLimit(RAW, 3600.0, 3600),  # 2 per hour would freeze a run: clamped to 60 per minute
    ]


@pytest.mark.parametrize(
    "name, seconds",
    [
        ("X-MBX-USED-WEIGHT-1M", 60.0),
        ("x-mbx-used-weight-1m", 60.0),
        ("X-MBX-USED-WEIGHT-1S", 1.0),
        ("X-MBX-USED-WEIGHT-10S", 10.0),
        ("X-MBX-USED-WEIGHT-1H", 3600.0),
        ("X-MBX-USED-WEIGHT-1D", 86400.0),
        ("X-MBX-USED-WEIGHT", None),
        ("X-MBX-USED-WEIGHT-0M", None),
        ("X-MBX-USED-WEIGHT-1W", None),
        ("X-MBX-ORDER-COUNT-10S", None),
    ],
)
def test_used_weight_header_names(name: str, seconds: float | None) -> None:
    assert used_weight_header_seconds(name) == seconds


def test_the_client_reads_every_limit_and_header_from_a_sliding_window_sandbox(sandbox_factory) -> None:
    exchange = sandbox_factory(weight_limit=120, weight_window="sliding", weight_window_seconds=3)
    client = ExchangeClient(exchange.base_url, retries=1, backoff=0.0, read_timeout=2.0, connect_timeout=1.0)
    assert client.load_rate_limits("BTCUSDT") == 2400  # 120 per 3 s, expressed per minute
    client.klines("BTCUSDT", "1h", limit=5)
    assert client.limiter.used()[RateLimit(WEIGHT, 3.0, 120)] >= exchange.used_weight() > 0


def test_an_over_budget_run_on_a_sliding_window_exchange_gets_no_429(sandbox_factory) -> None:
    # 60 weight per 2 s (a scaled-down 1200/min); exchangeInfo (20) and 25 klines calls (50 weight): over
    # budget, so the last calls wait for the first to leave the window (one window: the run takes ~2 s).
    exchange = sandbox_factory(weight_limit=60, weight_window="sliding", weight_window_seconds=2, latency_seconds=0.02)
    client = ExchangeClient(
        exchange.base_url, retries=1, backoff=0.0, read_timeout=5.0, connect_timeout=1.0, pool_size=16
    )
    client.load_rate_limits("BTCUSDT")
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda _: client.klines("BTCUSDT", "1h", limit=2), range(25)))
    assert len(answers) == 25 and all(len(rows) == 2 for rows in answers)
    assert exchange.stats.rate_limited_429 == 0 and client.stats.rate_limited == 0
    assert exchange.stats.max_used_weight_seen <= 60


def test_sends_before_the_published_limits_were_read_still_count() -> None:
    limiter, clock = make(6000)
    send(limiter, clock, 20)  # exchangeInfo, sent under the default budget
    limiter.set_limits([RateLimit(WEIGHT, 2.0, 60)])  # what it published: 60 per 2 s
    for _ in range(21):
        send(limiter, clock, 2)
    assert clock.now >= 1002.0  # 20 + 42 > 60: the last sends waited for exchangeInfo to age out
