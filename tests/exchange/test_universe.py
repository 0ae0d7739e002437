"""The symbol universe's selection (pure, no HTTP) and its calls against the sandbox."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

import pytest

from crypto_data_export.core.errors import BadResponseError
from crypto_data_export.exchange.client import ExchangeClient
from crypto_data_export.exchange.market_profiles import SPOT
from crypto_data_export.exchange.universe import (
    UniverseRule,
    fetch_universe,
    quote_volume,
    top_by_quote_volume,
    trading_symbols,
)


def info(*entries: tuple[str, str, str]) -> dict[str, Any]:
    return {"symbols": [{"symbol": s, "status": status, "quoteAsset": quote} for s, status, quote in entries]}


def ticker(**volumes: str) -> list[dict[str, str]]:
    return [{"symbol": s, "quoteVolume": v} for s, v in volumes.items()]


def test_trading_symbols_keeps_only_trading_ones_of_the_quote_asset_sorted() -> None:
    answer = info(
        ("ETHUSDT", "TRADING", "USDT"),
        ("BTCUSDT", "TRADING", "USDT"),
        ("LUNAUSDT", "BREAK", "USDT"),
        ("SOLUSDT", "HALT", "USDT"),
        ("ETHBTC", "TRADING", "BTC"),
    )
    assert trading_symbols(answer, "USDT") == ["BTCUSDT", "ETHUSDT"]
    assert trading_symbols(answer, "BTC") == ["ETHBTC"]
    assert trading_symbols(answer, "XYZ") == []  # zero: the caller fails the run


def test_trading_symbols_skips_entries_that_break_the_symbol_rule(caplog: pytest.LogCaptureFixture) -> None:
    answer = info(("BTCUSDT", "TRADING", "USDT"), ("../ETC", "TRADING", "USDT"))
    answer["symbols"] += ["garbage", {"status": "TRADING", "quoteAsset": "USDT"}]
    with caplog.at_level(logging.WARNING):
        assert trading_symbols(answer, "USDT") == ["BTCUSDT"]
    assert "not a usable symbol" in caplog.text


def test_trading_symbols_refuses_an_answer_without_a_symbol_list() -> None:
    with pytest.raises(BadResponseError):
        trading_symbols({"symbols": "nope"}, "USDT")


def test_top_n_ranks_by_decimal_value_not_by_text() -> None:
    rows = ticker(AUSDT="999.9", BUSDT="1000.5", CUSDT="20000", DUSDT="0.00000001")
    # As text "999.9" > "20000"; as numbers it is third.
    assert top_by_quote_volume(rows, ["AUSDT", "BUSDT", "CUSDT", "DUSDT"], 3) == ["CUSDT", "BUSDT", "AUSDT"]


def test_top_n_breaks_ties_by_symbol_name() -> None:
    rows = ticker(LINKUSDT="1000.50", AVAXUSDT="1000.5", BTCUSDT="5000")
    assert top_by_quote_volume(rows, ["LINKUSDT", "AVAXUSDT", "BTCUSDT"], 2) == ["BTCUSDT", "AVAXUSDT"]
    # Same answer in any row order.
    assert top_by_quote_volume(list(reversed(rows)), ["BTCUSDT", "AVAXUSDT", "LINKUSDT"], 2) == ["BTCUSDT", "AVAXUSDT"]


def test_malformed_ticker_rows_are_skipped_with_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    rows: list[Any] = [
        {"symbol": "BTCUSDT", "quoteVolume": "100"},
        {"symbol": "ETHUSDT", "quoteVolume": "NaN"},
        {"symbol": "SOLUSDT", "quoteVolume": "-5"},
        {"symbol": "XRPUSDT", "quoteVolume": None},
        {"symbol": "DOGEUSDT", "quoteVolume": "1e400"},
        {"symbol": "ADAUSDT", "quoteVolume": True},
        {"symbol": "bad symbol", "quoteVolume": "1"},
        {"quoteVolume": "1"},
        "not an object",
        None,
        {"symbol": "BNBUSDT", "quoteVolume": 7},
    ]
    candidates = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT", "ADAUSDT", "BNBUSDT"]
    with caplog.at_level(logging.INFO):
        assert top_by_quote_volume(rows, candidates, 10) == ["BTCUSDT", "BNBUSDT"]
    assert caplog.text.count("24h ticker rows") == 1 and "9 skipped, not a usable" in caplog.text


def test_unusable_exchange_info_names_are_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    bad = [{"symbol": f"B@D{i}", "status": "TRADING", "quoteAsset": "USDT"} for i in range(60_000)]
    info = {"symbols": [*bad, {"symbol": "BTCUSDT", "status": "TRADING", "quoteAsset": "USDT"}]}
    with caplog.at_level(logging.WARNING):
        assert trading_symbols(info, "USDT") == ["BTCUSDT"]
    assert len(caplog.records) == 1
    assert "60000 skipped, not a usable symbol (e.g. 'B@D0', 'B@D1', 'B@D2')" in caplog.text


def test_quote_volume_parses_as_decimal() -> None:
    assert quote_volume({"symbol": "BTCUSDT", "quoteVolume": "37756129.81953250"}) == (
        "BTCUSDT",
        Decimal("37756129.81953250"),
    )
    assert quote_volume({"symbol": "BTCUSDT", "quoteVolume": "Infinity"}) is None
    assert quote_volume({"symbol": "BTCUSDT", "quoteVolume": "12abc"}) is None


def test_a_candidate_without_a_ticker_row_is_not_selected() -> None:
    assert top_by_quote_volume(ticker(BTCUSDT="1"), ["BTCUSDT", "NEWUSDT"], 5) == ["BTCUSDT"]


def test_a_rule_applies_status_quote_and_top_n_together(sandbox_factory: Any) -> None:
    ex = sandbox_factory(symbol_status={"SOLUSDT": "HALT"}, extra_symbols=("ETHBTC",))
    # SOLUSDT has the largest volume but is not TRADING; ETHBTC has another quote asset.
    volumes = {"BTCUSDT": "10", "ETHUSDT": "20", "SOLUSDT": "1000000", "ETHBTC": "999999"}
    ex.config.quote_volumes = {**{s: "1" for s in ex.known_symbols()}, **volumes}
    trading_usdt = [s for s in ex.known_symbols() if s.endswith("USDT") and s != "SOLUSDT"]
    with ExchangeClient(ex.base_url, retries=0) as client:
        top = fetch_universe(client, UniverseRule("USDT", 1))
        every = fetch_universe(client, UniverseRule("USDT"))
        none = fetch_universe(client, UniverseRule("EUR", 3))
    assert (top.symbols, top.matching) == (("ETHUSDT",), len(trading_usdt))
    assert (every.symbols, every.matching) == (tuple(sorted(trading_usdt)), len(trading_usdt))
    assert (none.symbols, none.matching, none.calls) == ((), 0, 1)


def test_rule_labels_say_which_rule_selected_a_symbol() -> None:
    assert UniverseRule("USDT").label == "quote:USDT"
    assert UniverseRule("USDT", 50).label == "top:50 USDT by 24h quote volume"


def test_the_market_profile_counts_the_universe_calls() -> None:
    assert SPOT.weight("/api/v3/exchangeInfo", {}) == 20
    assert SPOT.weight("/api/v3/ticker/24hr", {}) == 80
    assert SPOT.body_cap("/api/v3/exchangeInfo", {}) >= 8 * 1024 * 1024  # binance.com's full answer is MBs
    assert SPOT.body_cap("/api/v3/ticker/24hr", {}) >= 8 * 1024 * 1024


def test_fetch_universe_makes_one_exchange_info_and_one_ticker_call(sandbox_factory: Any) -> None:
    volumes = {"BTCUSDT": "300", "ETHUSDT": "200", "XRPUSDT": "100"}
    ex = sandbox_factory(symbol_status={"SOLUSDT": "HALT"}, extra_symbols=("ETHBTC",))
    ex.config.quote_volumes = {**{s: "1" for s in ex.known_symbols()}, **volumes}
    with ExchangeClient(ex.base_url, retries=0) as client:
        universe = fetch_universe(client, UniverseRule("USDT", 2))
        assert universe.symbols == ("BTCUSDT", "ETHUSDT")
        assert (universe.calls, universe.weight) == (2, 100)
        assert universe.exchange_info["rateLimits"]  # the cycle takes the limits from it
        quote_only = fetch_universe(client, UniverseRule("BTC"))
    assert quote_only.symbols == ("ETHBTC",)
    assert (quote_only.calls, quote_only.weight) == (1, 20)
    paths = [(r.path, r.params) for r in ex.requests]
    assert paths == [
        ("/api/v3/exchangeInfo", {}),
        ("/api/v3/ticker/24hr", {}),
        ("/api/v3/exchangeInfo", {}),
    ]
    assert ex.stats.max_used_weight_seen == 120
