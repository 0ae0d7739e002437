"""A market is one profile: where its endpoints are, what each call weighs, how
large a page may be and which error codes mean what.

The client reads everything market-specific from here, so adding a market
(USD-M futures, say) is adding one profile, not editing the client.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

KIB = 1024
MIB = 1024 * KIB


@dataclass(frozen=True)
class MarketProfile:
    name: str
    default_base_url: str
    klines_path: str
    exchange_info_path: str
    time_path: str
    ping_path: str
    max_klines_limit: int
    # The weight of a klines call for a given ``limit`` (some markets charge by page size).
    klines_weight: Callable[[int], int]
    # The weight of every other endpoint by path; unknown paths weigh 1.
    weights: dict[str, int] = field(default_factory=dict)
    # Error codes meaning "no such symbol here": reported and skipped, never retried.
    unknown_symbol_codes: frozenset[int] = frozenset({-1121})
    # The header with the weight this IP used in the current minute.
    used_weight_header: str = "X-MBX-USED-WEIGHT-1M"
    # Largest body (after decompression) accepted from each endpoint; anything
    # bigger is a bad answer, read no further. A klines row is ~200 bytes on the
    # wire; the allowance per row leaves room for longer decimals.
    klines_row_bytes: int = 512
    klines_base_bytes: int = 16 * KIB
    body_caps: dict[str, int] = field(default_factory=dict)
    default_body_cap: int = 1 * MIB
    # The 24 h ticker of every symbol (a symbol universe ranks by its quoteVolume);
    # empty: the market has none, and EXPORT_TOP_N cannot be served.
    ticker_24hr_path: str = ""

    def weight(self, path: str, params: dict[str, object]) -> int:
        if path == self.klines_path:
            return self.klines_weight(_limit_of(params))
        return self.weights.get(path, 1)

    def body_cap(self, path: str, params: dict[str, object]) -> int:
        """Bytes of (decoded) body this request may bring back at most."""
        if path == self.klines_path:
            rows = min(_limit_of(params), self.max_klines_limit)
            return self.klines_base_bytes + rows * self.klines_row_bytes
        return self.body_caps.get(path, self.default_body_cap)


def _limit_of(params: dict[str, object]) -> int:
    limit = params.get("limit", 500)  # the exchange's default page
    return limit if isinstance(limit, int) and limit > 0 else 500


SPOT = MarketProfile(
    name="spot",
    default_base_url="https://api.binance.com",
    klines_path="/api/v3/klines",
    exchange_info_path="/api/v3/exchangeInfo",
    time_path="/api/v3/time",
    ping_path="/api/v3/ping",
    max_klines_limit=1000,
    klines_weight=lambda _limit: 2,  # spot klines weigh 2 whatever the limit
    # The 24 h ticker is only ever asked for all symbols at once (a symbol universe): 80.
    weights={"/api/v3/exchangeInfo": 20, "/api/v3/ping": 1, "/api/v3/time": 1, "/api/v3/ticker/24hr": 80},
    # The full exchangeInfo of binance.com is a few MB (thousands of symbols); a symbol
    # universe asks for it at each cycle, otherwise one symbol's, a few KB. The full 24 h
    # ticker is ~600 bytes per symbol (~2 MB). time and ping are a few bytes.
    body_caps={
        "/api/v3/exchangeInfo": 16 * MIB,
        "/api/v3/ping": 64 * KIB,
        "/api/v3/time": 64 * KIB,
        "/api/v3/ticker/24hr": 16 * MIB,
    },
    ticker_24hr_path="/api/v3/ticker/24hr",
)

MARKETS: dict[str, MarketProfile] = {SPOT.name: SPOT}
