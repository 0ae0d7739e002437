"""A market is one profile: its endpoints, what each call weighs, its page size and error
codes. The client reads everything market-specific from here: a market is one profile."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from crypto_data_export.settings.market_names import SPOT as SPOT_NAME
from crypto_data_export.settings.market_names import USDM as USDM_NAME

KIB = 1024
MIB = 1024 * KIB


@dataclass(frozen=True)
class MarketProfile:
    name: str
    klines_path: str
    exchange_info_path: str
    time_path: str
    ping_path: str
    max_klines_limit: int
    # The weight of a klines call for a given ``limit`` (some markets charge by page size).
    klines_weight: Callable[[int], int]
    # Where the bulk archive (data.binance.vision) keeps the market's klines.
    archive_prefix: str
    # The weight of every other endpoint by path; unknown paths weigh 1.
    weights: dict[str, int] = field(default_factory=dict)
    # Error codes meaning "no such symbol here": reported and skipped, never retried.
    unknown_symbol_codes: frozenset[int] = frozenset({-1121})
    # Largest body (decoded) accepted from each endpoint, read no further (``body_cap``): a klines row is
    # ~200 bytes on the wire, the full exchangeInfo of binance.com a few MB, the full 24 h ticker ~2 MB.
    klines_row_bytes: int = 512
    klines_base_bytes: int = 16 * KIB
    default_body_cap: int = 1 * MIB
    # The page size a long export asks for: the most rows per unit of weight (None: the maximum).
    page_limit: int | None = None
    # Whether exchangeInfo takes ?symbol= (spot does; futures answer for every symbol).
    exchange_info_by_symbol: bool = True

    # The 24 h ticker of every symbol (a symbol universe ranks by its quoteVolume);
    # empty: the market has none, and EXPORT_TOP_N cannot be served.
    ticker_24hr_path: str = ""

    @property
    def page_size(self) -> int:
        return self.page_limit or self.max_klines_limit

    def weight(self, path: str, params: dict[str, object]) -> int:
        return self.klines_weight(_limit_of(params)) if path == self.klines_path else self.weights.get(path, 1)

    def body_cap(self, path: str, params: dict[str, object]) -> int:
        """Bytes of (decoded) body this request may bring back at most."""
        if path == self.klines_path:
            rows = min(_limit_of(params), self.max_klines_limit)
            return self.klines_base_bytes + rows * self.klines_row_bytes
        if path in (self.exchange_info_path, self.ticker_24hr_path):
            return 16 * MIB
        return 64 * KIB if path in (self.time_path, self.ping_path) else self.default_body_cap


def _limit_of(params: dict[str, object]) -> int:
    limit = params.get("limit", 500)  # the exchange's default page
    return limit if isinstance(limit, int) and limit > 0 else 500


SPOT = MarketProfile(
    name=SPOT_NAME,
    klines_path="/api/v3/klines",
    exchange_info_path="/api/v3/exchangeInfo",
    time_path="/api/v3/time",
    ping_path="/api/v3/ping",
    max_klines_limit=1000,
    klines_weight=lambda _limit: 2,  # spot klines weigh 2 whatever the limit
    # The 24 h ticker is only ever asked for all symbols at once (a symbol universe): 80.
    weights={"/api/v3/exchangeInfo": 20, "/api/v3/ping": 1, "/api/v3/time": 1, "/api/v3/ticker/24hr": 80},
    ticker_24hr_path="/api/v3/ticker/24hr",
    archive_prefix="data/spot",
)


def usdm_klines_weight(limit: int) -> int:
    """USD-M futures charge klines by page size: [1, 100) 1, [100, 500) 2, [500, 1000] 5, above 10."""
    return 1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else 10


USDM = MarketProfile(
    name=USDM_NAME,
    klines_path="/fapi/v1/klines",
    exchange_info_path="/fapi/v1/exchangeInfo",
    time_path="/fapi/v1/time",
    ping_path="/fapi/v1/ping",
    max_klines_limit=1500,
    klines_weight=usdm_klines_weight,
    # 1000 rows weigh 5 (200 rows per weight), 1500 weigh 10 (150): long exports page by 1000.
    page_limit=1000,
    # The futures 24 h ticker of every symbol weighs 40 (USD-M docs, "24hr Ticker Price Change Statistics").
    weights={"/fapi/v1/exchangeInfo": 1, "/fapi/v1/ping": 1, "/fapi/v1/time": 1, "/fapi/v1/ticker/24hr": 40},
    exchange_info_by_symbol=False,
    ticker_24hr_path="/fapi/v1/ticker/24hr",
    archive_prefix="data/futures/um",  # its CSV files start with a header line (spot's have none)
)

MARKETS: dict[str, MarketProfile] = {SPOT.name: SPOT, USDM.name: USDM}
