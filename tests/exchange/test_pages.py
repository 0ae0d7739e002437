"""HistoricalDataExporter trusts the exchange's pages only within bounds: at most the rows asked for,
on the grid, inside the window, advancing, not ahead of this machine's clock; a stop ends paging."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from crypto_data_export.core.errors import BadResponseError, ClockSkewError, StopRequested
from crypto_data_export.core.intervals import DAY_MS, HOUR_MS, first_open_from_ms, floor_open_ms, next_open_ms
from crypto_data_export.exchange.client import ExchangeClient
from crypto_data_export.exchange.history import HistoricalDataExporter
from crypto_data_export.sandbox.fake_exchange import generate_candle
from tests.support import export_window, wait_until

# 2026-11-28 05:30:00 UTC: half-way through a 1h candle.
NOW_MS = 1795843800000
LAST_CLOSED = NOW_MS - 30 * 60_000 - HOUR_MS  # 04:00, the newest closed 1h candle
Page = Callable[[int, int, int], list[list[Any]]]


class ScriptedClient(ExchangeClient):
    """The real client whose klines answers come from a script: what a hostile exchange could send."""

    def __init__(self, pages: list[Page], **options: Any) -> None:
        super().__init__("http://exchange.invalid", retries=0, backoff=0.0, **options)
        self.pages = pages
        self.asked: list[tuple[int, int, int]] = []
        self.lock = threading.Lock()

    def klines(
        self,
        symbol: str,
        interval: str,
        *,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = 1000,
        exact: Any = None,
    ) -> list[list[Any]]:
        assert start_ms is not None and end_ms is not None
        with self.lock:  # pages go out in parallel: each takes the next answer of the script
            self.asked.append((start_ms, end_ms, limit))
            page = self.pages[min(len(self.asked), len(self.pages)) - 1]
        return page(start_ms, end_ms, limit)


def candles(opens: list[int]) -> list[list[Any]]:
    return [generate_candle("BTCUSDT", "1h", t) for t in opens]


def honest(start: int, end: int, limit: int) -> list[list[Any]]:
    first = -(-start // HOUR_MS) * HOUR_MS
    return candles([t for t in range(first, end + 1, HOUR_MS)][:limit])


def export(pages: list[Page], *, page_limit: int = 1000, local_ms: int = NOW_MS, **options: Any) -> ScriptedClient:
    client = ScriptedClient(pages)
    exporter = HistoricalDataExporter(
        client, "1h", 2.0, page_limit=page_limit, local_clock=lambda: local_ms / 1000, **options
    )
    export_window(exporter, "BTCUSDT", server_time_ms=NOW_MS)
    return client


def test_an_honest_exchange_passes_every_check() -> None:
    client = export([honest], page_limit=20)
    first, *others = client.asked
    assert first == (NOW_MS - 2 * DAY_MS, LAST_CLOSED, 20)  # alone: it shows where the candles start
    others.sort()  # then the others on the grid, in parallel, covering the rest exactly
    first_open = NOW_MS - 2 * DAY_MS + 30 * 60_000
    assert others == [
        (first_open + 19 * HOUR_MS + 1, first_open + 40 * HOUR_MS - 1, 20),
        (first_open + 40 * HOUR_MS, LAST_CLOSED, 7),
    ]


def _rows_shifted(shift: int) -> Page:
    return lambda start, end, limit: [
        [row[0] + shift, *row[1:6], row[6] + shift, *row[7:]] for row in honest(start, end, limit)
    ]


@pytest.mark.parametrize(
    "page, problem",
    [
        (lambda s, e, n: honest(s, e, n) + honest(s, e, n)[-1:], "candles for a page of at most"),
        (lambda s, e, n: honest(s - 5 * HOUR_MS, e, n), "opens before the start of the page"),
        (lambda s, e, n: honest(s, e + HOUR_MS, n + 1)[1:], "opens after the end of the page asked for"),
        (_rows_shifted(1), r"row 1 \(open_time"),
        (lambda s, e, n: [honest(s, e, n)[0]] * 2, "does not come after the candle before it"),
        (lambda s, e, n: [[*row[:6], row[6] - 1, *row[7:]] for row in honest(s, e, n)], "does not close when"),
    ],
    ids=["too_many_rows", "before_the_cursor", "after_the_last_closed", "off_the_grid", "repeated", "wrong_close"],
)
def test_a_bad_page_fails_the_symbol_naming_the_first_bad_row(page: Page, problem: str) -> None:
    with pytest.raises(BadResponseError, match=problem):
        export([page])


def test_a_page_that_repeats_the_last_one_is_refused_not_paginated_forever() -> None:
    def again(start: int, end: int, limit: int) -> list[list[Any]]:
        return honest(start - 10 * HOUR_MS, end, limit)  # the previous page again

    with pytest.raises(BadResponseError, match="opens before the start of the page"):
        export([honest, again], page_limit=10)


def test_an_exchange_clock_years_ahead_is_refused_before_any_request() -> None:
    client = ScriptedClient([honest])
    exporter = HistoricalDataExporter(client, "1h", 2.0, local_clock=lambda: (NOW_MS - 3 * 365 * DAY_MS) / 1000)
    with pytest.raises(ClockSkewError, match="this machine's clock says 2023-11-29T05:30:00") as caught:
        export_window(exporter, "BTCUSDT", server_time_ms=NOW_MS)
    assert "the exchange's clock gives a time of 2026-11-28T05:30:00+00:00" in str(caught.value)
    assert client.asked == []


def test_the_bound_ahead_of_the_local_clock_is_a_parameter() -> None:
    export([honest], local_ms=NOW_MS - 2 * DAY_MS, max_ahead_of_local_ms=3 * DAY_MS)
    with pytest.raises(ClockSkewError):
        export([honest], local_ms=NOW_MS - 2 * DAY_MS, max_ahead_of_local_ms=DAY_MS)


def test_an_exchange_clock_far_behind_ours_still_gives_its_past_candles() -> None:
    client = export([honest], local_ms=NOW_MS + 5 * 365 * DAY_MS)
    assert len(client.asked) == 1


def test_a_stop_request_ends_paging_between_pages() -> None:
    stop = threading.Event()

    def then_stop(start: int, end: int, limit: int) -> list[list[Any]]:
        stop.set()  # SIGTERM arrives while the first page is on its way
        return honest(start, end, limit)

    client = ScriptedClient([then_stop, honest, honest])
    client.limiter.stop_event = stop
    exporter = HistoricalDataExporter(client, "1h", 2.0, page_limit=10)
    with pytest.raises(StopRequested, match="after 1 page"):
        export_window(exporter, "BTCUSDT", server_time_ms=NOW_MS)
    assert len(client.asked) == 1


def test_the_pages_of_a_month_interval_end_on_calendar_months() -> None:
    def monthly(start: int, end: int, limit: int) -> list[list[Any]]:
        opens = [first_open_from_ms(start, "1M")]
        while next_open_ms(opens[-1], "1M") <= end:
            opens.append(next_open_ms(opens[-1], "1M"))
        return [generate_candle("BTCUSDT", "1M", t) for t in opens if t <= end][:limit]

    client = ScriptedClient([monthly])
    exporter = HistoricalDataExporter(client, "1M", 800.0, page_limit=5, local_clock=lambda: NOW_MS / 1000)
    export = export_window(exporter, "BTCUSDT", server_time_ms=NOW_MS)
    assert len(export.frame) == 25 and export.calls == len(client.asked) == 5  # 2024-10 .. 2026-10, 5 a page
    last = max(end for _, end, _ in client.asked)  # the window's (the first page's and the last one's)
    inner = [end for _, end, _ in client.asked if end != last]
    assert len(inner) == 3 and all(floor_open_ms(end + 1, "1M") == end + 1 for end in inner)  # a month's end


def test_pages_asked_for_and_not_yet_used_are_bounded() -> None:
    busy = []

    def counted(start: int, end: int, limit: int) -> list[list[Any]]:
        busy.append(1)
        try:
            return honest(start, end, limit)
        finally:
            busy.pop()

    client = ScriptedClient([counted], pool_size=2)  # at most 2 x 2 pages fetched ahead of the one in use
    exporter = HistoricalDataExporter(client, "1h", 2.0, page_limit=4, local_clock=lambda: NOW_MS / 1000)
    export = exporter.plan("BTCUSDT", server_time_ms=NOW_MS)
    pages = exporter.iter_chunks(export)
    next(pages), next(pages)  # the first page (alone), then the first of the others
    wait_until(lambda: not busy and client.page_pool._work_queue.empty(), "the page pool idle")
    assert len(client.asked) == 1 + 4
    assert sum(map(len, pages)) == 47 - 8 and len(client.asked) == 12
