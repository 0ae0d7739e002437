"""A market is one profile: where its endpoints are, what each call weighs, how
large a page may be and which error codes mean what.

The client reads everything market-specific from here, so adding a market
(USD-M futures, say) is adding one profile, not editing the client.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


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

    def weight(self, path: str, params: dict[str, object]) -> int:
        if path == self.klines_path:
            limit = params.get("limit", 500)
            return self.klines_weight(limit if isinstance(limit, int) else 500)
        return self.weights.get(path, 1)


SPOT = MarketProfile(
    name="spot",
    default_base_url="https://api.binance.com",
    klines_path="/api/v3/klines",
    exchange_info_path="/api/v3/exchangeInfo",
    time_path="/api/v3/time",
    ping_path="/api/v3/ping",
    max_klines_limit=1000,
    klines_weight=lambda _limit: 2,  # spot klines weigh 2 whatever the limit
    weights={"/api/v3/exchangeInfo": 20, "/api/v3/ping": 1, "/api/v3/time": 1},
)

MARKETS: dict[str, MarketProfile] = {SPOT.name: SPOT}
