"""The exchange: HTTP client, weight limiter, market profiles, kline parsing and the
closed-candle history. Never touches files."""
