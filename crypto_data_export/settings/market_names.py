"""The markets an export can come from, by name, and each one's default host.

Only names and hosts live here (config imports nothing outside config); the
endpoints, weights and page sizes of each market are ``crypto_data_export.exchange.market_profiles``.
"""

from __future__ import annotations

SPOT = "spot"
USDM = "usdm"  # Binance USD-M futures (perpetuals and quarterlies settled in USDT/USDC)
DEFAULT_BASE_URLS: dict[str, str] = {
    SPOT: "https://api.binance.com",
    USDM: "https://fapi.binance.com",
}
VALID_MARKETS: tuple[str, ...] = tuple(DEFAULT_BASE_URLS)
