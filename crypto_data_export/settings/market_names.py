"""The markets an export can come from and each one's default host (their endpoints and
weights are ``exchange.market_profiles``: settings import nothing above them)."""

from __future__ import annotations

SPOT = "spot"
USDM = "usdm"  # Binance USD-M futures (perpetuals and quarterlies settled in USDT/USDC)
DEFAULT_BASE_URLS: dict[str, str] = {SPOT: "https://api.binance.com", USDM: "https://fapi.binance.com"}
VALID_MARKETS: tuple[str, ...] = tuple(DEFAULT_BASE_URLS)
